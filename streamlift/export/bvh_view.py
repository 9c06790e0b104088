"""`streamlift export --bvh`: one view's lifted motion as a BVH clip."""

from __future__ import annotations

import numpy as np
import torch

from streamlift.errors import UserError
from streamlift.lifter.infer import lift_sequence
from streamlift.lifter.model import metric_scale
from streamlift.rig.bvh import write_bvh
from streamlift.rig.rotations import Rig, forward_kinematics, solve, to_rig
from streamlift.smoothing import smooth_config, smooth_views


def fk_report(rig: Rig, local: np.ndarray, joints: np.ndarray) -> str:
    """How closely the rig's rotations re-create the joints (T, 17, 3) mm they came from."""
    err = np.linalg.norm(forward_kinematics(rig, local) - joints, axis=-1)
    return (f"the rotations re-create the lifted joints to {err.mean():.1f} mm on average "
            f"(p95 {np.percentile(err, 95):.1f} mm: the rig's bones are fixed, the lifted "
            f"ones vary from frame to frame)")


def export_view(model, c, device, progress: bool = True) -> str:
    """Lift the view c.view of c.views (default: the shipped sample's first), scale it to
    c.height_m, fit a rig, write c.bvh; the report line."""
    from streamlift.data import load_views
    from streamlift.data.sample import sample_views

    views = load_views(c.views) if c.views is not None else sample_views()
    name = c.view or next(iter(views))
    if name not in views:
        raise UserError(f"no view {name!r} in {c.views or 'the shipped sample'}; it has "
                        f"{', '.join(list(views)[:8])}{' ...' if len(views) > 8 else ''}")
    view = views[name]
    if not view.fps:
        raise UserError(f"{name} has no frame rate; a BVH needs one")
    kp2d = smooth_views({name: view}, smooth_config(c.smooth))[name]
    X = lift_sequence(model, kp2d, device=device, K=view.intrinsics)  # (N, 17, 3)
    P = to_rig(metric_scale(torch.from_numpy(X), 1000.0 * c.height_m).numpy())  # mm, Y-up
    rig = Rig.fit(P)
    _, L = solve(rig, P)
    write_bvh(c.bvh, rig, L, view.fps, up=c.up)
    return (f"wrote {c.bvh}: {len(P)} frames of {name} at {view.fps:g} fps, {c.up}-up, metres, "
            f"{c.height_m:g} m tall; " + fk_report(rig, L, P))
