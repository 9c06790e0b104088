"""How much a lookahead could buy: a causal windowed lifter's estimate of frame t - L from the
window that ends at frame t (the window's last L frames come after the one it lifts), against
its own estimate of frame t (L = 0), scored on every `--every`-th frame of each view.

This is the target a streaming student distilled with `distil_stream.py --lookahead L` learns
(`teacher_targets`), so it bounds what that student can gain:

    python scripts/lookahead_gain.py --data views/cmu_test.npz --lags 0 4 8 --every 5
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from streamlift.data.views import load_views
from streamlift.lifter.model import NRSfMFormer, load_lifter
from streamlift.metrics import n_mpjpe, pa_mpjpe
from streamlift.virtual_camera import from_virtual, to_virtual
from streamlift.windows import window_indices


@torch.no_grad()
def lag_errors(model: NRSfMFormer, view, lag: int, every: int) -> np.ndarray:
    """(F, 2) N-MPJPE, PA-MPJPE mm of frames 0, every, ... of `view`, each lifted from the
    causal window ending `lag` frames after it (clamped to the view, as a stream pads)."""
    T = model.cfg.window
    kp = np.asarray(view.kp2d, np.float32)
    R = None
    if view.intrinsics is not None:
        kp, R = to_virtual(kp, view.intrinsics)
    xy = torch.from_numpy(kp[..., :2])
    conf = torch.from_numpy(kp[..., 2]) if kp.shape[-1] == 3 else torch.ones(kp.shape[:2])
    f = np.arange(0, len(kp), every)
    idx = window_indices(len(kp), T, "causal", f + lag)  # (F, T): windows ending at f + lag
    X = torch.cat([model(xy[w], conf[w]).X[:, T - 1 - lag]
                   for w in torch.from_numpy(idx).split(64)]).numpy()  # (F, J, 3)
    if R is not None:
        X = from_virtual(X, R[f])
    p, gt = torch.from_numpy(X).double(), torch.from_numpy(view.kp3d[f]).double()
    return np.stack([n_mpjpe(p, gt, reduce=False).numpy(),
                     pa_mpjpe(p, gt, reduce=False).numpy()], 1)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True, help="views .npz with kp3d")
    ap.add_argument("--weights", default="windowed", help="a causal windowed lifter")
    ap.add_argument("--lags", type=int, nargs="+", default=[0, 2, 4, 8])
    ap.add_argument("--every", type=int, default=5)
    ap.add_argument("--threads", type=int, default=None)
    a = ap.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    model, path = load_lifter(a.weights, "cpu")
    if not isinstance(model, NRSfMFormer) or model.cfg.mode != "causal":
        raise SystemExit("needs a causal windowed lifter")
    if not all(0 <= L < model.cfg.window for L in a.lags):
        raise SystemExit(f"lags must be in [0, {model.cfg.window})")
    views = load_views(a.data)
    print(f"{a.data}, {path.name}, every {a.every}th frame\nlag  frames  N-MPJPE  PA-MPJPE")
    for L in a.lags:
        e = np.concatenate([lag_errors(model, v, L, a.every) for v in views.values()])
        print(f"{L:>3} {len(e):>7,} {e[:, 0].mean():>8.1f} {e[:, 1].mean():>9.1f}")


if __name__ == "__main__":
    main()
