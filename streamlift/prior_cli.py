"""`streamlift train-prior | sample-prior | check-prior`: the diffusion motion prior's commands.

`add_commands(subparsers)` registers them on the top-level parser of `streamlift.cli`.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import shlex
import sys
import time
from pathlib import Path

from streamlift.argtypes import HelpFormatter, positive_float, positive_int
from streamlift.errors import UserError
from streamlift.device import pick_device
from streamlift.paths import DEFAULT_PRIOR


def _sources(mocap: list[Path], splits: Path, split: str):
    """[(sequences, fps, weight)] and their provenance, one per mocap file."""
    from streamlift.data import load_mocap

    out, prov = [], []
    for p in mocap:
        m = load_mocap(p, splits, split)
        # Weight sources by sqrt(frames): the small CMU dance/martial-arts set still gets about
        # a quarter of the windows instead of an eighth next to Bandai's locomotion.
        out.append((list(m.sequences.values()), m.fps, math.sqrt(m.frames)))
        prov.append({"file": str(p), "split": split, "sequences": len(m.sequences),
                     "frames": m.frames, "fps": m.fps})
    return out, prov


# ------------------------------------------------------------------------------ train-prior
def _add_train(sub) -> None:
    t = sub.add_parser(
        "train-prior", help="train the diffusion motion prior on 3D mocap (train split only)",
        description="Train a denoising diffusion prior over short 3D motion windows (camera "
                    "frame, root-relative, scale-normalised H36M-17) on the train split of "
                    "one or more mocap files. Writes OUT (weights + config + provenance) and "
                    "OUT's .train.pt beside it (optimizer state, for --resume) every "
                    "--ckpt-every steps and at the end.",
        formatter_class=HelpFormatter)
    t.add_argument("--mocap", type=Path, action="append", required=True,
                   help="mocap .npz (one (frames, 17, 3) mm array per sequence, z up); repeat "
                        "the flag for several files")
    t.add_argument("--splits", type=Path, required=True,
                   help="splits.json; only each file's 'train' sequences are used")
    t.add_argument("--out", type=Path, required=True, help="prior checkpoint to write (.pt)")
    t.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"],
                   help="where to train (auto: CUDA when available)")
    t.add_argument("--steps", type=positive_int, default=30000, help="optimizer steps")
    t.add_argument("--batch", type=positive_int, default=256, help="windows per step")
    t.add_argument("--lr", type=positive_float, default=1e-3,
                   help="peak AdamW learning rate (linear warm-up, cosine decay)")
    t.add_argument("--window", type=positive_int, default=9, help="frames per motion window")
    t.add_argument("--width", type=positive_int, default=320, help="denoiser hidden width")
    t.add_argument("--blocks", type=positive_int, default=4, help="denoiser residual blocks")
    t.add_argument("--schedule", default="cosine", choices=["cosine", "linear"],
                   help="DDPM noise schedule")
    t.add_argument("--ema", type=float, default=0.999,
                   help="decay of the weight average that is saved (0 disables it)")
    t.add_argument("--seed", type=int, default=0, help="seed of weights and window sampling")
    t.add_argument("--threads", type=positive_int, default=None,
                   help="torch CPU threads (default: torch's own choice)")
    t.add_argument("--ckpt-every", type=positive_int, default=2000,
                   help="write the checkpoints every this many steps")
    t.add_argument("--time-limit", type=positive_float, default=None,
                   help="stop after this many seconds of training and save (the learning-rate "
                        "schedule still follows --steps)")
    t.add_argument("--resume", action="store_true",
                   help="continue from OUT's .train.pt (same data and flags)")
    t.add_argument("--quiet", action="store_true", help="no progress bar")
    t.set_defaults(func=cmd_train_prior)


def _train_state_path(out: Path) -> Path:
    return out.with_name(out.stem + ".train.pt")


def cmd_train_prior(a: argparse.Namespace) -> int:
    import torch

    from streamlift.prior import MotionPrior, PriorConfig, WindowSampler, random_views, save_prior
    from streamlift.progress import Progress

    if a.threads:
        torch.set_num_threads(a.threads)
    if not 0 <= a.ema < 1:
        raise UserError(f"--ema must be in [0, 1), got {a.ema}")
    dev = pick_device(a.device)
    state_path = _train_state_path(a.out)
    if a.resume and not state_path.is_file():
        raise UserError(f"--resume: no training state at {state_path}")
    a.out.parent.mkdir(parents=True, exist_ok=True)
    t_load = time.perf_counter()
    sources, prov = _sources(a.mocap, a.splits, "train")
    cfg = PriorConfig(window=a.window, width=a.width, blocks=a.blocks, schedule=a.schedule)
    g = torch.Generator(device=dev).manual_seed(a.seed)
    torch.manual_seed(a.seed)

    state = None
    if a.resume:
        state = torch.load(state_path, map_location=dev, weights_only=True)
        cfg = PriorConfig.from_dict(state["config"])
    sampler = WindowSampler(sources, cfg, device=dev)
    if state is None:
        # Measure the spread of scale-normalised windows once, so the diffusion sees unit variance.
        with torch.no_grad():
            x = torch.cat([random_views(sampler(1024, g), cfg, g) for _ in range(16)])
            cfg.data_std = float(x.std())
    model = MotionPrior(cfg).to(dev)
    ema = copy.deepcopy(model).requires_grad_(False)
    opt = torch.optim.AdamW(model.parameters(), lr=a.lr, weight_decay=0.0)
    step, elapsed = 0, 0.0
    if state is not None:
        model.load_state_dict(state["model"])
        ema.load_state_dict(state["ema"])
        opt.load_state_dict(state["opt"])
        step, elapsed = int(state["step"]), float(state["elapsed"])
        g.manual_seed(a.seed + step)  # fresh windows after the resume point
    warmup = min(500, a.steps // 10)

    def lr_at(s: int) -> float:
        if s < warmup:
            return a.lr * (s + 1) / warmup
        return a.lr * 0.5 * (1 + math.cos(math.pi * (s - warmup) / max(1, a.steps - warmup)))

    meta = {"data": prov, "splits_file": str(a.splits),
            "command": "streamlift " + shlex.join(sys.argv[1:]),
            "device": str(dev), "threads": torch.get_num_threads(), "seed": a.seed,
            "batch": a.batch, "lr": a.lr, "ema": a.ema, "torch": str(torch.__version__)}

    def save(final: bool) -> None:
        meta.update(steps=step, train_seconds=round(elapsed, 1), final=final)
        save_prior(a.out, ema if a.ema > 0 else model, **meta)
        torch.save({"config": cfg.to_dict(), "model": model.state_dict(),
                    "ema": ema.state_dict(), "opt": opt.state_dict(), "step": step,
                    "elapsed": elapsed}, state_path)

    print(f"train-prior: {sum(len(s[0]) for s in sources)} train sequences "
          f"({sum(p['frames'] for p in prov):,} frames) loaded in "
          f"{time.perf_counter() - t_load:.1f}s; {sum(p.numel() for p in model.parameters()):,} "
          f"parameters; window {cfg.window}; data std {cfg.data_std:.4f}; device {dev}",
          file=sys.stderr)
    model.train()
    t0, loss_avg = time.perf_counter() - elapsed, None
    with Progress(a.steps, "train-prior", "step", enabled=not a.quiet) as bar:
        bar.n = step
        while step < a.steps:
            for pg in opt.param_groups:
                pg["lr"] = lr_at(step)
            with torch.no_grad():
                x0 = random_views(sampler(a.batch, g), cfg, g)  # (B, Tp, J, 3)
            loss = model.loss(x0, generator=g)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            with torch.no_grad():
                d = min(a.ema, (1 + step) / (10 + step))  # short warm-up of the average
                for pe, pm in zip(ema.parameters(), model.parameters()):
                    pe.lerp_(pm, 1 - d)
            step += 1
            loss_avg = loss.item() if loss_avg is None else 0.98 * loss_avg + 0.02 * loss.item()
            elapsed = time.perf_counter() - t0
            bar.update(1, f"loss {loss_avg:.4f} lr {lr_at(step):.2e}")
            if step % a.ckpt_every == 0:
                save(final=False)
            if a.time_limit and elapsed >= a.time_limit:
                print(f"train-prior: time limit reached at step {step}", file=sys.stderr)
                break
    save(final=step >= a.steps)
    print(f"wrote {a.out}: {step} steps in {elapsed:.0f}s, loss {loss_avg:.4f} "
          f"({a.out.stat().st_size / 2**20:.1f} MB); resume state {state_path}")
    return 0


# ----------------------------------------------------------------------------- sample-prior
def _add_sample(sub) -> None:
    s = sub.add_parser(
        "sample-prior", help="draw 3D motion windows from a trained prior",
        description="Draw motion windows from the prior by deterministic DDIM and write them as "
                    ".npz: 'samples' (N, Tp, 17, 3) in the prior's units (camera frame x right, "
                    "y down, z forward; root-relative; RMS root distance 1) and 'samples_mm' "
                    "scaled to --height-mm.",
        formatter_class=HelpFormatter)
    s.add_argument("--prior", type=Path, default=DEFAULT_PRIOR, help="prior checkpoint")
    s.add_argument("--n", type=positive_int, required=True, help="number of windows to draw")
    s.add_argument("--out", type=Path, required=True, help=".npz to write")
    s.add_argument("--steps", type=positive_int, default=50, help="DDIM denoising steps")
    s.add_argument("--seed", type=int, default=0, help="seed of the initial noise")
    s.add_argument("--height-mm", type=positive_float, default=1700.0,
                   help="skeleton height for 'samples_mm'")
    s.add_argument("--device", default="cpu", choices=["auto", "cpu", "cuda"],
                   help="where to sample")
    s.add_argument("--threads", type=positive_int, default=1,
                   help="torch CPU threads (the work is small; more threads mostly contend)")
    s.add_argument("--quiet", action="store_true", help="no progress bar")
    s.set_defaults(func=cmd_sample_prior)


def cmd_sample_prior(a: argparse.Namespace) -> int:
    import numpy as np
    import torch

    from streamlift.model import metric_scale
    from streamlift.prior import load_prior, normalise
    from streamlift.progress import Progress
    from streamlift.skeleton import H36M17

    torch.set_num_threads(a.threads)
    dev = pick_device(a.device)
    prior = load_prior(a.prior, dev)
    g = torch.Generator(device=dev).manual_seed(a.seed)
    out = []
    with Progress(a.n, "sample-prior", "window", enabled=not a.quiet) as bar:
        for i in range(0, a.n, 1024):
            b = min(1024, a.n - i)
            out.append(prior.sample(b, a.steps, generator=g).cpu())
            bar.update(b)
    x = normalise(torch.cat(out))[0]  # (N, Tp, J, 3), RMS root distance 1
    mm = metric_scale(x, a.height_mm)
    np.savez(a.out, samples=x.numpy().astype(np.float32), samples_mm=mm.numpy().astype(np.float32),
             joints=np.array(H36M17.joints), ddim_steps=np.int64(a.steps))
    print(f"wrote {a.out}: {a.n} windows of {prior.cfg.window} frames ({a.steps} DDIM steps)")
    return 0


# ------------------------------------------------------------------------------ check-prior
def _add_check(sub) -> None:
    c = sub.add_parser(
        "check-prior", help="check a prior against held-out mocap (bones, symmetry, depth flips)",
        description="Compare the prior's samples with held-out windows (bone lengths, left/right "
                    "symmetry, bone-length constancy) and score real vs depth-mirrored held-out "
                    "windows by the prior's denoising error. Exits 1 if a criterion fails.",
        formatter_class=HelpFormatter)
    c.add_argument("--prior", type=Path, default=DEFAULT_PRIOR, help="prior checkpoint")
    c.add_argument("--mocap", type=Path, action="append", required=True,
                   help="held-out mocap .npz; repeat for several files")
    c.add_argument("--splits", type=Path, required=True, help="splits.json")
    c.add_argument("--split", default="val", choices=["train", "val", "test"],
                   help="which split to compare with (val: never trained on, not the test set)")
    c.add_argument("--windows", type=positive_int, default=1024, help="held-out windows")
    c.add_argument("--samples", type=positive_int, default=512, help="prior samples")
    c.add_argument("--ddim-steps", type=positive_int, default=50, help="DDIM steps per sample")
    c.add_argument("--seed", type=int, default=0, help="seed of windows, views and noise")
    c.add_argument("--fit-windows", type=int, default=128,
                   help="27-frame windows for the 2D-only depth fit with/without the prior "
                        "(0 skips it)")
    c.add_argument("--fit-weight", type=positive_float, default=1.0,
                   help="prior_loss weight in that fit (reprojection has weight 1)")
    c.add_argument("--threads", type=positive_int, default=1,
                   help="torch CPU threads (the work is small; more threads mostly contend)")
    c.add_argument("--json", type=Path, default=None, help="also write the numbers here")
    c.set_defaults(func=cmd_check_prior)


def run_check(prior, mocap: list[Path], splits: Path, split: str = "val", windows: int = 1024,
              samples: int = 512, ddim_steps: int = 50, seed: int = 0, fit_windows: int = 128,
              fit_weight: float = 1.0, fit_t_range=(0.05, 0.4)) -> dict:
    import torch

    from streamlift.prior import (PriorConfig, WindowSampler, check_prior, depth_fit, normalise,
                                  random_views)

    sources, _ = _sources(mocap, splits, split)
    dev = prior.alpha_bar.device
    sampler = WindowSampler(sources, prior.cfg, device=dev)
    real = sampler(windows, torch.Generator(device=dev).manual_seed(seed))
    r = check_prior(prior, real, samples, ddim_steps, seed)
    if fit_windows:
        # Lifter-sized windows: 27 frames of a 30-50 fps camera.
        cfg27 = PriorConfig.from_dict({**prior.cfg.to_dict(), "window": 27,
                                       "dt_min": 1 / 50, "dt_max": 1 / 30})
        g = torch.Generator(device=dev).manual_seed(seed + 4)
        world = WindowSampler(sources, cfg27, device=dev)(fit_windows, g)  # (B, 27, J, 3) mm
        w27 = random_views(world, cfg27, g)
        r["depth_fit"] = {
            "windows": fit_windows, "weight": fit_weight, "t_range": list(fit_t_range),
            "unit_mm": normalise(world)[1].mean().item(),  # mean RMS root distance, mm
            "prior": depth_fit(prior, w27, fit_weight, fit_t_range, seed=seed),
            "none": depth_fit(None, w27, seed=seed)}
    return r


def format_check(r: dict) -> str:
    lines = [
        f"held-out windows {r['windows']}, prior samples {r['samples']} "
        f"({r['ddim_steps']} DDIM steps)",
        f"  bone lengths, samples vs held-out: mean rel. error {r['bone_rel_err_mean']:.3f}, "
        f"worst bone {r['bone_rel_err_max']:.3f}",
        f"  left/right asymmetry: samples {r['asym_samples']:.3f}, held-out {r['asym_real']:.3f}",
        f"  bone-length variation within a window (CV): samples {r['cv_time_samples']:.3f}, "
        f"held-out {r['cv_time_real']:.3f}",
        f"  denoising error: real {r['err_real']:.4f}, depth-mirrored {r['err_mirrored']:.4f} "
        f"(x{r['err_mirrored'] / max(r['err_real'], 1e-12):.1f}); mirrored worse in "
        f"{r['mirrored_worse_frac']:.1%} of windows",
    ]
    fit = r.get("depth_fit")
    if fit:
        lines.append(f"  2D-only fit of {fit['windows']} windows of 27 frames from zero depth "
                     f"(reprojection + {fit['weight']:g} x prior_loss, t_range "
                     f"{tuple(fit['t_range'])}; unit = RMS joint distance to the root, "
                     f"{fit['unit_mm']:.0f} mm on average):")
        for k, name in (("prior", "with the prior"), ("none", "reprojection only")):
            f = fit[k]
            lines.append(f"    {name}: joint error {f['err_real']:.3f} to the real pose, "
                         f"{f['err_mirrored']:.3f} to its depth mirror, 2D error "
                         f"{f['reprojection']:.3f}; nearer the real one in "
                         f"{f['nearer_real_frac']:.0%} of windows")
    return "\n".join(lines)


def cmd_check_prior(a: argparse.Namespace) -> int:
    from streamlift.prior import load_prior, prior_check_passes

    import torch

    torch.set_num_threads(a.threads)
    if a.fit_windows < 0:
        raise UserError(f"--fit-windows must be >= 0, got {a.fit_windows}")
    prior = load_prior(a.prior)
    r = run_check(prior, a.mocap, a.splits, a.split, a.windows, a.samples, a.ddim_steps, a.seed,
                  a.fit_windows, a.fit_weight)
    fails = prior_check_passes(r)
    print(f"check-prior {a.prior} on the {a.split} split of "
          f"{', '.join(p.name for p in a.mocap)}:")
    print(format_check(r))
    print("PASS" if not fails else "FAIL: " + "; ".join(fails))
    if a.json:
        a.json.write_text(json.dumps({**r, "pass": not fails, "failures": fails}, indent=1))
    return 0 if not fails else 1


def add_commands(subparsers) -> None:
    """Register train-prior, sample-prior and check-prior on the top-level subparsers."""
    _add_train(subparsers)
    _add_sample(subparsers)
    _add_check(subparsers)
