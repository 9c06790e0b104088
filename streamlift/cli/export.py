"""`streamlift export`: the lifter as ONNX, a view's lifted motion as BVH."""

from __future__ import annotations

import argparse

from streamlift.cli.common import add_config, command, device, load_model, options, shared

EXPORT = "streamlift.export.options:ExportConfig"


def cmd_export(a: argparse.Namespace) -> int:
    from streamlift.export.run import run

    dev = device("cpu" if a.onnx is not None else a.device, a.threads)
    weights = a.weights if a.weights is not None or a.onnx is None else "windowed"  # ONNX: windowed
    model, _ = load_model(weights, dev, mode=a.mode)
    print(run(options(a, EXPORT), model, dev, progress=not a.quiet))


def add_command(sub) -> None:
    """Register `streamlift export`."""
    e = command(sub, "export", cmd_export, "the lifter as ONNX; a view's lifted motion as BVH",
                EXPORT)
    add_config(e, EXPORT)
    shared(e, "weights", "mode", "device", "threads", "quiet")
