"""Import Human3.6M as distributed in VideoPose3D's preprocessed `.npz` files.

VideoPose3D (github.com/facebookresearch/VideoPose3D, DATASETS.md) prepares two kinds of file:

- `data_3d_h36m.npz`: key `positions_3d`, a dict {subject: {action: (T, 32, 3) float, metres,
  world frame, z up}} at 50 fps;
- `data_2d_h36m_<detector>.npz` (e.g. `cpn_ft_h36m_dbb`): key `positions_2d`, a dict
  {subject: {action: [4 arrays (T, 17, 2), one per camera, pixels]}} and `metadata`.

Both store Python dicts inside object arrays, which numpy can only read by unpickling, and
unpickling runs code from the file: the importer refuses unless the caller says it trusts the
file (`allow_pickle=True`, `--allow-pickle` on the command line).

The 3D becomes a mocap file (mm, z up, H36M-17, with its `.json` and a `splits.json`) for
`streamlift data views` and `train-prior`; the 2D detections become a views file (kp2d only,
no kp3d: the files carry no camera parameters) that `streamlift train` can learn from directly.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np

from streamlift.data.views import View, save_views
from streamlift.errors import UserError
from streamlift.skeleton import H36M17

# VideoPose3D keeps these 17 of the 32 Human3.6M joints, already in H36M-17 order.
KEEP_32_TO_17 = [0, 1, 2, 3, 6, 7, 8, 12, 13, 14, 15, 17, 18, 19, 25, 26, 27]
FPS = 50.0
# The usual protocol trains on S1, S5, S6, S7, S8 and tests on S9, S11; we hold S8 out for
# validation so that model selection never looks at the test subjects.
DEFAULT_SPLITS = {"train": ["S1", "S5", "S6", "S7"], "val": ["S8"], "test": ["S9", "S11"]}


def _load_dict(path: Path, key: str, allow_pickle: bool) -> dict:
    if not path.is_file():
        raise UserError(f"file not found: {path}")
    if not allow_pickle:
        raise UserError(f"{path}: VideoPose3D files store dicts that numpy can only read by "
                        "unpickling, which runs code from the file. If you trust it (you made "
                        "it with VideoPose3D's prepare_data scripts), allow that "
                        "(allow_pickle=True)")
    try:
        with np.load(path, allow_pickle=True) as f:
            if key not in f.files:
                raise UserError(f"{path}: no {key!r} array (has: {', '.join(f.files)}); is this a "
                                "VideoPose3D file?")
            return f[key].item()
    except (OSError, ValueError, zipfile.BadZipFile) as e:
        raise UserError(f"{path}: not a readable .npz ({e})") from None


def _name(subject: str, action: str) -> str:
    return f"{subject}/{action}"


def import_3d(path: str | Path, out: str | Path, allow_pickle: bool = False,
              splits: dict | None = None) -> dict:
    """data_3d_h36m.npz -> OUT.npz (mocap), OUT.json (fps, units) and OUT.splits.json.

    Returns a summary {sequences, frames, splits}.
    """
    path, out = Path(path), Path(out)
    positions = _load_dict(path, "positions_3d", allow_pickle)
    splits = splits or DEFAULT_SPLITS
    seqs, table = {}, {k: [] for k in splits}
    for subject in sorted(positions):
        for action in sorted(positions[subject]):
            a = np.asarray(positions[subject][action], dtype=np.float32)
            if a.ndim != 3 or a.shape[1:] not in ((32, 3), (17, 3)):
                raise UserError(f"{path}: {subject}/{action} has shape {a.shape}; expected "
                                "(frames, 32, 3) or (frames, 17, 3)")
            if a.shape[1] == 32:
                a = a[:, KEEP_32_TO_17]  # (T, 32, 3) -> (T, 17, 3)
            name = _name(subject, action)
            seqs[name] = a * 1000.0  # metres -> millimetres; H36M's world is already z up
            for split, subjects in splits.items():
                if subject in subjects:
                    table[split].append(name)
    if not seqs:
        raise UserError(f"{path}: no sequences")
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez(out, **seqs)
    out.with_suffix(".json").write_text(json.dumps({
        "fps": FPS, "units": "mm", "up_axis": "z", "joints": list(H36M17.joints),
        "source": f"{path.name} (VideoPose3D layout), joints {KEEP_32_TO_17} of 32"}, indent=1))
    splits_path = out.with_name(out.stem + ".splits.json")
    splits_path.write_text(json.dumps({out.stem: table}, indent=1))
    return {"sequences": len(seqs), "frames": int(sum(len(s) for s in seqs.values())),
            "splits": {k: len(v) for k, v in table.items()}, "splits_path": str(splits_path)}


def import_2d(path: str | Path, out: str | Path, allow_pickle: bool = False,
              subjects: list[str] | None = None) -> dict:
    """data_2d_h36m_*.npz -> a views file, one view `S9/Walking.camK` per subject/action/camera."""
    path = Path(path)
    positions = _load_dict(path, "positions_2d", allow_pickle)
    views = {}
    for subject in sorted(positions):
        if subjects and subject not in subjects:
            continue
        for action in sorted(positions[subject]):
            for k, kp in enumerate(positions[subject][action]):
                kp = np.asarray(kp, dtype=np.float32)
                if kp.ndim != 3 or kp.shape[1] != H36M17.num_joints or kp.shape[2] not in (2, 3):
                    raise UserError(f"{path}: {subject}/{action} camera {k} has shape "
                                    f"{kp.shape}; expected (frames, 17, 2)")
                views[f"{_name(subject, action)}.cam{k}"] = View(kp2d=kp, fps=FPS)
    if not views:
        raise UserError(f"{path}: no views" + (f" for subjects {subjects}" if subjects else ""))
    save_views(out, views)
    return {"views": len(views), "frames": int(sum(v.frames for v in views.values()))}


def run_import(c) -> str:
    """The imports a data.options.ImportConfig asks for (its files checked by the caller); the
    report, a line per file written."""
    lines = []
    if c.in3d is not None:
        r = import_3d(c.in3d, c.out, c.allow_pickle)
        lines.append(f"wrote {c.out}: {r['sequences']} sequences, {r['frames']:,} frames at 50 "
                     f"fps; splits in {r['splits_path']} "
                     f"({', '.join(f'{k} {v}' for k, v in r['splits'].items())})")
    if c.in2d is not None:
        r = import_2d(c.in2d, c.out_views, c.allow_pickle, c.subjects)
        lines.append(f"wrote {c.out_views}: {r['views']} views, {r['frames']:,} frames of "
                     "detector 2D")
    return "\n".join(lines)
