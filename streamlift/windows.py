"""Sliding windows over a sequence, padded at the edges the way streaming pads them.

Frame t's window holds frames t-T+1 .. t (causal) or t-T//2 .. t+T-1-T//2 (centred); indices
outside the sequence are clamped to its first/last frame, so a stream's first frames get a
window made of repeats of its first frame, exactly as a ring buffer that has not yet filled.
"""

from __future__ import annotations

import numpy as np
import torch

from streamlift.virtual_camera import from_virtual, to_virtual


CPU_BATCH = 32  # windows per forward pass on CPU: the per-window cost rises with the batch there
CUDA_BATCH = 512


def default_batch(device) -> int:
    """Windows per forward pass for offline lifting on `device` (CPU: small batches are faster
    per window, about 2x at 32 against 512 on the 2-core Xeon; a GPU wants large ones)."""
    return CUDA_BATCH if torch.device(device).type == "cuda" else CPU_BATCH


def window_indices(n_frames: int, window: int, mode: str, frames=None) -> np.ndarray:
    """(F, window) int64 frame indices of each frame's window (F = len(frames) or n_frames)."""
    t = np.arange(n_frames) if frames is None else np.asarray(frames)
    start = t - (window - 1) if mode == "causal" else t - window // 2
    idx = start[:, None] + np.arange(window)[None, :]
    return np.clip(idx, 0, n_frames - 1)


@torch.no_grad()
def lift_sequence(model, kp2d: np.ndarray, batch: int | None = None, device="cpu",
                  frames=None, K=None) -> np.ndarray:
    """Lift frames of one sequence: kp2d (N, J, 2|3) px -> (F, J, 3) normalised 3D, for every
    frame (F = N) or only the given `frames` indices.

    Each frame is the target frame of its own window (the model's window length and mode).
    With the camera's intrinsics K (3, 3), every frame is lifted through a virtual camera that
    looks at the root (`streamlift.virtual_camera`) and the poses come back in the real camera
    frame.
    """
    kp2d = np.asarray(kp2d, dtype=np.float32)
    R = None
    if K is not None:
        kp2d, R = to_virtual(kp2d, K)
    xy = torch.from_numpy(kp2d[..., :2]).to(device)
    conf = (torch.from_numpy(kp2d[..., 2]) if kp2d.shape[-1] == 3
            else torch.ones(kp2d.shape[:2])).to(device)
    idx = torch.from_numpy(window_indices(len(kp2d), model.cfg.window, model.cfg.mode,
                                          frames)).to(device)
    out = []
    for w in idx.split(batch or default_batch(device)):  # w: (b, T)
        out.append(model.lift(xy[w], conf[w]).float().cpu())  # xy[w]: (b, T, J, 2)
    X = torch.cat(out).numpy()  # (F, J, 3)
    if R is not None:
        X = from_virtual(X, R if frames is None else R[np.asarray(frames)])
    return X
