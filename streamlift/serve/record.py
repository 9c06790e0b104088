"""`serve --record-2d`: the 2D a server receives, saved as a views file for `streamlift adapt`.

One view per stream (named by its id): the frames the server accepted, in H36M-17 order with
their confidences, the frame rate from the producer's capture times, and the camera matrix the
stream sent (its first). A stream that restarts after an `end` continues its view. Recording
stops at `max_frames` in all, so a long-running server cannot fill the memory; the file is
written when the server closes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from streamlift.serve.protocol import Frame


class Recorder2D:
    def __init__(self, path: Path, max_frames: int, log):
        self.path, self.max_frames, self.log = Path(path), max_frames, log
        self.kp: dict[str, list[np.ndarray]] = {}  # stream -> [(17, 3)] (u, v, confidence)
        self.t: dict[str, list[float]] = {}
        self.K: dict[str, np.ndarray] = {}
        self.frames = 0

    def add(self, f: Frame) -> None:
        """Keep one accepted frame (called by the ingest thread only)."""
        if self.frames >= self.max_frames:
            if self.frames == self.max_frames:
                self.log(f"record-2d: {self.max_frames:,} frames recorded; recording stops")
                self.frames += 1
            return
        self.kp.setdefault(f.stream, []).append(np.c_[f.kp, f.conf])
        self.t.setdefault(f.stream, []).append(f.t_capture)
        if f.K is not None:
            self.K.setdefault(f.stream, np.asarray(f.K, np.float32))
        self.frames += 1

    def save(self) -> str | None:
        """Write the views file (None when nothing was received); the report line."""
        from streamlift.data.views import View, save_views

        if not self.kp:
            return None
        views = {}
        for s, kp in self.kp.items():
            dt = np.diff(self.t[s])
            fps = float(1 / np.median(dt)) if len(dt) and np.median(dt) > 0 else None
            views[s] = View(np.stack(kp).astype(np.float32), None, fps, None, self.K.get(s))
        save_views(self.path, views)
        n = sum(len(v) for v in self.kp.values())
        return f"record-2d: wrote {self.path}: {len(views)} streams, {n:,} frames"
