"""The prior loss that guides the lifter: noise its poses, let the frozen prior denoise them,
pull the poses towards the clean estimate (no gradient reaches the prior)."""

from __future__ import annotations

import torch

from streamlift.prior.data import normalise
from streamlift.prior.model import MotionPrior


def crop_windows(X: torch.Tensor, window: int, stride: int = 2, n_windows: int = 3) -> torch.Tensor:
    """(B, T, J, 3) -> (B * n, window, J, 3): n windows of frames `stride` apart, spread over T.

    The stride is shrunk when T is too short for it; window starts are evenly spaced from the
    first frame to the last possible one, so together they cover the whole of T.
    """
    B, T, J, C = X.shape
    if T < window:
        raise ValueError(f"need at least {window} frames for the prior's window, got {T}")
    stride = max(1, min(stride, (T - 1) // (window - 1)))
    span = (window - 1) * stride + 1
    starts = torch.linspace(0, T - span, n_windows).round().long().unique()
    idx = (starts[:, None] + stride * torch.arange(window)).to(X.device)  # (n, window)
    return X[:, idx].reshape(B * len(starts), window, J, C)  # (B, n, Tp, J, 3) -> (B*n, Tp, J, 3)


def step_range(prior: MotionPrior, t_range) -> tuple[int, int]:
    """Diffusion steps [lo, hi] from `t_range`: integers are steps (0 .. steps-1); floats no
    larger than 1 are fractions of the schedule ((0.05, 0.4) is steps 50-400 of 1000)."""
    lo, hi = t_range
    if max(lo, hi) <= 1 and any(isinstance(v, float) for v in (lo, hi)):
        lo, hi = round(lo * (prior.steps - 1)), round(hi * (prior.steps - 1))
    lo, hi = int(lo), int(hi)
    if not 0 <= lo <= hi < prior.steps:
        raise ValueError(f"t_range must lie in [0, {prior.steps - 1}] (steps) or [0.0, 1.0] "
                         f"(fractions), low <= high; got {tuple(t_range)}")
    return lo, hi


def prior_loss(prior: MotionPrior, X: torch.Tensor, t_range=(0.05, 0.4), stride: int = 2,
               n_windows: int = 3, generator: torch.Generator | None = None) -> torch.Tensor:
    """Diffusion-prior loss on camera-frame poses X (B, T, J, 3) in any scale -> scalar.

    X is cut into windows of the prior's length (frames `stride` apart), put into the prior's
    space (root-relative, scale-normalised, differentiably), noised at a random step in
    `t_range` (see `step_range`: integer steps, or fractions of the schedule), and denoised by
    the frozen prior; the loss is the mean squared distance per coordinate (in prior units)
    between the normalised prediction and the prior's clean estimate, which is a constant:
    gradients reach X only, never the prior.
    """
    lo, hi = step_range(prior, t_range)
    x0, _ = normalise(crop_windows(X, prior.cfg.window, stride, n_windows), prior.cfg.data_std)
    dev = x0.device
    with torch.no_grad():
        t = torch.randint(lo, hi + 1, (x0.shape[0],), device=dev, generator=generator)
        eps = torch.randn(x0.shape, device=dev, generator=generator, dtype=x0.dtype)
        x0_hat = prior(prior.q_sample(x0.detach(), t, eps), t)  # the clean estimate
    return (x0 - x0_hat.detach()).square().mean()
