"""A views file with every camera rolled by a fixed angle about its optical axis: the 2D turned
about the principal point, the 3D (camera frame) and the extrinsics turned with it, so it is
the same motion seen by tilted cameras (`streamlift.train.sampler.roll_2d` / `roll_3d`; needs
intrinsics with fx = fy). To measure how a lifter copes with tilted cameras or bodies lying
across the image:

    python scripts/roll_views.py --data views/hdm05_val.npz --deg 90 --out views/hdm05_val_roll90.npz
    streamlift eval --data views/hdm05_val_roll90.npz --every 2
"""

from __future__ import annotations

import argparse
import math

import numpy as np
import torch

from streamlift.data.views import View, load_views, save_views
from streamlift.train.sampler import roll_3d


def roll_view(v: View, deg: float) -> View:
    K = v.intrinsics
    if K is None or abs(K[0, 0] - K[1, 1]) > 1e-6 * K[0, 0] or K[0, 1] != 0:
        raise SystemExit("rolling a view needs its intrinsics with fx = fy and no skew")
    th = torch.full((len(v.kp2d),), math.radians(deg), dtype=torch.float64)
    c = np.array([K[0, 2], K[1, 2]])
    uv = torch.from_numpy(np.pad(v.kp2d[..., :2] - c, ((0, 0), (0, 0), (0, 1))))  # (T, J, 3)
    kp = v.kp2d.copy()
    kp[..., :2] = roll_3d(uv, th)[..., :2].numpy() + c  # about the principal point
    X = None if v.kp3d is None else roll_3d(torch.from_numpy(v.kp3d).double(), th).numpy()
    E = v.extrinsics
    if E is not None:
        E = roll_3d(torch.from_numpy(E.T[None]).double(), th[:1])[0].numpy().T  # Rz [R | t]
    return View(kp.astype(np.float32), None if X is None else X.astype(np.float32), v.fps,
                v.image_size, K, None if E is None else E.astype(np.float32))


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--deg", type=float, required=True, help="the roll, degrees")
    ap.add_argument("--out", required=True)
    a = ap.parse_args(argv)
    save_views(a.out, {n: roll_view(v, a.deg) for n, v in load_views(a.data).items()})
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
