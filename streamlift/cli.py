"""The `streamlift` command: one parser, a subcommand per job, help on every flag."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from streamlift import __version__
from streamlift.errors import UserError
from streamlift.paths import SAMPLE_MOCAP


def _positive_int(s: str) -> int:
    v = int(s)
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {v}")
    return v


def _non_negative(s: str) -> float:
    v = float(s)
    if not v >= 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {s}")
    return v


def _probability(s: str) -> float:
    v = float(s)
    if not 0 <= v < 1:
        raise argparse.ArgumentTypeError(f"must be in [0, 1), got {s}")
    return v


def _positive_float(s: str) -> float:
    v = float(s)
    if not v > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {s}")
    return v


# ---------------------------------------------------------------------------------- data views
def _add_data(sub: argparse._SubParsersAction) -> None:
    data = sub.add_parser("data", help="make and inspect 2D views files from 3D motion capture",
                          description="Make and inspect views files (the train/eval format).")
    dsub = data.add_subparsers(dest="data_cmd", metavar="{views,info}", required=True)

    v = dsub.add_parser(
        "views", help="project 3D mocap through seeded studio cameras into a views file",
        description="Project 3D motion capture through a seeded rig of studio cameras "
                    "(perspective pinhole, 3-6 m away, 1-2 m high, f ~1,150 px for 1,000 px) "
                    "and write a views file: per view the 2D pixels and the 3D pose in that "
                    "camera's frame. Views are named SEQUENCE.camK.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    v.add_argument("--mocap", type=Path, default=SAMPLE_MOCAP,
                   help="mocap .npz: one (frames, 17, 3) mm array per sequence, z up "
                        "(default: the CMU test-split sample shipped in the package)")
    v.add_argument("--splits", type=Path, default=None,
                   help="splits.json naming the train/val/test sequences of each mocap file")
    v.add_argument("--split", default="all", choices=["train", "val", "test", "all"],
                   help="which sequences to use; anything but 'all' needs --splits")
    v.add_argument("--out", type=Path, required=True, help="views .npz to write")
    v.add_argument("--cameras", type=_positive_int, default=4, help="cameras per sequence")
    v.add_argument("--seed", type=int, default=0,
                   help="rig and noise seed; a view's camera depends only on it and the name")
    v.add_argument("--noise-px", type=_non_negative, default=0.0,
                   help="std. dev. of i.i.d. Gaussian 2D noise, pixels")
    v.add_argument("--drop-prob", type=_probability, default=0.0,
                   help="probability that a joint is dropped (confidence 0), per joint and frame")
    v.add_argument("--fps", type=_positive_float, default=None,
                   help="resample the motion to this frame rate (default: the source's)")
    v.add_argument("--src-fps", type=_positive_float, default=None,
                   help="source frame rate, when no .json beside the mocap file names it")
    v.add_argument("--image-size", type=_positive_int, nargs=2, default=[1000, 1000],
                   metavar=("W", "H"), help="image width and height, pixels")
    v.add_argument("--quiet", action="store_true", help="no progress bar")
    v.set_defaults(func=_cmd_data_views)

    i = dsub.add_parser("info", help="summarise a views file",
                        description="Check a views file's shapes and print a summary of it.")
    i.add_argument("views", type=Path, help="views .npz")
    i.set_defaults(func=_cmd_data_info)


def _cmd_data_views(a: argparse.Namespace) -> int:
    from streamlift.data import load_mocap, make_views, save_views

    if a.split != "all" and a.splits is None:
        raise UserError("--split needs --splits (the splits.json that defines it)")
    mocap = load_mocap(a.mocap, a.splits, a.split, fps=a.src_fps)
    views = make_views(mocap, a.cameras, a.seed, a.noise_px, a.drop_prob, a.fps,
                       tuple(a.image_size), progress=not a.quiet)
    save_views(a.out, views)
    frames = sum(v.frames for v in views.values())
    fps = a.fps or mocap.fps
    noise = (f"noise {a.noise_px:g} px, drop {a.drop_prob:g}"
             if a.noise_px or a.drop_prob else "exact 2D")
    size_mb = a.out.stat().st_size / 2**20
    print(f"wrote {a.out}: {len(views)} views ({len(mocap.sequences)} sequences x {a.cameras} "
          f"cameras), {frames:,} frames at {fps:g} fps, {noise}, seed {a.seed} ({size_mb:.1f} MB)")
    return 0


def _cmd_data_info(a: argparse.Namespace) -> int:
    import numpy as np

    from streamlift.data import load_views

    views = load_views(a.views)
    frames = [v.frames for v in views.values()]
    fps = sorted({v.fps for v in views.values() if v.fps is not None})
    with_3d = sum(v.kp3d is not None for v in views.values())
    conf = np.concatenate([v.confidence().ravel() for v in views.values()])
    print(f"{a.views}: {len(views)} views, {sum(frames):,} frames "
          f"(per view {min(frames)}-{max(frames)}, median {int(np.median(frames))})")
    print(f"  fps: {', '.join(f'{f:g}' for f in fps) or 'not given'}; "
          f"3D ground truth in {with_3d}/{len(views)} views; "
          f"joints with confidence 0: {100 * (conf == 0).mean():.2f}%")
    return 0


# ------------------------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="streamlift",
        description="Real-time unsupervised 3D human pose lifting from 2D keypoints.")
    p.add_argument("--version", action="version", version=f"streamlift {__version__}")
    sub = p.add_subparsers(dest="cmd", metavar="COMMAND", required=True)
    _add_data(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except UserError as e:
        print(f"streamlift: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("streamlift: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
