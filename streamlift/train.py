"""Unsupervised training of the NRSfMFormer from 2D views alone.

3D ground truth in the views files is never read here except to *report* validation error.
"""

from __future__ import annotations

import hashlib
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from streamlift import losses as L
from streamlift.data.views import View, load_views
from streamlift.device import pick_device
from streamlift.errors import UserError
from streamlift.metrics import n_mpjpe, pa_mpjpe
from streamlift.model import LifterConfig, NRSfMFormer
from streamlift.progress import Progress
from streamlift.skeleton import H36M17
from streamlift.virtual_camera import from_virtual, to_virtual
from streamlift.windows import default_batch

DEFAULT_WEIGHTS = {
    "reprojection": 1.0,
    "canonicalisation": 1.0,
    "smoothness": 1.0,
    "bone_constancy": 0.5,
    "bone_symmetry": 0.5,
    "bone_proportions": 1.0,
    "depth_extent": 0.05,
    "deformation": 0.01,
}


@dataclass
class TrainConfig:
    epochs: int = 20
    epoch_windows: int = 32768  # windows drawn per epoch (targets drawn uniformly over frames)
    batch: int = 64
    lr: float = 1e-3
    weight_decay: float = 1e-4
    warmup_steps: int = 200
    seed: int = 0
    flip_prob: float = 0.5  # mirror the 2D (x -> -x, left <-> right): still a valid 2D sequence
    noise_px: float = 3.0  # per window, 2D noise of std ~ U(0, noise_px) pixels (detector-like)
    val_frames: int = 4096  # validation target frames (fixed sample)
    weights: dict = field(default_factory=lambda: dict(DEFAULT_WEIGHTS))
    prior: str | None = None  # path of a diffusion prior checkpoint; None = no prior loss
    prior_weight: float = 2.0
    prior_t_range: tuple = (0.05, 0.4)
    intrinsics: bool = True  # see views with a camera matrix through a virtual camera (README)
    perspective: bool = True  # reproject through the focal length of views that have one


def saved_config(saved: dict, **changes) -> TrainConfig:
    """A checkpoint's training config: runs saved before the virtual camera saw raw 2D and
    reprojected under weak perspective, so options absent from `saved` take those values."""
    return TrainConfig(**{"intrinsics": False, "perspective": False, **saved, **changes})


