"""Training the diffusion motion prior on 3D mocap (train splits only), on `train.loop`.

Writes `out` (the averaged weights, config and provenance; what the lifter's training loads)
and `out`'s `.train.pt` beside it (the optimiser state, for `resume`) every `ckpt_every` steps
and at the end.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from streamlift import checkpoint
from streamlift.data.bodies import random_bodies
from streamlift.errors import UserError
from streamlift.prior.data import WindowSampler, random_views, sources
from streamlift.prior.model import MotionPrior, PriorConfig, save_prior
from streamlift.progress import bar
from streamlift.train.loop import Optimiser


@dataclass
class PriorTrainConfig:
    # `metadata`: the command-line flag of a field (streamlift.cli.common.add_config)
    steps: int = field(default=30000, metadata={"help": "optimizer steps", "type": "positive_int"})
    batch: int = field(default=256, metadata={"help": "windows per step", "type": "positive_int"})
    lr: float = field(default=1e-3, metadata={
        "help": "peak AdamW learning rate (linear warm-up, cosine decay)",
        "type": "positive_float"})
    ema: float = field(default=0.999, metadata={
        "help": "decay of the weight average that is saved (0 disables it: the last weights are "
                "saved)", "type": "probability"})
    seed: int = field(default=0, metadata={"help": "seed of weights and window sampling",
                                           "type": "int"})
    ckpt_every: int = field(default=2000, metadata={
        "help": "write the checkpoints every this many steps", "type": "positive_int"})
    random_bodies: bool = field(default=False, metadata={
        "help": "perform each training window by a random body (bone lengths of a random "
                "person, streamlift.data.bodies), not only the mocap's own skeletons"})
    time_limit: float | None = field(default=None, metadata={
        "help": "stop after this many seconds of training and save (the learning-rate schedule "
                "still follows the number of steps)", "type": "positive_float"})


def state_path(out: Path) -> Path:
    """Where the resumable training state of the prior at `out` lives."""
    out = Path(out)
    return out.with_name(out.stem + ".train.pt")


def _data_std(sampler: WindowSampler, cfg: PriorConfig, g: torch.Generator) -> float:
    """The spread of scale-normalised windows, so that the diffusion sees unit variance."""
    with torch.no_grad():
        return float(torch.cat([random_views(sampler(1024, g), cfg, g) for _ in range(16)]).std())


def train_prior(mocap: list[Path], splits: Path, out: Path, model_cfg: PriorConfig,
                cfg: PriorTrainConfig, device: torch.device, resume: bool = False,
                progress: bool = True, log=print, meta: dict | None = None) -> dict:
    """Train (or resume) a prior; returns the saved provenance (`meta` is added to it)."""
    out, spath = Path(out), state_path(out)
    if resume and not spath.is_file():
        raise UserError(f"no training state to resume at {spath}")
    t_load = time.perf_counter()
    srcs, prov = sources(mocap, splits, "train")
    g = torch.Generator(device=device).manual_seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    state = torch.load(spath, map_location=device, weights_only=True) if resume else None
    if state is not None:
        model_cfg = PriorConfig.from_dict(state["config"])
    sampler = WindowSampler(srcs, model_cfg, device=device)
    if state is None:
        model_cfg.data_std = _data_std(sampler, model_cfg, g)
    model = MotionPrior(model_cfg).to(device)
    opt = Optimiser(model, cfg.lr, 0.0, min(500, cfg.steps // 10), cfg.steps, ema=cfg.ema)
    elapsed = 0.0
    if state is not None:
        model.load_state_dict(state["model"])
        opt.load_state_dict({"optimizer": state["opt"], "step": state["step"], "ema": state["ema"]})
        elapsed = float(state["elapsed"])
        g.manual_seed(cfg.seed + opt.step)  # fresh windows after the resume point
    meta = {"data": prov, "splits_file": str(splits), **(meta or {}), "device": str(device),
            "threads": torch.get_num_threads(), "seed": cfg.seed, "batch": cfg.batch,
            "lr": cfg.lr, "ema": cfg.ema, "random_bodies": cfg.random_bodies, "torch": str(torch.__version__)}
    log(f"train-prior: {sum(len(s[0]) for s in srcs)} train sequences "
        f"({sum(p['frames'] for p in prov):,} frames) loaded in "
        f"{time.perf_counter() - t_load:.1f}s; {sum(p.numel() for p in model.parameters()):,} "
        f"parameters; window {model_cfg.window}; data std {model_cfg.data_std:.4f}; "
        f"device {device}")

    def save(elapsed: float) -> None:
        meta.update(steps=opt.step, train_seconds=round(elapsed, 1), final=opt.step >= cfg.steps)
        save_prior(out, opt.averaged, **meta)
        s = opt.state_dict()
        checkpoint.write({"config": model_cfg.to_dict(), "model": model.state_dict(),
                          "ema": s["ema"] if s["ema"] is not None else model.state_dict(),
                          "opt": s["optimizer"], "step": s["step"], "elapsed": elapsed}, spath)

    loss_avg = _run(model, opt, sampler, cfg, g, elapsed, save, progress, log)
    meta["loss"] = loss_avg
    return meta


def _run(model, opt: Optimiser, sampler, cfg: PriorTrainConfig, g, elapsed: float, save,
         progress: bool, log) -> float | None:
    """The steps from `opt.step` to `cfg.steps` (or the time limit); the smoothed loss."""
    model.train()
    t0, loss_avg = time.perf_counter() - elapsed, None
    bodies = np.random.default_rng([cfg.seed, opt.step]) if cfg.random_bodies else None
    with bar(cfg.steps, "train-prior", "step", progress, initial=opt.step) as b:
        while opt.step < cfg.steps:
            with torch.no_grad():
                P = sampler(cfg.batch, g)  # (B, Tp, J, 3) world mm
                if bodies is not None:
                    P = random_bodies(P, bodies)
                x0 = random_views(P, model.cfg, g)
            loss = model.loss(x0, generator=g)
            opt.update(loss)
            loss_avg = loss.item() if loss_avg is None else 0.98 * loss_avg + 0.02 * loss.item()
            elapsed = time.perf_counter() - t0
            b.update(1)
            b.set_postfix_str(f"loss {loss_avg:.4f} lr {opt.lr:.2e}", refresh=False)
            if opt.step % cfg.ckpt_every == 0:
                save(elapsed)
            if cfg.time_limit and elapsed >= cfg.time_limit:
                log(f"train-prior: time limit reached at step {opt.step}")
                break
    save(elapsed)
    return loss_avg


def sample_to_file(prior: MotionPrior, c, device, progress: bool = True) -> str:
    """Draw `c.n` windows (a prior.options.SampleConfig) by deterministic DDIM, write them to
    `c.out` ('samples' in the prior's units, 'samples_mm' scaled to c.height_mm); the report."""
    import numpy as np

    from streamlift.lifter.model import metric_scale
    from streamlift.prior.data import normalise
    from streamlift.skeleton import H36M17

    g = torch.Generator(device=device).manual_seed(c.seed)
    out = []
    with bar(c.n, "sample-prior", "window", progress) as b:
        for i in range(0, c.n, 1024):
            out.append(prior.sample(min(1024, c.n - i), c.steps, generator=g).cpu())
            b.update(len(out[-1]))
    x = normalise(torch.cat(out))[0]  # (N, Tp, J, 3), RMS root distance 1
    np.savez(c.out, samples=x.numpy().astype(np.float32),
             samples_mm=metric_scale(x, c.height_mm).numpy().astype(np.float32),
             joints=np.array(H36M17.joints), ddim_steps=np.int64(c.steps))
    return f"wrote {c.out}: {c.n} windows of {prior.cfg.window} frames ({c.steps} DDIM steps)"


def train_to_file(files, model_cfg: PriorConfig, cfg: PriorTrainConfig, device, resume: bool,
                  progress: bool = True, log=print, meta: dict | None = None) -> str:
    """train_prior on the mocap, splits and out of a prior.options.PriorFiles; the report."""
    out = Path(files.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    m = train_prior(files.mocap, files.splits, out, model_cfg, cfg, device, resume, progress,
                    log=log, meta=meta)
    return (f"wrote {out}: {m['steps']} steps in {m['train_seconds']:.0f}s, loss {m['loss']:.4f} "
            f"({out.stat().st_size / 2**20:.1f} MB); resume state {state_path(out)}")
