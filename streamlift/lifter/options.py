"""The settings many commands share: where and how to run, and which lifter (their flags are
made from these fields, streamlift.cli.common.add_config); nothing heavy is imported here."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from streamlift.windows import MODES


@dataclass
class RunOptions:
    device: str = field(default="auto", metadata={
        "choices": ["auto", "cpu", "cuda"],
        "help": "where to run; auto picks CUDA when there is one"})
    threads: int | None = field(default=None, metadata={
        "type": "positive_int", "help": "torch CPU threads (default: torch's choice; 1 is best "
        "when the cores are shared)"})
    quiet: bool = field(default=False, metadata={"help": "no progress bar"})
    json: Path | None = field(default=None, metadata={
        "type": "path", "help": "also write the results here (JSON)"})
    weights: Path | None = field(default=None, metadata={
        "type": "path", "metavar": "W.pt", "help": "lifter checkpoint (default: the streaming "
        "lifter shipped in the package, streamlift/assets/lifter_stream.pt: one frame's work "
        "per new frame, a state per stream; 'windowed': the shipped windowed lifter it was "
        "distilled from, streamlift/assets/lifter.pt, a whole window per frame; the "
        "onnxruntime backend and export --onnx take windowed lifters only, and default to it)"})
    backend: str = field(default="torch", metadata={
        "choices": ["torch", "onnxruntime"],
        "help": "what runs the lifter: torch, or onnxruntime on the CPU (`pip install "
        "\"streamlift[onnx]\"`; --weights may then be an .onnx from `streamlift export "
        "--onnx`, or a checkpoint exported on the fly)"})
    mode: str | None = field(default=None, metadata={
        "choices": MODES, "help": "check that the checkpoint was trained for this mode"})
