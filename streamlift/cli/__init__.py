"""The `streamlift` command: one parser, a subcommand per job, help on every flag.

Building the parser imports neither torch nor ZeroMQ: config flags are read from the dataclass
sources (common.fields), and each command imports what it runs only when it runs."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from streamlift import __version__
from streamlift.cli.common import (LIFTER, TRAIN, add_config, command, constant, device, given,
                                   load_model, non_negative, positive_float, positive_int,
                                   probability, shared)
from streamlift.errors import UserError
from streamlift.paths import SAMPLE_MOCAP

MODEL = "window mode dim depth heads"
TRAINING = "epochs epoch_windows batch lr seed prior_weight prior_t_range"


# ---------------------------------------------------------------------------------- data views
def cmd_data_views(a: argparse.Namespace) -> int:
    """Project 3D motion capture through a seeded rig of studio cameras (perspective pinhole,
    3-6 m away, 1-2 m high, f ~1,150 px for 1,000 px) and write a views file: per view the 2D
    pixels and the 3D pose in that camera's frame. Views are named SEQUENCE.camK."""
    from streamlift.data import load_mocap, make_views, save_views

    if a.split != "all" and a.splits is None:
        raise UserError("--split needs --splits (the splits.json that defines it)")
    mocap = load_mocap(a.mocap, a.splits, a.split, fps=a.src_fps)
    views = make_views(mocap, a.cameras, a.seed, a.noise_px, a.drop_prob, a.fps,
                       tuple(a.image_size), progress=not a.quiet)
    save_views(a.out, views)
    noise = (f"noise {a.noise_px:g} px, drop {a.drop_prob:g}"
             if a.noise_px or a.drop_prob else "exact 2D")
    print(f"wrote {a.out}: {len(views)} views ({len(mocap.sequences)} sequences x {a.cameras} "
          f"cameras), {sum(v.frames for v in views.values()):,} frames at "
          f"{a.fps or mocap.fps:g} fps, {noise}, seed {a.seed} "
          f"({a.out.stat().st_size / 2**20:.1f} MB)")
    return 0


def cmd_data_info(a: argparse.Namespace) -> int:
    """Check a views file's shapes and print a summary of it."""
    import numpy as np

    from streamlift.data import load_views

    views = load_views(a.views).values()
    frames = [v.frames for v in views]
    fps = sorted({v.fps for v in views if v.fps is not None})
    conf = np.concatenate([v.confidence().ravel() for v in views])
    print(f"{a.views}: {len(views)} views, {sum(frames):,} frames "
          f"(per view {min(frames)}-{max(frames)}, median {int(np.median(frames))})")
    print(f"  fps: {', '.join(f'{f:g}' for f in fps) or 'not given'}; 3D ground truth in "
          f"{sum(v.kp3d is not None for v in views)}/{len(views)} views; "
          f"joints with confidence 0: {100 * (conf == 0).mean():.2f}%")
    return 0


def cmd_import_h36m(a: argparse.Namespace) -> int:
    """Convert VideoPose3D's data_3d_h36m.npz into a mocap file (with its .json and a
    .splits.json: train S1 S5 S6 S7, val S8, test S9 S11) for `data views` and `train-prior`,
    and/or a data_2d_h36m_<detector>.npz into a views file of real detector 2D (no 3D: the file
    has no cameras) for `train`. These files hold pickled dicts: pass --allow-pickle only for
    files you trust."""
    from streamlift.data.h36m import import_2d, import_3d

    if a.in3d is None and a.in2d is None:
        raise UserError("give --3d DATA_3D.npz --out MOCAP.npz and/or --2d DATA_2D.npz "
                        "--out-views VIEWS.npz")
    for given_, out, flag in ((a.in3d, a.out, "--3d needs --out MOCAP.npz"),
                              (a.in2d, a.out_views, "--2d needs --out-views VIEWS.npz")):
        if given_ is not None and out is None:
            raise UserError(flag)
        if given_ is not None and given_.is_file() and not a.allow_pickle:
            raise UserError(f"{given_}: VideoPose3D files store dicts that numpy can only read "
                            "by unpickling, which runs code from the file; if you trust it, "
                            "pass --allow-pickle")
    if a.in3d is not None:
        r = import_3d(a.in3d, a.out, a.allow_pickle)
        print(f"wrote {a.out}: {r['sequences']} sequences, {r['frames']:,} frames at 50 fps; "
              f"splits in {r['splits_path']} "
              f"({', '.join(f'{k} {v}' for k, v in r['splits'].items())})")
    if a.in2d is not None:
        r = import_2d(a.in2d, a.out_views, a.allow_pickle, a.subjects)
        print(f"wrote {a.out_views}: {r['views']} views, {r['frames']:,} frames of detector 2D")
    return 0


