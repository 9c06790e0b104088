"""The virtual camera: exact re-projection, the rotation back, and every path that uses it."""

import dataclasses

import numpy as np
import pytest
import torch

from streamlift.data import load_mocap, make_views
from streamlift.eval.evaluate import evaluate
from streamlift.lifter.model import LifterConfig, NRSfMFormer, load_lifter
from streamlift.paths import SAMPLE_MOCAP
from streamlift.train.sampler import WindowSampler
from streamlift.train.lifter import validate
from streamlift.virtual_camera import check_intrinsics, from_virtual, root_pixels, to_virtual
from streamlift.geometry import ray_rotations
from streamlift.lifter.infer import lift_sequence

torch.set_num_threads(1)
K = np.array([[1150.0, 0, 480], [0, 1120.0, 530], [0, 0, 1]])


def project(X, K):
    """Camera-frame points (..., 3) -> pixels (..., 2)."""
    p = X @ K.T
    return p[..., :2] / p[..., 2:]


def poses(n, seed=0):
    """n random bodies (n, 17, 3) mm, 2.5-6 m in front of the camera, up to 2 m off the axis."""
    g = np.random.default_rng(seed)
    body = g.normal(0, 300, (n, 17, 3))
    body -= body[:, :1]
    place = np.stack([g.uniform(-2000, 2000, n), g.uniform(-800, 800, n),
                      g.uniform(2500, 6000, n)], -1)
    return body + place[:, None]


def test_ray_rotations_are_rotations_taking_the_axis_to_the_ray():
    g = np.random.default_rng(1)
    r = g.normal(size=(50, 3))
    r[:, 2] = np.abs(r[:, 2]) + 0.05
    r = np.concatenate([r, [[0, 0, 1.0], [1e-9, -1e-9, 1.0]]])  # on and next to the axis
    R = ray_rotations(r)
    np.testing.assert_allclose(R[:, :, 2], r / np.linalg.norm(r, axis=1, keepdims=True), atol=1e-12)
    np.testing.assert_allclose(R @ R.transpose(0, 2, 1), np.broadcast_to(np.eye(3), R.shape), atol=1e-12)
    np.testing.assert_allclose(np.linalg.det(R), 1.0, atol=1e-12)
    np.testing.assert_allclose(R[-2], np.eye(3), atol=0)
    assert np.isfinite(R).all()


def test_virtual_pixels_are_the_projection_of_the_rotated_pose():
    X = poses(40)
    kp = project(X, K).astype(np.float32)
    kpv, R = to_virtual(kp, K)
    Xv = np.einsum("nji,nkj->nki", R.astype(np.float64), X)  # R^T X per frame
    np.testing.assert_allclose(kpv, project(Xv, K), atol=2e-3)
    np.testing.assert_allclose(kpv[:, 0], np.broadcast_to(K[:2, 2], (40, 2)), atol=2e-3)  # root on the axis
    np.testing.assert_allclose(from_virtual(Xv.astype(np.float32), R), X, rtol=1e-5, atol=0.05)
    # a subject already on the axis is left as it is
    on_axis = project(X - X[:, :1] + [0, 0, 4000], K).astype(np.float32)
    kpv, R = to_virtual(on_axis, K)
    np.testing.assert_allclose(kpv, on_axis, atol=2e-3)
    np.testing.assert_allclose(R, np.broadcast_to(np.eye(3), R.shape), atol=1e-6)


def test_a_turned_off_axis_subject_looks_like_the_on_axis_one():
    """The reason for the virtual camera: a body seen off the axis, re-projected, has the 2D of
    the same body on the axis turned by the ray (what the lifter estimates), up to perspective."""
    X = poses(1, seed=3)[0]
    ray = X[0] / np.linalg.norm(X[0])
    off = project(X, K)[None].astype(np.float32)
    kpv, R = to_virtual(off, K)
    on = project((X - X[0]) @ R[0].astype(np.float64) + [0, 0, np.linalg.norm(X[0])], K)
    np.testing.assert_allclose(kpv[0], on, atol=2e-3)
    assert np.degrees(np.arccos(ray[2])) > 5  # the test subject really is off the axis


