"""Roll augmentation (`--roll-deg`): a rolled window's 2D is the 2D of the rolled pose, the
batch rolls the share it is told, the prior scores the poses turned back, and `adapt` anchors a
rolled window to the starting lifter's estimate from the 2D unturned."""

import math

import numpy as np
import pytest
import torch

from streamlift.cli import build_parser
from streamlift.data import load_mocap, make_views
from streamlift.lifter.model import load_checkpoint
from streamlift.paths import DEFAULT_PRIOR, SAMPLE_MOCAP, WINDOWED_WEIGHTS
from streamlift.prior.loss import prior_loss
from streamlift.prior.model import load_prior
from streamlift.train import adapt as A
from streamlift.train.lifter import TrainConfig, loss_terms
from streamlift.train.sampler import WindowSampler, draw_batch, roll_2d, roll_3d
from streamlift.virtual_camera import to_virtual

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def sample_views():
    return make_views(load_mocap(SAMPLE_MOCAP), 2, 0, progress=False)


def test_a_rolled_windows_2d_is_the_projection_of_the_rolled_pose(sample_views):
    """Through the virtual camera (root on its axis) under full perspective: K roll_3d(X) / z
    equals roll_2d of K X / z, for rolls up to upside down; roll_3d(-theta) undoes it."""
    v = next(iter(sample_views.values()))
    K = v.intrinsics.astype(np.float64)
    assert K[0, 0] == K[1, 1]
    kp = np.concatenate([v.kp2d[:40], np.linspace(0.1, 1, 40 * 17).reshape(40, 17, 1)], axis=-1)
    kpv, R = to_virtual(kp, K)
    Xv = torch.from_numpy(np.einsum("nji,nkj->nki", R.astype(np.float64),
                                    v.kp3d[:40].astype(np.float64)))  # (40, J, 3): R^T X
    theta = torch.linspace(-math.pi, math.pi, 40, dtype=torch.float64)

    def project(X):
        p = X @ torch.from_numpy(K).T
        return p[..., :2] / p[..., 2:]

    np.testing.assert_allclose(project(Xv).numpy(), kpv[..., :2], atol=5e-3)
    rolled = roll_2d(torch.from_numpy(kpv[:, None].astype(np.float64)), theta)[:, 0]
    np.testing.assert_allclose(rolled[..., :2].numpy(), project(roll_3d(Xv, theta)).numpy(),
                               atol=5e-3)
    assert torch.equal(rolled[..., 2], torch.from_numpy(kpv[..., 2]).double())  # confidences
    moved = (rolled[..., :2] - torch.from_numpy(kpv[..., :2])).norm(dim=-1).mean()
    assert moved > 50  # px: it did turn them
    torch.testing.assert_close(roll_3d(roll_3d(Xv, theta), -theta), Xv)


def test_a_batch_rolls_the_share_it_is_told(sample_views):
    """--roll-deg D --roll-prob p: a share p of the windows turned by U(-D, D), the rest not,
    each by exactly the roll returned; no roll drawn (and no randomness used) without it."""
    sampler = WindowSampler(sample_views, 9, "causal")

    def batch(**kw):
        cfg = TrainConfig(batch=2048, flip_prob=0.0, noise_px=0.0, **kw)
        w, _, roll = draw_batch(sampler, cfg, torch.Generator().manual_seed(5))
        plain = sampler.windows(sampler.draw(cfg.batch, torch.Generator().manual_seed(5),
                                             cfg.balance))
        return w, roll, plain

    w, roll, plain = batch()
    assert roll is None and torch.equal(w, plain)
    w, roll, plain = batch(roll_deg=90.0, roll_prob=0.25)
    turned = roll != 0
    assert 0.22 < turned.float().mean() < 0.28
    assert roll.abs().max() <= math.pi / 2
    assert 40 < math.degrees(roll[turned].abs().mean()) < 50  # uniform over (-90, 90)
    assert (roll[turned] < 0).float().mean().item() == pytest.approx(0.5, abs=0.06)
    torch.testing.assert_close(w, roll_2d(plain, roll))
    assert torch.equal(w[~turned], plain[~turned])
    for cmd in (["train", "--data", "v.npz", "--out", "o.pt"],
                ["adapt", "--data", "v.npz", "--out", "o.pt"]):
        a = build_parser().parse_args(cmd + ["--roll-deg", "90", "--roll-prob", "0.25"])
        assert (a.roll_deg, a.roll_prob) == (90.0, 0.25)


