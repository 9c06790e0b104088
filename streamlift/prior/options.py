"""The settings of `streamlift train-prior`'s files, `sample-prior` and `check-prior` (their
flags are made from these fields, streamlift.cli.common.add_config); nothing heavy is imported
here."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from streamlift.paths import DEFAULT_PRIOR

PRIOR_HELP = {"type": "path", "help": "prior checkpoint (default: the shipped one, "
              "streamlift/assets/prior.pt)"}


@dataclass
class PriorFiles:
    """Train a denoising diffusion prior over short 3D motion windows (camera frame,
    root-relative, scale-normalised H36M-17) on the train split of one or more mocap files.
    Writes OUT (weights + config + provenance) and OUT's .train.pt beside it (optimizer state,
    for --resume) every --ckpt-every steps and at the end."""
    mocap: list[Path] = field(default=None, metadata={
        "type": "path", "action": "append", "required": True,
        "help": "mocap .npz (one (frames, 17, 3) mm array per sequence, z up); repeat the flag "
        "for several files"})
    splits: Path = field(default=None, metadata={
        "type": "path", "required": True,
        "help": "splits.json; only each file's 'train' sequences are used"})
    out: Path = field(default=None, metadata={
        "type": "path", "required": True, "help": "prior checkpoint to write (.pt)"})
    resume: bool = field(default=False, metadata={
        "help": "continue from OUT's .train.pt (same data and flags)"})


@dataclass
class SampleConfig:
    """Draw motion windows from the prior by deterministic DDIM and write them as .npz:
    'samples' (N, Tp, 17, 3) in the prior's units (camera frame x right, y down, z forward;
    root-relative; RMS root distance 1) and 'samples_mm' scaled to --height-mm."""
    prior: Path | None = field(default=None, metadata=PRIOR_HELP)
    n: int = field(default=None, metadata={
        "type": "positive_int", "required": True, "help": "number of windows to draw"})
    out: Path = field(default=None, metadata={
        "type": "path", "required": True, "help": ".npz to write"})
    steps: int = field(default=50, metadata={
        "type": "positive_int", "help": "DDIM denoising steps"})
    seed: int = field(default=0, metadata={"type": "int", "help": "seed of the initial noise"})
    height_mm: float = field(default=1700.0, metadata={
        "type": "positive_float", "help": "skeleton height for 'samples_mm'"})

    def __post_init__(self):
        self.prior = self.prior or DEFAULT_PRIOR


@dataclass
class CheckConfig:
    """Compare the prior's samples with held-out windows (bone lengths, left/right symmetry,
    bone-length constancy) and score real vs depth-mirrored held-out windows by the prior's
    denoising error. Exits 1 if a criterion fails."""
    prior: Path | None = field(default=None, metadata=PRIOR_HELP)
    mocap: list[Path] = field(default=None, metadata={
        "type": "path", "action": "append", "required": True,
        "help": "held-out mocap .npz; repeat for several files"})
    splits: Path = field(default=None, metadata={
        "type": "path", "required": True, "help": "splits.json"})
    split: str = field(default="val", metadata={
        "choices": ["train", "val", "test"],
        "help": "which split to compare with (val: never trained on, not the test set)"})
    windows: int = field(default=1024, metadata={
        "type": "positive_int", "help": "held-out windows"})
    samples: int = field(default=512, metadata={"type": "positive_int", "help": "prior samples"})
    ddim_steps: int = field(default=50, metadata={
        "type": "positive_int", "help": "DDIM steps per sample"})
    seed: int = field(default=0, metadata={
        "type": "int", "help": "seed of windows, views and noise"})
    fit_windows: int = field(default=128, metadata={
        "type": "count", "help": "27-frame windows for the 2D-only depth fit with/without the "
        "prior (0 skips it)"})
    fit_weight: float = field(default=1.0, metadata={
        "type": "positive_float",
        "help": "prior_loss weight in that fit (reprojection has weight 1)"})

    def __post_init__(self):
        self.prior = self.prior or DEFAULT_PRIOR
