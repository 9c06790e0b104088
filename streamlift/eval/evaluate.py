"""Score a lifter on a views file: every frame, as streaming would see it.

Each frame is the target of its own window (padded at the sequence edges by repeating the
first/last frame, as a stream's ring buffer does), so the first frames of a view are scored too.

Action groups come from view names: keep what follows the last '/', drop a trailing camera
(`.camK`, or whatever follows the last '.': Human3.6M's `.54138969`), split on '_' and ' ',
drop `dataset-N` tokens; the first remaining token is the group (Human3.6M's `TakingPhoto` and
`WalkingDog` read as VideoPose3D's `Photo` and `WalkDog`). HDM05's `hdm05_ACTOR_MOTION_TAKE`
names group by motion class, its repetition count and start side dropped.
`dataset-1_walk-left_angry_001.cam2` -> `walk-left`; `salsa_01.cam0` -> `salsa`;
`S9/Walking 1.cam2` -> `Walking`; `S9/Directions_1.54138969` -> `Directions`;
`hdm05_mm_squat1Reps_037.cam0` -> `squat`; `hdm05_tr_depositFloorR_027.cam1` -> `depositFloorR`.
"""

from __future__ import annotations

import re

import numpy as np
import torch

from streamlift.data.views import View
from streamlift.errors import UserError
from streamlift.metrics import mpjpe, n_mpjpe, pa_mpjpe, rotation_to_truth
from streamlift.lifter.model import NRSfMFormer, metric_scale, skeleton_height
from streamlift.progress import bar as progress_bar
from streamlift.lifter.infer import lift_sequence
from streamlift.smoothing import SmoothConfig, smooth_config, smooth_views


def action_group(view_name: str) -> str:
    """The action a view shows, from its name (see the module docstring)."""
    seq = view_name.rsplit("/", 1)[-1]
    seq = re.sub(r"\.[^._ ]+$", "", seq) or seq  # the camera: `.cam2`, `.54138969`
    tokens = [t for t in re.split(r"[_ ]+", seq) if t and not re.fullmatch(r"dataset-\d+", t)]
    if len(tokens) == 4 and tokens[0] == "hdm05":  # hdm05_ACTOR_MOTION_TAKE
        return re.sub(r"\d.*$", "", tokens[2]) or tokens[2]  # squat1Reps -> squat
    group = tokens[0] if tokens else seq
    # Human3.6M's own spelling of two actions that VideoPose3D's files (prepare_data_h36m.py) rename
    return {"TakingPhoto": "Photo", "WalkingDog": "WalkDog"}.get(group, group)


