"""NRSfMFormer: a mixed spatial/temporal transformer that lifts a window of 2D keypoints to 3D.

For a window of T frames it predicts one reference skeleton B (J, 3), a deformation D[t]
(T, J, 3) and a rotation R[t] (T, 3, 3), and the camera-frame pose X[t] = R[t] (B + D[t])
(non-rigid structure from motion: a rigid rotation of one deforming shape). Pre- and
post-processing live here too, so callers pass pixels with confidences and get 3D back:

- input: root-relative 2D (pelvis subtracted per frame), divided by one scale per window (the
  confidence-weighted RMS distance to the root), so the model sees scale-free input;
- output: X in those normalised units (x right, y down, z forward; x, y match the normalised
  2D under weak perspective). `metric_scale` turns it into millimetres for a stated height.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn as nn

from streamlift import checkpoint
from streamlift.errors import UserError
from streamlift.geometry import rotation_6d
from streamlift.kernels import attention
from streamlift.skeleton import H36M17, ROOT
from streamlift.windows import check_mode, target_index

FORMAT = "streamlift-lifter-v1"


@dataclass
class LifterConfig:
    num_joints: int = H36M17.num_joints
    # `metadata`: the command-line flag of a field (streamlift.cli.common.add_config)
    window: int = field(default=27, metadata={"help": "frames per window", "type": "positive_int"})
    dim: int = field(default=64, metadata={"help": "token width", "type": "positive_int"})
    depth: int = field(default=4, metadata={"help": "spatial/temporal block pairs",
                                            "type": "positive_int"})
    heads: int = field(default=2, metadata={"help": "attention heads", "type": "positive_int"})
    mlp_ratio: float = 2.0
    dropout: float = 0.0
    mode: str = field(default="causal", metadata={  # windows.MODES
        "help": "causal: an estimate is for the window's newest frame; centred: for its middle "
                "one", "choices": ("causal", "centred")})

    def __post_init__(self):
        check_mode(self.mode)
        if self.dim % self.heads:
            raise ValueError(f"dim {self.dim} is not divisible by heads {self.heads}")
        if self.window < 1:
            raise ValueError("window must be >= 1")

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class LifterOutput:
    X: torch.Tensor  # (B, T, J, 3) camera-frame pose, normalised units
    B: torch.Tensor  # (B, J, 3) reference skeleton
    D: torch.Tensor  # (B, T, J, 3) deformation
    R: torch.Tensor  # (B, T, 3, 3) rotation
    x2d: torch.Tensor  # (B, T, J, 2) normalised 2D input the pose should reproject onto
    conf: torch.Tensor  # (B, T, J) confidences
    scale: torch.Tensor  # (B,) pixels per normalised unit
    extras: dict = field(default_factory=dict)


def normalise_2d(kp2d: torch.Tensor, conf: torch.Tensor, eps: float = 1e-6):
    """Pixels (B, T, J, 2) -> root-relative, scale-free 2D and the per-window scale (B,)."""
    x = kp2d - kp2d[:, :, ROOT:ROOT + 1]  # (B, T, J, 2)
    w = conf[..., None]
    ms = (w * x.square()).sum(dim=(1, 2, 3)) / (2 * w.sum(dim=(1, 2, 3))).clamp_min(eps)
    scale = ms.sqrt().clamp_min(eps)  # (B,)
    return x / scale[:, None, None, None], scale


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        N, S, C = x.shape
        qkv = self.qkv(x).view(N, S, 3, self.heads, C // self.heads)  # (N, S, 3, H, Dh)
        # head split read through strides: (N, H, S, Dh) views, no copies
        q, k, v = (qkv[:, :, i].transpose(1, 2) for i in range(3))
        o = attention(q, k, v)  # (N, H, S, Dh)
        return self.proj(o.transpose(1, 2).reshape(N, S, C))


class Block(nn.Module):
    """Pre-norm transformer block over the middle axis of (N, S, C)."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float, dropout: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(dropout),
                                 nn.Linear(hidden, dim))
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop(self.attn(self.norm1(x)))
        return x + self.drop(self.mlp(self.norm2(x)))