def test_the_prior_scores_rolled_poses_turned_back(sample_views):
    """The shipped prior finds real poses turned by 90 degrees unlikely; given the roll,
    loss_terms scores them as the upright poses, to the same value with the same noise."""
    prior = load_prior(DEFAULT_PRIOR)
    X = torch.from_numpy(np.stack([v.kp3d[:64] for v in sample_views.values()])).float()
    theta = torch.full((len(X),), math.pi / 2)
    o = type("Out", (), {"X": roll_3d(X, theta), "extras": {}})()

    def score(o_, roll=None):
        return float(loss_terms(o_, None, {}, prior, generator=torch.Generator().manual_seed(2),
                                roll=roll)["prior"])

    upright = float(prior_loss(prior, X, generator=torch.Generator().manual_seed(2)))
    assert score(o, theta) == pytest.approx(upright, rel=1e-4)
    assert score(o) > 1.5 * upright  # what the prior would have said without the roll


def test_adapt_anchors_a_rolled_window_to_the_teacher_on_the_unturned_2d(sample_views,
                                                                        monkeypatch):
    seen = {}
    monkeypatch.setattr(A, "orientation_anchor", lambda X, X0: seen.update(X=X, X0=X0)
                        or (X * 0).sum())
    cfg = A.AdaptConfig(batch=8, noise_px=0.0, roll_deg=90.0, roll_prob=1.0, prior_weight=0)
    model, _ = load_checkpoint(WINDOWED_WEIGHTS)
    teacher = load_checkpoint(WINDOWED_WEIGHTS)[0].eval()
    sampler = WindowSampler(sample_views, model.cfg.window, model.cfg.mode)
    run = A._Run(model, teacher, sampler, None, None, None)
    opt = A.Optimiser(model, 0.0, 0.0, 1, 1)
    A._step(run, opt, cfg, torch.Generator().manual_seed(4))
    w, _, roll = draw_batch(sampler, cfg, torch.Generator().manual_seed(4))
    assert roll.abs().min() > 0
    with torch.no_grad():
        u = roll_2d(w, -roll)
        want = roll_3d(teacher(u[..., :2], u[..., 2]).X, roll)
        naive = teacher(w[..., :2], w[..., 2]).X
    torch.testing.assert_close(seen["X0"], want, atol=1e-4, rtol=1e-4)
    assert (seen["X0"] - naive).abs().mean() > 0.05  # the lifter is not roll-equivariant


@torch.no_grad()
def test_distillation_rolls_the_students_chunks_and_turns_the_teachers_targets(sample_views):
    import argparse
    import importlib.util
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "scripts/distil_stream.py"
    spec = importlib.util.spec_from_file_location("distil_stream", script)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    teacher = load_checkpoint(WINDOWED_WEIGHTS)[0].eval()
    sampler = WindowSampler(sample_views, teacher.cfg.window, "causal")
    a = argparse.Namespace(batch=4, chunk=30, noise_px=0.0, roll_deg=90.0, roll_prob=1.0)
    w, Xt, st, roll = mod.distil_batch(sampler, teacher, a, 0, torch.Generator().manual_seed(1))
    a.roll_deg = 0.0
    plain = mod.distil_batch(sampler, teacher, a, 0, torch.Generator().manual_seed(1))
    assert plain[3] is None and roll.abs().min() > 0
    torch.testing.assert_close(w, roll_2d(plain[0], roll))  # the same chunks, turned
    torch.testing.assert_close(Xt, roll_3d(plain[1], roll))  # the unturned chunks' targets
    torch.testing.assert_close(st, plain[2])


def test_rolled_views_are_the_motion_seen_by_rolled_cameras(sample_views):
    """scripts/roll_views.py: the rolled 2D is the projection of the rolled 3D, which is the
    world motion seen through the rolled extrinsics; 0 degrees changes nothing."""
    import importlib.util
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "scripts/roll_views.py"
    spec = importlib.util.spec_from_file_location("roll_views", script)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    v = next(iter(sample_views.values()))
    r = mod.roll_view(v, 90.0)
    K = v.intrinsics.astype(np.float64)
    p = r.kp3d.astype(np.float64) @ K.T
    np.testing.assert_allclose(r.kp2d[..., :2], p[..., :2] / p[..., 2:], atol=0.02)
    world = np.einsum("ij,tkj->tki", v.extrinsics[:, :3].T, v.kp3d - v.extrinsics[:, 3])
    again = world @ r.extrinsics[:, :3].T.astype(np.float64) + r.extrinsics[:, 3]
    np.testing.assert_allclose(again, r.kp3d, atol=0.05)
    assert np.abs(r.kp2d - v.kp2d).mean() > 20  # px: it turned
    np.testing.assert_allclose(mod.roll_view(v, 0.0).kp2d, v.kp2d, atol=1e-3)
