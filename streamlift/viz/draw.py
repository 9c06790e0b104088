"""Draw skeletons with OpenCV: `streamlift render` (a views file -> .png / .mp4) and the live
renderer behind `streamlift watch --render/--show`.

A rendered frame is a row of square panels (cv2 drawing only):

1. **2D input** (offline only): the view's keypoints over a dark canvas that stands for the
   camera image (scaled down); joints with a low confidence are hollow circles, undetected
   joints (confidence 0) are left out.
2. **3D, camera view**: the lifted skeleton seen from the input camera (orthographic).
3. **3D, side view** (or a top view): the same skeleton seen from the camera's right, 25
   degrees from above (or from above and behind the camera), over a ground grid (50 cm
   squares) through the lowest joint.

Bones are coloured by the side of the body they belong to, the same in every panel: the
subject's **left blue**, **right red**, the midline light grey. Ground truth, when the views
file has it, is drawn in green under the prediction, root-aligned to it (same pelvis; the
prediction is scaled to the ground truth's median height, as `streamlift eval` scales it),
and the frame's N-MPJPE and PA-MPJPE (mm, computed as `streamlift eval` does) are written in a
corner.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from streamlift.geometry import view_basis
from streamlift.skeleton import H36M17

# Colours, BGR (OpenCV's order).
LEFT = (235, 140, 30)  # blue: the subject's left
RIGHT = (40, 50, 230)  # red: the subject's right
MID = (215, 215, 215)  # light grey: the midline (pelvis, spine, neck, head)
GT = (90, 200, 90)  # green: ground truth
BG = (28, 28, 28)  # panel background
IMAGE_BG = (48, 48, 48)  # the camera image's area in the 2D panel
GRID = (75, 75, 75)
TEXT = (235, 235, 235)
DIM = (150, 150, 150)
SIDE_COLOUR = {"left": LEFT, "right": RIGHT, "mid": MID}

LOW_CONFIDENCE = 0.5  # joints below it are drawn hollow; confidence 0 is not drawn at all
SECOND_VIEWS = ("side", "top")


def bone_colour(child: int) -> tuple[int, int, int]:
    """A bone's colour: the side of its child joint (pelvis->r_hip is a right bone)."""
    return SIDE_COLOUR[H36M17.side(child)]


def camera_up(extrinsics: np.ndarray | None) -> np.ndarray:
    """The world's up direction in the camera frame (x right, y down, z forward).

    From the extrinsics `[R | t]` of a z-up world (what `streamlift data views` writes): the
    third column of R. Without extrinsics, or when they imply a camera tilted more than 60
    degrees from upright (a world that is not z-up), the camera's own up, -y.
    """
    fallback = np.array([0.0, -1.0, 0.0])
    if extrinsics is None:
        return fallback
    up = np.asarray(extrinsics, np.float64)[:3, 2]
    n = np.linalg.norm(up)
    if not np.isfinite(n) or n < 1e-6:
        return fallback
    up = up / n
    return up if up @ fallback > 0.5 else fallback


def _pts(x: np.ndarray) -> np.ndarray:
    """Float pixel coordinates -> int32 points cv2 accepts (far-off ones clamped)."""
    return np.clip(np.round(x), -100000, 100000).astype(np.int32)


@dataclass
class FrameInfo:
    """What a frame says in words: a title per panel row and a few corner lines."""

    title: str = ""  # top-left of the first panel, e.g. the view or stream name
    lines: tuple[str, ...] = ()  # under the title (frame index, latency, ...)
    errors: dict[str, float] | None = None  # {'N-MPJPE': mm, 'PA-MPJPE': mm}, top-right


