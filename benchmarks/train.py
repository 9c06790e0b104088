"""Train suite: optimiser steps per second of the real training step, with and without the prior.

Times `streamlift.train.lifter.train_step` (forward, every loss, backward, clipping, AdamW) on batches
of windows cut from the shipped sample's 2D views, with the shipped diffusion prior on (the
default) and off. Samples/s counts windows. Data loading is left out: the sampler cuts
windows from tensors already in memory, which is cheap next to the step.
"""

from __future__ import annotations

import copy

import numpy as np
import torch

from benchmarks.harness import Result, measure, result
from streamlift.data.sample import sample_streams
from streamlift.lifter.model import LifterConfig, NRSfMFormer
from streamlift.train.lifter import TrainConfig, train_step
from streamlift.train.loop import Optimiser


def _batch(kp2d: list[np.ndarray], batch: int, window: int, device: torch.device) -> torch.Tensor:
    g = np.random.default_rng(0)
    out = np.empty((batch, window, 17, 3), np.float32)  # (B, T, J, x/y/confidence)
    for i in range(batch):
        seq = kp2d[g.integers(len(kp2d))]
        s = g.integers(len(seq) - window)
        out[i, ..., :2] = seq[s:s + window]
        out[i, ..., 2] = 1.0
    return torch.from_numpy(out).to(device)


def run(device: torch.device, quick: bool, log=print) -> list[Result]:
    from streamlift.prior import load_prior
    from streamlift.paths import DEFAULT_PRIOR

    kp2d, _, _, _ = sample_streams(5)
    cfg = TrainConfig()
    base = NRSfMFormer(LifterConfig()).to(device)
    prior = load_prior(DEFAULT_PRIOR, device)
    amp = device.type == "cuda"  # training uses bf16 autocast on CUDA, fp32 on CPU
    if quick:
        batches = (16,)
    else:
        batches = (cfg.batch,) if device.type == "cpu" else (cfg.batch, 256, 1024)
    rows = []
    for B in batches:
        w = _batch(list(kp2d.values()), B, base.cfg.window, device)
        times = {}
        for name, p in (("with prior", prior), ("no prior", None)):
            model = copy.deepcopy(base).train()
            opt = Optimiser(model, lr=1e-4)
            times[name] = measure(lambda: train_step(model, opt, w, cfg, p, amp), device,
                                  warmup=2, repeats=5 if quick else 20)
        for name, t in times.items():
            extra = {"samples_per_s": round(B / (t.median / 1e3), 1), "amp_bf16": amp}
            if name == "with prior":
                extra["prior_overhead"] = round(t.median / times["no prior"].median, 2)
            rows.append(result("train", f"train step ({name})", "streamlift",
                               {"batch": B, "window": base.cfg.window}, t, **extra))
            log(f"  batch {B} {name}: {t.median:.1f} ms/step, {extra['samples_per_s']:,} windows/s")
    return rows