class NRSfMFormer(nn.Module):
    def __init__(self, cfg: LifterConfig | None = None):
        super().__init__()
        self.cfg = cfg = cfg or LifterConfig()
        J, T, C = cfg.num_joints, cfg.window, cfg.dim
        self.embed = nn.Linear(3, C)  # (x, y, confidence) per joint
        self.joint_pos = nn.Parameter(torch.zeros(1, 1, J, C))
        self.frame_pos = nn.Parameter(torch.zeros(1, T, 1, C))
        nn.init.trunc_normal_(self.joint_pos, std=0.02)
        nn.init.trunc_normal_(self.frame_pos, std=0.02)
        self.spatial = nn.ModuleList(Block(C, cfg.heads, cfg.mlp_ratio, cfg.dropout)
                                     for _ in range(cfg.depth))
        self.temporal = nn.ModuleList(Block(C, cfg.heads, cfg.mlp_ratio, cfg.dropout)
                                      for _ in range(cfg.depth))
        self.norm = nn.LayerNorm(C)
        self.head_B = nn.Linear(C, 3)
        self.head_D = nn.Linear(C, 3)
        self.head_R = nn.Sequential(nn.Linear(C, C), nn.GELU(), nn.Linear(C, 6))
        # start from the identity rotation and a small deformation
        nn.init.zeros_(self.head_R[-1].weight)
        with torch.no_grad():
            self.head_R[-1].bias.copy_(torch.tensor([1.0, 0, 0, 0, 1.0, 0]))
        nn.init.normal_(self.head_D.weight, std=1e-3)
        nn.init.zeros_(self.head_D.bias)

    def receptive_field(self) -> int:
        """Frames of 2D input behind each 3D estimate."""
        return self.cfg.window

    @property
    def target_index(self) -> int:
        """Index in the window of the frame an estimate is for (causal: last; centred: middle)."""
        return target_index(self.cfg.window, self.cfg.mode)

    def forward(self, kp2d: torch.Tensor, conf: torch.Tensor | None = None) -> LifterOutput:
        """kp2d (B, T, J, 2) pixels, conf (B, T, J) in [0, 1] (1 if None) -> LifterOutput."""
        Bn, T, J, _ = kp2d.shape
        if T != self.cfg.window or J != self.cfg.num_joints:
            raise ValueError(f"expected windows of (T={self.cfg.window}, J={self.cfg.num_joints}),"
                             f" got (T={T}, J={J})")
        if conf is None:
            conf = torch.ones(kp2d.shape[:3], dtype=kp2d.dtype, device=kp2d.device)
        x2d, scale = normalise_2d(kp2d, conf)
        seen = (conf > 0).to(x2d.dtype)[..., None]
        h = self.embed(torch.cat([x2d * seen, conf[..., None]], dim=-1))  # (B, T, J, C)
        h = h + self.joint_pos + self.frame_pos
        C = h.shape[-1]
        for s_blk, t_blk in zip(self.spatial, self.temporal):
            h = s_blk(h.reshape(Bn * T, J, C)).view(Bn, T, J, C)  # attend over joints
            h = h.transpose(1, 2).reshape(Bn * J, T, C)  # (B*J, T, C)
            h = t_blk(h).view(Bn, J, T, C).transpose(1, 2)  # attend over frames -> (B, T, J, C)
        h = self.norm(h)
        B = self.head_B(h.mean(dim=1))  # (B, J, 3), pooled over time
        D = self.head_D(h)  # (B, T, J, 3)
        R = rotation_6d(self.head_R(h.mean(dim=2)))  # (B, T, 3, 3), pooled over joints
        B = B - B[:, ROOT:ROOT + 1]
        D = D - D[:, :, ROOT:ROOT + 1]
        S = B[:, None] + D  # (B, T, J, 3) canonical shapes
        X = S @ R.transpose(-1, -2)  # X[t] = R[t] S[t], row vectors
        return LifterOutput(X, B, D, R, x2d, conf, scale)

    @torch.no_grad()
    def lift(self, kp2d: torch.Tensor, conf: torch.Tensor | None = None) -> torch.Tensor:
        """Windows (B, T, J, 2) -> the 3D pose (B, J, 3) of each window's target frame."""
        return self.forward(kp2d, conf).X[:, self.target_index]


