"""Data pipeline: mocap loading, the studio rig, projection, views files, and their errors."""

import json

import numpy as np
import pytest

from streamlift.data import (load_mocap, load_views, make_views, project, resample, save_views, studio_rig)
from streamlift.data.cameras import detector_noise
from streamlift.geometry import look_at
from streamlift.data.views import View
from streamlift.errors import UserError
from streamlift.paths import SAMPLE_MOCAP


@pytest.fixture(scope="module")
def sample():
    return load_mocap(SAMPLE_MOCAP)


def reprojection_px(view: View) -> float:
    """Max pixel distance between kp2d and kp3d projected through the view's own intrinsics."""
    return float(np.abs(project(view.kp3d, view.intrinsics) - view.kp2d[..., :2]).max())


def test_sample_is_real_cmu_test_motion(sample):
    meta = json.loads(SAMPLE_MOCAP.with_suffix(".json").read_text())
    assert "CMU" in meta["source"] and meta["split"].startswith("test")
    assert sample.fps == 50.0 and len(sample.sequences) == 5 and sample.frames == 3000
    # a human in mm, z up: head above the lower ankle by 1.39-1.50 m (median per sequence; the
    # head joint is below the top of the head), and it moves
    for name, seq in sample.sequences.items():
        height = seq[:, 10, 2] - seq[:, [3, 6], 2].min(axis=1)
        assert 1350 < np.median(height) < 1550, name
        assert np.ptp(seq[:, 13], axis=0).max() > 900, name  # the left wrist travels


def test_look_at_puts_target_on_the_optical_axis():
    eye = np.array([3000.0, -2000.0, 1500.0])
    target = np.array([100.0, 200.0, 900.0])
    R, t = look_at(eye, target)
    np.testing.assert_allclose(R @ R.T, np.eye(3), atol=1e-12)
    assert np.linalg.det(R) == pytest.approx(1.0)
    cam = R @ target + t
    np.testing.assert_allclose(cam[:2], 0.0, atol=1e-9)
    assert cam[2] == pytest.approx(np.linalg.norm(target - eye))
    # world up (+z) points up the image (-y in camera frame)
    above = R @ (target + [0, 0, 100.0]) + t
    assert above[1] < 0


def test_rig_is_seeded_by_name_not_by_order(sample):
    seq = sample.sequences["salsa_01"]
    a = studio_rig(seq, 4, seed=7, name="salsa_01")
    b = studio_rig(seq, 4, seed=7, name="salsa_01")
    c = studio_rig(seq, 4, seed=8, name="salsa_01")
    assert all(np.array_equal(x.extrinsics, y.extrinsics) for x, y in zip(a, b))
    assert not np.allclose(a[0].extrinsics, c[0].extrinsics, atol=1.0)  # another rig
    for name in ("salsa_01", "indian_15"):  # indian_15 walks 6 m: the clearance rule binds
        seq = sample.sequences[name]
        for cam in studio_rig(seq, 4, seed=7, name=name):
            X = cam.to_camera(seq)
            assert X[..., 2].min() > 2000, "the subject stays 2 m in front of every camera"
            assert 1150 * 0.95 <= cam.K[0, 0] == cam.K[1, 1] <= 1150 * 1.05
            assert abs(cam.K[0, 2] - 500) <= 10 and abs(cam.K[1, 2] - 500) <= 10


