"""Undo a 2D detector's left/right limb swaps: a leg or an arm reported on the other side for
a few frames.

Detectors do this (and `streamlift.data.detector` models it), and adapting on such 2D turned
the lifted bodies: two-camera adaptation on CMU ASF/AMC's detector-model 2D pitched them
towards the camera and made N-MPJPE 7 % worse on average over three seeds (27 % on one); with
the swaps undone first it was 10 % better (docs/generalisation.md section 4).

A swap is short and a limb's path is continuous, so each joint's running median over a few
frames either side (its unseen frames left out) is where it should be. Per frame and limb pair
(the right leg and the left leg, the right arm and the left arm: hip, knee, ankle and shoulder,
elbow, wrist with their twins), the pair is exchanged back when the exchanged assignment is
nearer the medians than the given one by a margin:

    sum_j |x_L(j) - m_R(j)| + |x_R(j) - m_L(j)|  <  margin * sum_j |x_R(j) - m_R(j)| + |x_L(j) - m_L(j)|

over the limb's joints seen in both (j), with x the frame's 2D, m the medians and R, L the
limb and its twin. Exact 2D is left as it is (`tests/test_unswap.py` counts it).
"""

from __future__ import annotations

import warnings

import numpy as np

from streamlift.skeleton import H36M17, LIMBS

# per limb name: its right joints and their left twins, in the same order
PAIRS = {name: (right, [H36M17.flip[j] for j in right]) for name, right in LIMBS.items()}


def running_median(kp: np.ndarray, seen: np.ndarray, half: int) -> np.ndarray:
    """Each joint's median over the frames t - k .. t + k, k = min(half, t, T - 1 - t), unseen
    frames left out: kp (T, J, 2), seen (T, J) -> (T, J, 2), NaN where no frame in reach saw it.

    Centred, because the centred median of a path that moves one way is the frame's own
    position (a one-sided window at the ends would lag behind a fast limb)."""
    T = len(kp)
    x = np.where(seen[..., None], kp, np.nan)
    pad = np.pad(x, ((half, half), (0, 0), (0, 0)), constant_values=np.nan)
    win = np.lib.stride_tricks.sliding_window_view(pad, 2 * half + 1, axis=0)[:T]  # (T, J, 2, 2h+1)
    t = np.arange(T)
    reach = np.minimum(half, np.minimum(t, T - 1 - t))  # (T,)
    far = np.abs(np.arange(-half, half + 1))[None, :] > reach[:, None]  # (T, 2h+1)
    win = np.where(far[:, None, None, :], np.nan, win)
    with warnings.catch_warnings():  # all-NaN windows: NaN, no decision there
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmedian(win, axis=-1)


def find_swaps(kp2d: np.ndarray, half: int = 7, margin: float = 0.7) -> dict[str, np.ndarray]:
    """Frames where each limb pair looks swapped: {"leg": (T,) bool, "arm": (T,) bool}.

    kp2d (T, J, 2|3) px (a third column: confidence, 0 = not seen). `half`: frames either side
    of the running median (longer than the swaps, which the median must outvote); `margin`:
    how much nearer the medians the swapped assignment must be (module docstring)."""
    if not 0 < margin <= 1:
        raise ValueError(f"margin must be in (0, 1], got {margin}")
    kp = np.asarray(kp2d[..., :2], dtype=np.float64)
    seen = (kp2d[..., 2] > 0) if kp2d.shape[-1] == 3 else np.ones(kp.shape[:2], bool)
    seen = seen & np.isfinite(kp).all(axis=-1)
    med = running_median(kp, seen, half)
    out = {}
    for name, (limb, twins) in PAIRS.items():
        ok = seen[:, limb] & seen[:, twins] & np.isfinite(med[:, limb]).all(-1) \
            & np.isfinite(med[:, twins]).all(-1)  # (T, 3)

        def dist(a, b):  # (T, 3): per joint, 0 where the pair is not usable
            return np.where(ok, np.linalg.norm(np.nan_to_num(a - b), axis=-1), 0.0)

        given = dist(kp[:, limb], med[:, limb]) + dist(kp[:, twins], med[:, twins])
        swapped = dist(kp[:, limb], med[:, twins]) + dist(kp[:, twins], med[:, limb])
        out[name] = ok.any(axis=1) & (swapped.sum(1) < margin * given.sum(1))
    return out


def unswap(kp2d: np.ndarray, half: int = 7, margin: float = 0.7) -> tuple[np.ndarray, int]:
    """kp2d (T, J, 2|3) with the swaps `find_swaps` finds exchanged back (confidences travel
    with their joints); returns the new array and how many limb-frames were exchanged."""
    out = np.array(kp2d, copy=True)
    n = 0
    for name, frames in find_swaps(kp2d, half, margin).items():
        limb, twins = PAIRS[name]
        idx = np.flatnonzero(frames)[:, None]  # (swapped frames, 1)
        out[idx, limb + twins] = out[idx, twins + limb]  # the right side is read first: a copy
        n += len(idx)
    return out, n
