"""Unsupervised training of the NRSfMFormer from 2D views alone.

3D ground truth in the views files is never read here except to *report* validation error.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from streamlift import checkpoint
from streamlift.data.views import load_views
from streamlift.errors import UserError
from streamlift.lifter.model import FORMAT, LifterConfig, NRSfMFormer, require_windowed, save_checkpoint
from streamlift.metrics import n_mpjpe, pa_mpjpe
from streamlift.progress import bar as progress_bar
from streamlift.train import losses as L
from streamlift.train.loop import Optimiser
from streamlift.train.options import DEFAULT_WEIGHTS
from streamlift.train.sampler import WindowSampler, draw_batch, roll_3d
from streamlift.virtual_camera import from_virtual
from streamlift.windows import default_batch



@dataclass
class TrainConfig:
    # `metadata`: the command-line flag of a field (streamlift.cli.common.add_config)
    epochs: int = field(default=20, metadata={"help": "epochs", "type": "positive_int"})
    epoch_windows: int = field(default=32768, metadata={  # targets drawn uniformly over frames
        "help": "windows per epoch", "type": "positive_int"})
    batch: int = field(default=64, metadata={"help": "windows per step", "type": "positive_int"})
    lr: float = field(default=1e-3, metadata={"help": "peak learning rate",
                                              "type": "positive_float"})
    weight_decay: float = 1e-4
    warmup_steps: int = 200
    seed: int = field(default=0, metadata={"help": "random seed", "type": "int"})
    flip_prob: float = 0.5  # mirror the 2D (x -> -x, left <-> right): still a valid 2D sequence
    noise_px: float = 3.0  # per window, 2D noise of std ~ U(0, noise_px) pixels (detector-like)
    val_frames: int = 4096  # validation target frames (fixed sample)
    weights: dict = field(default_factory=lambda: dict(DEFAULT_WEIGHTS))
    prior: str | None = None  # path of a diffusion prior checkpoint; None = no prior loss
    prior_weight: float = field(default=2.0, metadata={"help": "weight of the prior loss",
                                                       "type": "non_negative"})
    prior_t_range: tuple = field(default=(0.05, 0.4), metadata={
        "help": "diffusion steps the prior loss noises at, as fractions of its schedule; higher "
                "steps let the prior move a pose further, e.g. flip a limb's depth",
        "type": "float", "nargs": 2, "metavar": ("LO", "HI")})
    balance: str = field(default="frames", metadata={
        "help": "how training targets are drawn across the --data files: 'frames' uniform "
                "over all their frames, 'sqrt' a file by the square root of its frame count, "
                "then a frame in it (a small source is not drowned by a large one)",
        "choices": ["frames", "sqrt"]})
    detector: bool = field(default=False, metadata={
        "help": "2D error from the detector model (streamlift.data.detector: size-relative "
                "per-joint noise, swaps, missed joints, confidences) instead of i.i.d. noise"})
    roll_deg: float = field(default=0.0, metadata={
        "help": "turn a share (--roll-prob) of the windows' 2D by a camera roll of U(-this, "
                "this) degrees about the optical axis, as bodies lying down or a tilted camera "
                "show them; the prior scores them turned back (0: only the views' own rolls)",
        "type": "non_negative"})
    roll_prob: float = field(default=0.5, metadata={
        "help": "share of the windows that get a --roll-deg roll", "type": "share"})
    intrinsics: bool = True  # see views with a camera matrix through a virtual camera (README)
    perspective: bool = True  # reproject through the focal length of views that have one


def saved_config(saved: dict, **changes) -> TrainConfig:
    """A checkpoint's training config: runs saved before the virtual camera saw raw 2D and
    reprojected under weak perspective, so options absent from `saved` take those values."""
    return TrainConfig(**{"intrinsics": False, "perspective": False, "balance": "frames",
                          "detector": False, **saved, **changes})


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


def loss_terms(o, focal: torch.Tensor | None, weights: dict, prior=None, t_range=(0.05, 0.4),
               generator: torch.Generator | None = None,
               roll: torch.Tensor | None = None) -> dict:
    """The unsupervised loss terms of a LifterOutput `o` (those with a non-zero weight), and the
    prior's when a prior is given. `focal` (B,) px: reproject each window through its camera's
    focal length (inf: weak perspective); None: weak perspective for all. `roll` (B,) radians:
    the extra camera roll each window's 2D was given (`sampler.draw_batch`), turned back before
    the prior scores the poses, which it learnt as the views' cameras see them; every other
    term is unchanged by a roll about the optical axis."""
    if focal is not None:
        # the root's depth is focal / scale model units: depth ratio 1 + X_z * scale / focal
        o.extras["perspective"] = o.scale.float() / focal.to(o.scale.device, torch.float32)
    terms = {k: L.LOSSES[k](o) for k, wt in weights.items() if wt}
    if prior is not None:
        from streamlift.prior.loss import prior_loss
        X = o.X.float() if roll is None else roll_3d(o.X.float(), -roll)
        terms["prior"] = prior_loss(prior, X, t_range, generator=generator)
    return terms


def train_step(model: NRSfMFormer, opt: Optimiser, w: torch.Tensor, cfg: TrainConfig,
               prior=None, amp: bool = False, focal: torch.Tensor | None = None,
               roll: torch.Tensor | None = None) -> tuple[torch.Tensor, dict]:
    """One optimiser step on a batch of windows w (B, T, J, 3: x, y, confidence); returns the
    weighted loss and its terms (tensors; reading them is left to the caller, so that a
    benchmark of this step does not pay a host synchronisation per term). `focal` (B,) px:
    reproject each window through its camera's focal length (inf: weak perspective); `roll`
    (B,) radians: each window's extra camera roll (`loss_terms`)."""
    with torch.autocast(w.device.type, dtype=torch.bfloat16, enabled=amp):
        o = model(w[..., :2], w[..., 2])
    terms = loss_terms(o, focal, cfg.weights, prior, cfg.prior_t_range, roll=roll)
    loss = sum(cfg.weights.get(k, cfg.prior_weight) * v for k, v in terms.items())
    opt.update(loss)
    return loss, terms