def test_views_project_back_and_roundtrip(sample, tmp_path):
    views = make_views(sample, n_cameras=3, seed=0, progress=False)
    assert len(views) == 15 and all(n.endswith((".cam0", ".cam1", ".cam2")) for n in views)
    for v in views.values():
        assert reprojection_px(v) < 1e-2
    # kp3d is the world motion in the camera frame: its bone lengths are the mocap's
    v = views["salsa_01.cam1"]
    world = sample.sequences["salsa_01"]
    E = v.extrinsics.astype(np.float64)
    back = (v.kp3d - E[:, 3]) @ E[:, :3]  # R^T (X_cam - t)
    np.testing.assert_allclose(back, world, atol=0.5)
    # names with '/' and '.' survive a round trip
    views["S9/Walking 1.cam2"] = views.pop("salsa_01.cam1")
    path = tmp_path / "v.npz"
    save_views(path, views)
    again = load_views(path)
    assert set(again) == set(views)
    w = again["S9/Walking 1.cam2"]
    np.testing.assert_array_equal(w.kp2d, v.kp2d)
    assert w.fps == 50.0 and w.image_size == (1000, 1000)


def test_landscape_image_size_is_width_then_height(sample, tmp_path):
    """A 1280 x 720 rig: (width, height) survives make -> save -> load in that order, the
    principal point is the image centre (640, 360) and the subject lands inside a 1280-wide,
    720-high image (a square image cannot tell width from height)."""
    W, H = 1280, 720
    cams = studio_rig(sample.sequences["salsa_01"], 3, seed=0, name="salsa_01", image_size=(W, H))
    assert [c.image_size for c in cams] == [(W, H)] * 3
    views = make_views(sample, n_cameras=2, seed=0, image_size=(W, H), progress=False)
    path = tmp_path / "wide.npz"
    save_views(path, views)
    with np.load(path) as z:
        assert z["salsa_01.cam0/image_size"].tolist() == [W, H]  # the file stores [width, height]
    again = load_views(path)
    assert set(again) == set(views) and len(again) == 10
    f_lo, f_hi = 1150 * W / 1000 * 0.95, 1150 * W / 1000 * 1.05  # focal scales with the width
    for name, v in again.items():
        assert v.image_size == (W, H) and type(v.image_size) is tuple, name
        K = v.intrinsics
        np.testing.assert_array_equal(K, views[name].intrinsics)
        assert abs(K[0, 2] - 640) <= 10 and abs(K[1, 2] - 360) <= 10, (name, K[:2, 2])
        assert f_lo <= K[0, 0] == K[1, 1] <= f_hi, (name, K[0, 0])
        # the camera looks at the mean pelvis: it projects onto the principal point
        P = v.kp3d[:, 0].astype(np.float64).mean(axis=0)
        np.testing.assert_allclose(P[:2] / P[2] * K[0, 0] + K[:2, 2], K[:2, 2], atol=1e-3)
        u, w = v.kp2d[..., 0], v.kp2d[..., 1]
        inside = ((u >= 0) & (u < W) & (w >= 0) & (w < H)).mean()
        assert inside > 0.97, (name, inside)  # the sample's dancers (indian_15 walks out a bit)
        assert reprojection_px(v) < 1e-2


def test_noise_drop_and_fps(sample):
    exact = make_views(sample, 1, seed=3, progress=False)
    noisy = make_views(sample, 1, seed=3, noise_px=5.0, drop_prob=0.1, progress=False)
    k = "indian_15.cam0"
    d = noisy[k].kp2d[..., :2] - exact[k].kp2d
    assert noisy[k].kp2d.shape[-1] == 3
    assert 4.9 < d.std() < 5.1 and abs(d.mean()) < 0.1  # 20,400 draws: std err 0.025 px
    assert 0.09 < (noisy[k].kp2d[..., 2] == 0).mean() < 0.11  # 10,200 joints: std err 0.003
    np.testing.assert_array_equal(noisy[k].kp2d[..., 2] != 0, (noisy[k].kp2d[..., 2] == 1))
    slow = make_views(sample, 1, seed=3, fps=25.0, progress=False)
    assert slow[k].frames == 300 and slow[k].fps == 25.0
    assert reprojection_px(slow[k]) < 1e-2


