"""`streamlift train-prior | sample-prior | check-prior`: the diffusion motion prior's commands.

`add_commands(subparsers)` registers them on the top-level parser of `streamlift.cli`.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

from streamlift.cli.common import HelpFormatter, positive_float, positive_int
from streamlift.errors import UserError
from streamlift.device import pick_device
from streamlift.paths import DEFAULT_PRIOR
from streamlift.prior.check import format_check, run_check


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


def cmd_train_prior(a: argparse.Namespace) -> int:
    import torch

    from streamlift.prior.model import PriorConfig
    from streamlift.train.prior import PriorTrainConfig, state_path, train_prior

    if a.threads:
        torch.set_num_threads(a.threads)
    if not 0 <= a.ema < 1:
        raise UserError(f"--ema must be in [0, 1), got {a.ema}")
    if a.resume and not state_path(a.out).is_file():
        raise UserError(f"--resume: no training state at {state_path(a.out)}")
    dev = pick_device(a.device)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    cfg = PriorTrainConfig(steps=a.steps, batch=a.batch, lr=a.lr, ema=a.ema, seed=a.seed,
                           ckpt_every=a.ckpt_every, time_limit=a.time_limit)
    model_cfg = PriorConfig(window=a.window, width=a.width, blocks=a.blocks, schedule=a.schedule)
    meta = train_prior(a.mocap, a.splits, a.out, model_cfg, cfg, dev, a.resume, not a.quiet,
                       log=lambda line: print(line, file=sys.stderr),
                       meta={"command": "streamlift " + shlex.join(sys.argv[1:])})
    print(f"wrote {a.out}: {meta['steps']} steps in {meta['train_seconds']:.0f}s, loss "
          f"{meta['loss']:.4f} ({a.out.stat().st_size / 2**20:.1f} MB); resume state "
          f"{state_path(a.out)}")
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

    from streamlift.lifter.model import metric_scale
    from streamlift.prior import load_prior
    from streamlift.prior.data import normalise
    from streamlift.progress import bar as progress_bar
    from streamlift.skeleton import H36M17

    torch.set_num_threads(a.threads)
    dev = pick_device(a.device)
    prior = load_prior(a.prior, dev)
    g = torch.Generator(device=dev).manual_seed(a.seed)
    out = []
    with progress_bar(a.n, "sample-prior", "window", not a.quiet) as bar:
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


def cmd_check_prior(a: argparse.Namespace) -> int:
    from streamlift.prior import load_prior
    from streamlift.prior.check import prior_check_passes

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