@dataclass
class _Run:
    """What a training run carries from epoch to epoch."""

    model: NRSfMFormer
    opt: Optimiser
    cfg: TrainConfig
    epoch: int = 0
    history: list = field(default_factory=list)
    provenance: dict = field(default_factory=dict)


def _start(out: str, model_cfg: LifterConfig, cfg: TrainConfig, device: torch.device,
           resume: bool, init: str | None, log) -> _Run:
    """A new run, a run resumed from `out`, or a fine-tune from the lifter at `init`."""
    ck, init_state = None, None
    if resume:
        if not Path(out).is_file():
            raise UserError(f"no checkpoint at {out} to resume from")
        ck = torch.load(out, map_location="cpu", weights_only=True)
        if "train" not in ck:
            raise UserError(f"{out} holds no training state to resume (a shipped model?)")
        model_cfg = LifterConfig(**ck["config"])
        # epochs: the one setting a resume may extend
        cfg = saved_config(ck["train"]["config"], epochs=cfg.epochs)
    elif init:
        ck0 = checkpoint.read(init, FORMAT, "lifter")
        require_windowed(ck0, init, "train --init")
        model_cfg, init_state = LifterConfig(**ck0["config"]), ck0["state_dict"]
    model = NRSfMFormer(model_cfg).to(device)
    if init_state is not None:
        model.load_state_dict(init_state)
        log(f"starting from the weights of {init}")
    total = max(1, cfg.epoch_windows // cfg.batch) * cfg.epochs
    run = _Run(model, Optimiser(model, cfg.lr, cfg.weight_decay, cfg.warmup_steps, total), cfg)
    if ck is not None:
        model.load_state_dict(ck["state_dict"])
        run.opt.load_state_dict(ck["train"])
        run.epoch, run.history = ck["train"]["epoch"], list(ck["train"]["history"])
        if "init" in ck.get("meta", {}):
            run.provenance.update(init=ck["meta"]["init"], init_digest=ck["meta"]["init_digest"])
        log(f"resuming {out} at epoch {run.epoch}, step {run.opt.step}")
    elif init_state is not None:
        run.provenance.update(init=str(init), init_digest=checkpoint.file_digest(init))
    return run


def _validation(val: str | None, model_cfg: LifterConfig, cfg: TrainConfig):
    """(sampler, 3D, fixed target frames) of the validation views, or None."""
    if not val:
        return None
    val_views = load_views(val)
    if any(v.kp3d is None for v in val_views.values()):
        raise UserError(f"{val}: every validation view needs kp3d to report errors")
    sampler = WindowSampler(val_views, model_cfg.window, model_cfg.mode, cfg.intrinsics)
    kp3d = torch.from_numpy(np.concatenate([v.kp3d for v in val_views.values()]))
    g = torch.Generator().manual_seed(1234)
    targets = torch.randperm(len(sampler), generator=g)[:min(cfg.val_frames, len(sampler))]
    return sampler, kp3d, targets


def _epoch(run: _Run, sampler: WindowSampler, prior, gen: torch.Generator, device,
           progress: bool) -> dict:
    """One epoch of steps; the mean of each loss term."""
    cfg = run.cfg
    steps = max(1, cfg.epoch_windows // cfg.batch)
    sums = {k: 0.0 for k in list(cfg.weights) + (["prior"] if prior else []) + ["total"]}
    with progress_bar(steps, f"epoch {run.epoch + 1}/{cfg.epochs}", "step", progress) as bar:
        for i in range(steps):
            w, focal, roll = draw_batch(sampler, cfg, gen)
            loss, terms = train_step(run.model, run.opt, w.to(device, non_blocking=True), cfg,
                                     prior, device.type == "cuda", focal, roll)
            for k, v in terms.items():
                sums[k] += float(v.detach())
            sums["total"] += float(loss.detach())
            bar.set_postfix_str(f"loss {sums['total'] / (i + 1):.4f} "
                                f"reproj {sums['reprojection'] / (i + 1):.4f}", refresh=False)
            bar.update()
    return {k: v / steps for k, v in sums.items()}


def train(data: list[str], val: str | None, out: str, model_cfg: LifterConfig, cfg: TrainConfig,
          device: torch.device, resume: bool = False, progress: bool = True,
          log=print, init: str | None = None) -> dict:
    """Train (or resume) a lifter; writes a checkpoint to `out` after every epoch.

    `init`: a lifter checkpoint to start from (its model config replaces `model_cfg`): a
    fine-tune with this call's training settings, a fresh optimizer and schedule.
    """
    torch.manual_seed(cfg.seed)
    run = _start(out, model_cfg, cfg, device, resume, init, log)
    cfg, model_cfg = run.cfg, run.model.cfg
    train_views, groups = {}, {}
    for i, path in enumerate(data):
        for k, v in load_views(path).items():
            train_views[f"{path}:{k}"], groups[f"{path}:{k}"] = v, i
    sampler = WindowSampler(train_views, model_cfg.window, model_cfg.mode, cfg.intrinsics,
                            groups)
    validation = _validation(val, model_cfg, cfg)
    prior = None
    if cfg.prior and cfg.prior_weight > 0:
        from streamlift.prior.model import load_prior
        prior = load_prior(cfg.prior, device)
        if model_cfg.window < prior.cfg.window:
            raise UserError(f"the prior judges windows of {prior.cfg.window} frames; a "
                            f"{model_cfg.window}-frame lifter must train without it")
    n_virtual = sum(v.intrinsics is not None for v in train_views.values()) if cfg.intrinsics else 0
    log(f"training on {len(train_views)} views / {len(sampler):,} frames from {data} "
        f"({n_virtual} seen through a virtual camera); "
        f"model {sum(p.numel() for p in run.model.parameters()):,} params on {device}")
    gen = torch.Generator().manual_seed(cfg.seed + 7919 * run.epoch)
    run.provenance.update(train_views=[str(p) for p in data],
                          train_digest=[checkpoint.file_digest(p) for p in data],
                          val_views=str(val) if val else None,
                          val_digest=checkpoint.file_digest(val) if val else None)
    t_start = time.perf_counter()
    while run.epoch < cfg.epochs:
        rec = {"epoch": run.epoch + 1, **_epoch(run, sampler, prior, gen, device, progress)}
        rec.update(step=run.opt.step, seconds=time.perf_counter() - t_start)
        if validation is not None:
            rec.update({f"val_{k}": v for k, v in validate(run.model, *validation, device).items()})
        run.history.append(rec)
        run.epoch += 1
        log(f"epoch {run.epoch}: loss {rec['total']:.4f}" +
            (f"  val N-MPJPE {rec['val_n_mpjpe']:.1f} mm  PA-MPJPE {rec['val_pa_mpjpe']:.1f} mm"
             if "val_n_mpjpe" in rec else ""))
        _save(out, run)
    return run.history[-1] if run.history else {}


def _save(out: str, run: _Run) -> None:
    cfg = checkpoint.plain(asdict(run.cfg))
    save_checkpoint(out, run.model,
                    meta={**run.provenance, "epochs": run.epoch, "steps": run.opt.step,
                          "history": run.history, "train_config": cfg},
                    train={"config": cfg, "epoch": run.epoch, "history": run.history,
                           **run.opt.state_dict()})


def loss_weights(base: dict, items) -> dict:
    """DEFAULT_WEIGHTS, updated by `base` and by "NAME=W" strings (ValueError on a bad one)."""
    weights = dict(DEFAULT_WEIGHTS, **base)
    for item in items:
        name, _, val = item.partition("=")
        if name not in DEFAULT_WEIGHTS:
            raise ValueError(f"{item}: unknown loss {name!r}; known: {', '.join(DEFAULT_WEIGHTS)}")
        try:
            weights[name] = float(val)
        except ValueError:
            raise ValueError(f"{item}: {val!r} is not a number") from None
    return weights


def read_configs(path) -> tuple[dict, dict]:
    """The 'model' and 'train' objects of a JSON config file (None: two empty dicts)."""
    import json

    try:
        cfg = json.loads(Path(path).read_text()) if path else {}
        return dict(cfg.get("model", {})), dict(cfg.get("train", {}))
    except (OSError, json.JSONDecodeError, AttributeError) as e:
        raise ValueError(str(e)) from None


def make_configs(model_kw: dict, train_kw: dict):
    """LifterConfig and TrainConfig of these keywords, a UserError if they are not valid."""
    try:
        return LifterConfig(**model_kw), TrainConfig(**train_kw)
    except (TypeError, ValueError) as e:
        raise UserError(f"bad configuration: {e}") from None