def test_resample_is_linear_in_time():
    seq = np.arange(11, dtype=np.float32)[:, None] * np.ones((1, 3), np.float32)  # value = frame
    up = resample(seq, 10.0, 20.0)
    assert len(up) == 21
    np.testing.assert_allclose(up[:, 0], np.arange(21) / 2, atol=1e-6)
    np.testing.assert_array_equal(resample(seq, 10.0, 10.0), seq)


def test_detector_noise_is_seeded():
    kp = np.zeros((4, 17, 2), np.float32)
    a = detector_noise(kp, 2.0, 0.2, np.random.default_rng(0))
    b = detector_noise(kp, 2.0, 0.2, np.random.default_rng(0))
    np.testing.assert_array_equal(a, b)


# --- bad input: clear errors ------------------------------------------------------------------
def test_load_errors(tmp_path):
    with pytest.raises(UserError, match="not found"):
        load_mocap(tmp_path / "missing.npz")
    bad = tmp_path / "bad.npz"
    np.savez(bad, seq=np.zeros((10, 16, 3), np.float32))
    with pytest.raises(UserError, match=r"shape \(10, 16, 3\)"):
        load_mocap(bad, fps=30)
    with pytest.raises(UserError, match="frame rate"):
        load_mocap(bad)
    with pytest.raises(UserError, match="needs a splits file"):
        load_mocap(SAMPLE_MOCAP, split="test")
    splits = tmp_path / "splits.json"
    splits.write_text(json.dumps({"splits": {"sample_cmu_test": {"test": ["salsa_01"]}}}))
    assert list(load_mocap(SAMPLE_MOCAP, splits, "test").sequences) == ["salsa_01"]
    with pytest.raises(UserError, match="unknown split 'val'"):
        load_mocap(SAMPLE_MOCAP, splits, "val")
    splits.write_text(json.dumps({"splits": {"other": {"test": []}}}))
    with pytest.raises(UserError, match="no splits for 'sample_cmu_test'"):
        load_mocap(SAMPLE_MOCAP, splits, "test")
    notnpz = tmp_path / "x.npz"
    notnpz.write_text("hello")
    with pytest.raises(UserError, match="not a readable"):
        load_views(notnpz)


def test_views_shape_errors(tmp_path):
    p = tmp_path / "v.npz"
    np.savez(p, **{"a/kp2d": np.zeros((5, 17, 4), np.float32)})
    with pytest.raises(UserError, match="kp2d has shape"):
        load_views(p)
    np.savez(p, **{"a/kp2d": np.zeros((5, 17, 2), np.float32),
                   "a/kp3d": np.zeros((4, 17, 3), np.float32)})
    with pytest.raises(UserError, match="kp3d has shape"):
        load_views(p)
    np.savez(p, **{"a/kp2d": np.full((5, 17, 2), np.nan, np.float32)})
    with pytest.raises(UserError, match="NaN"):
        load_views(p)
    np.savez(p, **{"a/kp2d": np.zeros((5, 17, 2), np.float32), "a/extra": np.zeros(3)})
    assert load_views(p)["a"].kp3d is None  # unknown fields and missing 3D are fine


# --- the shared real data ---------------------------------------------------------------------
@pytest.mark.shared_data
def test_bandai_test_split_views_project_back(shared_data, tmp_path):
    from streamlift.cli import main

    out = tmp_path / "bandai_test.npz"
    rc = main(["data", "views", "--mocap", str(shared_data / "bandai_h36m17.npz"),
               "--splits", str(shared_data / "splits.json"), "--split", "test",
               "--out", str(out), "--cameras", "2", "--quiet"])
    assert rc == 0
    views = load_views(out)
    test = json.loads((shared_data / "splits.json").read_text())["splits"]["bandai_h36m17"]["test"]
    assert len(views) == 2 * len(test)
    assert {n.rsplit(".cam", 1)[0] for n in views} == set(test)
    worst = max(reprojection_px(v) for v in views.values())
    assert worst < 0.05, f"kp3d does not project onto kp2d (worst {worst:.3f} px)"