def test_root_fallback_and_confidences_pass_through():
    X = poses(3, seed=4)
    kp = np.concatenate([project(X, K), np.ones((3, 17, 1))], -1).astype(np.float32)
    kp[1, 0] = (0, 0, 0)  # root not detected: look at the mean of the detected joints
    kp[2, :, 2] = 0  # nothing detected: the first joint's pixel, whatever it is
    c = root_pixels(kp)
    np.testing.assert_allclose(c[0], kp[0, 0, :2])
    np.testing.assert_allclose(c[1], kp[1, 1:, :2].mean(0), rtol=1e-6)
    np.testing.assert_allclose(c[2], kp[2, 0, :2])
    kpv, R = to_virtual(kp, K)
    np.testing.assert_array_equal(kpv[..., 2], kp[..., 2])
    assert np.isfinite(kpv).all() and np.isfinite(R).all()


def test_one_matrix_per_frame_equals_one_for_all():
    kp = project(poses(6, seed=5), K).astype(np.float32)
    a = to_virtual(kp, K)
    b = to_virtual(kp, np.broadcast_to(K, (6, 3, 3)))
    for x, y in zip(a, b):
        np.testing.assert_allclose(x, y, rtol=1e-6, atol=1e-4)


@pytest.mark.parametrize("bad, words", [
    (np.eye(2), "3x3"),
    (np.full((3, 3), np.nan), "NaN"),
    (np.diag([-1.0, 1, 1]), "fx, fy > 0"),
    (np.array([[1.0, 0, 0], [0, 1, 0], [0.1, 0, 1]]), "pinhole"),
    (np.array([[1.0, 1, 0], [1, 1, 0], [0, 0, 1]]), "pinhole"),  # singular: K[1, 0] != 0
    (np.diag([1e-9, 1, 1]), "at least"),
    (np.array([[900.0, 0, 1e12], [0, 900, 500], [0, 0, 1]]), "beyond"),
])
def test_bad_intrinsics_are_refused_with_the_reason(bad, words):
    with pytest.raises(ValueError, match=words):
        check_intrinsics(bad)
    with pytest.raises(ValueError):
        to_virtual(np.zeros((1, 17, 2), np.float32), bad)


@pytest.fixture(scope="module")
def sample_views():
    return make_views(load_mocap(SAMPLE_MOCAP), n_cameras=2, seed=0, progress=False)


def test_lift_sequence_with_intrinsics_lifts_the_virtual_view_and_turns_it_back(sample_views):
    torch.manual_seed(0)
    m = NRSfMFormer(LifterConfig(dim=32, depth=1, heads=2, window=9)).eval()
    v = next(iter(sample_views.values()))
    fr = np.array([0, 5, 77, v.frames - 1])
    got = lift_sequence(m, v.kp2d, frames=fr, K=v.intrinsics)
    kpv, R = to_virtual(v.kp2d, v.intrinsics)
    want = from_virtual(lift_sequence(m, kpv, frames=fr), R[fr])
    np.testing.assert_allclose(got, want, atol=1e-6)
    assert not np.allclose(got, lift_sequence(m, v.kp2d, frames=fr), atol=1e-3)


