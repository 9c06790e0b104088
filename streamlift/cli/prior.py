"""`streamlift train-prior | sample-prior | check-prior`: the diffusion motion prior's commands.

`add_commands(subparsers)` registers them on the top-level parser of `streamlift.cli`.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

from streamlift.cli.common import (PRIOR, PRIOR_TRAIN, add_config, command, count, device,
                                   given, positive_float, positive_int, shared)
from streamlift.errors import UserError
from streamlift.paths import DEFAULT_PRIOR

SHAPE, TRAINING = "window width blocks schedule", "steps batch lr ema seed ckpt_every time_limit"
SMALL = dict(default=1, help="torch CPU threads (the work is small; more threads mostly contend)")


def cmd_train_prior(a: argparse.Namespace) -> int:
    """Train a denoising diffusion prior over short 3D motion windows (camera frame,
    root-relative, scale-normalised H36M-17) on the train split of one or more mocap files.
    Writes OUT (weights + config + provenance) and OUT's .train.pt beside it (optimizer state,
    for --resume) every --ckpt-every steps and at the end."""
    from streamlift.prior.model import PriorConfig
    from streamlift.train.prior import PriorTrainConfig, state_path, train_prior

    if a.resume and not state_path(a.out).is_file():
        raise UserError(f"--resume: no training state at {state_path(a.out)}")
    dev = device(a.device, a.threads)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    meta = train_prior(a.mocap, a.splits, a.out, PriorConfig(**given(a, SHAPE)),
                       PriorTrainConfig(**given(a, TRAINING)), dev, a.resume, not a.quiet,
                       log=lambda line: print(line, file=sys.stderr),
                       meta={"command": "streamlift " + shlex.join(sys.argv[1:])})
    print(f"wrote {a.out}: {meta['steps']} steps in {meta['train_seconds']:.0f}s, loss "
          f"{meta['loss']:.4f} ({a.out.stat().st_size / 2**20:.1f} MB); resume state "
          f"{state_path(a.out)}")
    return 0


def cmd_sample_prior(a: argparse.Namespace) -> int:
    """Draw motion windows from the prior by deterministic DDIM and write them as .npz:
    'samples' (N, Tp, 17, 3) in the prior's units (camera frame x right, y down, z forward;
    root-relative; RMS root distance 1) and 'samples_mm' scaled to --height-mm."""
    import numpy as np
    import torch

    from streamlift.lifter.model import metric_scale
    from streamlift.prior import load_prior
    from streamlift.prior.data import normalise
    from streamlift.progress import bar as progress_bar
    from streamlift.skeleton import H36M17

    dev = device(a.device, a.threads)
    prior = load_prior(a.prior, dev)
    g = torch.Generator(device=dev).manual_seed(a.seed)
    out = []
    with progress_bar(a.n, "sample-prior", "window", not a.quiet) as bar:
        for i in range(0, a.n, 1024):
            out.append(prior.sample(min(1024, a.n - i), a.steps, generator=g).cpu())
            bar.update(len(out[-1]))
    x = normalise(torch.cat(out))[0]  # (N, Tp, J, 3), RMS root distance 1
    np.savez(a.out, samples=x.numpy().astype(np.float32),
             samples_mm=metric_scale(x, a.height_mm).numpy().astype(np.float32),
             joints=np.array(H36M17.joints), ddim_steps=np.int64(a.steps))
    print(f"wrote {a.out}: {a.n} windows of {prior.cfg.window} frames ({a.steps} DDIM steps)")
    return 0


def cmd_check_prior(a: argparse.Namespace) -> int:
    """Compare the prior's samples with held-out windows (bone lengths, left/right symmetry,
    bone-length constancy) and score real vs depth-mirrored held-out windows by the prior's
    denoising error. Exits 1 if a criterion fails."""
    from streamlift.prior import load_prior
    from streamlift.prior.check import format_check, prior_check_passes, run_check

    prior = load_prior(a.prior, device("cpu", a.threads))
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


def add_commands(sub) -> None:
    """Register train-prior, sample-prior and check-prior on the top-level subparsers."""
    t = command(sub, "train-prior", cmd_train_prior,
                "train the diffusion motion prior on 3D mocap (train split only)")
    t.add_argument("--mocap", type=Path, action="append", required=True,
                   help="mocap .npz (one (frames, 17, 3) mm array per sequence, z up); repeat "
                        "the flag for several files")
    t.add_argument("--splits", type=Path, required=True,
                   help="splits.json; only each file's 'train' sequences are used")
    t.add_argument("--out", type=Path, required=True, help="prior checkpoint to write (.pt)")
    add_config(t, PRIOR_TRAIN, TRAINING)
    add_config(t, PRIOR, SHAPE)
    t.add_argument("--resume", action="store_true",
                   help="continue from OUT's .train.pt (same data and flags)")
    shared(t, "threads", "quiet", device="where to train; auto picks CUDA when there is one")

    s = command(sub, "sample-prior", cmd_sample_prior, "draw 3D motion windows from a trained "
                "prior")
    s.add_argument("--prior", type=Path, default=DEFAULT_PRIOR, help="prior checkpoint")
    s.add_argument("--n", type=positive_int, required=True, help="number of windows to draw")
    s.add_argument("--out", type=Path, required=True, help=".npz to write")
    s.add_argument("--steps", type=positive_int, default=50, help="DDIM denoising steps")
    s.add_argument("--seed", type=int, default=0, help="seed of the initial noise")
    s.add_argument("--height-mm", type=positive_float, default=1700.0,
                   help="skeleton height for 'samples_mm'")
    shared(s, "quiet", device=dict(default="cpu", help="where to sample"), threads=SMALL)

    c = command(sub, "check-prior", cmd_check_prior, "check a prior against held-out mocap "
                "(bones, symmetry, depth flips)")
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
    c.add_argument("--fit-windows", type=count, default=128, help="27-frame windows for the "
                   "2D-only depth fit with/without the prior (0 skips it)")
    c.add_argument("--fit-weight", type=positive_float, default=1.0,
                   help="prior_loss weight in that fit (reprojection has weight 1)")
    shared(c, threads=SMALL, json="also write the numbers here")
