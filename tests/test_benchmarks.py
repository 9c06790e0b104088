"""benchmarks/: the VideoPose3D peer model's shapes and receptive field, the timing harness, and
one smoke run of `python benchmarks/run.py --quick` (structure of its JSON, not speed)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.harness import measure  # noqa: E402
from benchmarks.videopose3d import VideoPose3D, receptive_field_config  # noqa: E402


@pytest.mark.parametrize("rf", [27, 81, 243])
def test_videopose3d_sees_exactly_its_receptive_field(rf):
    m = VideoPose3D(17, receptive_field_config(rf), channels=32).eval()
    x = torch.randn(3, rf, 17, 2, requires_grad=True)
    y = m(x)
    assert y.shape == (3, 17, 3)
    y.sum().backward()
    # every input frame reaches the output (the strided blocks cover the window exactly)
    assert (x.grad.abs().sum(dim=(0, 2, 3)) > 0).all()
    with pytest.raises(ValueError, match="expected"):
        m(torch.randn(1, rf - 1, 17, 2))


def test_receptive_field_config_rejects_non_powers_of_three():
    assert receptive_field_config(27) == (3, 3, 3)
    with pytest.raises(ValueError):
        receptive_field_config(28)


def test_measure_reports_ordered_percentiles():
    t = measure(lambda: sum(range(1000)), torch.device("cpu"), warmup=1, repeats=9)
    assert t.repeats == 9 and 0 < t.p20 <= t.median <= t.p80


def test_run_quick_writes_every_suite(tmp_path):
    out = tmp_path / "bench.json"
    r = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "run.py"), "--quick", "--device",
                        "cpu", "--threads", "1", "--json", str(out)],
                       capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    doc = json.loads(out.read_text())
    assert doc["failed"] == [] and set(doc["suites"]) == {"kernels", "model", "engine", "train"}
    assert {row["suite"] for row in doc["results"]} == set(doc["suites"])
    keys = {"suite", "case", "provider", "sizes", "median", "p20", "p80", "unit", "device_name",
            "torch", "triton", "git_commit", "timestamp", "extra"}
    for row in doc["results"]:
        assert keys <= set(row), row
        assert row["p20"] <= row["median"] <= row["p80"], row
    model = [r for r in doc["results"] if r["suite"] == "model" and r["case"].startswith("lift")]
    providers = {r["provider"] for r in model}
    assert "streamlift eager" in providers and "videopose3d rf27" in providers
    assert all(r["extra"]["windows_per_s"] > 0 for r in model)
    engine = [r for r in doc["results"] if r["case"] == "serve 30 fps streams"]
    assert engine and all(r["extra"]["frames_out"] > 0 for r in engine)
    assert {r["provider"].split(",")[1].split("(")[0].strip() for r in engine} == \
        {"windowed lifter", "streaming lifter"}
    stream = [r for r in engine if "streaming" in r["provider"]]
    assert all(r["extra"]["state_bytes_per_stream"] > 0 for r in stream)
    # per new frame, the step does one frame's work: counted FLOPs, not timings
    step = [r for r in doc["results"] if r["provider"] == "streamlift stream step"]
    assert step and all(r["extra"]["flops_vs_window_recompute"] >= 20 for r in step)
    traced = [r for r in doc["results"] if r["provider"] == "streamlift stream step (traced)"]
    assert {r["sizes"]["batch"] for r in traced} == {r["sizes"]["batch"] for r in step}
