"""Loading 3D motion-capture files (`.npz`, one `(T, 17, 3)` mm array per sequence, z up).

The `.json` beside a shared mocap file records its frame rate; `splits.json` lists which
sequences are train/val/test for each file (keyed by the file's stem).
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from streamlift.errors import UserError
from streamlift.skeleton import H36M17

SPLITS = ("train", "val", "test")


@dataclass
class Mocap:
    """3D sequences of one mocap file, in millimetres, world frame with z up."""

    sequences: dict[str, np.ndarray]  # name -> float32 (T, 17, 3)
    fps: float
    source: str  # the file it came from, for provenance

    @property
    def frames(self) -> int:
        return sum(len(s) for s in self.sequences.values())


def read_fps(path: Path) -> float | None:
    """Frame rate from the `.json` beside a mocap file, or None when there is none."""
    meta = path.with_suffix(".json")
    if not meta.is_file():
        return None
    try:
        fps = json.loads(meta.read_text()).get("fps")
    except (json.JSONDecodeError, AttributeError) as e:
        raise UserError(f"{meta}: not a valid mocap metadata file ({e})") from None
    return float(fps) if fps else None


def read_split(splits_path: str | Path, stem: str, split: str) -> list[str]:
    """The sequence names of `split` for mocap file `stem` in a splits.json."""
    p = Path(splits_path)
    if not p.is_file():
        raise UserError(f"splits file not found: {p}")
    try:
        table = json.loads(p.read_text())
    except json.JSONDecodeError as e:
        raise UserError(f"{p}: not valid JSON ({e})") from None
    table = table.get("splits", table)
    if stem not in table:
        raise UserError(f"{p} has no splits for {stem!r}; it has: {', '.join(sorted(table))}")
    if split not in table[stem]:
        raise UserError(f"unknown split {split!r} for {stem!r}; choose from: "
                        f"{', '.join(sorted(table[stem]))}")
    return list(table[stem][split])


def load_mocap(path: str | Path, splits: str | Path | None = None, split: str | None = None,
               fps: float | None = None, source_pelvis: bool = False) -> Mocap:
    """Load a mocap `.npz`, optionally only the sequences of one split.

    `fps` overrides the rate read from the `.json` beside the file; one of the two is required.
    The pelvis is put at the hip centre (streamlift's definition of that joint, as the 2D
    layouts' mappings make it: `streamlift.data.bodies`) unless `source_pelvis`.
    """
    from streamlift.data.bodies import pelvis_at_hip_centre

    p = Path(path)
    if not p.is_file():
        raise UserError(f"mocap file not found: {p}")
    if split is not None and split != "all" and splits is None:
        raise UserError(f"split {split!r} needs a splits file (the splits.json that defines it)")
    src_fps = fps if fps is not None else read_fps(p)
    if src_fps is None or src_fps <= 0:
        raise UserError(f"no frame rate for {p}: no .json beside it names one; pass the source fps")
    try:
        arrays = np.load(p, allow_pickle=False)
    except (OSError, ValueError, zipfile.BadZipFile) as e:
        raise UserError(f"{p}: not a readable .npz ({e})") from None
    with arrays:
        names = list(arrays.files)
        if splits is not None and split not in (None, "all"):
            wanted = read_split(splits, p.stem, split)
            missing = [n for n in wanted if n not in arrays.files]
            if missing:
                raise UserError(f"{p}: {len(missing)} sequences of split {split!r} are not in "
                                f"the file (first: {missing[0]!r})")
            names = wanted
        seqs = {}
        for n in names:
            a = arrays[n]
            if a.ndim != 3 or a.shape[1:] != (H36M17.num_joints, 3):
                raise UserError(f"{p}: sequence {n!r} has shape {a.shape}; expected "
                                f"(frames, {H36M17.num_joints}, 3)")
            if not np.isfinite(a).all():
                raise UserError(f"{p}: sequence {n!r} contains NaN or inf")
            a = a.astype(np.float32, copy=False)
            seqs[n] = a if source_pelvis else pelvis_at_hip_centre(a)
    if not seqs:
        raise UserError(f"{p}: no sequences selected")
    return Mocap(seqs, float(src_fps), str(p))


def resample(seq: np.ndarray, src_fps: float, dst_fps: float) -> np.ndarray:
    """Linearly resample a `(T, ...)` sequence in time from src_fps to dst_fps."""
    if src_fps == dst_fps or len(seq) < 2:
        return seq
    duration = (len(seq) - 1) / src_fps
    t_new = np.arange(0.0, duration + 1e-9, 1.0 / dst_fps) * src_fps  # in source frames
    i0 = np.clip(np.floor(t_new).astype(np.int64), 0, len(seq) - 1)
    i1 = np.minimum(i0 + 1, len(seq) - 1)
    w = (t_new - i0).astype(seq.dtype).reshape(-1, *([1] * (seq.ndim - 1)))
    return (1 - w) * seq[i0] + w * seq[i1]
