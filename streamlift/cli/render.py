"""`streamlift render`: a view's 2D input and lifted 3D skeleton to a .png or .mp4."""

from __future__ import annotations

import argparse

from streamlift.cli.common import SERVER, add_config, command, device, flag, load_model, shared
from streamlift.errors import UserError

RENDER = "streamlift.viz.options:RenderConfig"


def cmd_render(a: argparse.Namespace) -> int:
    from streamlift.viz.offline import frames_to_draw, pick_view, render_view, report
    from streamlift.viz.video import check_output
    from streamlift.virtual_camera import check_intrinsics

    out = check_output(a.out, what="--out")
    png = out.suffix.lower() == ".png"
    if png and a.frames is not None:
        raise UserError("--frames is for .mp4 clips; a .png is one frame (pick it with --frame)")
    name, view, where = pick_view(a.views, a.view, not a.no_intrinsics)
    if view.intrinsics is not None:
        with flag(where, " (--no-intrinsics renders without them)"):
            check_intrinsics(view.intrinsics, f"{name}'s intrinsics")
    frames = frames_to_draw(name, view.frames, png, a.frame, a.frames, "--frame")
    dev = device(a.device, a.threads)
    model, weights = load_model(a.weights, dev, mode=a.mode)
    res = render_view(model, view, name, out, frames, dev, a.fps, a.size, a.second_view,
                      1000.0 * a.height_m, progress=not a.quiet, smooth=a.smooth)
    print(report(res, where, f"{model.cfg.mode} lifter {weights.name}"))
    return 0


def add_command(sub) -> None:
    """Register `streamlift render`."""
    r = command(sub, "render", cmd_render,
                "draw a view's 2D input and lifted 3D skeleton to a .png or .mp4", RENDER)
    add_config(r, RENDER)
    shared(r, "weights", "device", mode="check that the checkpoint was trained for this mode "
           "(the shipped lifter is causal)")
    add_config(r, SERVER, "height_m", height_m="height the skeleton is drawn at when the view "
               "has no ground truth (with ground truth: its median height, as eval uses)")
    add_config(r, SERVER, "smooth", smooth="filter the view's 2D before lifting, as `serve "
               "--smooth` does: 'gated' only 2D that jitters, 'on' always, 'off' never")
    add_config(r, "streamlift.viz.options:Drawing")
    shared(r, "threads", quiet="no progress bar for clips")
