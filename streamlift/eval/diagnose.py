"""How a lifter splits motion into rigid rotation and non-rigid shape (no 3D needed)."""

from __future__ import annotations

import numpy as np
import torch

from streamlift.data.views import View
from streamlift.kernels.procrustes import procrustes
from streamlift.lifter.model import NRSfMFormer
from streamlift.windows import window_indices


@torch.no_grad()
def decomposition(model: NRSfMFormer, views: dict[str, View], windows: int = 2048,
                  seed: int = 0, device="cpu") -> dict:
    """How the model splits each window into rigid motion and non-rigid shape (no 3D needed).

    On `windows` seeded windows (every frame of each): `residual_rotation_deg`, the mean angle
    of the rotation that best aligns each shape S[t] = B + D[t] to the reference skeleton B
    (orthogonal Procrustes) - the rotation the Procrustean canonicalisation is there to remove;
    and `deformation_ratio`, RMS |D[t]| / RMS |B|.
    """
    kp = [np.concatenate([v.kp2d[..., :2], v.confidence()[..., None]], axis=-1)
          for v in views.values()]
    rng = np.random.default_rng(seed)
    which = rng.integers(0, len(kp), windows)
    T = model.cfg.window
    w = np.stack([kp[i][window_indices(len(kp[i]), T, model.cfg.mode,
                                       [rng.integers(0, len(kp[i]))])[0]]
                  for i in which])  # (windows, T, J, 3)
    w = torch.from_numpy(w.astype(np.float32)).to(device)
    angles, d2, b2 = [], 0.0, 0.0
    for chunk in w.split(512):
        o = model(chunk[..., :2], chunk[..., 2])
        S = (o.B[:, None] + o.D).flatten(0, 1).double()  # (b*T, J, 3)
        Bt = o.B[:, None].expand_as(o.D).flatten(0, 1).double()  # (b*T, J, 3)
        R = procrustes(S, Bt, scale=False, impl="reference").R  # (b*T, 3, 3)
        cos = ((R.diagonal(dim1=-2, dim2=-1).sum(-1) - 1) / 2).clamp(-1, 1)
        angles.append(torch.rad2deg(torch.arccos(cos)).cpu())
        d2 += float(o.D.square().sum(dim=-1).mean()) * len(chunk)
        b2 += float(o.B.square().sum(dim=-1).mean()) * len(chunk)
    return {"residual_rotation_deg": float(torch.cat(angles).mean()),
            "deformation_ratio": (d2 / b2) ** 0.5, "windows": windows}
