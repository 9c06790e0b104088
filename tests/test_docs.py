"""The docs match the code: every documented command is run here (at small sizes) or names the
test that runs it, and every flag any doc mentions exists.

Fenced ```bash blocks of README.md, docs/, examples/ and the model/prior cards are run in a
scratch folder, in order per file, as one bash script each, after these substitutions:
- `../shared/data` and `$D` point at a miniature copy of the shared layout built from the
  shipped CMU sample (two "mocap files", a splits.json), so no shared data is needed;
- sizes shrink (`--epochs`, `--epoch-windows`, `--steps`, `--frames` ...), see SHRINK.
docs/training.md's first block, which makes the views the other docs start from, runs once (in
the `prepared` fixture), not again with the rest of docs/training.md.
A block that cannot run here (an install, a long-running server), or that another doc's block
already runs, carries the marker
`<!-- docs-test: not run; covered by tests/test_x.py -->` (or `.ci/run`) on the line before its
fence; the test checks the named file exists and mentions the block's command.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from streamlift.cli import build_parser
from streamlift.paths import ASSETS, DEFAULT_PRIOR, SAMPLE_MOCAP

ROOT = Path(__file__).resolve().parent.parent
TRAINING = ROOT / "docs" / "training.md"  # its first block makes the views the other docs use
DOCS = sorted([ROOT / "README.md", ROOT / "BENCHMARKS.md", *(ROOT / "docs").glob("*.md"),
               *(p for p in (ROOT / "examples").glob("**/README.md") if "node_modules" not in p.parts),
               *ASSETS.glob("*-card.md")])
FENCE = re.compile(r"(?:<!--\s*docs-test:\s*(?P<marker>[^>]*?)\s*-->\s*\n)?```(?:bash|sh)\n"
                   r"(?P<body>.*?)```", re.S)
# argument -> shrunk argument, applied to every block that is run
SHRINK = [
    (r"--epochs (\d+)", lambda m: f"--epochs {max(1, int(m[1]) // 4)}"),
    (r"--epoch-windows \d+", lambda m: "--epoch-windows 64"),
    (r"--steps (\d+)", lambda m: f"--steps {min(int(m[1]), 20)}"),  # `probe.py --steps 0` stays 0
    (r"--time-limit \d+", lambda m: "--time-limit 60"),
    (r"--frames \d+", lambda m: "--frames 40"),
    (r"--n \d+", lambda m: "--n 8"),
    (r"--windows \d+", lambda m: "--windows 64"),
    # check-prior judges the shipped prior here (a 20-step one would fail by design), and on
    # the miniature data it may well judge FAIL: it must run to its verdict, not crash
    (r"(check-prior --prior )\S+", lambda m: f"{m[1]}{DEFAULT_PRIOR}"),
    (r"^(\s*streamlift check-prior .*)$", lambda m: f"{m[1]} > check.txt || grep -q '^FAIL:' check.txt"),
]


def blocks(path: Path):
    text = path.read_text()
    for m in FENCE.finditer(text):
        yield m["marker"], m["body"], text[:m.start()].count("\n") + 1


def commands(body: str):
    """Shell commands of a block: continuation lines joined, split on && and ;."""
    joined = re.sub(r"\\\n\s*", " ", body)
    for line in joined.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        for part in re.split(r"\s*(?:&&|;|\|\|)\s*", line):
            if part:
                yield part


# ------------------------------------------------------------------------- flags exist
def _subparsers(parser: argparse.ArgumentParser) -> dict:
    for a in parser._actions:
        if isinstance(a, argparse._SubParsersAction):
            return a.choices
    return {}


def _flags(parser: argparse.ArgumentParser) -> set[str]:
    return {s for a in parser._actions for s in a.option_strings}


def _parser_for(words: list[str]):
    """The argparse parser a documented command line reaches, and the words after it."""
    if words[:1] == ["streamlift"]:
        p, rest = build_parser(), words[1:]
    elif words[:3] == ["python", "-m", "streamlift"]:
        p, rest = build_parser(), words[3:]
    elif words[:2] == ["python", "benchmarks/run.py"]:
        sys.path.insert(0, str(ROOT))
        from benchmarks.run import build_parser as bench_parser
        return bench_parser(), words[2:]
    elif words[:3] == ["python", "-m", "benchmarks.serve"]:
        from benchmarks.serve import build_parser as engine_bench_parser
        p, rest = engine_bench_parser(), words[3:]
    else:
        return None, words
    while rest and rest[0] in _subparsers(p):
        p, rest = _subparsers(p)[rest[0]], rest[1:]
    return p, rest


def documented_commands():
    for doc in DOCS:
        text = doc.read_text()
        for _, body, line in blocks(doc):
            for cmd in commands(body):
                yield doc, line, cmd
        for m in re.finditer(r"`((?:streamlift|python -m streamlift|python benchmarks/run\.py)"
                             r"\b[^`]*)`", text):
            yield doc, text[:m.start()].count("\n") + 1, m[1]


def test_every_documented_flag_exists():
    bad = []
    seen = 0
    for doc, line, cmd in documented_commands():
        try:
            words = shlex.split(cmd)
        except ValueError:
            words = cmd.split()
        parser, rest = _parser_for(words)
        if parser is None:
            continue
        seen += 1
        known = _flags(parser)
        for w in rest:
            flag = w.split("=", 1)[0]
            if flag.startswith("--") and flag not in known:
                bad.append(f"{doc.relative_to(ROOT)}:{line}: `{cmd}`: {flag} is not a flag of "
                           f"`{parser.prog}`")
    assert seen > 20, "the doc scan found almost no commands: is the pattern broken?"
    assert not bad, "\n".join(bad)


def test_markers_name_a_test_that_runs_the_command():
    problems = []
    for doc in DOCS:
        for marker, body, line in blocks(doc):
            if not marker:
                continue
            m = re.match(r"not run; covered by (\S+)", marker)
            if not m:
                problems.append(f"{doc.relative_to(ROOT)}:{line}: marker {marker!r} must read "
                                "'not run; covered by FILE'")
                continue
            target = ROOT / m[1]
            if not target.is_file():
                problems.append(f"{doc.relative_to(ROOT)}:{line}: {m[1]} does not exist")
                continue
            # the covering file must exercise the block's (last) streamlift/pytest command
            src = target.read_text()
            words = shlex.split(list(commands(body))[-1])
            key = next((w for w in words[1:] if not w.startswith("-")), words[0])
            if key not in src:
                problems.append(f"{doc.relative_to(ROOT)}:{line}: {m[1]} never mentions {key!r}")
    assert not problems, "\n".join(problems)


# ------------------------------------------------------------------------- blocks run
def _miniature_shared(d: Path) -> None:
    """A tiny stand-in for ../shared/data: the four mocap files' names, a splits.json."""
    d.mkdir(parents=True)
    with np.load(SAMPLE_MOCAP) as f:
        clips = {k: f[k][:120] for k in f.files}  # 5 clips x 120 frames at 50 fps
    names = sorted(clips)
    split = {"train": names[:3], "val": names[3:4], "test": names[4:]}
    table = {}
    for stem in ("bandai_h36m17", "cmu_daz_subset_h36m17", "hdm05_h36m17", "cmu_asfamc_h36m17"):
        np.savez(d / f"{stem}.npz", **clips)
        (d / f"{stem}.json").write_text('{"fps": 50.0, "units": "mm", "up_axis": "z"}')
        table[stem] = split
    import json
    (d / "splits.json").write_text(json.dumps(table))


