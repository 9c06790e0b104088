"""The settings of `streamlift data views` and `data import-h36m` (their flags are made from
these fields, streamlift.cli.common.add_config); nothing heavy is imported here."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class ViewsConfig:
    """Project 3D motion capture through a seeded rig of cameras (perspective pinhole; studio
    cameras 3-6 m away, 1-2 m high, f ~1,150 px for 1,000 px, or --rig wild) and write a views
    file: per view the 2D pixels and the 3D pose in that camera's frame. Views are named
    SEQUENCE.camK. The pelvis is put at the hip centre (streamlift's definition of it); --bodies
    random and --detector make the data vary as users' does."""
    mocap: Path | None = field(default=None, metadata={
        "type": "path", "help": "mocap .npz: one (frames, 17, 3) mm array per sequence, z up "
        "(default: the CMU test-split sample shipped in the package)"})
    splits: Path | None = field(default=None, metadata={
        "type": "path", "help": "splits.json naming the train/val/test sequences of each mocap "
        "file"})
    split: str = field(default="all", metadata={
        "choices": ["train", "val", "test", "all"],
        "help": "which sequences to use; anything but 'all' needs --splits"})
    out: Path = field(default=None, metadata={
        "type": "path", "required": True, "help": "views .npz to write"})
    cameras: int = field(default=4, metadata={"type": "positive_int",
                                              "help": "cameras per sequence"})
    seed: int = field(default=0, metadata={
        "type": "int", "help": "rig and noise seed; a view's camera depends only on it and the "
        "name"})
    noise_px: float = field(default=0.0, metadata={
        "type": "non_negative", "help": "std. dev. of i.i.d. Gaussian 2D noise, pixels"})
    drop_prob: float = field(default=0.0, metadata={
        "type": "probability",
        "help": "probability that a joint is dropped (confidence 0), per joint and frame"})
    fps: float | None = field(default=None, metadata={
        "type": "positive_float",
        "help": "resample the motion to this frame rate (default: the source's)"})
    src_fps: float | None = field(default=None, metadata={
        "type": "positive_float",
        "help": "source frame rate, when no .json beside the mocap file names it"})
    image_size: tuple[int, int] | None = field(default=None, metadata={
        "type": "positive_int", "nargs": 2, "metavar": ("W", "H"),
        "help": "image width and height, pixels (default: 1000 x 1000 for the studio rig, a "
        "common phone/webcam/camera size per camera for the wild one)"})
    rig: str = field(default="studio", metadata={
        "choices": ["studio", "wild"],
        "help": "studio: 3-6 m, 1-2 m high, f ~1,150 px; wild: like users' cameras - 1.5-10 m, "
        "pitch -10 to +50 deg, roll, 35-90 deg field of view, subject anywhere in the image"})
    bodies: str = field(default="source", metadata={
        "choices": ["source", "random"],
        "help": "source: the mocap's own skeletons; random: per sequence a random person's "
        "bone lengths (adults' spread, some children and tall adults; left = right)"})
    detector: bool = field(default=False, metadata={
        "help": "detector-like 2D error (streamlift.data.detector): size-relative per-joint "
        "noise, slow error, whole pixels, left/right swaps, missed joints (confidence 0, also "
        "outside the image), confidences that fall with the error"})
    source_pelvis: bool = field(default=False, metadata={
        "help": "keep the mocap's own pelvis joint (by default it is put at the hip centre, "
        "streamlift's definition of it)"})


@dataclass
class ImportConfig:
    """Convert VideoPose3D's data_3d_h36m.npz into a mocap file (with its .json and a
    .splits.json: train S1 S5 S6 S7, val S8, test S9 S11) for `data views` and `train-prior`,
    and/or a data_2d_h36m_<detector>.npz into a views file of real detector 2D (no 3D: the file
    has no cameras) for `train`. These files hold pickled dicts: pass --allow-pickle only for
    files you trust."""
    in3d: Path | None = field(default=None, metadata={
        "flag": "--3d", "type": "path", "metavar": "DATA_3D.npz",
        "help": "VideoPose3D's data_3d_h36m.npz (positions_3d, metres)"})
    out: Path | None = field(default=None, metadata={
        "type": "path",
        "help": "mocap .npz to write from --3d (its .json and .splits.json go beside it)"})
    in2d: Path | None = field(default=None, metadata={
        "flag": "--2d", "type": "path", "metavar": "DATA_2D.npz",
        "help": "VideoPose3D's data_2d_h36m_<detector>.npz (positions_2d, pixels)"})
    out_views: Path | None = field(default=None, metadata={
        "type": "path", "help": "views .npz to write from --2d"})
    subjects: list[str] | None = field(default=None, metadata={
        "nargs": "+", "metavar": "S",
        "help": "only these subjects from --2d (e.g. S1 S5 S6 S7 to train)"})
    allow_pickle: bool = field(default=False, metadata={
        "help": "allow numpy to unpickle the files (needed for this format; it can run code "
                "from the file)"})
