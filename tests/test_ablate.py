"""scripts/ablate.py: the three commands of docs/ablations.md, which the docs test does not run
(five variants trained and scored three times took minutes even at the docs test's sizes).

They run here with their documented flags and the docs test's shrunk budget (`--epochs 1
--epoch-windows 64`), plus `--only full "single frame (T=1)"` (the single-frame variant's
`--window 1 --no-prior` must reach training) and `--decomposition-windows 64`, on one-camera
views of 96-frame clips of the shipped CMU sample made with `streamlift data views`:
    python scripts/ablate.py --train ... --val ... --test cmu=... cmu_noise5=... \
        --epochs 1 --epoch-windows 64 --out-dir runs/ablate --no-intrinsics
    streamlift data views ... --split test --cameras 1 [--noise-px 5] \
        --out views/bandai_test_cam1[_noise5].npz
    python scripts/ablate.py ... --test bandai_cam1=... bandai_cam1_noise5=... --reuse \
        --out-dir runs/ablate --no-intrinsics
    python scripts/ablate.py ... --reuse --out-dir runs/ablate --no-intrinsics
The other variants' settings are checked to be the `streamlift train` settings their rows name.
"""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

from streamlift.cli import MODEL, SWITCHES, TRAINING, build_parser, given, options
from streamlift.cli import main as cli
from streamlift.paths import DEFAULT_PRIOR, SAMPLE_MOCAP

ROOT = Path(__file__).resolve().parent.parent
ONLY = ["--only", "full", "single frame (T=1)", "--decomposition-windows", "64"]
NUMBER = r"\d+\.\d"


def _mocap(d: Path) -> Path:
    """Two "mocap files" (5 clips of 96 frames: 3 train, 1 val, 1 test) and their splits.json."""
    d.mkdir(parents=True)
    with np.load(SAMPLE_MOCAP) as f:
        clips = {k: f[k][:96] for k in f.files}
    names = sorted(clips)
    split = {"train": names[:3], "val": names[3:4], "test": names[4:]}
    for stem in ("bandai_h36m17", "cmu_daz_subset_h36m17"):
        np.savez(d / f"{stem}.npz", **clips)
        (d / f"{stem}.json").write_text('{"fps": 50.0, "units": "mm", "up_axis": "z"}')
    (d / "splits.json").write_text(json.dumps({"bandai_h36m17": split,
                                               "cmu_daz_subset_h36m17": split}))
    return d


def _views(shared: Path, stem: str, split: str, out: Path, *extra: str) -> None:
    assert cli(["data", "views", "--mocap", str(shared / f"{stem}.npz"), "--splits",
                str(shared / "splits.json"), "--split", split, *extra, "--out", str(out),
                "--quiet"]) == 0


def _ablate(work: Path, *args: str) -> str:
    cmd = [sys.executable, str(ROOT / "scripts" / "ablate.py"),
           "--train", "views/bandai_train.npz", "views/cmu_train.npz", "--val", "views/cmu_val.npz",
           *args, "--out-dir", "runs/ablate", "--no-intrinsics", *ONLY]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    r = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    return r.stdout


def _table(work: Path) -> tuple[list[str], dict[str, list[str]]]:
    lines = (work / "runs" / "ablate" / "table.md").read_text().splitlines()
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    assert set(lines[1]) <= {"|", "-"} and lines[1].count("---") == len(header)
    rows = {}
    for line in lines[2:]:
        cells = [c.strip() for c in line.strip("|").split("|")]
        assert len(cells) == len(header), line
        rows[cells[0]] = cells[1:]
    return header, rows


