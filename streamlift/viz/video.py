"""Where drawings go: checked output paths, PNG files, MP4 clips and a live window."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np

from streamlift.errors import UserError

EXTENSIONS = (".png", ".mp4")
WINDOW = "streamlift"


def check_output(path: Path, allowed: tuple[str, ...] = EXTENSIONS, what: str = "output") -> Path:
    """Refuse an unsupported extension or an unwritable place before any work is done; `what`
    names the path in the error (a caller may name it as its user knows it)."""
    path = Path(path)
    if path.suffix.lower() not in allowed:
        raise UserError(f"{what} must end in {' or '.join(allowed)}, got {path.name!r}")
    if path.is_dir():
        raise UserError(f"{what} {path} is a directory; name a file")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"cannot write {path}: {e.strerror or e}") from None
    if not os.access(path.parent, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise UserError(f"cannot write {path}: permission denied")
    return path


def write_png(path: Path, img: np.ndarray) -> None:
    import cv2

    try:
        ok = cv2.imwrite(str(path), img)
    except cv2.error as e:
        raise UserError(f"cannot write {path}: {str(e).strip().splitlines()[-1]}") from None
    if not ok:
        raise UserError(f"cannot write {path}")


class ClipWriter:
    """An .mp4 (mp4v) written frame by frame with cv2.VideoWriter."""

    def __init__(self, path: Path, fps: float, shape: tuple[int, int]):
        import cv2

        self.path = Path(path)
        h, w = shape
        self.writer = cv2.VideoWriter(str(self.path), cv2.VideoWriter_fourcc(*"mp4v"),
                                      float(fps), (w, h))
        if not self.writer.isOpened():
            raise UserError(f"cannot write {self.path}: OpenCV could not open an mp4v video "
                            f"writer there")
        self.frames = 0

    def write(self, img: np.ndarray) -> None:
        self.writer.write(img)
        self.frames += 1

    def close(self) -> None:
        self.writer.release()


def check_display() -> None:
    """Raise UserError unless cv2.imshow can open a window here: a display must exist (checked
    before OpenCV's GUI backend is touched, which would abort the process inside Qt) and OpenCV
    must have been built with a GUI (opencv-python-headless has none)."""
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY")
                                                 or os.environ.get("WAYLAND_DISPLAY")):
        raise UserError("a window needs a display and there is none (DISPLAY and WAYLAND_DISPLAY "
                        "are unset, e.g. over ssh or in a container); record a clip instead, "
                        "or use ssh -X")
    import cv2

    try:
        cv2.namedWindow(WINDOW, cv2.WINDOW_AUTOSIZE)
    except cv2.error:
        raise UserError("a window needs OpenCV with GUI support, and this OpenCV has none "
                        "(opencv-python-headless?): pip install opencv-python, or record a "
                        "clip") from None
