"""Detector-like 2D error: what a real 2D keypoint detector does to exact keypoints.

Not i.i.d. Gaussian pixels: a detector's error scales with the subject's size in the image,
is worse at the wrists and ankles, is partly slow (a joint sits off for several frames), comes
out on whole pixels, now and then swaps a left and a right limb, loses joints (occluded or
outside the image: confidence 0), and reports confidences that fall as its error grows.

One model, in torch: `streamlift train --detector` draws it on the fly per window,
`streamlift data views --detector` writes it into a views file (numpy in and out, seeded).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from streamlift.skeleton import H36M17, LIMBS

# Per-joint noise relative to the subject's mean (wrists and ankles worst; the derived midline
# joints average several detections and are better than any one of them).
JOINT_SIGMA = {"pelvis": 0.8, "r_hip": 1.3, "r_knee": 1.2, "r_ankle": 1.6, "l_hip": 1.3,
               "l_knee": 1.2, "l_ankle": 1.6, "spine": 0.8, "thorax": 0.8, "neck_nose": 0.9,
               "head": 1.1, "l_shoulder": 1.0, "l_elbow": 1.3, "l_wrist": 1.8,
               "r_shoulder": 1.0, "r_elbow": 1.3, "r_wrist": 1.8}
_SIGMA = np.array([JOINT_SIGMA[j] for j in H36M17.joints], dtype=np.float32)


@dataclass(frozen=True)
class DetectorConfig:
    """The detector model's rates and spreads (per window or view unless stated)."""
    sigma_frac: tuple[float, float] = (0.0, 0.02)  # noise std / subject size, uniform per window
    slow_share: float = 0.5  # of the variance: slow error (box-filtered over `slow_frames`)
    slow_frames: int = 8
    quantise_prob: float = 0.5  # coordinates rounded to whole pixels
    swap_rate: float = 0.004  # per frame and limb pair, the start of a left/right swap ...
    swap_frames: tuple[int, int] = (1, 6)  # ... lasting this many frames
    miss_rate: tuple[float, float] = (0.0, 0.04)  # per joint and frame, uniform per window
    occlusion_rate: float = 0.002  # per joint and frame, the start of a run of missed frames
    occlusion_frames: tuple[int, int] = (3, 25)


def subject_size(kp: "torch.Tensor") -> "torch.Tensor":
    """The subject's size in pixels (n,): the median over frames of the larger side of its 2D
    bounding box; kp (n, T, J, >=2)."""
    ext = kp[..., :2].amax(dim=2) - kp[..., :2].amin(dim=2)  # (n, T, 2)
    return ext.amax(dim=-1).median(dim=1).values.clamp_min(1.0)


def _runs(starts: "torch.Tensor", lengths: "torch.Tensor") -> "torch.Tensor":
    """Boolean (n, T, K) marking runs: a run of `lengths` frames begins wherever `starts`.

    Frame t is covered when some start s <= t has s + length(s) > t: the running maximum of
    the runs' ends, so long sequences cost O(T)."""
    import torch

    t = torch.arange(starts.shape[1])[None, :, None]  # (1, T, 1)
    ends = torch.where(starts, t + lengths, torch.zeros_like(lengths))  # (n, T, K)
    return t < ends.cummax(dim=1).values


def detector_noise(kp: "torch.Tensor", gen: "torch.Generator", cfg: DetectorConfig = DetectorConfig(),
                   image_size: tuple[int, int] | None = None) -> "torch.Tensor":
    """Exact 2D windows (n, T, J, 2|3) px -> detector-like (n, T, J, 3) with confidences.

    Per window: noise std s = U(sigma_frac) x the subject's size, per joint s x JOINT_SIGMA,
    part white and part slow; rounding to pixels; left/right limb swaps; missed joints
    (random and in runs; with `image_size`, every joint outside the image too) get confidence
    0. A seen joint's confidence is 0.3 + 0.7 exp(-e^2 / (2 (2.5 s_j)^2)) + N(0, 0.05), clamped
    to [0.05, 1], where e is its error: the confidence falls as the error grows.
    """
    import torch

    n, T, J = kp.shape[:3]
    exact = kp[..., :2].float()
    conf_in = kp[..., 2] if kp.shape[-1] == 3 else torch.ones(n, T, J)

    def u(lo, hi, *shape):
        return lo + (hi - lo) * torch.rand(*shape, generator=gen)

    sigma = u(*cfg.sigma_frac, n) * subject_size(exact)  # (n,) px
    sj = sigma[:, None, None, None] * torch.from_numpy(_SIGMA)[None, None, :, None]  # (n,1,J,1)
    white = torch.randn(n, T, J, 2, generator=gen)
    w = max(1, min(cfg.slow_frames, T))
    slow = torch.randn(n, T + w - 1, J, 2, generator=gen).unfold(1, w, 1).mean(-1) * w ** 0.5
    noise = (1 - cfg.slow_share) ** 0.5 * white + cfg.slow_share ** 0.5 * slow
    out = exact + sj * noise
    # left/right swaps of a whole leg or arm, for a few frames
    for limb in LIMBS.values():
        starts = torch.rand(n, T, 1, generator=gen) < cfg.swap_rate
        lengths = torch.randint(cfg.swap_frames[0], cfg.swap_frames[1] + 1, (n, T, 1), generator=gen)
        swap = _runs(starts, lengths)[..., 0]  # (n, T)
        twins = [H36M17.flip[j] for j in limb]
        a, b = out[:, :, limb].clone(), out[:, :, twins].clone()
        out[:, :, limb] = torch.where(swap[..., None, None], b, a)
        out[:, :, twins] = torch.where(swap[..., None, None], a, b)
    quantise = torch.rand(n, generator=gen) < cfg.quantise_prob
    out = torch.where(quantise[:, None, None, None], out.round(), out)
    # confidences from the error, then the misses
    err = (out - exact).norm(dim=-1)  # (n, T, J)
    ref = 2.5 * sj[..., 0].clamp_min(1.0)
    conf = 0.3 + 0.7 * torch.exp(-0.5 * (err / ref) ** 2) + 0.05 * torch.randn(n, T, J, generator=gen)
    conf = conf.clamp(0.05, 1.0)
    miss = torch.rand(n, T, J, generator=gen) < u(*cfg.miss_rate, n)[:, None, None]
    lengths = torch.randint(cfg.occlusion_frames[0], cfg.occlusion_frames[1] + 1, (n, T, J),
                            generator=gen)
    miss |= _runs(torch.rand(n, T, J, generator=gen) < cfg.occlusion_rate, lengths)
    if image_size is not None:
        W, H = image_size
        miss |= (exact[..., 0] < 0) | (exact[..., 0] >= W) | (exact[..., 1] < 0) | (exact[..., 1] >= H)
    conf = torch.where(miss | (conf_in <= 0), torch.zeros_like(conf), conf)
    return torch.cat([out, conf[..., None]], dim=-1)


def detector_views(kp2d: np.ndarray, seed: int, image_size: tuple[int, int] | None,
                   cfg: DetectorConfig = DetectorConfig()) -> np.ndarray:
    """`detector_noise` on one view's exact 2D (T, J, 2) px -> (T, J, 3), seeded."""
    import torch

    gen = torch.Generator().manual_seed(int(seed))
    kp = torch.from_numpy(np.ascontiguousarray(kp2d[None], dtype=np.float32))
    return detector_noise(kp, gen, cfg, image_size)[0].numpy()
