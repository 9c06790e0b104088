"""The `streamlift` command: one parser, a subcommand per job, flags made from the dataclass
sources (common.add_config, no torch imported); each command imports what it runs when it runs."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from streamlift import __version__
from streamlift.cli.common import (LIFTER, TRAIN, add_config, command, device, given, load_model,
                                   options, report, shared)
from streamlift.errors import UserError

MODEL = "window mode dim depth heads"
TRAINING = "epochs epoch_windows batch lr seed prior_weight prior_t_range balance detector roll_deg roll_prob"
VIEWS, IMPORT = "streamlift.data.options:ViewsConfig", "streamlift.data.options:ImportConfig"
EVAL, FILES = "streamlift.eval.options:EvalConfig", "streamlift.train.options:TrainFiles"
SWITCHES = "streamlift.train.options:TrainSwitches"


def cmd_data_views(a: argparse.Namespace) -> int:
    from streamlift.data.views import write_views

    if a.split != "all" and a.splits is None:
        raise UserError("--split needs --splits (the splits.json that defines it)")
    print(write_views(options(a, VIEWS), progress=not a.quiet))
    return 0


def cmd_data_info(a: argparse.Namespace) -> int:
    """Check a views file's shapes and print a summary of it."""
    from streamlift.data.views import summary
    print(summary(a.views))


def cmd_import_h36m(a: argparse.Namespace) -> int:
    from streamlift.data.h36m import run_import

    if a.in3d is None and a.in2d is None:
        raise UserError("give --3d DATA_3D.npz --out MOCAP.npz and/or --2d DATA_2D.npz "
                        "--out-views VIEWS.npz")
    for given_, out, flag in ((a.in3d, a.out, "--3d needs --out MOCAP.npz"),
                              (a.in2d, a.out_views, "--2d needs --out-views VIEWS.npz")):
        if given_ is not None and out is None:
            raise UserError(flag)
        if given_ is not None and given_.is_file() and not a.allow_pickle:
            raise UserError(f"{given_}: VideoPose3D files store dicts that numpy can only read "
                            "by unpickling, which runs code from the file; if you trust it, "
                            "pass --allow-pickle")
    print(run_import(options(a, IMPORT)))
    return 0


def _add_data(sub) -> None:
    dsub = sub.add_parser("data", help="make and inspect 2D views files from 3D motion capture",
                          description="Make and inspect views files (the train/eval format)."
                          ).add_subparsers(dest="data_cmd", required=True)
    add_config(v := command(dsub, "views", cmd_data_views, "project 3D mocap through seeded "
                            "cameras into a views file", VIEWS), VIEWS)
    shared(v, "quiet")
    command(dsub, "info", cmd_data_info, "summarise a views file").add_argument(
        "views", type=Path, help="views .npz")
    add_config(command(dsub, "import-h36m", cmd_import_h36m, "import Human3.6M from "
                       "VideoPose3D's preprocessed .npz files", IMPORT), IMPORT)


def cmd_train(a: argparse.Namespace) -> int:
    from streamlift.train.options import train_configs, train_to_file

    s = options(a, SWITCHES)
    cfgs = train_configs(a.config, given(a, MODEL), given(a, TRAINING), s)
    print(train_to_file(options(a, FILES), s, *cfgs, device(a.device, a.threads), not a.quiet))
    return 0


def cmd_eval(a: argparse.Namespace) -> int:
    from streamlift.eval.evaluate import evaluate_file

    dev = device(a.device, a.threads)
    model, weights = load_model(a.weights, dev, mode=a.mode, backend=a.backend)
    report(a, *evaluate_file(model, weights, options(a, EVAL), dev, progress=not a.quiet))
    return 0


def _add_train(sub) -> None:
    t = command(sub, "train", cmd_train, "train a lifter from 2D views alone (no 3D labels)",
                FILES)
    add_config(t, FILES)
    add_config(t, TRAIN, TRAINING, only_given=True)
    add_config(t, LIFTER, MODEL, only_given=True)
    add_config(t, SWITCHES)
    shared(t, "threads", "quiet", device="where to train; auto picks CUDA when there is one "
           "(bf16 autocast there)")
    e = command(sub, "eval", cmd_eval, "score a lifter on a views file with 3D ground truth",
                EVAL)
    add_config(e, EVAL)
    shared(e, "weights", "backend", "mode", "json", "device", "threads", "quiet")


def build_parser() -> argparse.ArgumentParser:
    from streamlift.cli import adapt, export, prior, render, serve

    p = argparse.ArgumentParser(
        prog="streamlift",
        description="Real-time unsupervised 3D human pose lifting from 2D keypoints.")
    p.add_argument("--version", action="version", version=f"streamlift {__version__}")
    sub = p.add_subparsers(dest="cmd", metavar="COMMAND", required=True)
    for add in (_add_data, _add_train, serve.add_commands, prior.add_commands, render.add_command,
                export.add_command, adapt.add_command):
        add(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except UserError as e:
        print(f"streamlift: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("streamlift: interrupted", file=sys.stderr)
        return 130
