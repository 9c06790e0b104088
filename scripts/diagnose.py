"""Where a lifter's N-MPJPE comes from: the body's global rotation, axis by axis, with and
without the virtual camera, and what weak perspective costs even the true pose.

    python scripts/diagnose.py --val views/bandai_val.npz [--weights W.pt] [--json OUT.json]

Scores every STRIDE-th frame of ~300 views of --val (3D used only to score), lifted twice:
through the virtual camera (the views' intrinsics) and without it. For each it reports
N-MPJPE and PA-MPJPE, and the rotation that aligns the N-scaled prediction with the truth
(the part of the error N-MPJPE counts and PA-MPJPE forgives) as a rotation vector in the camera
frame: about x (pitch: the body tilted towards or away from the camera), y (yaw: turned
left/right) and z (roll, in the image plane), mean absolute and mean signed, in degrees.
Where the views have extrinsics it fits the pitch error against each camera's elevation
(pitch_error ~ a * elevation + b): a = 1 means the lifter's tilt ignores the elevation
entirely, a = 0 that it follows it. It also reports N-MPJPE with the mean pitch error taken
out (one constant tilt, fitted on these very frames: what knowing the cameras' elevation could
buy). Finally it measures, on the true 3D poses, the mean distance in mm between a
weak-perspective projection (best scale) and the real one.
"""

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from streamlift.data import load_views
from streamlift.kernels.procrustes import procrustes
from streamlift.metrics import pa_mpjpe
from streamlift.lifter.model import load_lifter
from streamlift.geometry import ray_rotations
from streamlift.lifter.infer import lift_sequence

ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
ap.add_argument("--val", required=True, help="views file with kp3d and intrinsics (scoring only)")
ap.add_argument("--weights", type=Path, default=None, help="lifter checkpoint (default: the shipped one)")
ap.add_argument("--stride", type=int, default=10, help="score every STRIDE-th frame")
ap.add_argument("--views", type=int, default=300, help="about this many views, evenly spread")
ap.add_argument("--threads", type=int, default=1, help="torch threads")
ap.add_argument("--json", type=Path, default=None, help="also write the results here")
args = ap.parse_args()
torch.set_num_threads(args.threads)
model, weights = load_lifter(args.weights, torch.device("cpu"))
views = load_views(args.val)
names = sorted(views)[::max(1, len(views) // args.views)]
if any(views[n].kp3d is None or views[n].intrinsics is None for n in names):
    raise SystemExit(f"diagnose: every view of {args.val} needs kp3d and intrinsics")


def rotation_vectors(R: torch.Tensor) -> np.ndarray:
    """(N, 3, 3) rotations -> (N, 3) rotation vectors, degrees."""
    ang = torch.arccos(((R.diagonal(dim1=-2, dim2=-1).sum(-1) - 1) / 2).clamp(-1, 1))
    w = torch.stack([R[:, 2, 1] - R[:, 1, 2], R[:, 0, 2] - R[:, 2, 0], R[:, 1, 0] - R[:, 0, 1]], -1)
    return torch.rad2deg(w / (2 * torch.sin(ang)).clamp_min(1e-9)[:, None] * ang[:, None]).numpy()


preds = {"virtual camera": [], "no virtual camera": []}
G, elevation, weak_mm = [], [], []
for n in names:
    v = views[n]
    fr = np.arange(0, v.frames, args.stride)
    preds["virtual camera"].append(lift_sequence(model, v.kp2d, 512, "cpu", frames=fr, K=v.intrinsics))
    preds["no virtual camera"].append(lift_sequence(model, v.kp2d, 512, "cpu", frames=fr))
    G.append(v.kp3d[fr])
    if v.extrinsics is not None:  # the camera's elevation: its optical axis below the horizon
        elevation.append(np.full(len(fr), np.degrees(-np.arcsin(v.extrinsics[2, 2]))))
    # weak perspective on the truth: in the camera, and in the virtual camera on the root's ray
    for label, X in (("camera", v.kp3d[fr].astype(np.float64)),
                     ("virtual", None)):
        if X is None:
            R = ray_rotations(v.kp3d[fr, 0].astype(np.float64))
            X = np.einsum("nji,nkj->nki", R, v.kp3d[fr].astype(np.float64))  # R^T X
        uv = X[..., :2] / X[..., 2:]
        x, g = uv - uv[:, :1], X[..., :2] - X[:, :1, :2]
        s = (x * g).sum((1, 2)) / (x * x).sum((1, 2))
        weak_mm.append((label, np.linalg.norm(s[:, None, None] * x - g, axis=-1).mean(1)))
G = torch.from_numpy(np.concatenate(G)).double()
G = G - G[:, :1]
out = {"weights": str(weights), "val": str(args.val), "frames": len(G), "views": len(names)}
for label, P in preds.items():
    P = torch.from_numpy(np.concatenate(P)).double()
    P = P - P[:, :1]
    s = (P * G).sum((1, 2)) / (P * P).sum((1, 2))
    Ps = s[:, None, None] * P  # the N-MPJPE scale
    rv = rotation_vectors(procrustes(Ps, G, scale=True, impl="reference").R)
    r = {"n_mpjpe": float((Ps - G).norm(dim=-1).mean()), "pa_mpjpe": float(pa_mpjpe(P, G)),
         "rotation_abs_deg": dict(zip("xyz", np.abs(rv).mean(0).round(2).tolist())),
         "rotation_mean_deg": dict(zip("xyz", rv.mean(0).round(2).tolist()))}
    # what camera knowledge could buy: the same poses with their mean pitch error taken out
    a = np.radians(rv[:, 0].mean())
    Rx = torch.tensor([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    Pr = P @ Rx.T
    sr = (Pr * G).sum((1, 2)) / (Pr * Pr).sum((1, 2))
    r["n_mpjpe_mean_tilt_removed"] = float((sr[:, None, None] * Pr - G).norm(dim=-1).mean())
    if elevation and len(np.concatenate(elevation)) == len(rv):
        e = np.concatenate(elevation)
        a, b = np.linalg.lstsq(np.stack([e, np.ones_like(e)], 1), rv[:, 0], rcond=None)[0]
        r["pitch_error_fit"] = {"a": round(float(a), 3), "b_deg": round(float(b), 2),
                                "elevation_mean_deg": round(float(e.mean()), 2)}
    out[label] = r
    print(f"{label}: N-MPJPE {r['n_mpjpe']:.1f} mm, PA-MPJPE {r['pa_mpjpe']:.1f} mm; rotation |x| "
          f"{r['rotation_abs_deg']['x']:.1f} |y| {r['rotation_abs_deg']['y']:.1f} |z| "
          f"{r['rotation_abs_deg']['z']:.1f} deg, mean x {r['rotation_mean_deg']['x']:+.1f} deg"
          + (f"; pitch error = {r['pitch_error_fit']['a']:.2f} * elevation "
             f"{r['pitch_error_fit']['b_deg']:+.1f} deg (mean elevation "
             f"{r['pitch_error_fit']['elevation_mean_deg']:.1f} deg)" if "pitch_error_fit" in r else "")
          + f"; N-MPJPE with the mean tilt taken out {r['n_mpjpe_mean_tilt_removed']:.1f} mm")
for label in ("camera", "virtual"):
    mm = float(np.concatenate([e for k, e in weak_mm if k == label]).mean())
    out[f"weak_perspective_mm_{label}"] = mm
    print(f"weak perspective on the true poses ({label} frame): {mm:.1f} mm per joint")
print(f"{out['frames']:,} frames of {out['views']} views of {args.val}")
if args.json:
    args.json.write_text(json.dumps(out, indent=1))
