"""The prior's representation and its training windows: 3D mocap seen from random cameras."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from streamlift.geometry import camera_rotation
from streamlift.prior.model import PriorConfig
from streamlift.skeleton import H36M17, ROOT

FLIP = torch.tensor(H36M17.flip)


def normalise(X: torch.Tensor, data_std: float = 1.0, eps: float = 1e-6):
    """Camera-frame windows (..., Tp, J, 3), any scale -> prior space, and the scale (...,).

    Root-relative per frame, divided by the RMS joint distance to the root over the window and
    by `data_std`. Differentiable, so a loss on the result is invariant to X's scale.
    """
    X = X - X[..., ROOT:ROOT + 1, :]  # (..., Tp, J, 3)
    rms = X.square().sum(-1).mean(dim=(-1, -2)).clamp_min(eps).sqrt()  # (...,)
    return X / (rms[..., None, None, None] * data_std), rms


def random_views(P: torch.Tensor, cfg: PriorConfig, generator: torch.Generator | None = None,
                 mirror: bool = True) -> torch.Tensor:
    """World windows (B, Tp, J, 3) mm, z up -> prior space, seen by random studio-like cameras."""
    B, dev = P.shape[0], P.device

    def u(lo, hi):
        return lo + (hi - lo) * torch.rand(B, device=dev, generator=generator)

    P = P - P[:, :, ROOT:ROOT + 1]  # (B, Tp, J, 3)
    if mirror:
        # Reflect y and swap left/right labels: the mirror image of a person is a person.
        m = torch.rand(B, device=dev, generator=generator) < 0.5
        Pm = P[:, :, FLIP.to(dev)] * torch.tensor([1.0, -1.0, 1.0], device=dev)
        P = torch.where(m[:, None, None, None], Pm, P)
    yaw = u(0.0, 2 * math.pi)
    pitch = torch.deg2rad(u(cfg.pitch_min_deg, cfg.pitch_max_deg))
    roll = torch.deg2rad(cfg.roll_deg * torch.randn(B, device=dev, generator=generator))
    R = camera_rotation(yaw, pitch, roll)  # (B, 3, 3)
    X = P @ R.transpose(-1, -2)[:, None]  # (B, Tp, J, 3) camera frame
    return normalise(X, cfg.data_std)[0]


class WindowSampler:
    """Random Tp-frame windows from mocap sequences at random frame spacing (linear interpolation).

    Sources are (sequences, fps, weight); a window's source is drawn by weight, its sequence in
    proportion to length, its spacing dt log-uniformly in [dt_min, dt_max] seconds (shrunk to fit
    short sequences).
    """

    def __init__(self, sources, cfg: PriorConfig, device="cpu"):
        self.cfg, self.device = cfg, torch.device(device)
        self.frames, self.offsets, self.lengths, self.fps, self.src = [], [], [], [], []
        weights, start = [], 0
        for k, (seqs, fps, w) in enumerate(sources):
            for a in seqs:
                self.frames.append(torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32)))
                self.offsets.append(start)
                self.lengths.append(len(a))
                self.fps.append(fps)
                self.src.append(k)
                start += len(a)
            weights.append(w)
        if not self.frames:
            raise ValueError("no sequences to sample windows from")
        self.data = torch.cat(self.frames).to(self.device)  # (N, J, 3) all frames
        del self.frames
        self.offsets_t = torch.tensor(self.offsets, device=self.device)
        lengths = torch.tensor(self.lengths, dtype=torch.float64)
        src = torch.tensor(self.src)
        # P(sequence) = P(source) * length / frames in that source
        w = torch.tensor(weights, dtype=torch.float64)[src]
        per_src = torch.zeros(len(weights), dtype=torch.float64).index_add_(0, src, lengths)
        self.p_seq = (w * lengths / per_src[src]).float().to(self.device)
        self.lengths_t = lengths.float().to(self.device)
        self.fps_t = torch.tensor(self.fps, dtype=torch.float32, device=self.device)

    def __call__(self, batch: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """(batch, Tp, J, 3) world-frame mm windows."""
        cfg, dev = self.cfg, self.device
        seq = torch.multinomial(self.p_seq, batch, replacement=True, generator=generator)
        L = self.lengths_t[seq]
        lo, hi = math.log(cfg.dt_min), math.log(cfg.dt_max)
        dt = torch.exp(lo + (hi - lo) * torch.rand(batch, device=dev, generator=generator))
        step = (dt * self.fps_t[seq]).clamp(max=(L - 1) / (cfg.window - 1))  # source frames
        span = step * (cfg.window - 1)
        start = torch.rand(batch, device=dev, generator=generator) * (L - 1 - span).clamp_min(0)
        pos = start[:, None] + step[:, None] * torch.arange(cfg.window, device=dev)  # (B, Tp)
        pos = torch.minimum(pos, (L - 1)[:, None])
        i0 = pos.floor().long()
        i1 = torch.minimum(i0 + 1, (L - 1).long()[:, None])
        w = (pos - i0)[..., None, None]  # (B, Tp, 1, 1)
        base = self.offsets_t[seq][:, None]
        return (1 - w) * self.data[base + i0] + w * self.data[base + i1]  # (B, Tp, J, 3)


def sources(mocap: list[Path], splits: Path, split: str):
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
