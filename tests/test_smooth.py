"""scripts/smooth_views.py: the causal One-Euro filter and its jitter gate (docs/generalisation.md)."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from streamlift.data import load_mocap, make_views, save_views
from streamlift.data.views import load_views
from streamlift.paths import SAMPLE_MOCAP

SCRIPT = Path(__file__).resolve().parents[1] / "scripts/smooth_views.py"
spec = importlib.util.spec_from_file_location("smooth_views", SCRIPT)
smooth = importlib.util.module_from_spec(spec)
spec.loader.exec_module(smooth)


@pytest.fixture(scope="module")
def view():
    return next(iter(make_views(load_mocap(SAMPLE_MOCAP), 1, 0, progress=False).values()))


def _noisy(kp, sigma, seed=0):
    return kp + np.random.default_rng(seed).normal(0, sigma, kp.shape)


def test_the_filter_is_causal_and_removes_jitter(view):
    exact = view.kp2d[:200, :, :2].astype(np.float64)
    noisy = _noisy(exact, 5.0)
    y = smooth.one_euro(noisy, view.fps)
    later = noisy.copy()
    later[120:] += 40.0  # what comes after frame 119 cannot change frames up to it
    np.testing.assert_array_equal(smooth.one_euro(later, view.fps)[:120], y[:120])
    err = lambda a: np.sqrt(((a[30:] - exact[30:]) ** 2).mean())  # noqa: E731
    assert err(y) < 0.8 * err(noisy)  # a fast motion at 50 fps: 3.7 against 5.0 px
    assert err(smooth.one_euro(exact, view.fps)) < 0.6 * err(noisy)  # the lag it costs


def test_the_gate_passes_smooth_2d_unchanged_and_filters_jittery_2d(view):
    exact = view.kp2d[:200, :, :2].astype(np.float64)
    gate = (0.01, 0.04)
    np.testing.assert_array_equal(smooth.one_euro(exact, view.fps, gate=gate), exact)
    noisy = _noisy(exact, 5.0)
    gated = smooth.one_euro(noisy, view.fps, gate=gate)
    np.testing.assert_allclose(gated[60:], smooth.one_euro(noisy, view.fps)[60:])  # fully open
    # a subject 3x the size in pixels (same relative jitter) is filtered the same way
    np.testing.assert_allclose(smooth.one_euro(3 * noisy, view.fps, gate=gate), 3 * gated,
                               rtol=1e-9, atol=1e-6)


def test_the_script_writes_the_views_smoothed_and_the_rest_as_it_was(view, tmp_path):
    noisy = view.kp2d.copy()
    noisy[..., :2] = _noisy(noisy[..., :2], 5.0).astype(np.float32)
    src = tmp_path / "v.npz"
    save_views(src, {"a.cam0": type(view)(noisy, view.kp3d, view.fps, view.image_size,
                                          view.intrinsics, view.extrinsics)})
    smooth.main(["--data", str(src), "--out", str(tmp_path / "s.npz"), "--gate", "0.01", "0.04"])
    v = load_views(tmp_path / "s.npz")["a.cam0"]
    np.testing.assert_array_equal(v.kp3d, view.kp3d)
    np.testing.assert_array_equal(v.intrinsics, view.intrinsics)
    want = smooth.one_euro(noisy[..., :2], view.fps, gate=(0.01, 0.04))
    np.testing.assert_allclose(v.kp2d[..., :2], want, atol=1e-3)
    from streamlift.cli import main  # the docs' next command: eval on the smoothed views
    assert main(["eval", "--data", str(tmp_path / "s.npz"), "--threads", "1", "--quiet"]) == 0
