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

import argparse
import os
import sys
import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from streamlift.argtypes import positive_float, positive_int
from streamlift.errors import UserError
from streamlift.skeleton import H36M17
from streamlift.virtual_camera import check_intrinsics

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
EXTENSIONS = (".png", ".mp4")
WINDOW = "streamlift"


def bone_colour(child: int) -> tuple[int, int, int]:
    """A bone's colour: the side of its child joint (pelvis->r_hip is a right bone)."""
    return SIDE_COLOUR[H36M17.side(child)]


# ------------------------------------------------------------------------------------ geometry
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


def view_basis(kind: str, up: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(screen right, screen down, viewing direction) in camera coordinates, for an orthographic
    view: 'camera' (the input camera itself), 'side' (from the camera's right, 25 degrees from
    above; the camera is on the left of the panel) or 'top' (from above and behind the camera,
    70 degrees down)."""
    if kind == "camera":
        return np.eye(3)[0], np.eye(3)[1], np.eye(3)[2]
    up = up / np.linalg.norm(up)
    fwd = np.array([0.0, 0.0, 1.0]) - up[2] * up  # the camera's forward, made horizontal
    fwd /= np.linalg.norm(fwd)
    right = np.cross(-up, fwd)  # horizontal right of the camera
    if kind == "side":
        h, elev = -right, np.radians(25.0)
    elif kind == "top":
        h, elev = fwd, np.radians(70.0)
    else:
        raise ValueError(f"unknown view {kind!r}")
    d = np.cos(elev) * h - np.sin(elev) * up
    sr = np.cross(-up, d)
    sr /= np.linalg.norm(sr)
    sd = np.cross(d, sr)
    return sr, sd, d


def _pts(x: np.ndarray) -> np.ndarray:
    """Float pixel coordinates -> int32 points cv2 accepts (far-off ones clamped)."""
    return np.clip(np.round(x), -100000, 100000).astype(np.int32)


# ----------------------------------------------------------------------------------- renderer
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

    def _skeleton(self, img, X, basis, centre, colour=None, thick=None) -> None:
        import cv2

        sr, sd, d = basis
        p = _pts(centre + self.px_per_mm * np.stack([X @ sr, X @ sd], -1))
        depth = X @ d
        bones = sorted(H36M17.bones, key=lambda pc: -(depth[pc[0]] + depth[pc[1]]))  # far first
        t = self.thick if thick is None else thick
        for a, b in bones:
            cv2.line(img, tuple(p[a]), tuple(p[b]), colour or bone_colour(b), t, cv2.LINE_AA)
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
        if gt is not None:
            self._skeleton(img, gt - gt[0], basis, centre, GT, max(2, self.thick - 1))
        self._skeleton(img, pred, basis, centre)
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


# ------------------------------------------------------------------------------------- output
def check_output(path: Path, allowed: tuple[str, ...] = EXTENSIONS, flag: str = "--out") -> Path:
    """Refuse an unsupported extension or an unwritable place before any work is done."""
    path = Path(path)
    if path.suffix.lower() not in allowed:
        raise UserError(f"{flag} must end in {' or '.join(allowed)}, got {path.name!r}")
    if path.is_dir():
        raise UserError(f"{flag} {path} is a directory; name a file")
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


# --------------------------------------------------------------------------------- display
def check_display() -> None:
    """Raise UserError unless cv2.imshow can open a window here: a display must exist (checked
    before OpenCV's GUI backend is touched, which would abort the process inside Qt) and OpenCV
    must have been built with a GUI (opencv-python-headless has none)."""
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY")
                                                 or os.environ.get("WAYLAND_DISPLAY")):
        raise UserError("--show needs a display and there is none (DISPLAY and WAYLAND_DISPLAY "
                        "are unset, e.g. over ssh or in a container); record a clip with "
                        "--render clip.mp4 instead, or use ssh -X")
    import cv2

    try:
        cv2.namedWindow(WINDOW, cv2.WINDOW_AUTOSIZE)
    except cv2.error:
        raise UserError("--show needs OpenCV with GUI support, and this OpenCV has none "
                        "(opencv-python-headless?): pip install opencv-python, or record a "
                        "clip with --render clip.mp4") from None


# ------------------------------------------------------------------------------- offline lift
def sample_views():
    """The shipped CMU sample as views, exactly as `streamlift data views` makes them (4 seeded
    studio cameras per clip, exact 2D, seed 0): {name: View} with names like salsa_01.cam0."""
    from streamlift.data import load_mocap, make_views
    from streamlift.paths import SAMPLE_MOCAP

    return make_views(load_mocap(SAMPLE_MOCAP), 4, 0, progress=False)


def _view_names(path: Path) -> list[str]:
    from streamlift.data import load_views

    try:
        with np.load(path, allow_pickle=False) as z:
            return [k.rsplit("/", 1)[0] for k in z.files if k.endswith("/kp2d")]
    except Exception:  # missing or unreadable: let load_views say so in its words
        load_views(path)
        raise


def _unknown_view(name: str, names: list[str], where: str) -> UserError:
    few = ", ".join(names[:6]) + (f", ... ({len(names)} views)" if len(names) > 6 else "")
    return UserError(f"{where} has no view {name!r}; available: {few}")


@dataclass
class RenderResult:
    out: Path
    view: str
    frames: list[int]
    shape: tuple[int, int]  # (height, width)
    n_mpjpe: float | None  # mean over the rendered frames, mm
    pa_mpjpe: float | None


def render_view(model, view, name: str, out: Path, frames: list[int], device="cpu",
                fps: float | None = None, size: int = 480, second: str = "side",
                height_mm: float = 1700.0, progress: bool = True) -> RenderResult:
    """Lift `frames` of one View with `model` and write them as a .png (one frame) or .mp4."""
    import torch

    from streamlift.metrics import n_mpjpe, pa_mpjpe
    from streamlift.model import metric_scale, skeleton_height
    from streamlift.progress import Progress
    from streamlift.windows import lift_sequence

    out = Path(out)
    fr = np.asarray(frames, np.int64)
    # a view with intrinsics is lifted through the virtual camera, as `streamlift eval` lifts it
    pred = torch.from_numpy(lift_sequence(model, view.kp2d, device=device, frames=fr,
                                          K=view.intrinsics)).double()
    errs = None
    if view.kp3d is not None:
        gt_all = torch.from_numpy(view.kp3d).double()
        height_mm = float(skeleton_height(gt_all).median())  # as `streamlift eval` scales
        gt = gt_all[fr]
        errs = (n_mpjpe(pred, gt, reduce=False).numpy(), pa_mpjpe(pred, gt, reduce=False).numpy())
        gt = gt.numpy()
    pred_mm = metric_scale(pred, height_mm).numpy()
    bounds = None
    if view.image_size is None:
        seen = view.confidence() > 0
        xy = view.kp2d[..., :2][seen]
        lo, hi = xy.min(0), xy.max(0)
        pad = 0.1 * (hi - lo).max() + 1
        bounds = (lo[0] - pad, lo[1] - pad, hi[0] + pad, hi[1] + pad)
    r = Renderer(size, True, second, view.image_size, bounds, camera_up(view.extrinsics))
    T = view.frames

    def draw(i: int) -> np.ndarray:
        k = int(fr[i])
        info = FrameInfo(title=name, lines=(f"frame {k} of 0-{T - 1}"
                                            + (f" at {view.fps:g} fps" if view.fps else ""),
                                            f"{model.cfg.mode} lifter, window {model.cfg.window}"))
        if errs is not None:
            info.errors = {"N-MPJPE": float(errs[0][i]), "PA-MPJPE": float(errs[1][i])}
        return r.frame(pred_mm[i], view.kp2d[k], None if errs is None else gt[i], info)

    if out.suffix.lower() == ".png":
        write_png(out, draw(0))
    else:
        clip = ClipWriter(out, fps or view.fps or 30.0, r.shape)
        try:
            with Progress(len(fr), "render", "frames", enabled=progress) as bar:
                for i in range(len(fr)):
                    clip.write(draw(i))
                    bar.update()
        finally:
            clip.close()
    return RenderResult(out, name, [int(k) for k in fr], r.shape,
                        None if errs is None else float(errs[0].mean()),
                        None if errs is None else float(errs[1].mean()))


# --------------------------------------------------------------------------------- live
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
        self._last_out: int | None = None
        self.missed = 0

    def add(self, msg: dict) -> None:
        if msg.get("type") == "end" and msg.get("stream") == self.stream:
            self._last_out = None  # the id may be used again, counting out_seq from 0
        if msg.get("type") != "skeleton":
            return
        if self.stream is None:
            self.stream = msg["stream"]
            print(f"watch: rendering stream {self.stream!r}", file=sys.stderr)
        if msg["stream"] != self.stream:
            return
        if self._last_out is not None and msg["out_seq"] > self._last_out + 1:
            self.missed += msg["out_seq"] - self._last_out - 1
        self._last_out = msg["out_seq"]
        lat = 1e3 * (msg["t_publish"] - msg["t_capture"])
        info = FrameInfo(title=f"stream {self.stream}",
                         lines=(f"seq {msg['seq']}, latency {lat:.0f} ms",
                                f"{msg.get('mode', '?')} window {msg.get('window', '?')}, "
                                f"{msg.get('height_m', 0):.2f} m tall",
                                f"missed {self.missed}"))
        img = self.r.frame(np.asarray(msg["joints"], np.float64) * 1000.0, info=info)
        self.frames += 1
        if self.show:
            import cv2

            cv2.imshow(WINDOW, img)
            key = cv2.waitKey(1) & 0xFF
            if key in (27, ord("q")) or cv2.getWindowProperty(WINDOW, cv2.WND_PROP_VISIBLE) < 1:
                self.quit = True  # q, Esc, or the window closed
        if self.out is not None:
            if self.clip is None:
                self.pending.append((float(msg["t_capture"]), img))
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


# ------------------------------------------------------------------------------------ command
def add_command(sub: argparse._SubParsersAction) -> None:
    """Register `streamlift render`."""
    from streamlift.model import MODES

    r = sub.add_parser(
        "render", help="draw a view's 2D input and lifted 3D skeleton to a .png or .mp4",
        description="Lift one view of a views file with the lifter (each frame the target of "
                    "its own window, exactly as `streamlift eval` and a live stream lift it) "
                    "and draw it with OpenCV: the 2D input on the left, the 3D skeleton from "
                    "the camera and from the side (or top, over a ground grid) on the right. "
                    "Bones: subject's left blue, right red, midline grey. When the view has "
                    "3D ground truth it is drawn in green, root-aligned to the prediction, and "
                    "the frame's N-MPJPE and PA-MPJPE (mm, as eval computes them) are printed "
                    "in the top-right corner. .png writes one frame; .mp4 a clip (mp4v). "
                    "docs/rendering.md has examples.")
    r.add_argument("--views", type=Path, default=None, metavar="FILE.npz",
                   help="views .npz (docs/views-format.md); default: the shipped CMU sample, "
                        "made into views as `streamlift data views` makes them (5 clips x 4 "
                        "cameras, names like salsa_01.cam0)")
    r.add_argument("--view", default=None, metavar="NAME",
                   help="which view to draw (default: the first in the file; for the shipped "
                        "sample salsa_01.cam0)")
    r.add_argument("--out", type=Path, required=True, metavar="FILE",
                   help="output: FILE.png (one frame) or FILE.mp4 (a clip)")
    r.add_argument("--frame", type=int, default=None, metavar="K",
                   help="PNG: the frame to draw (default: the middle one); MP4: the first frame "
                        "of the clip (default 0)")
    r.add_argument("--frames", type=positive_int, default=None, metavar="N",
                   help="MP4: frames in the clip (default: to the end of the view)")
    r.add_argument("--fps", type=positive_float, default=None,
                   help="MP4 frame rate (default: the view's, else 30)")
    r.add_argument("--weights", type=Path, default=None, metavar="W.pt",
                   help="lifter checkpoint (default: the lifter shipped in the package)")
    r.add_argument("--mode", choices=MODES, default=None,
                   help="check that the checkpoint was trained for this mode (the shipped "
                        "lifter is causal)")
    r.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto",
                   help="where the lifter runs; auto (the default) picks CUDA when there is one")
    r.add_argument("--no-intrinsics", action="store_true",
                   help="ignore the view's camera matrix: lift as if the subject stood on the "
                        "optical axis (by default a view with intrinsics is lifted through a "
                        "virtual camera looking at the subject, as `eval` lifts it)")
    r.add_argument("--height-m", type=positive_float, default=1.70,
                   help="height the skeleton is drawn at when the view has no ground truth "
                        "(with ground truth: its median height, as eval uses; default "
                        "%(default)s)")
    r.add_argument("--second-view", choices=SECOND_VIEWS, default="side",
                   help="the right-most panel: the side view (from the camera's right) or a "
                        "top view (from above and behind the camera); default %(default)s")
    r.add_argument("--size", type=positive_int, default=480, metavar="PX",
                   help="panel height and width in pixels; the image is 3 panels wide "
                        "(default %(default)s: 1440x480)")
    r.add_argument("--threads", type=positive_int, default=None,
                   help="torch CPU threads (default: torch's choice)")
    r.add_argument("--quiet", action="store_true", help="no progress bar for clips")
    r.set_defaults(func=_cmd_render)


def _cmd_render(a: argparse.Namespace) -> int:
    from streamlift.device import pick_device
    from streamlift.model import load_lifter

    out = check_output(a.out)
    if a.size < 64:
        raise UserError(f"--size {a.size} is too small to draw on; use at least 64")
    png = out.suffix.lower() == ".png"
    if png and a.frames is not None:
        raise UserError("--frames is for .mp4 clips; a .png is one frame (pick it with --frame)")
    if a.views is None:
        views = sample_views()
        where = "the shipped sample"
        name = a.view or "salsa_01.cam0"
        if name not in views:
            raise _unknown_view(name, list(views), where)
        view = views[name]
    else:
        from streamlift.data import load_views

        names = _view_names(a.views)
        where = str(a.views)
        if not names:
            load_views(a.views)  # its own error: no views in the file
        name = a.view or names[0]
        if name not in names:
            raise _unknown_view(name, names, where)
        view = load_views(a.views, [name])[name]
    if a.no_intrinsics:
        view = dataclasses.replace(view, intrinsics=None)
    elif view.intrinsics is not None:
        try:
            check_intrinsics(view.intrinsics, f"{name}'s intrinsics")
        except ValueError as e:
            raise UserError(f"{where}: {e} (--no-intrinsics renders without them)") from None
    T = view.frames
    k = a.frame if a.frame is not None else (T // 2 if png else 0)
    if not 0 <= k < T:
        raise UserError(f"--frame {k} is out of range: {name} has {T} frames (0-{T - 1})")
    frames = [k] if png else list(range(k, min(T, k + (a.frames or T))))
    if a.threads:
        import torch
        torch.set_num_threads(a.threads)
    device = pick_device(a.device)
    model, weights = load_lifter(a.weights, device, mode=a.mode)
    res = render_view(model, view, name, out, frames, device, a.fps, a.size, a.second_view,
                      1000.0 * a.height_m, progress=not a.quiet)
    what = f"frame {frames[0]}" if png else f"frames {frames[0]}-{frames[-1]}"
    err = ("" if res.n_mpjpe is None else
           f"; N-MPJPE {res.n_mpjpe:.1f} mm, PA-MPJPE {res.pa_mpjpe:.1f} mm"
           + ("" if png else " (mean over the clip)"))
    print(f"wrote {out} ({res.shape[1]}x{res.shape[0]}): {what} of {name} from {where}, "
          f"{model.cfg.mode} lifter {weights.name}{err}")
    return 0
