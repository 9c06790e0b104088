"""Metrics against cases whose answer is known by construction, and an independent numpy version."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from streamlift.metrics import all_metrics, auc, mpjpe, n_mpjpe, pa_mpjpe, pck, rotation_to_truth
from streamlift.skeleton import H36M17


def random_rotation(rng) -> np.ndarray:
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] *= -1
    return q


def random_poses(rng, n=8) -> np.ndarray:
    return rng.normal(scale=300.0, size=(n, 17, 3))


# --- an independent numpy implementation, written from the textbook formulas ----------------
def np_mpjpe(p, g):
    p = p - p[:, :1]
    g = g - g[:, :1]
    return np.linalg.norm(p - g, axis=-1).mean()


def np_n_mpjpe(p, g):
    p = p - p[:, :1]
    g = g - g[:, :1]
    s = np.einsum("njc,njc->n", p, g) / np.einsum("njc,njc->n", p, p)
    return np.linalg.norm(s[:, None, None] * p - g, axis=-1).mean()


def np_pa_mpjpe(p, g):
    errs = []
    for a, b in zip(p, g):
        a0, b0 = a - a.mean(0), b - b.mean(0)
        u, sig, vt = np.linalg.svd(a0.T @ b0)
        d = np.sign(np.linalg.det(vt.T @ u.T))
        D = np.diag([1.0, 1.0, d])
        rot = vt.T @ D @ u.T
        scale = np.trace(D @ np.diag(sig)) / (a0 ** 2).sum()
        errs.append(np.linalg.norm(scale * a0 @ rot.T + b.mean(0) - b, axis=-1).mean())
    return float(np.mean(errs))


# --- known by construction --------------------------------------------------------------------
def test_similarity_transform_is_undone_by_pa_only():
    rng = np.random.default_rng(1)
    gt = random_poses(rng)
    pred = np.stack([2.5 * g @ random_rotation(rng).T + rng.normal(size=3) * 1000 for g in gt])
    assert pa_mpjpe(pred, gt) < 1e-6
    assert mpjpe(pred, gt) > 100.0
    assert n_mpjpe(pred, gt) > 10.0  # a scale alone cannot undo a rotation


def test_pure_scale_is_undone_by_n_mpjpe():
    rng = np.random.default_rng(2)
    gt = random_poses(rng)
    pred = 0.37 * (gt - gt[:, :1]) + 50.0  # scaled about the root, then shifted
    assert n_mpjpe(pred, gt) < 1e-9
    assert mpjpe(pred, gt) > 100.0


def test_mirror_is_not_fixed_by_pa():
    rng = np.random.default_rng(3)
    gt = random_poses(rng)
    mirrored = gt * np.array([-1.0, 1.0, 1.0])  # a reflection, not a rotation
    assert pa_mpjpe(mirrored, gt) > 20.0


def test_translation_only_gives_zero_mpjpe():
    rng = np.random.default_rng(4)
    gt = random_poses(rng)
    assert mpjpe(gt + np.array([10.0, -20.0, 3000.0]), gt) < 1e-9


def test_known_offset_value():
    gt = np.zeros((1, 17, 3))
    pred = np.zeros((1, 17, 3))
    pred[0, 1:, 0] = 10.0  # every non-root joint 10 mm off, the root exact
    assert mpjpe(pred, gt) == pytest.approx(10.0 * 16 / 17)


def test_pck_and_auc_known_values():
    gt = np.zeros((2, 17, 3))
    pred = np.zeros((2, 17, 3))
    pred[:, 1:9, 0] = 100.0  # 8 joints at 100 mm
    pred[:, 9:, 0] = 200.0  # 8 joints at 200 mm
    assert pck(pred, gt) == pytest.approx(9 / 17)
    # joints at 0 mm are within every threshold, 100 mm within 11 of 31 (100..150), 200 mm none
    assert auc(pred, gt) == pytest.approx((1 * 31 + 8 * 11) / (17 * 31))


def test_pck_counts_a_joint_exactly_at_the_threshold():
    # root-relative errors, all exact in floating point: 150 = |(90, 120, 0)| counts as within,
    # 150.5 and 151 do not; the roots sit at different places (root alignment first)
    gt = np.zeros((1, 6, 3))
    gt[0, 0] = [1000.0, -500.0, 3000.0]
    gt[0, 1:] = gt[0, 0]
    pred = gt.copy()
    pred[0] += [-20.0, 7.0, 40.0]  # a pure translation: no error
    pred[0, 2] += [150.0, 0.0, 0.0]
    pred[0, 3] += [90.0, 120.0, 0.0]
    pred[0, 4] += [0.0, 0.0, -150.5]
    pred[0, 5] += [0.0, 151.0, 0.0]
    assert pck(pred, gt) == 4 / 6  # root, joint 1 (0 mm), joints 2 and 3 (150 mm)
    assert pck(pred, gt, threshold_mm=150.49) == 4 / 6
    assert pck(pred, gt, threshold_mm=150.5) == 5 / 6
    assert pck(pred, gt, threshold_mm=149.99) == 2 / 6
    t = pck(torch.tensor(pred, dtype=torch.float32), torch.tensor(gt, dtype=torch.float32),
            reduce=False)
    assert t.dtype == torch.float32 and t.tolist() == [pytest.approx(4 / 6, abs=1e-7)]


def test_auc_counts_thresholds_hit_exactly():
    # errors 0, 0, 5, 7.5, 150 and 151 mm against thresholds 0, 5, ..., 150 (31 of them):
    # within 31, 31, 30 (5..150), 29 (10..150), 1 (150) and 0 thresholds
    gt = np.zeros((2, 6, 3))
    pred = np.zeros((2, 6, 3))
    pred[:, 2, 1] = 5.0
    pred[:, 3, 2] = -7.5
    pred[:, 4] = [0.0, 90.0, 120.0]
    pred[:, 5, 0] = 151.0
    assert auc(pred, gt) == pytest.approx((31 + 31 + 30 + 29 + 1 + 0) / (6 * 31), abs=1e-12)
    per_pose = auc(pred, gt, thresholds_mm=(0.0, 7.5, 150.0), reduce=False)
    np.testing.assert_allclose(per_pose, [(3 + 3 + 2 + 2 + 1 + 0) / 18] * 2, rtol=0, atol=1e-12)


# --- agreement with the numpy implementation ---------------------------------------------------
@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), n=st.integers(1, 12))
def test_agrees_with_numpy_on_random_data(seed, n):
    rng = np.random.default_rng(seed)
    gt = random_poses(rng, n)
    pred = gt + rng.normal(scale=rng.uniform(1, 200), size=gt.shape)
    assert mpjpe(pred, gt) == pytest.approx(np_mpjpe(pred, gt), rel=1e-9)
    assert n_mpjpe(pred, gt) == pytest.approx(np_n_mpjpe(pred, gt), rel=1e-9)
    assert pa_mpjpe(pred, gt) == pytest.approx(np_pa_mpjpe(pred, gt), rel=1e-6, abs=1e-6)


def test_torch_batched_matches_numpy_and_keeps_type():
    rng = np.random.default_rng(5)
    gt = rng.normal(scale=300.0, size=(4, 6, 17, 3))
    pred = gt + rng.normal(scale=30.0, size=gt.shape)
    t = pa_mpjpe(torch.tensor(pred, dtype=torch.float32), torch.tensor(gt, dtype=torch.float32),
                 reduce=False)
    assert isinstance(t, torch.Tensor) and t.shape == (4, 6)
    per_pose = pa_mpjpe(pred, gt, reduce=False)
    assert isinstance(per_pose, np.ndarray) and per_pose.shape == (4, 6)
    np.testing.assert_allclose(t.numpy(), per_pose, rtol=1e-4)
    assert float(t.mean()) == pytest.approx(np_pa_mpjpe(pred.reshape(-1, 17, 3), gt.reshape(-1, 17, 3)),
                                            rel=1e-4)
    m = all_metrics(pred, gt)
    assert set(m) == {"mpjpe", "n_mpjpe", "pa_mpjpe", "pck150", "auc"}
    assert m["pa_mpjpe"] <= m["n_mpjpe"] <= m["mpjpe"] + 1e-9


def axis_angle(v_deg) -> np.ndarray:
    """Rodrigues: the rotation matrix of a rotation vector in degrees (independent of the code)."""
    v = np.deg2rad(np.asarray(v_deg, dtype=np.float64))
    a = np.linalg.norm(v)
    k = v / a
    K = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + np.sin(a) * K + (1 - np.cos(a)) * K @ K


@pytest.mark.parametrize("v", [(15.6, 0, 0), (0, -40, 0), (0, 0, 120), (10, -20, 30),
                               (0.01, 0, 0), (-170, 5, 0)])
def test_rotation_to_truth_is_the_rotation_vector_that_turns_the_prediction_onto_the_truth(v):
    rng = np.random.default_rng(7)
    gt = random_poses(rng, 3)
    R = axis_angle(v)
    # the prediction is the truth turned back by R, scaled and moved: gt = R pred (centred)
    pred = np.stack([0.3 * g @ R for g in gt]) + rng.normal(size=(3, 1, 3)) * 500
    got = rotation_to_truth(pred, gt)
    assert got.shape == (3, 3)
    np.testing.assert_allclose(got, np.broadcast_to(v, (3, 3)), atol=1e-6)
    # the other way round is the inverse rotation
    np.testing.assert_allclose(rotation_to_truth(gt, pred), -got, atol=1e-6)


def test_rotation_to_truth_is_zero_for_a_similarity_without_rotation_and_batched_in_torch():
    rng = np.random.default_rng(8)
    gt = rng.normal(scale=300.0, size=(2, 4, 17, 3))
    assert np.abs(rotation_to_truth(2.0 * gt + 100.0, gt)).max() < 1e-9
    t = rotation_to_truth(torch.tensor(gt @ axis_angle((0, 0, 25)), dtype=torch.float32),
                          torch.tensor(gt, dtype=torch.float32))
    assert isinstance(t, torch.Tensor) and t.shape == (2, 4, 3)
    np.testing.assert_allclose(t.numpy(), np.broadcast_to((0, 0, 25), (2, 4, 3)), atol=1e-3)


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match="share a shape"):
        mpjpe(np.zeros((2, 17, 3)), np.zeros((2, 16, 3)))
    assert H36M17.num_joints == 17