def _add_data(sub) -> None:
    dsub = sub.add_parser("data", help="make and inspect 2D views files from 3D motion capture",
                          description="Make and inspect views files (the train/eval format)."
                          ).add_subparsers(dest="data_cmd", metavar="{views,info,import-h36m}",
                                           required=True)
    v = command(dsub, "views", cmd_data_views,
                "project 3D mocap through seeded studio cameras into a views file")
    v.add_argument("--mocap", type=Path, default=SAMPLE_MOCAP,
                   help="mocap .npz: one (frames, 17, 3) mm array per sequence, z up "
                        "(default: the CMU test-split sample shipped in the package)")
    v.add_argument("--splits", type=Path, help="splits.json naming the train/val/test "
                   "sequences of each mocap file")
    v.add_argument("--split", default="all", choices=["train", "val", "test", "all"],
                   help="which sequences to use; anything but 'all' needs --splits")
    v.add_argument("--out", type=Path, required=True, help="views .npz to write")
    v.add_argument("--cameras", type=positive_int, default=4, help="cameras per sequence")
    v.add_argument("--seed", type=int, default=0,
                   help="rig and noise seed; a view's camera depends only on it and the name")
    v.add_argument("--noise-px", type=non_negative, default=0.0,
                   help="std. dev. of i.i.d. Gaussian 2D noise, pixels")
    v.add_argument("--drop-prob", type=probability, default=0.0,
                   help="probability that a joint is dropped (confidence 0), per joint and frame")
    v.add_argument("--fps", type=positive_float,
                   help="resample the motion to this frame rate (default: the source's)")
    v.add_argument("--src-fps", type=positive_float,
                   help="source frame rate, when no .json beside the mocap file names it")
    v.add_argument("--image-size", type=positive_int, nargs=2, default=[1000, 1000],
                   metavar=("W", "H"), help="image width and height, pixels")
    shared(v, "quiet")
    i = command(dsub, "info", cmd_data_info, "summarise a views file")
    i.add_argument("views", type=Path, help="views .npz")
    h = command(dsub, "import-h36m", cmd_import_h36m,
                "import Human3.6M from VideoPose3D's preprocessed .npz files")
    h.add_argument("--3d", dest="in3d", type=Path, metavar="DATA_3D.npz",
                   help="VideoPose3D's data_3d_h36m.npz (positions_3d, metres)")
    h.add_argument("--out", type=Path,
                   help="mocap .npz to write from --3d (its .json and .splits.json go beside it)")
    h.add_argument("--2d", dest="in2d", type=Path, metavar="DATA_2D.npz",
                   help="VideoPose3D's data_2d_h36m_<detector>.npz (positions_2d, pixels)")
    h.add_argument("--out-views", type=Path, help="views .npz to write from --2d")
    h.add_argument("--subjects", nargs="+", metavar="S",
                   help="only these subjects from --2d (e.g. S1 S5 S6 S7 to train)")
    h.add_argument("--allow-pickle", action="store_true", help="allow numpy to unpickle the "
                   "files (needed for this format; it can run code from the file)")