class WindowSampler:
    """Draws windows (padded at the sequence start like a stream's) from a set of views.

    With `intrinsics`, a view that has a camera matrix is seen through the virtual camera that
    looks at its subject (`streamlift.virtual_camera`), `rot` holds each frame's rotation back
    to the real camera (the identity for the other views) and `focal` its focal length in
    pixels (infinite for the other views: weak perspective).
    """

    def __init__(self, views: dict[str, View], window: int, mode: str, intrinsics: bool = True):
        kp, rot, focal = [], [], []
        for name, v in views.items():
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
        first = -(window - 1) if mode == "causal" else -(window // 2)
        self.offsets = torch.arange(window) + first  # (T,)

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


def draw_batch(sampler: WindowSampler, cfg: TrainConfig,
               gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor | None]:
    """One training batch: windows (batch, T, J, 3) with random targets, left-right mirroring
    and 2D noise, and each window's focal length (batch,) px for the perspective reprojection
    (None when `cfg.perspective` is off)."""
    targets = torch.randint(0, len(sampler), (cfg.batch,), generator=gen)
    w = sampler.windows(targets)
    flip = torch.rand(cfg.batch, generator=gen) < cfg.flip_prob
    w[flip] = flip_2d(w[flip])
    if cfg.noise_px > 0:
        sigma = torch.rand(cfg.batch, 1, 1, 1, generator=gen) * cfg.noise_px
        w[..., :2] += sigma * torch.randn(w[..., :2].shape, generator=gen)
    return w, (sampler.focal[targets] if cfg.perspective else None)


def file_digest(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:16]


@torch.no_grad()
def validate(model: NRSfMFormer, sampler: WindowSampler, kp3d: torch.Tensor,
             targets: torch.Tensor, device, batch: int | None = None) -> dict[str, float]:
    """N-MPJPE and PA-MPJPE (mm) of the target frames (3D used only to report)."""
    model.eval()
    preds = []
    batch = batch or default_batch(device)
    for i in range(0, len(targets), batch):
        w = sampler.windows(targets[i:i + batch]).to(device)
        preds.append(model.lift(w[..., :2], w[..., 2]).float().cpu())
    model.train()
    pred = torch.from_numpy(from_virtual(torch.cat(preds).numpy(),
                                         sampler.rot[targets].numpy())).double()  # (n, J, 3)
    gt = kp3d[targets].double()
    return {"n_mpjpe": float(n_mpjpe(pred, gt)), "pa_mpjpe": float(pa_mpjpe(pred, gt))}


def lr_at(step: int, total: int, cfg: TrainConfig) -> float:
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    p = (step - cfg.warmup_steps) / max(1, total - cfg.warmup_steps)
    return cfg.lr * 0.5 * (1 + math.cos(math.pi * min(p, 1.0)))


def train_step(model: NRSfMFormer, opt: torch.optim.Optimizer, w: torch.Tensor, cfg: TrainConfig,
               prior=None, amp: bool = False,
               focal: torch.Tensor | None = None) -> tuple[torch.Tensor, dict]:
    """One optimiser step on a batch of windows w (B, T, J, 3: x, y, confidence); returns the
    weighted loss and its terms (tensors; reading them is left to the caller, so that a
    benchmark of this step does not pay a host synchronisation per term). `focal` (B,) px:
    reproject each window through its camera's focal length (inf: weak perspective)."""
    with torch.autocast(w.device.type, dtype=torch.bfloat16, enabled=amp):
        o = model(w[..., :2], w[..., 2])
    if focal is not None:
        # the root's depth is focal / scale model units: depth ratio 1 + X_z * scale / focal
        o.extras["perspective"] = o.scale.float() / focal.to(o.scale.device, torch.float32)
    terms = {k: L.LOSSES[k](o) for k, wt in cfg.weights.items() if wt}
    if prior is not None:
        from streamlift.prior import prior_loss
        terms["prior"] = prior_loss(prior, o.X.float(), cfg.prior_t_range)
    loss = sum(cfg.weights.get(k, cfg.prior_weight) * v for k, v in terms.items())
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    return loss, terms


def train(data: list[str], val: str | None, out: str, model_cfg: LifterConfig, cfg: TrainConfig,
          device: str = "auto", resume: bool = False, progress: bool = True,
          log=print, init: str | None = None) -> dict:
    """Train (or resume) a lifter; writes a checkpoint to `out` after every epoch.

    `init`: a lifter checkpoint to start from (its model config replaces `model_cfg`): a
    fine-tune with this call's training settings, a fresh optimizer and schedule.
    """
    dev = pick_device(device)
    torch.manual_seed(cfg.seed)
    if resume:
        if not Path(out).is_file():
            raise UserError(f"--resume: no checkpoint at {out} to resume from")
        ck = torch.load(out, map_location="cpu", weights_only=True)
        if "train" not in ck:
            raise UserError(f"--resume: {out} holds no training state (a shipped model?)")
        model_cfg = LifterConfig(**ck["config"])
        # epochs: the one setting a resume may extend
        cfg = saved_config(ck["train"]["config"], epochs=cfg.epochs)
    init_state = None
    if init and not resume:
        if not Path(init).is_file():
            raise UserError(f"--init: no checkpoint at {init}")
        try:
            ck0 = torch.load(init, map_location="cpu", weights_only=True)
        except Exception as e:  # not a torch file, corrupt, or an unsafe pickle refused
            raise UserError(f"--init: cannot load {init} ({str(e).splitlines()[0]})") from None
        if not isinstance(ck0, dict) or ck0.get("format") != "streamlift-lifter-v1":
            raise UserError(f"--init: {init} is not a streamlift lifter checkpoint")
        model_cfg, init_state = LifterConfig(**ck0["config"]), ck0["state_dict"]
    model = NRSfMFormer(model_cfg).to(dev)
    if init_state is not None:
        model.load_state_dict(init_state)
        log(f"starting from the weights of {init}")
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    epoch0, step, history = 0, 0, []
    if resume:
        model.load_state_dict(ck["state_dict"])
        opt.load_state_dict(ck["train"]["optimizer"])
        epoch0, step = ck["train"]["epoch"], ck["train"]["step"]
        history = list(ck["train"]["history"])
        log(f"resuming {out} at epoch {epoch0}, step {step}")

    train_views = {}
    for path in data:
        train_views.update({f"{path}:{k}": v for k, v in load_views(path).items()})
    sampler = WindowSampler(train_views, model_cfg.window, model_cfg.mode, cfg.intrinsics)
    val_sampler = val_targets = val_3d = None
    if val:
        val_views = load_views(val)
        if any(v.kp3d is None for v in val_views.values()):
            raise UserError(f"{val}: every validation view needs kp3d to report errors")
        val_sampler = WindowSampler(val_views, model_cfg.window, model_cfg.mode, cfg.intrinsics)
        val_3d = torch.from_numpy(np.concatenate([v.kp3d for v in val_views.values()]))
        g = torch.Generator().manual_seed(1234)
        n = min(cfg.val_frames, len(val_sampler))
        val_targets = torch.randperm(len(val_sampler), generator=g)[:n]
    prior = None
    if cfg.prior and cfg.prior_weight > 0:
        from streamlift.prior import load_prior
        prior = load_prior(cfg.prior, dev)
        if model_cfg.window < prior.cfg.window:
            raise UserError(f"the prior judges windows of {prior.cfg.window} frames; a "
                            f"{model_cfg.window}-frame lifter must train with --no-prior")
    n_virtual = sum(v.intrinsics is not None for v in train_views.values()) if cfg.intrinsics else 0
    log(f"training on {len(train_views)} views / {len(sampler):,} frames from {data} "
        f"({n_virtual} seen through a virtual camera); "
        f"model {sum(p.numel() for p in model.parameters()):,} params on {dev}")

    steps_per_epoch = max(1, cfg.epoch_windows // cfg.batch)
    total = steps_per_epoch * cfg.epochs
    gen = torch.Generator().manual_seed(cfg.seed + 7919 * epoch0)
    amp = dev.type == "cuda"
    provenance = {"train_views": [str(p) for p in data],
                  "train_digest": [file_digest(p) for p in data],
                  "val_views": str(val) if val else None,
                  "val_digest": file_digest(val) if val else None}
    if resume and "init" in ck.get("meta", {}):
        provenance.update(init=ck["meta"]["init"], init_digest=ck["meta"]["init_digest"])
    elif init_state is not None:
        provenance.update(init=str(init), init_digest=file_digest(init))
    t_start = time.perf_counter()
    for epoch in range(epoch0, cfg.epochs):
        sums = {k: 0.0 for k in list(cfg.weights) + (["prior"] if prior else []) + ["total"]}
        with Progress(steps_per_epoch, f"epoch {epoch + 1}/{cfg.epochs}", "step",
                      enabled=progress) as bar:
            for i in range(steps_per_epoch):
                w, focal = draw_batch(sampler, cfg, gen)
                for group in opt.param_groups:
                    group["lr"] = lr_at(step, total, cfg)
                loss, terms = train_step(model, opt, w.to(dev, non_blocking=True), cfg, prior, amp,
                                         focal)
                step += 1
                for k, v in terms.items():
                    sums[k] += float(v.detach())
                sums["total"] += float(loss.detach())
                bar.update(postfix=f"loss {sums['total'] / (i + 1):.4f} "
                                   f"reproj {sums['reprojection'] / (i + 1):.4f}")
        rec = {"epoch": epoch + 1, "step": step,
               **{k: v / steps_per_epoch for k, v in sums.items()},
               "seconds": time.perf_counter() - t_start}
        if val_sampler is not None:
            rec.update({f"val_{k}": v for k, v in
                        validate(model, val_sampler, val_3d, val_targets, dev).items()})
        history.append(rec)
        log(f"epoch {epoch + 1}: loss {rec['total']:.4f}" +
            (f"  val N-MPJPE {rec['val_n_mpjpe']:.1f} mm  PA-MPJPE {rec['val_pa_mpjpe']:.1f} mm"
             if "val_n_mpjpe" in rec else ""))
        _save(out, model, opt, cfg, epoch + 1, step, history, provenance)
    return history[-1] if history else {}


def _save(out, model, opt, cfg, epoch, step, history, provenance) -> None:
    tmp = f"{out}.tmp"
    torch.save({
        "format": "streamlift-lifter-v1",
        "config": model.cfg.to_dict(),
        "state_dict": model.state_dict(),
        "meta": {**provenance, "epochs": epoch, "steps": step, "history": history,
                 "train_config": _plain(asdict(cfg))},
        "train": {"config": _plain(asdict(cfg)), "optimizer": opt.state_dict(), "epoch": epoch,
                  "step": step, "history": history},
    }, tmp)
    os.replace(tmp, out)  # a crash mid-write never leaves a broken checkpoint


def _plain(d: dict) -> dict:
    """Tuples -> lists, so the checkpoint loads with weights_only=True."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}
