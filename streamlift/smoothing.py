"""A causal One-Euro filter on 2D keypoints (Casiez et al., CHI 2012), gated by the 2D's own
jitter, with its state per stream: what the server applies to every stream's 2D before the
lifter, and `streamlift eval` / `render` to a whole sequence, in the same code.

Per joint (2D point x_t, pixels), with te the time since the stream's previous frame:

    dx_t = a(d_c) (x_t - y_{t-1}) / te + (1 - a(d_c)) dx_{t-1}     the speed, low-passed
    f_t  = f_min + beta |dx_t| / s_t                                the cutoff (Hz) for this frame
    y_t  = a(f_t) x_t + (1 - a(f_t)) y_{t-1},   a(f) = 1 / (1 + 1 / (2 pi f te))

with the speed in subject sizes per second (s_t: the RMS distance of frame t's seen joints to
their mean, pixels), so a far and a near subject are filtered alike. Slow joints are smoothed
hard (f_min), fast ones pass (beta). The output is g_t y_t + (1 - g_t) x_t with the gate
g_t = clip((j_t - lo) / (hi - lo), 0, 1), j_t the jitter of the 2D so far: an exponential mean
(over ~`gate_frames` frames, from 0) of the median over joints of |x_t - 2 x_{t-1} + x_{t-2}| /
s_t. Exact 2D (j ~ 0.1-0.6 %) mostly passes bit for bit (fast walking and running open the
gate a little: 148 of Bandai test's 1,652 views, 0.4 px mean change there); jittery 2D (5 px of
noise on a 450 px subject: j ~ 13 %) is filtered (docs/generalisation.md §2).

Missing joints (confidence 0) are passed through as they came and leave their filter as it was;
a joint seen again starts afresh (y = x, dx = 0) instead of gliding from where it was lost.
te comes from the frames' capture times, clipped to [1/240, 1/5] s so that a producer's bursts
or stalls cannot freeze or blow up the filter.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MODES = ("gated", "on", "off")
TE_MIN, TE_MAX = 1 / 240, 1 / 5  # s
TE_FIRST = 1 / 30  # s: a stream's first frame (any value: nothing is filtered at it)


@dataclass(frozen=True)
class SmoothConfig:
    f_min: float = 2.0  # Hz: the cutoff of a still joint
    beta: float = 2.5  # Hz per subject size per second of a joint's speed
    d_cutoff: float = 1.0  # Hz: the speed's low-pass
    gate: tuple[float, float] | None = (0.01, 0.04)  # jitter (lo, hi); None: always filter
    gate_frames: float = 30.0

    def __post_init__(self):
        if self.f_min <= 0 or self.beta < 0 or self.d_cutoff <= 0 or self.gate_frames < 1:
            raise ValueError("smoothing needs f_min > 0, beta >= 0, d_cutoff > 0, "
                             "gate_frames >= 1")
        if self.gate is not None and not 0 <= self.gate[0] < self.gate[1]:
            raise ValueError(f"the smoothing gate needs 0 <= lo < hi, got {self.gate}")


def smooth_config(mode: str) -> SmoothConfig | None:
    """The filter of a `--smooth` mode: 'gated' (the default), 'on' (always) or 'off' (None)."""
    if mode not in MODES:
        raise ValueError(f"smoothing must be one of {MODES}, got {mode!r}")
    return None if mode == "off" else SmoothConfig(gate=None) if mode == "on" else SmoothConfig()


def _alpha(f, te):
    return 1.0 / (1.0 + 1.0 / (2 * np.pi * f * te))


def _norm(v):
    return np.sqrt(v[..., 0] ** 2 + v[..., 1] ** 2)


class Smoother:
    """The filter's state for `slots` streams (float64: y, dx, the last two inputs, the jitter,
    the last capture time); a call filters one frame for each of a set of distinct slots."""

    def __init__(self, slots: int, joints: int, cfg: SmoothConfig = SmoothConfig()):
        self.cfg = cfg
        self.y = np.zeros((slots, joints, 2))
        self.dx = np.zeros((slots, joints, 2))
        self.prev = np.zeros((slots, 2, joints, 2))  # x_{t-1}, x_{t-2}
        self.seen = np.zeros((slots, joints), np.int8)  # frames in a row a joint was seen, <= 3
        self.jitter = np.zeros(slots)
        self.t_last = np.full(slots, np.nan)

    def reset(self, slots) -> None:
        """Forget the streams in `slots` (a slot handed to a new stream)."""
        self.seen[slots] = 0
        self.jitter[slots] = 0.0
        self.t_last[slots] = np.nan

    def __call__(self, slots: np.ndarray, x: np.ndarray, conf: np.ndarray,
                 t: np.ndarray) -> np.ndarray:
        """slots (B,) distinct, x (B, J, 2) px, conf (B, J), t (B,) capture times (s) ->
        the filtered x (B, J, 2) float32."""
        c = self.cfg
        x = np.asarray(x, np.float64)
        vis = np.asarray(conf) > 0  # (B, J)
        seen = np.where(vis, np.minimum(self.seen[slots] + 1, 3), 0)
        fresh = (seen == 1)[..., None]  # a joint's first frame (in a row): starts afresh
        y0, dx0 = self.y[slots], self.dx[slots]  # gathered once: read here, kept below
        y = np.where(fresh, x, y0)
        dx = np.where(fresh, 0.0, dx0)
        dt = t - self.t_last[slots]
        te = np.where(np.isfinite(dt), np.clip(dt, TE_MIN, TE_MAX), TE_FIRST)[:, None, None]
        n = np.maximum(vis.sum(1), 1)[:, None]  # (B, 1)
        mean = (x * vis[..., None]).sum(1, keepdims=True) / n[..., None]  # (B, 1, 2)
        s = np.sqrt((((x - mean) ** 2).sum(-1) * vis).sum(1, keepdims=True) / n) + 1e-6  # (B, 1)
        ad = _alpha(c.d_cutoff, te)
        dx = ad * (x - y) / te + (1 - ad) * dx
        f = c.f_min + c.beta * _norm(dx)[..., None] / s[..., None]  # Hz
        a = _alpha(f, te)
        y = a * x + (1 - a) * y
        keep = vis[..., None]
        self.y[slots] = np.where(keep, y, y0)
        self.dx[slots] = np.where(keep, dx, dx0)
        if c.gate is None:
            out = np.where(keep, y, x)
        else:
            p = self.prev[slots]  # (B, 2, J, 2)
            full = seen == 3  # seen in this frame and the two before
            d2 = _norm(x - 2 * p[:, 0] + p[:, 1]) / s  # (B, J)
            upd = full.sum(1) >= 3  # a median of at least 3 joints
            jit = self.jitter[slots]
            if upd.any():
                med = np.median(d2, axis=1)
                for r in np.flatnonzero(upd & ~full.all(1)):  # rows with joints missing: rare
                    med[r] = np.median(d2[r, full[r]])
                k = 1.0 / c.gate_frames  # from 0: smooth until shown otherwise
                jit = np.where(upd, (1 - k) * jit + k * med, jit)
            self.jitter[slots] = jit
            g = np.clip((jit - c.gate[0]) / (c.gate[1] - c.gate[0]), 0.0, 1.0)[:, None, None]
            out = np.where(keep & (g > 0), g * y + (1 - g) * x, x)  # g = 0: x, bit for bit
        self.prev[slots, 1] = self.prev[slots, 0]
        self.prev[slots, 0] = x
        self.seen[slots] = seen
        self.t_last[slots] = t
        return out.astype(np.float32)


def smooth_sequences(kps: list, confs: list, fps: list,
                     cfg: SmoothConfig = SmoothConfig()) -> list[np.ndarray]:
    """Sequences' 2D kps[i] (N_i, J, 2) px, with confs[i] (N_i, J) (None: all seen) at fps[i],
    each filtered frame by frame exactly as a stream of it is by the server (its frames'
    capture times k / fps[i]), all sequences a batch per frame -> [(N_i, J, 2) float32]."""
    n = np.array([len(k) for k in kps])
    if not len(n):
        return []
    start = np.concatenate([[0], np.cumsum(n)[:-1]])
    kp = np.concatenate([np.asarray(k, np.float64)[..., :2] for k in kps])  # (sum N, J, 2)
    conf = np.concatenate([np.ones(k.shape[:2]) if c is None else np.asarray(c)
                           for k, c in zip(kps, confs)])  # (sum N, J)
    rate = np.asarray(fps, np.float64)
    out = np.empty(kp.shape, np.float32)
    sm = Smoother(len(n), kp.shape[1], cfg)
    for t in range(int(n.max())):
        live = np.flatnonzero(n > t)  # the sequences that have a frame t
        i = start[live] + t
        out[i] = sm(live, kp[i], conf[i], t / rate[live])
    return [out[a:a + m] for a, m in zip(start, n)]


def smooth_sequence(kp: np.ndarray, conf: np.ndarray | None, fps: float,
                    cfg: SmoothConfig = SmoothConfig()) -> np.ndarray:
    """One sequence (`smooth_sequences`): kp (N, J, 2) px, conf (N, J) or None -> (N, J, 2)."""
    return smooth_sequences([kp], [conf], [fps], cfg)[0]


def smooth_views(views: dict, cfg: SmoothConfig | None, fps: float = 30.0) -> dict:
    """Each view's kp2d (N, J, 2|3), its 2D filtered (`smooth_sequences`, at the view's fps,
    `fps` for views without one; cfg None: as it is) -> {name: kp2d}."""
    if cfg is None:
        return {name: v.kp2d for name, v in views.items()}
    kps = [v.kp2d for v in views.values()]
    xy = smooth_sequences([k[..., :2] for k in kps],
                          [k[..., 2] if k.shape[-1] == 3 else None for k in kps],
                          [v.fps or fps for v in views.values()], cfg)
    return {name: np.concatenate([s, k[..., 2:]], axis=-1).astype(np.float32)
            for name, k, s in zip(views, kps, xy)}
