"""The settings of `streamlift eval` (its flags are made from these fields,
streamlift.cli.common.add_config); nothing heavy is imported here."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from streamlift.smoothing import MODES as SMOOTH_MODES


@dataclass
class EvalConfig:
    """Lift every frame of every view as the server does (a windowed lifter: each frame the
    target of its own window, padded at the start as streaming pads; a streaming lifter: each
    view through its state from the first frame; the 2D smoothed as the server smooths it) and print MPJPE, N-MPJPE and PA-MPJPE in mm, overall and per action
    group. MPJPE scales the prediction to the subject's height (the view's median ground-truth
    skeleton height)."""
    data: Path = field(default=None, metadata={
        "type": "path", "required": True, "help": "views .npz with kp3d"})
    no_intrinsics: bool = field(default=False, metadata={
        "help": "ignore the views' camera matrices: lift every view as if the subject stood on "
        "the optical axis (by default a view with intrinsics is lifted through a virtual camera "
        "looking at the subject, docs/training.md)"})
    smooth: str = field(default="gated", metadata={
        "choices": SMOOTH_MODES,
        "help": "filter each view's 2D first as `streamlift serve --smooth` filters a stream's "
        "(its frames' capture times: k / the view's fps): 'gated' only 2D that jitters, 'on' "
        "always, 'off' never"})
    every: int = field(default=1, metadata={
        "type": "positive_int", "help": "score every N-th frame of each view (from its first): "
        "a windowed lifter then lifts only those frames' windows, N times faster, for quick "
        "comparisons; the published figures score every frame"})
    batch: int | None = field(default=None, metadata={
        "type": "positive_int", "help": "windows per forward pass (default: 32 on CPU, where "
        "the cost per window rises with the batch, 512 on CUDA)"})