def test_ablate_trains_scores_and_reuses_its_checkpoints(tmp_path):
    shared = _mocap(tmp_path / "shared")
    work = tmp_path / "work"
    (work / "views").mkdir(parents=True)
    for stem, short in (("bandai_h36m17", "bandai"), ("cmu_daz_subset_h36m17", "cmu")):
        for split in ("train", "val", "test"):  # docs/training.md's views, one camera here
            _views(shared, stem, split, work / "views" / f"{short}_{split}.npz", "--cameras", "1")
    _views(shared, "cmu_daz_subset_h36m17", "test", work / "views" / "cmu_test_noise5.npz",
           "--cameras", "1", "--noise-px", "5")
    out = work / "runs" / "ablate"

    # 1. docs/ablations.md's first block: train and score every variant on the CMU test files
    _ablate(work, "--test", "cmu=views/cmu_test.npz", "cmu_noise5=views/cmu_test_noise5.npz",
            "--epochs", "1", "--epoch-windows", "64")
    results = json.loads((out / "results.json").read_text())
    assert list(results) == ["full", "single frame (T=1)"]
    for name, slug in (("full", "full"), ("single frame (T=1)", "single_frame")):
        row = results[name]
        assert row["args"] == {"full": [], "single_frame": ["--window", "1", "--no-prior"]}[slug]
        assert isinstance(row["train_seconds"], int) and row["train_seconds"] >= 0
        dec = row["decomposition"]
        assert dec["windows"] == 64
        assert 0 <= dec["residual_rotation_deg"] <= 180 and dec["deformation_ratio"] >= 0
        for t, f in (("cmu", "cmu_test"), ("cmu_noise5", "cmu_test_noise5")):
            js = json.loads((out / f"{slug}.{t}.json").read_text())  # streamlift eval --json
            assert js["data"] == f"views/{f}.npz"
            assert js["weights"] == str(Path("runs/ablate") / f"{slug}.pt")
            assert js["frames"] == 96 and js["virtual_camera_views"] == 0  # --no-intrinsics
            assert row[t] == {k: round(js[k], 1) for k in ("n_mpjpe", "pa_mpjpe")}
            assert all(np.isfinite(v) and v > 0 for v in row[t].values())
    # what each variant trained with reached `streamlift train`
    ck = {s: torch.load(out / f"{s}.pt", map_location="cpu", weights_only=True)
          for s in ("full", "single_frame")}
    assert ck["full"]["config"]["window"] == 27 and ck["single_frame"]["config"]["window"] == 1
    tc = {s: c["meta"]["train_config"] for s, c in ck.items()}
    assert tc["full"]["prior"] == str(DEFAULT_PRIOR) and tc["single_frame"]["prior"] is None
    assert not tc["full"]["intrinsics"] and not tc["single_frame"]["intrinsics"]
    assert tc["full"]["epochs"] == 1 and tc["full"]["epoch_windows"] == 64
    assert ck["full"]["meta"]["val_views"] == "views/cmu_val.npz"
    header, rows = _table(work)
    assert header == ["variant", "cmu N-MPJPE", "cmu PA-MPJPE", "cmu_noise5 N-MPJPE",
                      "cmu_noise5 PA-MPJPE", "S[t] vs B rotation (deg)", "abs(D) / abs(B)"]
    assert list(rows) == ["full", "single frame (T=1)"]
    for name, cells in rows.items():
        r = results[name]
        assert cells[:4] == [f"{r[t][k]:.1f}" for t in ("cmu", "cmu_noise5")
                             for k in ("n_mpjpe", "pa_mpjpe")]
        assert re.fullmatch(NUMBER, cells[4]) and re.fullmatch(r"\d+\.\d\d", cells[5])
    trained = {s: (out / f"{s}.pt").stat().st_mtime_ns for s in ("full", "single_frame")}

    # 2. the second block: the Bandai one-camera views, scored by the same checkpoints (--reuse)
    views = work / "views"
    _views(shared, "bandai_h36m17", "test", views / "bandai_test_cam1.npz", "--cameras", "1")
    _views(shared, "bandai_h36m17", "test", views / "bandai_test_cam1_noise5.npz", "--cameras", "1",
           "--noise-px", "5")
    _ablate(work, "--test", "bandai_cam1=views/bandai_test_cam1.npz",
            "bandai_cam1_noise5=views/bandai_test_cam1_noise5.npz", "--reuse")
    assert {s: (out / f"{s}.pt").stat().st_mtime_ns for s in trained} == trained  # not retrained
    reused = json.loads((out / "results.json").read_text())
    for name, row in reused.items():
        before = results[name]
        assert row["train_seconds"] == before["train_seconds"] and row["args"] == before["args"]
        assert row["decomposition"] == before["decomposition"]  # same seeded windows, same model
        assert row["cmu"] == before["cmu"] and row["cmu_noise5"] == before["cmu_noise5"]
        for t in ("bandai_cam1", "bandai_cam1_noise5"):
            js = json.loads((out / f"{name.split(' (')[0].replace(' ', '_')}.{t}.json").read_text())
            assert js["frames"] == 96 and js["views"] == 1
            assert row[t] == {k: round(js[k], 1) for k in ("n_mpjpe", "pa_mpjpe")}
    header, rows = _table(work)
    assert header[1:9] == [f"{t} {m}" for t in ("cmu", "cmu_noise5", "bandai_cam1",
                                                "bandai_cam1_noise5")
                           for m in ("N-MPJPE", "PA-MPJPE")]
    assert all(re.fullmatch(NUMBER, c) for cells in rows.values() for c in cells[:9])

    # 3. the third block: --reuse and no --test remeasures only the decomposition
    scored = {p.name: p.stat().st_mtime_ns for p in out.glob("*.*.json")}
    assert len(scored) == 8
    stdout = _ablate(work, "--reuse")
    assert not re.search(r"\d+ views, [\d,]+ frames", stdout)  # no `streamlift eval` report
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("*.*.json")} == scored
    assert {s: (out / f"{s}.pt").stat().st_mtime_ns for s in trained} == trained
    assert json.loads((out / "results.json").read_text()) == reused
    assert _table(work) == (header, rows)


