"""`streamlift render`: a view's 2D input and lifted 3D skeleton to a .png or .mp4."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from streamlift.cli.common import (SERVER, add_config, command, constant, device, flag,
                                   load_model, positive_float, positive_int, shared)
from streamlift.errors import UserError


def _view(a: argparse.Namespace):
    """(name, view, where it is from) of --view in --views (or in the shipped sample)."""
    import numpy as np

    from streamlift.data import load_views
    from streamlift.data.sample import sample_views
    from streamlift.virtual_camera import check_intrinsics

    if a.views is None:
        views, where = sample_views(), "the shipped sample"
        names = list(views)
        name = a.view or "salsa_01.cam0"
    else:
        where = str(a.views)
        try:
            with np.load(a.views, allow_pickle=False) as z:
                names = [k.rsplit("/", 1)[0] for k in z.files if k.endswith("/kp2d")]
        except Exception:  # missing or unreadable: let load_views say so in its words
            load_views(a.views)
            raise
        if not names:
            load_views(a.views)  # its own error: no views in the file
        name = a.view or names[0]
    if name not in names:
        few = ", ".join(names[:6]) + (f", ... ({len(names)} views)" if len(names) > 6 else "")
        raise UserError(f"{where} has no view {name!r}; available: {few}")
    view = views[name] if a.views is None else load_views(a.views, [name])[name]
    if a.no_intrinsics:
        view = dataclasses.replace(view, intrinsics=None)
    elif view.intrinsics is not None:
        with flag(where, " (--no-intrinsics renders without them)"):
            check_intrinsics(view.intrinsics, f"{name}'s intrinsics")
    return name, view, where


def cmd_render(a: argparse.Namespace) -> int:
    """Lift one view of a views file with the lifter (each frame the target of its own window,
    exactly as `streamlift eval` and a live stream lift it) and draw it with OpenCV: the 2D
    input on the left, the 3D skeleton from the camera and from the side (or top, over a ground
    grid) on the right. Bones: subject's left blue, right red, midline grey. When the view has
    3D ground truth it is drawn in green, root-aligned to the prediction, and the frame's
    N-MPJPE and PA-MPJPE (mm, as eval computes them) are printed in the top-right corner. .png
    writes one frame; .mp4 a clip (mp4v). docs/rendering.md has examples."""
    from streamlift.viz.offline import render_view
    from streamlift.viz.video import check_output

    out = check_output(a.out, what="--out")
    if a.size < 64:
        raise UserError(f"--size {a.size} is too small to draw on; use at least 64")
    png = out.suffix.lower() == ".png"
    if png and a.frames is not None:
        raise UserError("--frames is for .mp4 clips; a .png is one frame (pick it with --frame)")
    name, view, where = _view(a)
    T = view.frames
    k = a.frame if a.frame is not None else (T // 2 if png else 0)
    if not 0 <= k < T:
        raise UserError(f"--frame {k} is out of range: {name} has {T} frames (0-{T - 1})")
    frames = [k] if png else list(range(k, min(T, k + (a.frames or T))))
    dev = device(a.device, a.threads)
    model, weights = load_model(a.weights, dev, mode=a.mode)
    res = render_view(model, view, name, out, frames, dev, a.fps, a.size, a.second_view,
                      1000.0 * a.height_m, progress=not a.quiet)
    what = f"frame {frames[0]}" if png else f"frames {frames[0]}-{frames[-1]}"
    err = ("" if res.n_mpjpe is None else
           f"; N-MPJPE {res.n_mpjpe:.1f} mm, PA-MPJPE {res.pa_mpjpe:.1f} mm"
           + ("" if png else " (mean over the clip)"))
    print(f"wrote {out} ({res.shape[1]}x{res.shape[0]}): {what} of {name} from {where}, "
          f"{model.cfg.mode} lifter {weights.name}{err}")
    return 0


def add_command(sub) -> None:
    """Register `streamlift render`."""
    r = command(sub, "render", cmd_render,
                "draw a view's 2D input and lifted 3D skeleton to a .png or .mp4")
    r.add_argument("--views", type=Path, metavar="FILE.npz", help="views .npz "
                   "(docs/views-format.md); default: the shipped CMU sample, made into views as "
                   "`streamlift data views` makes them (5 clips x 4 cameras, names like "
                   "salsa_01.cam0)")
    r.add_argument("--view", metavar="NAME", help="which view to draw (default: the first in "
                   "the file; for the shipped sample salsa_01.cam0)")
    r.add_argument("--out", type=Path, required=True, metavar="FILE",
                   help="output: FILE.png (one frame) or FILE.mp4 (a clip)")
    r.add_argument("--frame", type=int, metavar="K", help="PNG: the frame to draw (default: "
                   "the middle one); MP4: the first frame of the clip (default 0)")
    r.add_argument("--frames", type=positive_int, metavar="N",
                   help="MP4: frames in the clip (default: to the end of the view)")
    r.add_argument("--fps", type=positive_float,
                   help="MP4 frame rate (default: the view's, else 30)")
    shared(r, "weights", "device", mode="check that the checkpoint was trained for this mode "
           "(the shipped lifter is causal)")
    r.add_argument("--no-intrinsics", action="store_true", help="ignore the view's camera "
                   "matrix: lift as if the subject stood on the optical axis (by default a view "
                   "with intrinsics is lifted through a virtual camera looking at the subject, "
                   "as `eval` lifts it)")
    add_config(r, SERVER, "height_m", height_m="height the skeleton is drawn at when the view "
               "has no ground truth (with ground truth: its median height, as eval uses)")
    r.add_argument("--second-view", choices=constant("streamlift.viz.draw:SECOND_VIEWS"),
                   default="side",
                   help="the right-most panel: the side view (from the camera's right) or a "
                        "top view (from above and behind the camera)")
    r.add_argument("--size", type=positive_int, default=480, metavar="PX",
                   help="panel height and width in pixels; the image is 3 panels wide "
                        "(default %(default)s: 1440x480)")
    shared(r, "threads", quiet="no progress bar for clips")