def frame_errors(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """Per frame (frames, 7): MPJPE (the prediction scaled to the truth's median skeleton
    height), N-MPJPE, PA-MPJPE, the angle of the rotation to the truth and its vector (x, y, z)."""
    pred, gt = torch.from_numpy(pred).double(), torch.from_numpy(gt).double()
    height = float(skeleton_height(gt).median())
    rv = rotation_to_truth(pred, gt)  # (frames, 3)
    return np.concatenate([torch.stack([
        mpjpe(metric_scale(pred, height), gt, reduce=False),
        n_mpjpe(pred, gt, reduce=False),
        pa_mpjpe(pred, gt, reduce=False),
        rv.norm(dim=-1)], dim=1).numpy(), rv.numpy()], axis=1)


def evaluate(model: NRSfMFormer, views: dict[str, View], device="cpu", batch: int | None = None,
             progress: bool = True, intrinsics: bool = True, every: int = 1,
             smooth: SmoothConfig | None = None) -> dict:
    """MPJPE, N-MPJPE, PA-MPJPE (mm) overall and per action group, and the rotation to the
    truth (`streamlift.metrics.rotation_to_truth`): `rotation_deg`, its mean angle, and
    `rotation_vector_deg`, its mean rotation vector - near zero unless the lifter turns the
    body the same way in most frames (a systematic tilt).

    MPJPE needs an absolute scale, which a monocular lifter cannot know: the prediction is
    scaled to the subject's height, taken per view as the median skeleton height of the
    ground truth (as a user states it to the server with --height-m).

    `intrinsics`: lift the views that carry a camera matrix through a virtual camera looking at
    the subject (`streamlift.virtual_camera`); False lifts every view as if the subject were on
    the optical axis. `virtual_camera_views` in the result counts the views lifted that way.
    `every`: score frames 0, every, 2 every, ... of each view only (each estimated as it is
    when every frame is scored). `smooth`: filter the 2D first, as the server does
    (`streamlift.smoothing`).
    """
    missing = [n for n, v in views.items() if v.kp3d is None]
    if missing:
        raise UserError(f"view {missing[0]!r} has no kp3d: evaluation needs 3D ground truth")
    per_group: dict[str, list[np.ndarray]] = {}
    lifted_virtual = 0
    total = sum(v.frames for v in views.values())
    kp2d = smooth_views(views, smooth)
    with progress_bar(total, "eval", "frame", progress) as bar:
        for name, v in views.items():
            K = v.intrinsics if intrinsics else None
            lifted_virtual += K is not None
            scored = None if every == 1 else np.arange(0, v.frames, every)
            try:
                pred = lift_sequence(model, kp2d[name], batch, device, frames=scored, K=K)
            except ValueError as e:  # a camera matrix that is not a pinhole K
                raise UserError(f"view {name!r}: {e}") from None
            gt = v.kp3d if scored is None else v.kp3d[scored]
            per_group.setdefault(action_group(name), []).append(frame_errors(pred, gt))
            bar.update(v.frames)
    e = np.concatenate([c for chunks in per_group.values() for c in chunks])  # (frames, 7)
    result = {k: float(x) for k, x in zip(("mpjpe", "n_mpjpe", "pa_mpjpe", "rotation_deg"),
                                          e[:, :4].mean(axis=0))}
    result["rotation_vector_deg"] = [float(x) for x in e[:, 4:].mean(axis=0)]
    result["frames"] = len(e)
    result["views"] = len(views)
    result["virtual_camera_views"] = lifted_virtual
    result["groups"] = {}
    for g, chunks in sorted(per_group.items()):
        e = np.concatenate(chunks)
        result["groups"][g] = {"mpjpe": float(e[:, 0].mean()), "n_mpjpe": float(e[:, 1].mean()),
                               "pa_mpjpe": float(e[:, 2].mean()), "frames": int(len(e))}
    return result


def ordinal(n: int) -> str:
    """2 -> '2nd', 11 -> '11th', 23 -> '23rd'."""
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def format_table(result: dict) -> str:
    rows = [f"{'group':<28}{'frames':>9}{'MPJPE':>9}{'N-MPJPE':>9}{'PA-MPJPE':>10}"]
    for g, r in result["groups"].items():
        rows.append(f"{g:<28}{r['frames']:>9,}{r['mpjpe']:>9.1f}{r['n_mpjpe']:>9.1f}"
                    f"{r['pa_mpjpe']:>10.1f}")
    rows.append(f"{'ALL':<28}{result['frames']:>9,}{result['mpjpe']:>9.1f}"
                f"{result['n_mpjpe']:>9.1f}{result['pa_mpjpe']:>10.1f}")
    return "\n".join(rows)


def format_rotation(result: dict) -> str:
    x, y, z = result["rotation_vector_deg"]
    return (f"rotation to the truth (in N-MPJPE, not in PA-MPJPE): mean {result['rotation_deg']:.1f}"
            f" deg; mean rotation vector x {x:+.1f}, y {y:+.1f}, z {z:+.1f} deg (camera frame; "
            f"x: pitch)")


def evaluate_file(model: NRSfMFormer, weights, c, device="cpu", progress: bool = True):
    """evaluate() on the views file of an eval.options.EvalConfig: the printed report and the
    results (with mode, window, weights and data) for JSON."""
    from streamlift.data import load_views

    res = evaluate(model, load_views(c.data), device, c.batch, progress=progress,
                   intrinsics=not c.no_intrinsics, every=c.every,
                   smooth=smooth_config(c.smooth))
    mode, window = model.cfg.mode, model.cfg.window
    kind = getattr(model.cfg, "kind", "windowed")
    scored = f"{res['frames']:,} frames" + (f" (every {ordinal(c.every)})" if c.every > 1 else "")
    text = (f"{c.data}: {res['views']} views, {scored}, {kind} {mode} lifter, "
            f"window {window}, weights {weights}\n"
            f"virtual camera (the views' intrinsics): {res['virtual_camera_views']} of "
            f"{res['views']} views" + (" (--no-intrinsics)" if c.no_intrinsics else "")
            + f"; 2D smoothing: {c.smooth}"
            + "\n" + format_table(res) + "\n" + format_rotation(res))
    return text, {**res, "kind": kind, "mode": mode, "window": window, "weights": str(weights),
                  "data": str(c.data), "every": c.every, "smooth": c.smooth}