class Renderer:
    """Composes one image per frame from a 3D pose (mm, camera frame) and optionally its 2D input
    and ground truth. Panels are `size` x `size` pixels; the image is `n_panels * size` wide.

    image_size: the camera image (width, height) the 2D panel stands for; None -> `bounds_2d`.
    bounds_2d: (u_min, v_min, u_max, v_max) pixels to show when there is no image size.
    up: the world's up direction in the camera frame (see camera_up).
    """

    def __init__(self, size: int = 480, with_2d: bool = True, second: str = "side",
                 image_size: tuple[int, int] | None = None,
                 bounds_2d: tuple[float, float, float, float] | None = None,
                 up: np.ndarray | None = None, reach_mm: float = 1100.0):
        if second not in SECOND_VIEWS:
            raise ValueError(f"second view must be one of {SECOND_VIEWS}, got {second!r}")
        self.size = int(size) // 2 * 2  # even: video codecs want even frame sizes
        self.with_2d = with_2d
        self.second = second
        self.up = camera_up(None) if up is None else np.asarray(up, np.float64)
        if image_size is not None:
            bounds_2d = (0.0, 0.0, float(image_size[0]), float(image_size[1]))
        self.bounds_2d = bounds_2d
        self.image_size = image_size
        # pixels per mm: the pelvis sits at the panel centre and +-reach_mm fits the panel
        self.px_per_mm = 0.46 * self.size / reach_mm
        self.views = [("camera view", view_basis("camera", self.up)),
                      (f"{second} view", view_basis(second, self.up))]
        s = self.size / 480.0
        self.font = 0.45 * s
        self.thick = max(2, round(3 * s))
        self.radius = max(2, round(4 * s))

    @property
    def shape(self) -> tuple[int, int]:
        """(height, width) of a rendered frame."""
        return self.size, self.size * (len(self.views) + int(self.with_2d))

    # -- text
    def _text(self, img, s: str, org, colour=TEXT, scale: float = 1.0, right: bool = False):
        import cv2

        fs = self.font * scale
        if right:
            (w, _), _ = cv2.getTextSize(s, cv2.FONT_HERSHEY_SIMPLEX, fs, 1)
            org = (org[0] - w, org[1])
        cv2.putText(img, s, (int(org[0]), int(org[1])), cv2.FONT_HERSHEY_SIMPLEX, fs, colour, 1,
                    cv2.LINE_AA)

    def _line_h(self) -> int:
        return int(22 * self.font / 0.45)

    # -- 2D panel
    def panel_2d(self, kp2d: np.ndarray | None) -> np.ndarray:
        import cv2

        S = self.size
        img = np.full((S, S, 3), BG, np.uint8)
        if self.bounds_2d is None and kp2d is not None:
            seen = kp2d[:, 2] > 0 if kp2d.shape[1] == 3 else np.ones(len(kp2d), bool)
            lo, hi = kp2d[seen, :2].min(0), kp2d[seen, :2].max(0)
            pad = 0.15 * (hi - lo).max() + 1
            bounds = (lo[0] - pad, lo[1] - pad, hi[0] + pad, hi[1] + pad)
        else:
            bounds = self.bounds_2d or (0.0, 0.0, 1.0, 1.0)
        u0, v0, u1, v1 = bounds
        margin = 0.06 * S
        scale = min((S - 2 * margin) / max(u1 - u0, 1e-6), (S - 2 * margin) / max(v1 - v0, 1e-6))
        off = np.array([(S - scale * (u1 - u0)) / 2 - scale * u0,
                        (S - scale * (v1 - v0)) / 2 - scale * v0])
        tl, br = _pts(off + scale * np.array([u0, v0])), _pts(off + scale * np.array([u1, v1]))
        cv2.rectangle(img, tuple(int(x) for x in tl), tuple(int(x) for x in br), IMAGE_BG, -1)
        if kp2d is not None:
            xy = off + scale * kp2d[:, :2]
            conf = kp2d[:, 2] if kp2d.shape[1] == 3 else np.ones(len(kp2d), np.float32)
            p = _pts(xy)
            for a, b in H36M17.bones:
                if conf[a] <= 0 or conf[b] <= 0:
                    continue
                low = min(conf[a], conf[b]) < LOW_CONFIDENCE
                cv2.line(img, tuple(p[a]), tuple(p[b]), bone_colour(b),
                         1 if low else self.thick, cv2.LINE_AA)
            for j in range(len(p)):
                if conf[j] <= 0:
                    continue
                col = SIDE_COLOUR[H36M17.side(j)]
                if conf[j] < LOW_CONFIDENCE:
                    cv2.circle(img, tuple(p[j]), self.radius + 1, col, 1, cv2.LINE_AA)
                else:
                    cv2.circle(img, tuple(p[j]), self.radius, col, -1, cv2.LINE_AA)
            n_low = int(((conf > 0) & (conf < LOW_CONFIDENCE)).sum())
            n_off = int((conf <= 0).sum())
            if n_low or n_off:
                self._text(img, f"hollow: confidence < {LOW_CONFIDENCE:g} ({n_low}); "
                                f"not detected: {n_off}", (8, S - 8 - self._line_h()), DIM, 0.9)
        self._text(img, "2D input" + (f" ({self.image_size[0]}x{self.image_size[1]} px)"
                                      if self.image_size else ""), (8, 8 + self._line_h()))
        return img

    # -- 3D panels
    def _grid(self, img, basis, floor_mm: float, centre) -> None:
        import cv2

        sr, sd, _ = basis
        up = self.up
        fwd = np.array([0.0, 0.0, 1.0]) - up[2] * up
        fwd /= np.linalg.norm(fwd)
        right = np.cross(-up, fwd)
        ticks = np.arange(-1500.0, 1501.0, 500.0)
        base = floor_mm * up
        for a in ticks:
            for u, v in ((right, fwd), (fwd, right)):
                P = base + a * u + np.outer([ticks[0], ticks[-1]], v)
                q = _pts(centre + self.px_per_mm * np.stack([P @ sr, P @ sd], -1))
                cv2.line(img, tuple(q[0]), tuple(q[1]), GRID, 1, cv2.LINE_AA)

    def _skeleton(self, img, X, basis, centre, colour=None, thick=None, crisp=False) -> None:
        import cv2

        sr, sd, d = basis
        p = _pts(centre + self.px_per_mm * np.stack([X @ sr, X @ sd], -1))
        depth = X @ d
        bones = sorted(H36M17.bones, key=lambda pc: -(depth[pc[0]] + depth[pc[1]]))  # far first
        t = self.thick if thick is None else thick
        for a, b in bones:
            cv2.line(img, tuple(p[a]), tuple(p[b]), colour or bone_colour(b), t,
                     cv2.LINE_8 if crisp else cv2.LINE_AA)
        if colour is None:
            for j in np.argsort(-depth):
                cv2.circle(img, tuple(p[j]), self.radius, SIDE_COLOUR[H36M17.side(j)], -1,
                           cv2.LINE_AA)

    def panel_3d(self, k: int, pred: np.ndarray, gt: np.ndarray | None) -> np.ndarray:
        S = self.size
        img = np.full((S, S, 3), BG, np.uint8)
        name, basis = self.views[k]
        pred = pred - pred[0]
        pts = pred if gt is None else np.concatenate([pred, gt - gt[0]])
        floor = float((pts @ self.up).min())  # the lowest joint stands on the floor
        centre = np.array([S / 2, S / 2])
        if k > 0:  # the camera view sees the floor nearly edge-on: a grid there is clutter
            self._grid(img, basis, floor, centre)
        self._skeleton(img, pred, basis, centre)
        if gt is not None:  # thin and crisp, on top: a close estimate would hide it underneath
            self._skeleton(img, gt - gt[0], basis, centre, GT, max(1, self.thick // 3), True)
        label = f"3D: {name}"
        if k == 1:
            label += {"side": " (camera on the left)", "top": " (camera at the bottom)"}[
                self.second]
        self._text(img, label, (8, 8 + self._line_h()))
        return img

    def frame(self, pred_mm: np.ndarray, kp2d: np.ndarray | None = None,
              gt_mm: np.ndarray | None = None, info: FrameInfo | None = None) -> np.ndarray:
        """One BGR image (H, W, 3) uint8: [2D |] camera view | side/top view."""
        import cv2

        info = info or FrameInfo()
        panels = []
        if self.with_2d:
            panels.append(self.panel_2d(kp2d))
        panels += [self.panel_3d(k, np.asarray(pred_mm, np.float64),
                                 None if gt_mm is None else np.asarray(gt_mm, np.float64))
                   for k in range(len(self.views))]
        img = np.concatenate(panels, axis=1)
        S, H = self.size, self._line_h()
        for i in range(1, len(panels)):
            cv2.line(img, (i * S, 0), (i * S, S - 1), (90, 90, 90), 1)
        # title and info lines: top-left of the first 3D panel (the 2D panel has its own label)
        x0 = S * int(self.with_2d) + 8
        y = 8 + 2 * H
        for s in ((info.title,) if info.title else ()) + tuple(info.lines):
            self._text(img, s, (x0, y), DIM, 0.9)
            y += H
        # legend: bottom-left of the first 3D panel
        y = S - 10
        for s, c in ((("ground truth (root-aligned)", GT),) if gt_mm is not None else ()) + \
                (("midline", MID), ("subject's right", RIGHT), ("subject's left", LEFT)):
            self._text(img, s, (x0, y), c, 0.9)
            y -= H
        if info.errors:
            y = 8 + H
            self._text(img, "error this frame:", (img.shape[1] - 8, y), TEXT, 0.9, right=True)
            for k, v in info.errors.items():
                y += H
                self._text(img, f"{k} {v:.0f} mm", (img.shape[1] - 8, y), TEXT, 0.9, right=True)
        return img


