"""A denoising diffusion prior over short 3D motion windows: its config, schedule and denoiser.

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
from dataclasses import asdict, dataclass, field, fields

import torch
import torch.nn as nn
import torch.nn.functional as F

from streamlift import checkpoint
from streamlift.skeleton import H36M17

FORMAT = "streamlift-prior-v1"
SCHEDULES = ("cosine", "linear")


# ------------------------------------------------------------------------------------ config
@dataclass
class PriorConfig:
    num_joints: int = H36M17.num_joints
    # `metadata`: the command-line flag of a field (streamlift.cli.common.add_config)
    window: int = field(default=9, metadata={  # Tp
        "help": "frames per motion window", "type": "positive_int"})
    width: int = field(default=320, metadata={  # of the residual MLP
        "help": "denoiser hidden width", "type": "positive_int"})
    blocks: int = field(default=4, metadata={"help": "denoiser residual blocks",
                                             "type": "positive_int"})
    time_dim: int = 64  # sinusoidal embedding size of the diffusion step
    diffusion_steps: int = 1000
    schedule: str = field(default="cosine", metadata={"help": "DDPM noise schedule",
                                                      "choices": SCHEDULES})
    data_std: float = 1.0  # per-coordinate std of scale-normalised training windows
    # Training augmentation, kept with the weights for provenance and for the prior check.
    dt_min: float = 1 / 60  # seconds between consecutive window frames, sampled log-uniformly
    dt_max: float = 0.12  # (a 25-60 fps camera at frame stride 1-3)
    pitch_min_deg: float = field(default=-15.0, metadata={
        "type": "float", "help": "lowest camera pitch of the training views, degrees "
        "(positive: looking down at the subject)"})
    pitch_max_deg: float = field(default=30.0, metadata={
        "type": "float", "help": "highest camera pitch of the training views, degrees (cover "
        "the cameras the lifter will see: the wild rig reaches +50 and more)"})
    roll_deg: float = 5.0  # std of the camera roll

    def __post_init__(self):
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}, got {self.schedule!r}")
        if self.window < 2 or self.diffusion_steps < 2:
            raise ValueError("window and diffusion_steps must be >= 2")
        if not 0 < self.dt_min <= self.dt_max:
            raise ValueError("need 0 < dt_min <= dt_max")
        if not -90 <= self.pitch_min_deg <= self.pitch_max_deg <= 90:
            raise ValueError("need -90 <= pitch_min_deg <= pitch_max_deg <= 90")

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
    ck = checkpoint.read(path, FORMAT, "prior")
    prior = MotionPrior(PriorConfig.from_dict(ck["config"]))
    prior.load_state_dict({k: v.float() if v.is_floating_point() else v
                           for k, v in ck["state_dict"].items()})
    prior.to(device).eval().requires_grad_(False)
    return (prior, ck.get("meta", {})) if with_meta else prior