def test_sampler_sees_views_through_the_virtual_camera_and_validation_turns_back(sample_views):
    torch.manual_seed(0)
    m = NRSfMFormer(LifterConfig(dim=32, depth=1, heads=2, window=9)).eval()
    s = WindowSampler(sample_views, 9, "causal", intrinsics=True)
    plain = WindowSampler(sample_views, 9, "causal", intrinsics=False)
    v = next(iter(sample_views.values()))
    kpv, R = to_virtual(np.concatenate([v.kp2d, v.confidence()[..., None]], -1), v.intrinsics)
    torch.testing.assert_close(s.kp[:v.frames], torch.from_numpy(kpv))
    torch.testing.assert_close(s.rot[:v.frames], torch.from_numpy(R))
    torch.testing.assert_close(plain.rot, torch.eye(3).expand(len(plain), 3, 3))
    kp3d = torch.from_numpy(np.concatenate([w.kp3d for w in sample_views.values()]))
    targets = torch.arange(0, v.frames, 7)
    got = validate(m, s, kp3d, targets, "cpu")
    lifted = lift_sequence(m, v.kp2d, frames=targets.numpy(), K=v.intrinsics)
    from streamlift.metrics import n_mpjpe, pa_mpjpe
    gt = v.kp3d[targets.numpy()]
    assert got["n_mpjpe"] == pytest.approx(float(n_mpjpe(lifted, gt)), rel=1e-4)
    assert got["pa_mpjpe"] == pytest.approx(float(pa_mpjpe(lifted, gt)), rel=1e-4)


def test_evaluate_lifts_views_with_intrinsics_through_the_virtual_camera(sample_views):
    torch.manual_seed(0)
    m = NRSfMFormer(LifterConfig(dim=32, depth=1, heads=2, window=9)).eval()
    two = dict(list(sample_views.items())[:2])
    with_k = evaluate(m, two, progress=False)
    without = evaluate(m, two, progress=False, intrinsics=False)
    assert (with_k["virtual_camera_views"], without["virtual_camera_views"]) == (2, 0)
    # each is the frame mean of the errors of lift_sequence with K (without), as eval scales
    from streamlift.metrics import mpjpe, n_mpjpe, pa_mpjpe
    from streamlift.lifter.model import metric_scale, skeleton_height
    for res, use_k in ((with_k, True), (without, False)):
        errs = {"mpjpe": [], "n_mpjpe": [], "pa_mpjpe": []}
        for v in two.values():
            pred = torch.from_numpy(lift_sequence(m, v.kp2d, K=v.intrinsics if use_k else None))
            gt = torch.from_numpy(v.kp3d)
            h = float(skeleton_height(gt.double()).median())
            errs["mpjpe"].append(mpjpe(metric_scale(pred.double(), h), gt.double(), reduce=False))
            errs["n_mpjpe"].append(n_mpjpe(pred.double(), gt.double(), reduce=False))
            errs["pa_mpjpe"].append(pa_mpjpe(pred.double(), gt.double(), reduce=False))
        for k, e in errs.items():
            assert res[k] == pytest.approx(float(torch.cat(e).mean()), rel=1e-6), k
    bare = {k: dataclasses.replace(v, intrinsics=None) for k, v in two.items()}
    assert evaluate(m, bare, progress=False)["virtual_camera_views"] == 0


def test_shipped_lifter_is_more_accurate_through_the_virtual_camera(sample_views):
    """The shipped model on the shipped (test-split) sample, every 3rd frame of one camera per
    clip: the virtual camera turns the off-axis subjects' poses the right way, so N-MPJPE drops;
    PA-MPJPE forgives rotation and barely moves."""
    from streamlift.metrics import n_mpjpe, pa_mpjpe

    model, _ = load_lifter(None, torch.device("cpu"))
    P, Q, G = [], [], []
    for name, v in sample_views.items():
        if name.endswith(".cam0"):
            fr = np.arange(0, v.frames, 3)
            P.append(lift_sequence(model, v.kp2d, frames=fr, K=v.intrinsics))
            Q.append(lift_sequence(model, v.kp2d, frames=fr))
            G.append(v.kp3d[fr])
    P, Q, G = (np.concatenate(x) for x in (P, Q, G))
    assert float(n_mpjpe(P, G)) < float(n_mpjpe(Q, G)) - 1.0
    assert abs(float(pa_mpjpe(P, G)) - float(pa_mpjpe(Q, G))) < 1.0
