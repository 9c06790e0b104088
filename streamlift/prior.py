"""A denoising diffusion prior over short 3D motion windows, and the loss that guides the lifter.

Representation (what the lifter predicts, so that the prior can judge it directly): a window of
`Tp` frames of H36M-17 poses in a *camera frame* (x right, y down, z forward), root-relative per
frame (pelvis at the origin), divided by one scale per window (the RMS joint distance to the
root over the window) and by the training data's per-coordinate std `data_std`, so that the
diffusion runs on unit-variance data. Training windows are mocap (world z up, mm) seen from a
random camera: any yaw, a studio-like pitch, a small roll, and a random left/right mirror (a
reflection *with* the left/right joints swapped, i.e. another real person). A depth-mirrored
pose (z -> -z without swapping labels) has the wrong chirality for its facing direction, so the
prior can tell it from the real one.

Diffusion: DDPM forward process q(x_t | x_0) = N(sqrt(ab_t) x_0, (1 - ab_t) I) with a cosine (or
linear) schedule over `diffusion_steps` steps. The denoiser predicts the clean window x_0 (as
MDM does; eps follows from it): the prior loss needs exactly that estimate, and an x_0 target
lies on the low-dimensional pose manifold, which a hidden width below the window's 459 numbers
can carry, whereas an eps or v target is full-dimensional noise that it cannot. Sampling is
deterministic DDIM with few steps. The denoiser is a residual MLP over the flattened window: on
one CPU core it trains in minutes.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from streamlift.skeleton import H36M17, ROOT

FORMAT = "streamlift-prior-v1"
SCHEDULES = ("cosine", "linear")
FLIP = torch.tensor(H36M17.flip)


# ------------------------------------------------------------------------------------ config
@dataclass
class PriorConfig:
    num_joints: int = H36M17.num_joints
    window: int = 9  # Tp, frames per motion window
    width: int = 320  # hidden width of the residual MLP
    blocks: int = 4  # residual blocks
    time_dim: int = 64  # sinusoidal embedding size of the diffusion step
    diffusion_steps: int = 1000
    schedule: str = "cosine"
    data_std: float = 1.0  # per-coordinate std of scale-normalised training windows
    # Training augmentation, kept with the weights for provenance and for the prior check.
    dt_min: float = 1 / 60  # seconds between consecutive window frames, sampled log-uniformly
    dt_max: float = 0.12  # (a 25-60 fps camera at frame stride 1-3)
    pitch_min_deg: float = -15.0  # camera pitch, positive = looking down at the subject
    pitch_max_deg: float = 30.0
    roll_deg: float = 5.0  # std of the camera roll

    def __post_init__(self):
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}, got {self.schedule!r}")
        if self.window < 2 or self.diffusion_steps < 2:
            raise ValueError("window and diffusion_steps must be >= 2")
        if not 0 < self.dt_min <= self.dt_max:
            raise ValueError("need 0 < dt_min <= dt_max")

    @property
    def dim(self) -> int:
        return self.window * self.num_joints * 3

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "PriorConfig":
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


# ---------------------------------------------------------------------------------- schedule
def alpha_bar_schedule(n: int, kind: str = "cosine") -> torch.Tensor:
    """ab_t = prod_{s<=t} (1 - beta_s) for t = 0..n-1, float64 (n,), decreasing from ~1 to ~0.

    cosine: Nichol & Dhariwal 2021 (s = 0.008, betas clipped at 0.999); linear: Ho et al. 2020
    (beta 1e-4 -> 0.02, rescaled so that any n spans the same noise range as n = 1000).
    """
    if kind == "cosine":
        s = 0.008
        u = torch.arange(n + 1, dtype=torch.float64) / n
        f = torch.cos((u + s) / (1 + s) * math.pi / 2) ** 2
        betas = (1 - f[1:] / f[:-1]).clamp(max=0.999)
    elif kind == "linear":
        betas = torch.linspace(1e-4 * 1000 / n, 0.02 * 1000 / n, n, dtype=torch.float64)
    else:
        raise ValueError(f"unknown schedule {kind!r}; choose from {SCHEDULES}")
    return torch.cumprod(1 - betas, dim=0)


def timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal embedding of (B,) integer steps -> (B, dim)."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=t.device) / half)
    a = t.float()[:, None] * freqs[None]  # (B, half)
    return torch.cat([a.sin(), a.cos()], dim=-1)


# ------------------------------------------------------------------------------------- model
class ResBlock(nn.Module):
    def __init__(self, width: int):
        super().__init__()
        self.norm = nn.LayerNorm(width)
        self.fc1 = nn.Linear(width, width)
        self.fc2 = nn.Linear(width, width)

    def forward(self, h: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        return h + self.fc2(F.silu(self.fc1(self.norm(h) + temb)))


class MotionPrior(nn.Module):
    """Diffusion prior over (B, Tp, J, 3) windows in the prior's representation (see module doc)."""

    def __init__(self, cfg: PriorConfig | None = None):
        super().__init__()
        self.cfg = cfg = cfg or PriorConfig()
        W = cfg.width
        self.inp = nn.Linear(cfg.dim, W)
        # One step embedding, added before every block: a per-block projection would cost
        # blocks * W^2 parameters for no gain we could measure at this size.
        self.temb = nn.Sequential(nn.Linear(cfg.time_dim, W), nn.SiLU(), nn.Linear(W, W))
        self.blocks = nn.ModuleList(ResBlock(W) for _ in range(cfg.blocks))
        self.norm = nn.LayerNorm(W)
        self.out = nn.Linear(W, cfg.dim)
        nn.init.zeros_(self.out.weight)  # start by predicting the mean window, 0
        nn.init.zeros_(self.out.bias)
        self.register_buffer("alpha_bar", alpha_bar_schedule(cfg.diffusion_steps, cfg.schedule)
                             .float(), persistent=False)

    @property
    def steps(self) -> int:
        return self.cfg.diffusion_steps

    def forward(self, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Predict clean windows x0 (B, Tp, J, 3) from noisy ones x_t at steps t (B,)."""
        shape = x_t.shape
        h = self.inp(x_t.reshape(shape[0], -1))  # (B, W)
        temb = self.temb(timestep_embedding(t, self.cfg.time_dim))  # (B, W)
        for blk in self.blocks:
            h = blk(h, temb)
        return self.out(self.norm(h)).view(shape)  # (B, Tp, J, 3)

    def _ab(self, t: torch.Tensor) -> torch.Tensor:
        return self.alpha_bar[t].view(-1, 1, 1, 1)  # (B, 1, 1, 1)

    def q_sample(self, x0: torch.Tensor, t: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        """Noise clean windows x0 to step t: sqrt(ab) x0 + sqrt(1 - ab) eps."""
        ab = self._ab(t)
        return ab.sqrt() * x0 + (1 - ab).sqrt() * eps

    def split(self, x_t: torch.Tensor, t: torch.Tensor, x0: torch.Tensor):
        """(x0, eps) implied by an x0 prediction at x_t, step t."""
        ab = self._ab(t)
        return x0, (x_t - ab.sqrt() * x0) / (1 - ab).sqrt()

    def predict_x0(self, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self(x_t, t)

    def loss(self, x0: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """The training loss: MSE of the x0 prediction at a uniformly random step."""
        t = torch.randint(0, self.steps, (x0.shape[0],), device=x0.device, generator=generator)
        eps = torch.randn(x0.shape, device=x0.device, generator=generator)
        return F.mse_loss(self(self.q_sample(x0, t, eps), t), x0)

    @torch.no_grad()
    def sample(self, n: int, steps: int = 50, generator: torch.Generator | None = None,
               x_T: torch.Tensor | None = None) -> torch.Tensor:
        """Deterministic DDIM (eta = 0) with `steps` denoiser calls -> (n, Tp, J, 3) prior space."""
        dev = self.alpha_bar.device
        x = x_T if x_T is not None else torch.randn(
            (n, self.cfg.window, self.cfg.num_joints, 3), device=dev, generator=generator)
        ts = torch.linspace(self.steps - 1, 0, steps, device=dev).round().long()
        ts = ts.unique_consecutive()  # fewer calls when steps > diffusion_steps
        for i, t in enumerate(ts.tolist()):
            tt = torch.full((x.shape[0],), t, device=dev, dtype=torch.long)
            x0, eps = self.split(x, tt, self(x, tt))
            if i + 1 == len(ts):
                return x0
            ab_prev = self.alpha_bar[ts[i + 1]]
            x = ab_prev.sqrt() * x0 + (1 - ab_prev).sqrt() * eps
        return x


# ---------------------------------------------------------------------------- representation
def normalise(X: torch.Tensor, data_std: float = 1.0, eps: float = 1e-6):
    """Camera-frame windows (..., Tp, J, 3), any scale -> prior space, and the scale (...,).

    Root-relative per frame, divided by the RMS joint distance to the root over the window and
    by `data_std`. Differentiable, so a loss on the result is invariant to X's scale.
    """
    X = X - X[..., ROOT:ROOT + 1, :]  # (..., Tp, J, 3)
    rms = X.square().sum(-1).mean(dim=(-1, -2)).clamp_min(eps).sqrt()  # (...,)
    return X / (rms[..., None, None, None] * data_std), rms


def camera_rotation(yaw: torch.Tensor, pitch: torch.Tensor, roll: torch.Tensor) -> torch.Tensor:
    """World (z up) -> camera (x right, y down, z forward) rotations (B, 3, 3), radians in.

    The camera looks along azimuth `yaw`, tilted down by `pitch`, rolled by `roll` about its axis.
    """
    cp, sp = pitch.cos(), pitch.sin()
    fwd = torch.stack([cp * yaw.cos(), cp * yaw.sin(), -sp], dim=-1)  # (B, 3)
    right = torch.stack([yaw.sin(), -yaw.cos(), torch.zeros_like(yaw)], dim=-1)
    down = torch.cross(fwd, right, dim=-1)
    R0 = torch.stack([right, down, fwd], dim=-2)  # rows: camera axes in world coordinates
    cr, sr = roll.cos(), roll.sin()
    z, o = torch.zeros_like(roll), torch.ones_like(roll)
    Rz = torch.stack([torch.stack([cr, -sr, z], -1), torch.stack([sr, cr, z], -1),
                      torch.stack([z, z, o], -1)], dim=-2)  # (B, 3, 3)
    return Rz @ R0


def random_views(P: torch.Tensor, cfg: PriorConfig, generator: torch.Generator | None = None,
                 mirror: bool = True) -> torch.Tensor:
    """World windows (B, Tp, J, 3) mm, z up -> prior space, seen by random studio-like cameras."""
    B, dev = P.shape[0], P.device

    def u(lo, hi):
        return lo + (hi - lo) * torch.rand(B, device=dev, generator=generator)

    P = P - P[:, :, ROOT:ROOT + 1]  # (B, Tp, J, 3)
    if mirror:
        # Reflect y and swap left/right labels: the mirror image of a person is a person.
        m = torch.rand(B, device=dev, generator=generator) < 0.5
        Pm = P[:, :, FLIP.to(dev)] * torch.tensor([1.0, -1.0, 1.0], device=dev)
        P = torch.where(m[:, None, None, None], Pm, P)
    yaw = u(0.0, 2 * math.pi)
    pitch = torch.deg2rad(u(cfg.pitch_min_deg, cfg.pitch_max_deg))
    roll = torch.deg2rad(cfg.roll_deg * torch.randn(B, device=dev, generator=generator))
    R = camera_rotation(yaw, pitch, roll)  # (B, 3, 3)
    X = P @ R.transpose(-1, -2)[:, None]  # (B, Tp, J, 3) camera frame
    return normalise(X, cfg.data_std)[0]


class WindowSampler:
    """Random Tp-frame windows from mocap sequences at random frame spacing (linear interpolation).

    Sources are (sequences, fps, weight); a window's source is drawn by weight, its sequence in
    proportion to length, its spacing dt log-uniformly in [dt_min, dt_max] seconds (shrunk to fit
    short sequences).
    """

    def __init__(self, sources, cfg: PriorConfig, device="cpu"):
        self.cfg, self.device = cfg, torch.device(device)
        self.frames, self.offsets, self.lengths, self.fps, self.src = [], [], [], [], []
        weights, start = [], 0
        for k, (seqs, fps, w) in enumerate(sources):
            for a in seqs:
                self.frames.append(torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32)))
                self.offsets.append(start)
                self.lengths.append(len(a))
                self.fps.append(fps)
                self.src.append(k)
                start += len(a)
            weights.append(w)
        if not self.frames:
            raise ValueError("no sequences to sample windows from")
        self.data = torch.cat(self.frames).to(self.device)  # (N, J, 3) all frames
        del self.frames
        self.offsets_t = torch.tensor(self.offsets, device=self.device)
        lengths = torch.tensor(self.lengths, dtype=torch.float64)
        src = torch.tensor(self.src)
        # P(sequence) = P(source) * length / frames in that source
        w = torch.tensor(weights, dtype=torch.float64)[src]
        per_src = torch.zeros(len(weights), dtype=torch.float64).index_add_(0, src, lengths)
        self.p_seq = (w * lengths / per_src[src]).float().to(self.device)
        self.lengths_t = lengths.float().to(self.device)
        self.fps_t = torch.tensor(self.fps, dtype=torch.float32, device=self.device)

    def __call__(self, batch: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """(batch, Tp, J, 3) world-frame mm windows."""
        cfg, dev = self.cfg, self.device
        seq = torch.multinomial(self.p_seq, batch, replacement=True, generator=generator)
        L = self.lengths_t[seq]
        lo, hi = math.log(cfg.dt_min), math.log(cfg.dt_max)
        dt = torch.exp(lo + (hi - lo) * torch.rand(batch, device=dev, generator=generator))
        step = (dt * self.fps_t[seq]).clamp(max=(L - 1) / (cfg.window - 1))  # source frames
        span = step * (cfg.window - 1)
        start = torch.rand(batch, device=dev, generator=generator) * (L - 1 - span).clamp_min(0)
        pos = start[:, None] + step[:, None] * torch.arange(cfg.window, device=dev)  # (B, Tp)
        pos = torch.minimum(pos, (L - 1)[:, None])
        i0 = pos.floor().long()
        i1 = torch.minimum(i0 + 1, (L - 1).long()[:, None])
        w = (pos - i0)[..., None, None]  # (B, Tp, 1, 1)
        base = self.offsets_t[seq][:, None]
        return (1 - w) * self.data[base + i0] + w * self.data[base + i1]  # (B, Tp, J, 3)


# ---------------------------------------------------------------------------- checkpoint I/O
def save_prior(path, prior: MotionPrior, half: bool = True, **meta) -> None:
    """Config + weights (fp16 when `half`: the prior is a loss, fp16 weights change nothing we
    can measure and halve the file) + provenance; loadable with torch.load(weights_only=True)."""
    sd = {k: (v.half() if half and v.is_floating_point() else v).cpu()
          for k, v in prior.state_dict().items()}
    torch.save({"format": FORMAT, "config": prior.cfg.to_dict(), "state_dict": sd,
                "meta": meta}, path)


def load_prior(path, device: str | torch.device = "cpu", with_meta: bool = False):
    """Load a prior checkpoint (no unpickling of arbitrary objects), frozen and in eval mode.

    Returns the MotionPrior, or (prior, meta) when `with_meta`.
    """
    from streamlift.errors import UserError

    try:
        ck = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise UserError(f"prior checkpoint not found: {path}") from None
    except Exception as e:  # a truncated file, or a pickle that needs more than tensors
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserError(f"{path}: not a readable prior checkpoint ({first})") from None
    if not isinstance(ck, dict) or ck.get("format") != FORMAT:
        raise UserError(f"{path} is not a streamlift prior checkpoint")
    prior = MotionPrior(PriorConfig.from_dict(ck["config"]))
    prior.load_state_dict({k: v.float() if v.is_floating_point() else v
                           for k, v in ck["state_dict"].items()})
    prior.to(device).eval().requires_grad_(False)
    return (prior, ck.get("meta", {})) if with_meta else prior


# ------------------------------------------------------------------------------- prior loss
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
        x0_hat = prior.predict_x0(prior.q_sample(x0.detach(), t, eps), t)
    return (x0 - x0_hat.detach()).square().mean()


# ------------------------------------------------------------------------------- the check
@torch.no_grad()
def denoise_error(prior: MotionPrior, x0: torch.Tensor, ts=(50, 100, 200, 300),
                  seed: int = 0) -> torch.Tensor:
    """Per-window denoising error (B,) of prior-space windows, averaged over steps `ts`.

    The noise is seeded and depends only on the window's position in the batch, so two batches
    of the same shape (real vs depth-mirrored) are scored with identical noise.
    """
    g = torch.Generator(device=x0.device).manual_seed(seed)
    err = torch.zeros(x0.shape[0], device=x0.device)
    for t in ts:
        eps = torch.randn(x0.shape, device=x0.device, generator=g)
        tt = torch.full((x0.shape[0],), int(t), device=x0.device, dtype=torch.long)
        x0_hat = prior.predict_x0(prior.q_sample(x0, tt, eps), tt)
        err += (x0_hat - x0).square().mean(dim=(1, 2, 3))
    return err / len(ts)


def depth_mirror(x: torch.Tensor) -> torch.Tensor:
    """z -> -z (the depth ambiguity of a projection), joint labels kept."""
    return x * torch.tensor([1.0, 1.0, -1.0], device=x.device, dtype=x.dtype)


def bone_stats(x: torch.Tensor) -> dict:
    """Bone-length statistics of windows (B, Tp, J, 3), any scale (each window renormalised).

    - `bones`: mean length of each of the 16 bones, in units of the window's RMS root distance;
    - `asym`: mean |left - right| / mean(left, right) over the 6 symmetric bone pairs;
    - `cv_time`: mean over bones of (std over the window / mean) of a bone's length.
    """
    from streamlift.skeleton import SYMMETRIC_BONES

    x, _ = normalise(x)
    p, c = torch.tensor(H36M17.bones).T
    L = (x[..., c, :] - x[..., p, :]).norm(dim=-1)  # (B, Tp, 16)
    child = {int(cc): i for i, cc in enumerate(c)}
    li = torch.tensor([child[a] for a, _ in SYMMETRIC_BONES])
    ri = torch.tensor([child[b] for _, b in SYMMETRIC_BONES])
    Lm = L.mean(1)  # (B, 16)
    asym = ((Lm[:, li] - Lm[:, ri]).abs() / (0.5 * (Lm[:, li] + Lm[:, ri])).clamp_min(1e-6))
    cv = L.std(1) / Lm.clamp_min(1e-6)
    return {"bones": Lm.mean(0), "asym": asym.mean().item(), "cv_time": cv.mean().item()}


def check_prior(prior: MotionPrior, real_world: torch.Tensor, n_samples: int = 512,
                ddim_steps: int = 50, seed: int = 0) -> dict:
    """The prior check: samples vs held-out windows, and real vs depth-mirrored denoising error.

    `real_world`: held-out world-frame mm windows (B, Tp, J, 3), z up (e.g. from WindowSampler
    over the val split). Returns numbers; `prior_check_passes` turns them into a verdict.
    """
    dev = prior.alpha_bar.device
    g = torch.Generator(device=dev).manual_seed(seed)
    real = random_views(real_world.to(dev), prior.cfg, generator=g.manual_seed(seed))
    samples = prior.sample(n_samples, ddim_steps, generator=g.manual_seed(seed + 1))
    rs, ss = bone_stats(real.cpu()), bone_stats(samples.cpu())
    bone_rel = ((ss["bones"] - rs["bones"]).abs() / rs["bones"])  # (16,)
    e_real = denoise_error(prior, real, seed=seed + 2)
    e_mirr = denoise_error(prior, depth_mirror(real), seed=seed + 2)
    return {
        "windows": real.shape[0], "samples": n_samples, "ddim_steps": ddim_steps,
        "bone_rel_err_mean": bone_rel.mean().item(), "bone_rel_err_max": bone_rel.max().item(),
        "asym_real": rs["asym"], "asym_samples": ss["asym"],
        "cv_time_real": rs["cv_time"], "cv_time_samples": ss["cv_time"],
        "err_real": e_real.mean().item(), "err_mirrored": e_mirr.mean().item(),
        "mirrored_worse_frac": (e_mirr > e_real).float().mean().item(),
    }


def depth_fit(prior: MotionPrior | None, real: torch.Tensor, weight: float = 1.0,
              t_range=(0.05, 0.4), iters: int = 300, seed: int = 0) -> dict:
    """Lift 2D by optimisation, to show what the prior loss does in lifter training.

    `real`: camera-frame windows (B, T, J, 3) with T >= the prior's window (e.g. 27). Starting
    from zero depth (the symmetric point between a pose and its depth mirror), fit X to the
    2D x, y of `real` by the lifter's reprojection term (mean distance) plus `weight` x
    `prior_loss` (none when `prior` is None). Returns the mean joint error to the real poses
    and to their depth mirrors (units of the RMS root distance), and the fraction of windows
    that end nearer the real pose than its mirror.
    """
    g = torch.Generator(device=real.device).manual_seed(seed)
    real = normalise(real)[0]  # (B, T, J, 3), RMS root distance 1
    x2d = real[..., :2]
    X = torch.cat([x2d, torch.zeros_like(x2d[..., :1])], dim=-1)  # (B, T, J, 3), flat
    X = (X + 0.02 * torch.randn(X.shape, device=X.device, generator=g)).requires_grad_(True)
    opt = torch.optim.Adam([X], lr=0.01)
    with torch.enable_grad():
        for _ in range(iters):
            loss = (X[..., :2] - x2d).norm(dim=-1).mean()
            if prior is not None:
                loss = loss + weight * prior_loss(prior, X, t_range, generator=g)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    X = X.detach()
    d_real = (X - real).norm(dim=-1).mean(dim=(1, 2))  # (B,)
    d_mirr = (X - depth_mirror(real)).norm(dim=-1).mean(dim=(1, 2))
    return {"err_real": d_real.mean().item(), "err_mirrored": d_mirr.mean().item(),
            "nearer_real_frac": (d_real < d_mirr).float().mean().item(),
            "reprojection": (X[..., :2] - x2d).norm(dim=-1).mean().item()}


def prior_check_passes(r: dict) -> list[str]:
    """The failed criteria of a `check_prior` result (empty when it passes)."""
    fails = []
    if r["bone_rel_err_mean"] > 0.05:
        fails.append(f"mean bone-length error {r['bone_rel_err_mean']:.3f} > 0.05")
    if r["bone_rel_err_max"] > 0.15:
        fails.append(f"worst bone-length error {r['bone_rel_err_max']:.3f} > 0.15")
    if r["asym_samples"] > max(0.05, 3 * r["asym_real"]):
        fails.append(f"left/right asymmetry of samples {r['asym_samples']:.3f} > "
                     f"max(0.05, 3 x held-out {r['asym_real']:.3f})")
    if r["cv_time_samples"] > max(0.05, 3 * r["cv_time_real"]):
        fails.append(f"bone-length variation over time {r['cv_time_samples']:.3f} > "
                     f"max(0.05, 3 x held-out {r['cv_time_real']:.3f})")
    if not r["err_mirrored"] > 1.5 * r["err_real"]:
        fails.append(f"depth-mirrored error {r['err_mirrored']:.4f} not > 1.5 x real "
                     f"{r['err_real']:.4f}")
    if r["mirrored_worse_frac"] < 0.9:
        fails.append(f"mirrored scored worse in only {r['mirrored_worse_frac']:.1%} of windows")
    fit = r.get("depth_fit")
    if fit is not None:
        if fit["prior"]["nearer_real_frac"] < 0.8:
            fails.append(f"2D fit with the prior ends nearer the real depth in only "
                         f"{fit['prior']['nearer_real_frac']:.0%} of windows")
        if not fit["prior"]["err_real"] < fit["none"]["err_real"]:
            fails.append("2D fit with the prior is no better than without it")
    return fails
