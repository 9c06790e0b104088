"""Drawing a live subscription: the skeletons of one stream as they arrive."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from streamlift.viz.draw import FrameInfo, Renderer
from streamlift.viz.video import WINDOW, ClipWriter, check_display, check_output


class LiveRender:
    """Renders the skeletons of one stream as they arrive (`streamlift watch --render/--show`).

    Skeleton messages carry the 3D joints only, not the 2D input, so a live frame has the two
    3D panels. The stream followed is `stream`, or the first one whose skeleton arrives. The
    clip's frame rate is `fps`, or estimated from the first skeletons' capture times.
    """

    def __init__(self, out: Path | None = None, show: bool = False, stream: str | None = None,
                 fps: float | None = None, size: int = 480, second: str = "side"):
        self.out = None if out is None else check_output(out, (".mp4",), "--render")
        if show:
            check_display()
        self.show = show
        self.stream = stream
        self.fps = fps
        self.r = Renderer(size, with_2d=False, second=second)
        self.clip: ClipWriter | None = None
        self.pending: list[tuple[float, np.ndarray]] = []  # frames before the clip's fps is known
        self.frames = 0
        self.quit = False  # the window was closed with q / Esc
        self.missed = 0

    def add(self, skel, missed: int = 0) -> None:
        """Draw one skeleton (a `streamlift.serve.messages.Skeleton`) if it is of the stream
        followed; `missed`: that stream's skeletons the subscriber has missed so far (its
        `Gaps` count), written on the frame."""
        if self.stream is None:
            self.stream = skel.stream
            print(f"watch: rendering stream {self.stream!r}", file=sys.stderr)
        if skel.stream != self.stream:
            return
        self.missed = missed
        info = FrameInfo(title=f"stream {self.stream}",
                         lines=(f"seq {skel.seq}, latency {skel.latency_ms:.0f} ms",
                                f"{skel.mode} window {skel.window}, {skel.height_m:.2f} m tall",
                                f"missed {self.missed}"))
        img = self.r.frame(np.asarray(skel.joints, np.float64) * 1000.0, info=info)
        self.frames += 1
        if self.show:
            import cv2

            cv2.imshow(WINDOW, img)
            key = cv2.waitKey(1) & 0xFF
            if key in (27, ord("q")) or cv2.getWindowProperty(WINDOW, cv2.WND_PROP_VISIBLE) < 1:
                self.quit = True  # q, Esc, or the window closed
        if self.out is not None:
            if self.clip is None:
                self.pending.append((float(skel.t_capture), img))
                if len(self.pending) >= 10 or self.fps is not None:
                    self._open()
            else:
                self.clip.write(img)

    def _open(self) -> None:
        fps = self.fps
        if fps is None:
            t = np.array([p[0] for p in self.pending])
            dt = np.diff(t)
            dt = dt[dt > 0]
            fps = float(np.clip(round(1.0 / np.median(dt)), 1, 240)) if len(dt) else 30.0
            self.fps = fps
        self.clip = ClipWriter(self.out, fps, self.r.shape)
        for _, img in self.pending:
            self.clip.write(img)
        self.pending = []

    def close(self) -> str:
        """Finish the clip; a one-line summary."""
        if self.out is not None and self.clip is None and self.pending:
            self._open()
        if self.clip is not None:
            self.clip.close()
        if self.show:
            import cv2

            cv2.destroyAllWindows()
        if self.out is None:
            return f"shown {self.frames:,} frames"
        if self.clip is None:
            return f"no skeletons to render: {self.out} not written"
        return (f"rendered {self.clip.frames:,} frames of stream {self.stream!r} to {self.out} "
                f"({self.r.shape[1]}x{self.r.shape[0]}, {self.fps:g} fps)")
