"""`streamlift train-prior | sample-prior | check-prior`: the diffusion motion prior's commands."""

from __future__ import annotations

import argparse
import shlex
import sys

from streamlift.cli.common import (PRIOR, PRIOR_TRAIN, add_config, command, device, given,
                                   options, report, shared)
from streamlift.errors import UserError

SHAPE, TRAINING = "window width blocks schedule pitch_min_deg pitch_max_deg", "steps batch lr ema seed ckpt_every random_bodies time_limit"
SMALL = dict(default=1, help="torch CPU threads (the work is small; more threads mostly contend)")
OPTIONS = "streamlift.prior.options:"


def cmd_train_prior(a: argparse.Namespace) -> int:
    from streamlift.prior.model import PriorConfig
    from streamlift.train.prior import PriorTrainConfig, state_path, train_to_file

    if a.resume and not state_path(a.out).is_file():
        raise UserError(f"--resume: no training state at {state_path(a.out)}")
    print(train_to_file(options(a, OPTIONS + "PriorFiles"), PriorConfig(**given(a, SHAPE)),
                        PriorTrainConfig(**given(a, TRAINING)), device(a.device, a.threads),
                        a.resume, not a.quiet, log=lambda line: print(line, file=sys.stderr),
                        meta={"command": "streamlift " + shlex.join(sys.argv[1:])}))
    return 0


def cmd_sample_prior(a: argparse.Namespace) -> int:
    from streamlift.prior import load_prior
    from streamlift.train.prior import sample_to_file

    c, dev = options(a, OPTIONS + "SampleConfig"), device(a.device, a.threads)
    print(sample_to_file(load_prior(c.prior, dev), c, dev, progress=not a.quiet))
    return 0


def cmd_check_prior(a: argparse.Namespace) -> int:
    from streamlift.prior import load_prior
    from streamlift.prior.check import check_from

    c = options(a, OPTIONS + "CheckConfig")
    text, r = check_from(load_prior(c.prior, device("cpu", a.threads)), c)
    report(a, text, r)
    return 0 if r["pass"] else 1


def add_commands(sub) -> None:
    """Register train-prior, sample-prior and check-prior on the top-level subparsers."""
    t = command(sub, "train-prior", cmd_train_prior,
                "train the diffusion motion prior on 3D mocap (train split only)",
                OPTIONS + "PriorFiles")
    add_config(t, OPTIONS + "PriorFiles")
    add_config(t, PRIOR_TRAIN, TRAINING)
    add_config(t, PRIOR, SHAPE)
    shared(t, "threads", "quiet", device="where to train; auto picks CUDA when there is one")
    s = command(sub, "sample-prior", cmd_sample_prior, "draw 3D motion windows from a trained "
                "prior", OPTIONS + "SampleConfig")
    add_config(s, OPTIONS + "SampleConfig")
    shared(s, "quiet", device=dict(default="cpu", help="where to sample"), threads=SMALL)
    c = command(sub, "check-prior", cmd_check_prior, "check a prior against held-out mocap "
                "(bones, symmetry, depth flips)", OPTIONS + "CheckConfig")
    add_config(c, OPTIONS + "CheckConfig")
    shared(c, threads=SMALL, json="also write the numbers here")
