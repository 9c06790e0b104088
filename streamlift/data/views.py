"""Views files: the train/eval interchange format (docs/views-format.md).

An `.npz` in which each view `K` (one sequence seen by one camera) has:
  `K/kp2d`  float32 (T, 17, 2|3)  pixels, optionally a confidence in [0, 1]
  `K/kp3d`  float32 (T, 17, 3)    camera frame (x right, y down, z forward), mm  [optional]
  `K/fps`   scalar                                                               [optional]
  `K/image_size`  [width, height]                                               [optional]
streamlift also writes `K/intrinsics` (3, 3) and `K/extrinsics` (3, 4, world mm -> camera mm)
so that a view can be checked against its camera; readers must not require them. A view name
may contain '/' or '.': the field is what follows the last '/'. Unknown fields are ignored.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from streamlift.data.cameras import IMAGE_SIZE, RIGS, detector_noise, project, seeded_rng
from streamlift.data.mocap import Mocap, resample
from streamlift.errors import UserError
from streamlift.progress import bar as progress_bar
from streamlift.skeleton import H36M17

FIELDS = ("kp2d", "kp3d", "fps", "image_size", "intrinsics", "extrinsics")


@dataclass
class View:
    kp2d: np.ndarray  # (T, 17, 2|3) px [, confidence]
    kp3d: np.ndarray | None = None  # (T, 17, 3) mm, camera frame
    fps: float | None = None
    image_size: tuple[int, int] | None = None  # (width, height)
    intrinsics: np.ndarray | None = None  # (3, 3)
    extrinsics: np.ndarray | None = None  # (3, 4)

    @property
    def frames(self) -> int:
        return len(self.kp2d)

    def confidence(self) -> np.ndarray:
        """(T, 17) confidences; 1 where the file has none."""
        if self.kp2d.shape[-1] == 3:
            return self.kp2d[..., 2]
        return np.ones(self.kp2d.shape[:2], dtype=np.float32)


def _check_view(path: str, name: str, v: View) -> None:
    J = H36M17.num_joints
    if v.kp2d.ndim != 3 or v.kp2d.shape[1] != J or v.kp2d.shape[2] not in (2, 3):
        raise UserError(f"{path}: view {name!r}: kp2d has shape {v.kp2d.shape}; "
                        f"expected (frames, {J}, 2) or (frames, {J}, 3)")
    if len(v.kp2d) == 0:
        raise UserError(f"{path}: view {name!r} has no frames")
    if not np.isfinite(v.kp2d).all():
        raise UserError(f"{path}: view {name!r}: kp2d contains NaN or inf")
    if v.kp3d is not None:
        if v.kp3d.shape != (len(v.kp2d), J, 3):
            raise UserError(f"{path}: view {name!r}: kp3d has shape {v.kp3d.shape}; expected "
                            f"({len(v.kp2d)}, {J}, 3) to match kp2d")
        if not np.isfinite(v.kp3d).all():
            raise UserError(f"{path}: view {name!r}: kp3d contains NaN or inf")


def load_views(path: str | Path, names: list[str] | None = None) -> dict[str, View]:
    """Read a views file into {name: View}, checking shapes. `names` selects some views."""
    p = Path(path)
    if not p.is_file():
        raise UserError(f"views file not found: {p}")
    try:
        arrays = np.load(p, allow_pickle=False)
    except (OSError, ValueError, zipfile.BadZipFile) as e:
        raise UserError(f"{p}: not a readable .npz ({e})") from None
    fields: dict[str, dict[str, str]] = {}
    with arrays:
        for key in arrays.files:
            if "/" not in key:
                continue
            name, field = key.rsplit("/", 1)
            if field in FIELDS:
                fields.setdefault(name, {})[field] = key
        if names is not None:
            unknown = [n for n in names if n not in fields]
            if unknown:
                raise UserError(f"{p}: no view named {unknown[0]!r}")
            fields = {n: fields[n] for n in names}
        views = {}
        for name, keys in fields.items():
            if "kp2d" not in keys:
                raise UserError(f"{p}: view {name!r} has no kp2d")
            get = lambda f: arrays[keys[f]] if f in keys else None  # noqa: E731
            size = get("image_size")
            fps = get("fps")
            v = View(
                kp2d=get("kp2d").astype(np.float32, copy=False),
                kp3d=None if "kp3d" not in keys else get("kp3d").astype(np.float32, copy=False),
                fps=None if fps is None else float(fps),
                image_size=None if size is None else (int(size[0]), int(size[1])),
                intrinsics=get("intrinsics"),
                extrinsics=get("extrinsics"),
            )
            _check_view(str(p), name, v)
            views[name] = v
    if not views:
        raise UserError(f"{p}: no views in the file (expected keys like 'NAME/kp2d')")
    return views


def save_views(path: str | Path, views: dict[str, View]) -> None:
    """Write {name: View} as a views file (uncompressed `.npz`, fast to read)."""
    out: dict[str, np.ndarray] = {}
    for name, v in views.items():
        out[f"{name}/kp2d"] = np.asarray(v.kp2d, dtype=np.float32)
        if v.kp3d is not None:
            out[f"{name}/kp3d"] = np.asarray(v.kp3d, dtype=np.float32)
        if v.fps is not None:
            out[f"{name}/fps"] = np.float32(v.fps)
        if v.image_size is not None:
            out[f"{name}/image_size"] = np.asarray(v.image_size, dtype=np.int32)
        if v.intrinsics is not None:
            out[f"{name}/intrinsics"] = np.asarray(v.intrinsics, dtype=np.float32)
        if v.extrinsics is not None:
            out[f"{name}/extrinsics"] = np.asarray(v.extrinsics, dtype=np.float32)
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    with open(p, "wb") as f:  # a file handle keeps numpy from appending '.npz' to the name
        np.savez(f, **out)


def make_views(mocap: Mocap, n_cameras: int = 4, seed: int = 0, noise_px: float = 0.0,
               drop_prob: float = 0.0, fps: float | None = None,
               image_size: tuple[int, int] | None = IMAGE_SIZE, progress: bool = True,
               rig: str = "studio", bodies=None, detector=None) -> dict[str, View]:
    """Project every sequence through a seeded camera rig: views named `SEQ.camK`.

    The 3D is resampled to `fps` first (when given) and, with `bodies` (a BodyConfig),
    performed by a random body per sequence; each view's kp3d is the motion in that camera's
    frame and its kp2d the exact perspective projection, plus i.i.d. noise and drops
    (`noise_px`, `drop_prob`) or the detector model (`detector`, a DetectorConfig) if asked.
    `rig`: "studio" or "wild" (`streamlift.data.cameras`); `image_size` None: the rig's own.
    """
    if noise_px < 0 or not 0 <= drop_prob < 1:
        raise UserError("noise must be >= 0 px and the drop probability in [0, 1)")
    if fps is not None and fps <= 0:
        raise UserError(f"fps must be positive, got {fps}")
    if rig not in RIGS:
        raise UserError(f"unknown camera rig {rig!r}; known: {', '.join(RIGS)}")
    if rig == "studio":
        image_size = image_size or IMAGE_SIZE
    if bodies is not None:
        from streamlift.data.bodies import random_body
    if detector is not None:
        from streamlift.data.detector import detector_views  # imports torch: only when asked
    dst_fps = fps or mocap.fps
    views: dict[str, View] = {}
    with progress_bar(len(mocap.sequences), "views", "seq", progress) as bar:
        for name, seq in mocap.sequences.items():
            motion = resample(seq, mocap.fps, dst_fps)
            if bodies is not None:
                motion = random_body(motion, seeded_rng(seed + 2, name), bodies)
            for k, cam in enumerate(RIGS[rig](motion, n_cameras, seed, name, image_size)):
                view_name = f"{name}.cam{k}"
                kp3d = cam.to_camera(motion)
                kp2d = project(kp3d, cam.K)
                if noise_px > 0 or drop_prob > 0:
                    rng = seeded_rng(seed + 1, view_name)
                    kp2d = detector_noise(kp2d, noise_px, drop_prob, rng)
                if detector is not None:
                    kp2d = detector_views(kp2d, seeded_rng(seed + 3, view_name).integers(2**62),
                                          cam.image_size, detector)
                views[view_name] = View(kp2d, kp3d, float(dst_fps), tuple(cam.image_size),
                                        cam.K.astype(np.float32), cam.extrinsics)
            bar.update()
    return views


def write_views(c, progress: bool = True) -> str:
    """Make and save the views a data.options.ViewsConfig describes; the report line."""
    from streamlift.data.mocap import load_mocap
    from streamlift.paths import SAMPLE_MOCAP

    from streamlift.data.bodies import BodyConfig
    from streamlift.data.detector import DetectorConfig

    mocap = load_mocap(c.mocap or SAMPLE_MOCAP, c.splits, c.split, fps=c.src_fps,
                       source_pelvis=c.source_pelvis)
    views = make_views(mocap, c.cameras, c.seed, c.noise_px, c.drop_prob, c.fps,
                       c.image_size and tuple(c.image_size), progress=progress, rig=c.rig,
                       bodies=BodyConfig() if c.bodies == "random" else None,
                       detector=DetectorConfig() if c.detector else None)
    save_views(c.out, views)
    noise = (f"noise {c.noise_px:g} px, drop {c.drop_prob:g}"
             if c.noise_px or c.drop_prob else "exact 2D")
    if c.detector:
        noise = "detector model" + ("" if noise == "exact 2D" else f" + {noise}")
    noise += f", {c.rig} cameras, {c.bodies} bodies" + (", source pelvis" if c.source_pelvis else "")
    return (f"wrote {c.out}: {len(views)} views ({len(mocap.sequences)} sequences x {c.cameras} "
            f"cameras), {sum(v.frames for v in views.values()):,} frames at "
            f"{c.fps or mocap.fps:g} fps, {noise}, seed {c.seed} "
            f"({Path(c.out).stat().st_size / 2**20:.1f} MB)")


def summary(path: Path) -> str:
    """A views file's shapes checked, and summarised in two lines."""
    views = load_views(path).values()
    frames = [v.frames for v in views]
    fps = sorted({v.fps for v in views if v.fps is not None})
    conf = np.concatenate([v.confidence().ravel() for v in views])
    return (f"{path}: {len(views)} views, {sum(frames):,} frames "
            f"(per view {min(frames)}-{max(frames)}, median {int(np.median(frames))})\n"
            f"  fps: {', '.join(f'{f:g}' for f in fps) or 'not given'}; 3D ground truth in "
            f"{sum(v.kp3d is not None for v in views)}/{len(views)} views; "
            f"joints with confidence 0: {100 * (conf == 0).mean():.2f}%")
