"""Ablations of the lifter, side by side: same data, same budget, same evaluation harness.

    python scripts/ablate.py --train bandai_train.npz cmu_train.npz --val bandai_val.npz \
        --test bandai=bandai_test.npz bandai_noise5=bandai_test_noise5.npz cmu=cmu_test.npz \
        --epochs 2 --epoch-windows 8192 --out-dir runs/ablate

Trains each variant with `streamlift train`, scores it with `streamlift eval` on every test
file, and writes `table.md` and `results.json` in --out-dir. Each variant's rigid/non-rigid
split (`streamlift.eval.diagnose.decomposition`: the residual rotation of the shapes S[t] against the
reference skeleton B, and |D|/|B|) is measured on the --val file, 2D only. Variants: the full model; no
Procrustean canonicalisation; single frame (T = 1); centred instead of causal; without the
diffusion prior (every other variant uses the shipped prior).
"""

import argparse
import json
import time
from pathlib import Path

from streamlift.cli import main as cli
from streamlift.data import load_views
from streamlift.eval.diagnose import decomposition
from streamlift.lifter.model import load_checkpoint

ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
ap.add_argument("--train", nargs="+", required=True, help="training views files")
ap.add_argument("--val", required=True, help="validation views file")
ap.add_argument("--test", nargs="*", default=[], metavar="NAME=FILE",
                help="test views files (none: with --reuse, only remeasure the decomposition)")
ap.add_argument("--epochs", type=int, default=2, help="epochs per variant")
ap.add_argument("--epoch-windows", type=int, default=8192, help="windows per epoch")
ap.add_argument("--threads", type=int, default=1, help="torch threads per run")
ap.add_argument("--only", nargs="*", default=None, help="run only these variants")
ap.add_argument("--out-dir", type=Path, required=True, help="where checkpoints and tables go")
ap.add_argument("--no-intrinsics", action="store_true",
                help="train and score without the virtual camera (streamlift train/eval --no-intrinsics), "
                     "as the table in docs/ablations.md was measured")
ap.add_argument("--decomposition-windows", type=int, default=2048, metavar="N",
                help="seeded --val windows the rigid/non-rigid split is measured on (the table: 2048)")
ap.add_argument("--reuse", action="store_true",
                help="score an existing checkpoint in --out-dir instead of retraining it (to add test files)")
args = ap.parse_args()

variants = {
    "full": [],
    "no canonicalisation": ["--weight", "canonicalisation=0"],
    # a motion prior needs a window of frames, so T = 1 is compared with "no prior"
    "single frame (T=1)": ["--window", "1", "--no-prior"],
    "centred": ["--mode", "centred"],
    "no prior": ["--no-prior"],
}
if args.only:
    variants = {k: v for k, v in variants.items() if k in args.only}
tests = dict(t.split("=", 1) for t in args.test)
camera = ["--no-intrinsics"] if args.no_intrinsics else []
args.out_dir.mkdir(parents=True, exist_ok=True)
results_path = args.out_dir / "results.json"
results = json.loads(results_path.read_text()) if results_path.exists() else {}
val_views = load_views(args.val)

for name, extra in variants.items():
    slug = name.split(" (")[0].replace(" ", "_")
    ckpt = args.out_dir / f"{slug}.pt"
    row = results.get(name, {}) if args.reuse and ckpt.exists() else {}
    if not row:
        t0 = time.time()
        if cli(["train", "--threads", str(args.threads), "--data", *args.train, "--val", args.val, "--out",
                str(ckpt), "--quiet", "--epochs", str(args.epochs), "--epoch-windows", str(args.epoch_windows),
                *camera, *extra]):
            raise SystemExit(f"ablate: training {name!r} failed (see the error above)")
        row = {"train_seconds": round(time.time() - t0), "args": extra}
    model, _ = load_checkpoint(ckpt)
    measured = decomposition(model, val_views, windows=args.decomposition_windows)
    row["decomposition"] = {k: round(v, 3) for k, v in measured.items()}
    for tname, tfile in tests.items():
        js = args.out_dir / f"{slug}.{tname}.json"
        if cli(["eval", "--threads", str(args.threads), "--data", tfile, "--weights", str(ckpt), "--json", str(js),
                "--quiet", *camera]):
            raise SystemExit(f"ablate: evaluating {name!r} on {tfile} failed (see the error above)")
        r = json.loads(js.read_text())
        row[tname] = {k: round(r[k], 1) for k in ("n_mpjpe", "pa_mpjpe")}
    results[name] = row
    results_path.write_text(json.dumps(results, indent=1))

all_tests = list(dict.fromkeys([t for row in results.values() for t in row if isinstance(row[t], dict) and "n_mpjpe" in row[t]]))
lines = ["| variant | " + " | ".join(f"{t} N-MPJPE | {t} PA-MPJPE" for t in all_tests)
         + " | S[t] vs B rotation (deg) | abs(D) / abs(B) |",
         "|---" * (3 + 2 * len(all_tests)) + "|"]
for name, row in results.items():
    cells = [f"{row[t]['n_mpjpe']:.1f} | {row[t]['pa_mpjpe']:.1f}" if t in row else "- | -" for t in all_tests]
    dec = row.get("decomposition")
    cells.append(f"{dec['residual_rotation_deg']:.1f} | {dec['deformation_ratio']:.2f}" if dec else "- | -")
    lines.append(f"| {name} | " + " | ".join(cells) + " |")
(args.out_dir / "table.md").write_text("\n".join(lines) + "\n")
print("\n".join(lines))
