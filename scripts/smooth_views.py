"""What smoothing the 2D before lifting would buy: a views file with every view's 2D passed
through a causal One-Euro filter (Casiez et al., CHI 2012), to score with `streamlift eval`.

Per joint coordinate x_t (px) at the view's frame rate (te = 1 / fps):

    dx_t = a(d_c) (x_t - y_{t-1}) / te + (1 - a(d_c)) dx_{t-1}     the speed, low-passed
    f_t  = f_min + beta |dx_t| / s_t                                the cutoff (Hz) for this frame
    y_t  = a(f_t) x_t + (1 - a(f_t)) y_{t-1},   a(f) = 1 / (1 + 1 / (2 pi f te))

with the speed per joint (2D norm) measured in subject sizes per second (s_t: the RMS distance of
frame t's joints to its root, px), so the filter treats a far and a near subject alike. Slow
joints are smoothed hard (f_min), fast ones pass (beta). With `--gate LO HI` the output is
g_t y_t + (1 - g_t) x_t, g_t = clip((j_t - LO) / (HI - LO), 0, 1), where j_t is the jitter of
the 2D seen so far: an exponential mean (over ~`--gate-frames` frames) of the median over joints
of |x_t - 2 x_{t-1} + x_{t-2}| / s_t. Smooth 2D (exact or a good detector's) then passes
unchanged; jittery 2D is filtered. Nothing but the 2D is read; kp3d and the cameras are copied.

    python scripts/smooth_views.py --data views/bandai_test_noise5.npz --out smoothed.npz --gate 0.01 0.04
    streamlift eval --data smoothed.npz
"""

from __future__ import annotations

import argparse

import numpy as np

from streamlift.data.views import View, load_views, save_views
from streamlift.skeleton import ROOT


def _alpha(f, te: float):
    return 1.0 / (1.0 + 1.0 / (2 * np.pi * f * te))


def one_euro(kp: np.ndarray, fps: float, f_min: float = 2.0, beta: float = 2.5,
             d_cutoff: float = 1.0, gate: tuple[float, float] | None = None,
             gate_frames: float = 30.0) -> np.ndarray:
    """Filter pixels kp (T, J, 2) causally (the module docstring's filter) -> (T, J, 2)."""
    x = np.asarray(kp, np.float64)
    te = 1.0 / fps
    out = np.empty_like(x)
    y, dx = x[0].copy(), np.zeros_like(x[0])
    jitter, k = 0.0, 1.0 / gate_frames
    out[0] = x[0]
    for t in range(1, len(x)):
        s = np.sqrt(((x[t] - x[t, ROOT]) ** 2).sum(-1).mean()) + 1e-6  # px
        dx = _alpha(d_cutoff, te) * (x[t] - y) / te + (1 - _alpha(d_cutoff, te)) * dx
        f = f_min + beta * np.linalg.norm(dx, axis=-1, keepdims=True) / s  # (J, 1) Hz
        y = _alpha(f, te) * x[t] + (1 - _alpha(f, te)) * y
        if gate is None:
            out[t] = y
            continue
        if t >= 2:
            d2 = np.median(np.linalg.norm(x[t] - 2 * x[t - 1] + x[t - 2], axis=-1)) / s
            jitter = (1 - k) * jitter + k * d2  # from 0: smooth until shown otherwise
        g = float(np.clip((jitter - gate[0]) / (gate[1] - gate[0]), 0.0, 1.0))
        out[t] = g * y + (1 - g) * x[t]
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True, help="views .npz")
    ap.add_argument("--out", required=True, help="the smoothed views .npz")
    ap.add_argument("--f-min", type=float, default=2.0, help="cutoff of a still joint, Hz")
    ap.add_argument("--beta", type=float, default=2.5,
                    help="cutoff rise, Hz per subject size per second of joint speed")
    ap.add_argument("--gate", type=float, nargs=2, metavar=("LO", "HI"), default=None,
                    help="filter only jittery 2D: not below jitter LO, fully from HI (fractions "
                         "of the subject's size; exact 2D: ~0.001-0.006, 5 px noise on a "
                         "450 px subject: ~0.13)")
    ap.add_argument("--gate-frames", type=float, default=30.0)
    ap.add_argument("--fps", type=float, default=30.0, help="for views that carry none")
    a = ap.parse_args(argv)
    if a.gate is not None and not 0 <= a.gate[0] < a.gate[1]:
        raise SystemExit("--gate needs 0 <= LO < HI")
    out = {}
    for name, v in load_views(a.data).items():
        kp = np.array(v.kp2d, dtype=np.float32, copy=True)
        kp[..., :2] = one_euro(kp[..., :2], v.fps or a.fps, a.f_min, a.beta,
                               gate=a.gate and tuple(a.gate), gate_frames=a.gate_frames)
        out[name] = View(kp, v.kp3d, v.fps, v.image_size, v.intrinsics, v.extrinsics)
    save_views(a.out, out)
    print(f"wrote {a.out}: {len(out)} views")


if __name__ == "__main__":
    main()