def skeleton_height(X: torch.Tensor) -> torch.Tensor:
    """Head-to-ankle height along the bones (..., J, 3) -> (...): spine chain + mean leg."""
    def chain(js):
        return sum((X[..., a, :] - X[..., b, :]).norm(dim=-1) for a, b in zip(js[:-1], js[1:]))
    j = H36M17.index
    spine = chain([j("pelvis"), j("spine"), j("thorax"), j("neck_nose"), j("head")])
    leg_r = chain([j("pelvis"), j("r_hip"), j("r_knee"), j("r_ankle")])
    leg_l = chain([j("pelvis"), j("l_hip"), j("l_knee"), j("l_ankle")])
    return spine + 0.5 * (leg_r + leg_l)


def metric_scale(X: torch.Tensor, height_mm: float) -> torch.Tensor:
    """Scale poses (..., J, 3) so that each skeleton is `height_mm` tall (mm out)."""
    h = skeleton_height(X).clamp_min(1e-6)
    return X * (height_mm / h)[..., None, None]


def save_checkpoint(path, model: NRSfMFormer, meta: dict | None = None,
                    train: dict | None = None) -> None:
    """Weights + config + provenance (`meta`), and a training run's state when `train` is given;
    written atomically, loadable with torch.load(weights_only=True)."""
    ck = {"format": FORMAT, "config": model.cfg.to_dict(), "state_dict": model.state_dict(),
          "meta": meta or {}}
    if train is not None:
        ck["train"] = train
    checkpoint.write(ck, path)


def load_checkpoint(path, device: str | torch.device = "cpu") -> tuple[NRSfMFormer, dict]:
    """A windowed lifter and its provenance from a checkpoint (weights_only: nothing is
    unpickled); UserError when the file is missing or is not a windowed lifter checkpoint."""
    ck = checkpoint.read(path, FORMAT, "lifter", device)
    require_windowed(ck, path, "this")
    return _windowed(ck, device), ck.get("meta", {})


def is_streaming_config(config: dict) -> bool:
    """A checkpoint config of `streamlift.lifter.stream.StreamConfig` (kind "streaming")."""
    return config.get("kind") == "streaming"


def require_windowed(ck: dict, path, what: str) -> None:
    """UserError when checkpoint `ck` (from `path`) is a streaming lifter: `what` needs a
    windowed one."""
    if is_streaming_config(ck["config"]):
        raise UserError(f"{path} is a streaming lifter; {what} needs a windowed one (train and "
                        f"adapt windowed lifters; scripts/distil_stream.py makes a streaming "
                        f"lifter from one)")


def _windowed(ck: dict, device) -> NRSfMFormer:
    model = NRSfMFormer(LifterConfig(**ck["config"])).to(device)
    model.load_state_dict(ck["state_dict"])
    model.eval()
    return model


def load_lifter(weights: Path | None, device: torch.device, backend: str = "torch",
                threads: int | None = None) -> tuple[NRSfMFormer, Path]:
    """The lifter at `weights` and its path: a windowed `NRSfMFormer` or a
    `StreamingNRSfMFormer`, by the checkpoint's config. None: the shipped default (the
    streaming lifter; the windowed one for onnxruntime); "streaming" / "windowed": the shipped
    lifter of that kind. With the "onnxruntime" backend: an `OnnxLifter` of an .onnx file, or
    of a windowed checkpoint exported (and checked) on the fly."""
    from streamlift import paths

    shipped = {"streaming": paths.STREAMING_WEIGHTS, "windowed": paths.WINDOWED_WEIGHTS}
    if weights is None:  # onnxruntime runs windowed lifters only
        path = paths.WINDOWED_WEIGHTS if backend == "onnxruntime" else paths.DEFAULT_WEIGHTS
    elif str(weights) in shipped and not Path(weights).exists():
        path = shipped[str(weights)]
    else:
        path = Path(weights)
    if (weights is None or path in shipped.values()) and not path.is_file():
        raise UserError(f"no trained lifter at {path} (the shipped weights are not installed)")
    if backend == "onnxruntime":
        from streamlift.lifter.onnx import onnx_lifter

        if torch.device(device).type != "cpu":
            raise UserError("the onnxruntime backend runs on the CPU")
        return onnx_lifter(path if path.suffix == ".onnx" else load_checkpoint(path)[0],
                           threads), path
    if path.suffix == ".onnx":
        raise UserError(f"{path.name} is an ONNX lifter: run it with the onnxruntime backend")
    ck = checkpoint.read(path, FORMAT, "lifter", device)
    if is_streaming_config(ck["config"]):
        from streamlift.lifter.stream import from_checkpoint

        return from_checkpoint(ck, device), path
    return _windowed(ck, device), path
