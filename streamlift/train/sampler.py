"""Training windows of 2D: drawn from views files, padded at the sequence start like a stream's,
mirrored, rolled and noised; nothing but the 2D (and each camera's focal length) is read."""

from __future__ import annotations

import numpy as np
import torch

from streamlift.data.views import View
from streamlift.errors import UserError
from streamlift.skeleton import H36M17, ROOT
from streamlift.virtual_camera import to_virtual
from streamlift.windows import window_offsets


class WindowSampler:
    """Draws windows (padded at the sequence start like a stream's) from a set of views.

    With `intrinsics`, a view that has a camera matrix is seen through the virtual camera that
    looks at its subject (`streamlift.virtual_camera`), `rot` holds each frame's rotation back
    to the real camera (the identity for the other views) and `focal` its focal length in
    pixels (infinite for the other views: weak perspective).
    """

    def __init__(self, views: dict[str, View], window: int, mode: str, intrinsics: bool = True,
                 groups: dict[str, int] | None = None):
        kp, rot, focal, group = [], [], [], []
        for name, v in views.items():
            group.append((groups or {}).get(name, 0))
            k = np.concatenate([v.kp2d[..., :2], v.confidence()[..., None]], axis=-1)
            R = np.broadcast_to(np.eye(3, dtype=np.float32), (len(k), 3, 3))
            f = np.inf
            if intrinsics and v.intrinsics is not None:
                try:
                    k, R = to_virtual(k, v.intrinsics)
                except ValueError as e:
                    raise UserError(f"view {name!r}: {e}") from None
                f = float(np.sqrt(v.intrinsics[0, 0] * v.intrinsics[1, 1]))
            kp.append(k)
            rot.append(R)
            focal.append(np.full(len(k), f, np.float32))
        self.kp = torch.from_numpy(np.concatenate(kp).astype(np.float32))  # (N, J, 3)
        self.rot = torch.from_numpy(np.concatenate(rot))  # (N, 3, 3)
        self.focal = torch.from_numpy(np.concatenate(focal))  # (N,) px
        lengths = np.array([len(k) for k in kp])
        starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
        self.start = torch.from_numpy(np.repeat(starts, lengths))  # (N,) view start per frame
        self.length = torch.from_numpy(np.repeat(lengths, lengths))  # (N,)
        self.offsets = torch.from_numpy(window_offsets(window, mode))  # (T,)
        # each group's frames (a group: one training file, a source) for `draw`
        frame_group = np.repeat(np.array(group, dtype=np.int64), lengths)
        order = np.argsort(frame_group, kind="stable")  # the frames grouped, in frame order
        sizes = np.bincount(frame_group)[sorted(set(group))]
        self.grouped = torch.from_numpy(order)  # (N,)
        self.group_sizes = torch.from_numpy(sizes).double()  # (groups,)
        self.group_start = torch.from_numpy(np.concatenate([[0], np.cumsum(sizes)[:-1]]))

    def draw(self, n: int, gen: torch.Generator, balance: str = "frames") -> torch.Tensor:
        """n random target frames: uniform over all frames ("frames"), or a group drawn with
        probability proportional to the square root of its frame count, then a frame uniform
        in it ("sqrt": a small source is not drowned by a large one's frame count alone)."""
        if balance == "frames" or len(self.group_sizes) == 1:
            return torch.randint(0, len(self), (n,), generator=gen)
        if balance != "sqrt":
            raise ValueError(f"unknown balance {balance!r}; known: frames, sqrt")
        g = torch.multinomial(self.group_sizes.sqrt(), n, replacement=True, generator=gen)
        pick = (torch.rand(n, generator=gen, dtype=torch.float64) * self.group_sizes[g]).long()
        return self.grouped[self.group_start[g] + pick]

    def __len__(self) -> int:
        return len(self.kp)

    def windows(self, targets: torch.Tensor) -> torch.Tensor:
        """Global target frame indices (n,) -> windows (n, T, J, 3) of (u, v, confidence)."""
        local = targets - self.start[targets]
        idx = (local[:, None] + self.offsets).clamp_min(0)
        idx = torch.minimum(idx, self.length[targets, None] - 1) + self.start[targets, None]
        return self.kp[idx]  # (n, T, J, 3)