# ------------------------------------------------------------------------------- train / eval
def _configs(a: argparse.Namespace):
    """LifterConfig and TrainConfig: --config's JSON, overridden by the flags given."""
    from streamlift.lifter.model import LifterConfig
    from streamlift.paths import DEFAULT_PRIOR
    from streamlift.train.lifter import DEFAULT_WEIGHTS, TrainConfig

    try:
        cfg = json.loads(a.config.read_text()) if a.config else {}
        model_kw, train_kw = dict(cfg.get("model", {})), dict(cfg.get("train", {}))
    except (OSError, json.JSONDecodeError, AttributeError) as e:
        raise UserError(f"--config {a.config}: {e}") from None
    model_kw.update(given(a, MODEL))
    train_kw.update(given(a, TRAINING))
    lo, hi = a.prior_t_range or (0, 1)
    if not 0 <= lo <= hi <= 1:
        raise UserError(f"--prior-t-range {lo} {hi}: need 0 <= LO <= HI <= 1 (fractions of the "
                        f"prior's diffusion schedule)")
    if a.init is not None and a.resume:
        raise UserError("--init starts a new run from given weights; --resume continues the "
                        "run in --out: use one of them")
    if a.init is not None and given(a, MODEL):
        raise UserError(f"--init takes the model shape from {a.init}; leave out "
                        + ", ".join("--" + k for k in given(a, MODEL)))
    weights = train_kw["weights"] = dict(DEFAULT_WEIGHTS, **train_kw.get("weights", {}))
    for item in a.weight:
        name, _, val = item.partition("=")
        if name not in DEFAULT_WEIGHTS:
            raise UserError(f"--weight {item}: unknown loss {name!r}; known: "
                            f"{', '.join(DEFAULT_WEIGHTS)}")
        try:
            weights[name] = float(val)
        except ValueError:
            raise UserError(f"--weight {item}: {val!r} is not a number") from None
    train_kw.update({k: False for k in ("intrinsics", "perspective") if getattr(a, "no_" + k)})
    if a.no_prior:
        if a.prior is not None or a.prior_weight is not None or a.prior_t_range is not None:
            raise UserError("--no-prior contradicts --prior/--prior-weight/--prior-t-range")
        train_kw.update(prior=None, prior_weight=0.0)
    else:
        train_kw["prior"] = str(a.prior or train_kw.get("prior") or DEFAULT_PRIOR)
        if not Path(train_kw["prior"]).is_file():
            raise UserError(f"prior checkpoint not found: {train_kw['prior']} (or train with "
                            f"--no-prior)")
    try:
        return LifterConfig(**model_kw), TrainConfig(**train_kw)
    except (TypeError, ValueError) as e:
        raise UserError(f"bad configuration: {e}") from None


def cmd_train(a: argparse.Namespace) -> int:
    """Unsupervised training of the NRSfMFormer: reprojection, Procrustean canonicalisation,
    temporal smoothness, bone symmetry/constancy (and the diffusion prior when given). kp3d in
    --val is used only to report error. Writes a checkpoint after every epoch; --resume
    continues one."""
    from streamlift.train.lifter import train

    model_cfg, train_cfg = _configs(a)
    dev = device(a.device, a.threads)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    last = train([str(p) for p in a.data], a.val and str(a.val), str(a.out), model_cfg,
                 train_cfg, dev, a.resume, progress=not a.quiet, init=a.init and str(a.init))
    print(f"saved {a.out} after epoch {last.get('epoch')}")
    return 0


def cmd_eval(a: argparse.Namespace) -> int:
    """Lift every frame of every view (each the target of its own window, padded at the start
    as streaming pads) and print MPJPE, N-MPJPE and PA-MPJPE in mm, overall and per action
    group. MPJPE scales the prediction to the subject's height (the view's median ground-truth
    skeleton height)."""
    from streamlift.data import load_views
    from streamlift.eval.evaluate import evaluate, format_table

    dev = device(a.device, a.threads)
    model, weights = load_model(a.weights, dev, mode=a.mode)
    res = evaluate(model, load_views(a.data), dev, a.batch, progress=not a.quiet,
                   intrinsics=not a.no_intrinsics)
    mode, window = model.cfg.mode, model.cfg.window
    print(f"{a.data}: {res['views']} views, {res['frames']:,} frames, {mode} mode, "
          f"window {window}, weights {weights}")
    print(f"virtual camera (the views' intrinsics): {res['virtual_camera_views']} of "
          f"{res['views']} views" + (" (--no-intrinsics)" if a.no_intrinsics else ""))
    print(format_table(res))
    if a.json:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(json.dumps({**res, "mode": mode, "window": window,
                                      "weights": str(weights), "data": str(a.data)}, indent=1))
    return 0


