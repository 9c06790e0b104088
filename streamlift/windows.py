"""The window rule, the only place it is written: which frames an estimate of frame t sees.

A lifter of window T estimates one frame of each window, its *target*: the last (causal, the
lowest latency) or the middle one (centred, T//2 frames later but better). Frame t's window holds
frames t + o for the offsets o = -(T-1) .. 0 (causal) or -(T//2) .. T-1-T//2 (centred). Indices
outside the sequence are clamped to its first/last frame, so a stream's first frames get a window
made of repeats of its first frame, exactly as a ring buffer that has not yet filled.
"""

from __future__ import annotations

import numpy as np
import torch

MODES = ("causal", "centred")
CPU_BATCH = 32  # windows per forward pass on CPU: the per-window cost rises with the batch there
CUDA_BATCH = 512


def check_mode(mode: str) -> str:
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    return mode


def target_index(window: int, mode: str) -> int:
    """Index in the window of the frame an estimate is for (causal: last; centred: middle)."""
    return window - 1 if check_mode(mode) == "causal" else window // 2


def window_offsets(window: int, mode: str) -> np.ndarray:
    """(window,) int64 offsets of a window's frames from its target frame."""
    return np.arange(window, dtype=np.int64) - target_index(window, mode)


def lookahead(window: int, mode: str) -> int:
    """Frames after the target a window needs: 0 (causal) or T-1-T//2 (centred)."""
    return window - 1 - target_index(window, mode)


def window_indices(n_frames: int, window: int, mode: str, frames=None) -> np.ndarray:
    """(F, window) int64 frame indices of each frame's window (F = len(frames) or n_frames)."""
    t = np.arange(n_frames) if frames is None else np.asarray(frames)
    idx = t[:, None] + window_offsets(window, mode)[None, :]
    return np.clip(idx, 0, n_frames - 1)


def default_batch(device) -> int:
    """Windows per forward pass for offline lifting on `device` (CPU: small batches are faster
    per window, about 2x at 32 against 512 on the 2-core Xeon; a GPU wants large ones)."""
    return CUDA_BATCH if torch.device(device).type == "cuda" else CPU_BATCH
