"""The settings of `streamlift render` (its flags are made from these fields,
streamlift.cli.common.add_config)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from streamlift.viz.draw import SECOND_VIEWS


@dataclass
class RenderConfig:
    """Lift one view of a views file with the lifter (each frame the target of its own window,
    exactly as `streamlift eval` and a live stream lift it) and draw it with OpenCV: the 2D
    input on the left, the 3D skeleton from the camera and from the side (or top, over a ground
    grid) on the right. Bones: subject's left blue, right red, midline grey. When the view has
    3D ground truth it is drawn in green, root-aligned to the prediction, and the frame's
    N-MPJPE and PA-MPJPE (mm, as eval computes them) are printed in the top-right corner. .png
    writes one frame; .mp4 a clip (mp4v). docs/rendering.md has examples."""
    views: Path | None = field(default=None, metadata={
        "type": "path", "metavar": "FILE.npz", "help": "views .npz (docs/views-format.md); "
        "default: the shipped CMU sample, made into views as `streamlift data views` makes them "
        "(5 clips x 4 cameras, names like salsa_01.cam0)"})
    view: str | None = field(default=None, metadata={
        "metavar": "NAME", "help": "which view to draw (default: the first in the file; for the "
        "shipped sample salsa_01.cam0)"})
    out: Path = field(default=None, metadata={
        "type": "path", "required": True, "metavar": "FILE",
        "help": "output: FILE.png (one frame) or FILE.mp4 (a clip)"})
    frame: int | None = field(default=None, metadata={
        "type": "int", "metavar": "K", "help": "PNG: the frame to draw (default: the middle "
        "one); MP4: the first frame of the clip (default 0)"})
    frames: int | None = field(default=None, metadata={
        "type": "positive_int", "metavar": "N",
        "help": "MP4: frames in the clip (default: to the end of the view)"})
    fps: float | None = field(default=None, metadata={
        "type": "positive_float", "help": "MP4 frame rate (default: the view's, else 30)"})
    no_intrinsics: bool = field(default=False, metadata={
        "help": "ignore the view's camera matrix: lift as if the subject stood on the optical "
        "axis (by default a view with intrinsics is lifted through a virtual camera looking at "
        "the subject, as `eval` lifts it)"})


@dataclass
class Drawing:
    second_view: str = field(default="side", metadata={
        "choices": SECOND_VIEWS, "help": "the right-most panel: the side view (from the "
        "camera's right) or a top view (from above and behind the camera)"})
    size: int = field(default=480, metadata={
        "type": "panel", "metavar": "PX", "help": "panel height and width in pixels; the "
        "image is 3 panels wide (default %(default)s: 1440x480)"})