def flip_2d(w: torch.Tensor) -> torch.Tensor:
    """Mirror windows (n, T, J, 3) left-right: negate u, swap left/right joints."""
    w = w[:, :, list(H36M17.flip)].clone()
    w[..., 0] = -w[..., 0]
    return w


def roll_2d(w: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """Turn windows (n, T, J, 2|3) in the image plane by theta (n,) radians about each frame's
    root: u' - u_r = cos(theta) (u - u_r) - sin(theta) (v - v_r), v' - v_r = sin(theta) (u - u_r)
    + cos(theta) (v - v_r); confidences kept. For 2D seen through the virtual camera (the root
    on its optical axis, fx = fy) or under weak perspective this is exactly the 2D of the 3D
    turned by `roll_3d(X, theta)`: a camera rolled about its optical axis, or a body lying
    down where the 2D showed it upright."""
    c, s = theta.cos()[:, None, None], theta.sin()[:, None, None]  # (n, 1, 1)
    root = w[:, :, ROOT:ROOT + 1, :2]  # (n, T, 1, 2)
    du, dv = (w[..., 0] - root[..., 0]), (w[..., 1] - root[..., 1])  # (n, T, J)
    out = w.clone()
    out[..., 0] = root[..., 0] + c * du - s * dv
    out[..., 1] = root[..., 1] + s * du + c * dv
    return out


def roll_3d(X: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """Camera-frame poses X (n, ..., 3) turned by theta (n,) radians about the optical (z) axis:
    x' = cos x - sin y, y' = sin x + cos y, z' = z (the 3D of `roll_2d`)."""
    shape = (-1,) + (1,) * (X.dim() - 2)
    c, s = theta.to(X).cos().view(shape), theta.to(X).sin().view(shape)
    x, y = X[..., 0], X[..., 1]
    return torch.stack([c * x - s * y, s * x + c * y, X[..., 2]], dim=-1)


def draw_rolls(n: int, cfg, gen: torch.Generator) -> torch.Tensor | None:
    """Each window's extra camera roll (n,) radians: U(-cfg.roll_deg, cfg.roll_deg) for a
    share `cfg.roll_prob` of them, 0 for the rest; None when there is none to draw."""
    deg, prob = getattr(cfg, "roll_deg", 0.0), getattr(cfg, "roll_prob", 0.0)
    if deg <= 0 or prob <= 0:
        return None
    theta = (2 * torch.rand(n, generator=gen) - 1) * np.deg2rad(deg)
    return torch.where(torch.rand(n, generator=gen) < prob, theta, torch.zeros(()))


def draw_batch(sampler: WindowSampler, cfg, gen: torch.Generator,
               targets: torch.Tensor | None = None, flip: torch.Tensor | None = None
               ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """One training batch: windows (batch, T, J, 3) with random targets (`cfg.balance`),
    left-right mirroring, a camera roll (`draw_rolls`) and 2D noise (the detector model with
    `cfg.detector`, else i.i.d.); each window's focal length (batch,) px for the perspective
    reprojection (None when `cfg.perspective` is off); and its roll (batch,) radians (None
    without rolls), which the prior loss turns back (`loss_terms`). `targets` (n,) and `flip`
    (n,) bool: the windows' target frames and which are mirrored, instead of drawn (pairs of
    synchronised views are mirrored together)."""
    targets = sampler.draw(cfg.batch, gen, cfg.balance) if targets is None else targets
    n = len(targets)
    w = sampler.windows(targets)
    flip = torch.rand(n, generator=gen) < cfg.flip_prob if flip is None else flip
    w[flip] = flip_2d(w[flip])
    roll = draw_rolls(n, cfg, gen)
    if roll is not None:
        turned = roll != 0  # the others stay bit-exact
        w[turned] = roll_2d(w[turned], roll[turned])
    if cfg.detector:
        from streamlift.data.detector import detector_noise

        w = detector_noise(w, gen)
    elif cfg.noise_px > 0:
        sigma = torch.rand(n, 1, 1, 1, generator=gen) * cfg.noise_px
        w[..., :2] += sigma * torch.randn(w[..., :2].shape, generator=gen)
    return w, (sampler.focal[targets] if cfg.perspective else None), roll