def _videopose3d_files(d: Path) -> None:
    """Files in VideoPose3D's layout for the Human3.6M import block."""
    with np.load(SAMPLE_MOCAP) as f:
        clip = f[f.files[0]][:120] / 1000.0  # (T, 17, 3) m
    pad = np.zeros((len(clip), 32, 3), np.float32)
    pad[:, [0, 1, 2, 3, 6, 7, 8, 12, 13, 14, 15, 17, 18, 19, 25, 26, 27]] = clip
    subjects = ("S1", "S5", "S6", "S7", "S8", "S9", "S11")
    np.savez(d / "data_3d_h36m.npz", positions_3d={s: {"Walking": pad} for s in subjects})
    kp = np.random.default_rng(0).uniform(100, 900, (len(clip), 17, 2)).astype(np.float32)
    np.savez(d / "data_2d_h36m_cpn_ft_h36m_dbb.npz",
             positions_2d={s: {"Walking": [kp] * 4} for s in subjects})


def runnable_docs():
    return [d for d in DOCS if any(not marker for marker, _, _ in blocks(d))]


def _run_block(body: str, work: Path, shared: Path, env: dict, where: str) -> None:
    script = re.sub(r"\\\n\s*", " ", body).replace("../shared/data", str(shared))
    script = re.sub(r"^D=\S+", f"D={shared}", script, flags=re.M)
    for pat, rep in SHRINK:
        script = re.sub(pat, rep, script, flags=re.M)
    env = dict(env, D=str(shared))  # a reader's shell keeps D from the block that set it
    r = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=work, env=env,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, (f"{where} failed (exit {r.returncode})\n--- script\n{script}"
                               f"\n--- stdout\n{r.stdout[-2000:]}\n--- stderr\n{r.stderr[-3000:]}")


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """The miniature shared data, a `streamlift` on PATH, and the views that docs/training.md's
    first block makes (the other docs start from "a folder holding the views")."""
    base = tmp_path_factory.mktemp("docs")
    shared = base / "shared" / "data"
    _miniature_shared(shared)
    bindir = base / "bin"  # `streamlift` on PATH even when the package is not installed
    bindir.mkdir()
    (bindir / "streamlift").write_text(f"#!/bin/sh\nexec {sys.executable} -m streamlift \"$@\"\n")
    (bindir / "streamlift").chmod(0o755)
    # a wrapper, not a symlink: a symlink to a venv's python outside the venv's bin/ finds no
    # pyvenv.cfg beside it and starts the base interpreter, without the venv's packages
    (bindir / "python").write_text(f"#!/bin/sh\nexec {sys.executable} \"$@\"\n")
    (bindir / "python").chmod(0o755)
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT),
               PATH=f"{bindir}{os.pathsep}{os.environ['PATH']}")
    views = base / "views-work"
    (views / "views").mkdir(parents=True)
    _, body, line = next(blocks(TRAINING))
    _run_block(body, views, shared, env, f"docs/training.md:{line}")
    return shared, env, views / "views"


@pytest.mark.parametrize("doc", runnable_docs(), ids=lambda d: str(d.relative_to(ROOT)))
def test_doc_blocks_run(doc, tmp_path, prepared):
    shared, env, views = prepared
    work = tmp_path / "work"
    shutil.copytree(views, work / "views")
    (work / "streamlift" / "assets").mkdir(parents=True)
    for name in ("scripts", "benchmarks", "examples"):
        if (ROOT / name).exists():
            (work / name).symlink_to(ROOT / name)
    _videopose3d_files(work)
    for i, (marker, body, line) in enumerate(blocks(doc)):
        if marker or (doc == TRAINING and i == 0):  # the views block: `prepared` ran it, and
            continue  # work/views holds what it made
        _run_block(body, work, shared, env, f"{doc.relative_to(ROOT)}:{line}")