def _add_train(sub) -> None:
    t = command(sub, "train", cmd_train, "train a lifter from 2D views alone (no 3D labels)")
    t.add_argument("--data", type=Path, nargs="+", required=True,
                   help="training views .npz file(s) (2D is all it reads)")
    t.add_argument("--val", type=Path,
                   help="validation views .npz with kp3d: N-MPJPE/PA-MPJPE reported each epoch")
    t.add_argument("--out", type=Path, required=True, help="checkpoint to write (and resume)")
    t.add_argument("--config", type=Path, help="JSON with optional 'model' and 'train' objects "
                   "(LifterConfig and TrainConfig fields); flags given on the command line "
                   "override it")
    add_config(t, TRAIN, TRAINING, only_given=True)
    add_config(t, LIFTER, MODEL, only_given=True)
    t.add_argument("--weight", action="append", default=[], metavar="NAME=W",
                   help="loss weight override, repeatable; names: " + ", ".join(constant(
                       "streamlift.train.lifter:DEFAULT_WEIGHTS")) + " (e.g. canonicalisation=0 "
                   "for the ablation)")
    t.add_argument("--prior", type=Path, help="diffusion prior checkpoint for the prior loss "
                   "(default: the shipped one)")
    t.add_argument("--no-prior", action="store_true", help="train without the diffusion prior loss")
    t.add_argument("--init", type=Path, metavar="W.pt", help="fine-tune: start from this "
                   "lifter's weights (and its model shape) with a new optimizer, schedule and "
                   "epoch count; the settings are this command's")
    t.add_argument("--no-intrinsics", action="store_true", help="ignore the views' camera "
                   "matrices: train on the 2D as it is, as if every subject stood on the optical "
                   "axis (by default a view with intrinsics is seen through a virtual camera "
                   "looking at the subject)")
    t.add_argument("--no-perspective", action="store_true", help="reproject under weak "
                   "perspective even where a view has intrinsics (by default the reprojection "
                   "loss goes through the view's focal length)")
    t.add_argument("--resume", action="store_true", help="continue the run saved in --out")
    shared(t, "threads", "quiet", device="where to train; auto picks CUDA when there is one "
           "(bf16 autocast there)")
    e = command(sub, "eval", cmd_eval, "score a lifter on a views file with 3D ground truth")
    e.add_argument("--data", type=Path, required=True, help="views .npz with kp3d")
    e.add_argument("--no-intrinsics", action="store_true", help="ignore the views' camera "
                   "matrices: lift every view as if the subject stood on the optical axis (by "
                   "default a view with intrinsics is lifted through a virtual camera looking "
                   "at the subject, docs/training.md)")
    e.add_argument("--batch", type=positive_int, help="windows per forward pass (default: 32 "
                   "on CPU, where the cost per window rises with the batch, 512 on CUDA)")
    shared(e, "weights", "mode", "json", "device", "threads", "quiet")


# ------------------------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    from streamlift.cli import prior, render, serve

    p = argparse.ArgumentParser(
        prog="streamlift",
        description="Real-time unsupervised 3D human pose lifting from 2D keypoints.")
    p.add_argument("--version", action="version", version=f"streamlift {__version__}")
    sub = p.add_subparsers(dest="cmd", metavar="COMMAND", required=True)
    _add_data(sub)
    _add_train(sub)
    serve.add_commands(sub)
    prior.add_commands(sub)
    render.add_command(sub)
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
