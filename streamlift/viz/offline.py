"""Drawing a view of a views file: lift it as `eval` does, then draw each frame."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from streamlift.smoothing import smooth_config, smooth_views
from streamlift.viz.draw import FrameInfo, Renderer, camera_up
from streamlift.viz.video import ClipWriter, write_png


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
                height_mm: float = 1700.0, progress: bool = True,
                smooth: str = "gated") -> RenderResult:
    """Lift `frames` of one View with `model` and write them as a .png (one frame) or .mp4,
    the 2D smoothed first as `serve --smooth` would (a mode of `streamlift.smoothing`)."""
    import torch

    from streamlift.metrics import n_mpjpe, pa_mpjpe
    from streamlift.lifter.model import metric_scale, skeleton_height
    from streamlift.progress import bar as progress_bar
    from streamlift.lifter.infer import lift_sequence

    out = Path(out)
    fr = np.asarray(frames, np.int64)
    # a view with intrinsics is lifted through the virtual camera, as `streamlift eval` lifts it
    kp2d = smooth_views({name: view}, smooth_config(smooth))[name]
    pred = torch.from_numpy(lift_sequence(model, kp2d, device=device, frames=fr,
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
            with progress_bar(len(fr), "render", "frames", progress) as bar:
                for i in range(len(fr)):
                    clip.write(draw(i))
                    bar.update()
        finally:
            clip.close()
    return RenderResult(out, name, [int(k) for k in fr], r.shape,
                        None if errs is None else float(errs[0].mean()),
                        None if errs is None else float(errs[1].mean()))


def pick_view(views_path: Path | None, name: str | None, intrinsics: bool = True):
    """(name, view, where it is from) of view `name` (default: the first; salsa_01.cam0 for the
    shipped sample) of a views file, else of the shipped sample; without its camera matrix when
    not `intrinsics`."""
    import dataclasses

    from streamlift.data import load_views
    from streamlift.data.sample import sample_views
    from streamlift.errors import UserError

    if views_path is None:
        views, where = sample_views(), "the shipped sample"
        names = list(views)
        name = name or "salsa_01.cam0"
    else:
        where = str(views_path)
        try:
            with np.load(views_path, allow_pickle=False) as z:
                names = [k.rsplit("/", 1)[0] for k in z.files if k.endswith("/kp2d")]
        except Exception:  # missing or unreadable: let load_views say so in its words
            load_views(views_path)
            raise
        if not names:
            load_views(views_path)  # its own error: no views in the file
        name = name or names[0]
    if name not in names:
        few = ", ".join(names[:6]) + (f", ... ({len(names)} views)" if len(names) > 6 else "")
        raise UserError(f"{where} has no view {name!r}; available: {few}")
    view = views[name] if views_path is None else load_views(views_path, [name])[name]
    return name, view if intrinsics else dataclasses.replace(view, intrinsics=None), where


def report(res: RenderResult, where: str, lifter: str) -> str:
    """The line `streamlift render` prints of what it wrote."""
    png, frames = res.out.suffix.lower() == ".png", res.frames
    what = f"frame {frames[0]}" if png else f"frames {frames[0]}-{frames[-1]}"
    err = ("" if res.n_mpjpe is None else
           f"; N-MPJPE {res.n_mpjpe:.1f} mm, PA-MPJPE {res.pa_mpjpe:.1f} mm"
           + ("" if png else " (mean over the clip)"))
    return (f"wrote {res.out} ({res.shape[1]}x{res.shape[0]}): {what} of {res.view} from "
            f"{where}, {lifter}{err}")


def frames_to_draw(name: str, n: int, png: bool, first: int | None, count: int | None,
                   what: str = "first frame") -> list[int]:
    """The frames of a view of `n` frames to draw: for a .png one (`first`, default the middle
    one), for a clip `count` (default: all) from `first` (default 0). `what` names `first` in
    the error."""
    from streamlift.errors import UserError

    k = first if first is not None else (n // 2 if png else 0)
    if not 0 <= k < n:
        raise UserError(f"{what} {k} is out of range: {name} has {n} frames (0-{n - 1})")
    return [k] if png else list(range(k, min(n, k + (count or n))))