def test_every_variant_is_the_streamlift_train_setting_its_row_names():
    from streamlift.train.options import train_configs

    tree = ast.parse((ROOT / "scripts" / "ablate.py").read_text())
    variants = next(ast.literal_eval(n.value) for n in ast.walk(tree)
                    if isinstance(n, ast.Assign) and isinstance(n.value, ast.Dict)
                    and [getattr(t, "id", None) for t in n.targets] == ["variants"])
    # docs/ablations.md's rows, in its order
    assert list(variants) == ["full", "no canonicalisation", "single frame (T=1)", "centred",
                              "no prior"]
    cfgs = {}
    for name, extra in variants.items():
        a = build_parser().parse_args(["train", "--data", "t.npz", "--val", "v.npz", "--out",
                                       "o.pt", "--no-intrinsics", *extra])
        cfgs[name] = train_configs(a.config, given(a, MODEL), given(a, TRAINING),
                                   options(a, SWITCHES))
    full_model, full = cfgs["full"]
    assert full_model.window == 27 and full_model.mode == "causal"
    assert full.prior == str(DEFAULT_PRIOR) and full.prior_weight > 0 and all(full.weights.values())
    assert not full.intrinsics
    changed = {name: ({k for k, v in vars(m).items() if v != vars(full_model)[k]},
                      {k for k, v in vars(t).items() if v != vars(full)[k]})
               for name, (m, t) in cfgs.items() if name != "full"}
    assert changed == {"no canonicalisation": (set(), {"weights"}),
                       "single frame (T=1)": ({"window"}, {"prior", "prior_weight"}),
                       "centred": ({"mode"}, set()),
                       "no prior": (set(), {"prior", "prior_weight"})}
    m, t = cfgs["no canonicalisation"]
    assert t.weights == {**full.weights, "canonicalisation": 0.0}
    m, t = cfgs["single frame (T=1)"]
    assert m.window == 1 and t.prior is None and t.prior_weight == 0
    assert cfgs["centred"][0].mode == "centred"
    assert cfgs["no prior"][1].prior is None and cfgs["no prior"][1].prior_weight == 0
