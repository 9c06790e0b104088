"""Sliding windows over a sequence, padded at the edges the way streaming pads them.

Frame t's window holds frames t-T+1 .. t (causal) or t-T//2 .. t+T-1-T//2 (centred); indices
outside the sequence are clamped to its first/last frame, so a stream's first frames get a
window made of repeats of its first frame, exactly as a ring buffer that has not yet filled.
"""

from __future__ import annotations

import numpy as np
import torch


def window_indices(n_frames: int, window: int, mode: str, frames=None) -> np.ndarray:
    """(F, window) int64 frame indices of each frame's window (F = len(frames) or n_frames)."""
    t = np.arange(n_frames) if frames is None else np.asarray(frames)
    start = t - (window - 1) if mode == "causal" else t - window // 2
    idx = start[:, None] + np.arange(window)[None, :]
    return np.clip(idx, 0, n_frames - 1)


@torch.no_grad()
def lift_sequence(model, kp2d: np.ndarray, batch: int = 256, device="cpu",
                  frames=None) -> np.ndarray:
    """Lift frames of one sequence: kp2d (N, J, 2|3) px -> (F, J, 3) normalised 3D, for every
    frame (F = N) or only the given `frames` indices.

    Each frame is the target frame of its own window (the model's window length and mode).
    """
    kp2d = np.asarray(kp2d, dtype=np.float32)
    xy = torch.from_numpy(kp2d[..., :2]).to(device)
    conf = (torch.from_numpy(kp2d[..., 2]) if kp2d.shape[-1] == 3
            else torch.ones(kp2d.shape[:2])).to(device)
    idx = torch.from_numpy(window_indices(len(kp2d), model.cfg.window, model.cfg.mode,
                                          frames)).to(device)
    out = []
    for w in idx.split(batch):  # w: (b, T)
        out.append(model.lift(xy[w], conf[w]).float().cpu())  # xy[w]: (b, T, J, 2)
    return torch.cat(out).numpy()
