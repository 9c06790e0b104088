"""Training losses: zero exactly where the constraint holds, positive where it is broken."""

import math

import pytest
import torch

from streamlift.train import losses as L
from streamlift.lifter.model import LifterOutput


def make_output(B, D, R=None, x2d=None, conf=None):
    n, T = D.shape[:2]
    R = torch.eye(3).expand(n, T, 3, 3) if R is None else R
    X = (B[:, None] + D) @ R.transpose(-1, -2)
    x2d = X[..., :2].detach().clone() if x2d is None else x2d
    conf = torch.ones(X.shape[:3]) if conf is None else conf
    return LifterOutput(X, B, D, R, x2d, conf, torch.ones(n))


def symmetric_skeleton():
    from streamlift.skeleton import H36M17
    torch.manual_seed(0)
    P = torch.zeros(17, 3)
    for j, name in enumerate(H36M17.joints):
        if name.startswith("l_"):
            continue
        P[j] = torch.randn(3)
        if name.startswith("r_"):
            twin = H36M17.flip[j]
            P[twin] = P[j] * torch.tensor([-1.0, 1.0, 1.0])
    P[[0, 7, 8, 9, 10], 0] = 0  # midline
    return P - P[0]


def rot_z(a):
    c, s = math.cos(a), math.sin(a)
    return torch.tensor([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def test_reprojection_zero_on_match_and_weighted_by_confidence():
    B = symmetric_skeleton()[None]
    D = torch.zeros(1, 5, 17, 3)
    o = make_output(B, D)
    assert float(L.reprojection(o)) == pytest.approx(0.0, abs=1e-7)
    x2d = o.x2d.clone()
    x2d[:, :, 3, 0] += 1.0
    conf = torch.ones(1, 5, 17)
    assert float(L.reprojection(make_output(B, D, x2d=x2d, conf=conf))) == pytest.approx(1 / 17)
    conf[:, :, 3] = 0
    assert float(L.reprojection(make_output(B, D, x2d=x2d, conf=conf))) == pytest.approx(0.0, abs=1e-7)


def test_canonicalisation_penalises_a_rotation_hidden_in_the_deformation():
    B = symmetric_skeleton()[None]
    none = make_output(B, torch.zeros(1, 4, 17, 3))
    assert float(L.canonicalisation(none)) == pytest.approx(0.0, abs=1e-10)
    rotated = (B @ rot_z(0.4).T) - B  # D that turns the whole skeleton
    hidden = make_output(B, rotated[:, None].expand(1, 4, 17, 3).clone())
    assert float(L.canonicalisation(hidden)) > 1e-2
    # a non-rigid bend (one arm moves) costs much less than a whole-body rotation of that size
    bend = torch.zeros(1, 4, 17, 3)
    bend[:, :, 13] = rotated[:, 13]
    assert float(L.canonicalisation(make_output(B, bend))) < 0.2 * float(L.canonicalisation(hidden))
    # and its gradient is finite even at a degenerate (planar, symmetric) reference
    Bp = B.clone()
    Bp[..., 2] = 0
    D = torch.zeros(1, 4, 17, 3, requires_grad=True)
    L.canonicalisation(make_output(Bp, D)).backward()
    assert torch.isfinite(D.grad).all()


def test_smoothness_constancy_symmetry():
    B = symmetric_skeleton()[None]
    still = make_output(B, torch.zeros(1, 6, 17, 3))
    assert float(L.smoothness(still)) == 0.0
    assert float(L.bone_constancy(still)) == pytest.approx(0.0, abs=1e-6)
    assert float(L.bone_symmetry(still)) == pytest.approx(0.0, abs=1e-6)
    # constant velocity is smooth; a jump is not
    v = torch.arange(6.0)[None, :, None, None] * torch.tensor([0.1, 0.0, 0.0])
    assert float(L.smoothness(make_output(B, v.expand(1, 6, 17, 3).clone()))) == pytest.approx(0.0, abs=1e-10)
    jump = torch.zeros(1, 6, 17, 3)
    jump[:, 3:, 13] = 0.5
    o = make_output(B, jump)
    assert float(L.smoothness(o)) > 0 and float(L.bone_constancy(o)) > 0
    lopsided = B.clone()
    lopsided[:, 13] *= 1.5  # left forearm longer
    assert float(L.bone_symmetry(make_output(lopsided, torch.zeros(1, 6, 17, 3)))) > 0.01


def test_perspective_reprojection_is_exact_for_the_true_pose_and_weak_is_not():
    """A real body 3.5 m in front of a camera looking at its root: its normalised 2D is the
    perspective projection x = X_xy / (1 + k X_z), k = scale / focal, of the true pose in the
    model's units; the weak-perspective reprojection misses it by the perspective distortion."""
    from streamlift.lifter.model import normalise_2d

    f, Z0 = 1150.0, 3500.0
    P = symmetric_skeleton() * 250.0  # (17, 3) mm, root at 0, joints up to ~0.7 m deep
    T = 5
    Pt = P[None].repeat(T, 1, 1) + torch.linspace(0, 40, T)[:, None, None]  # a small motion
    Pt = Pt - Pt[:, :1]
    cam = Pt + torch.tensor([0.0, 0.0, Z0])
    px = f * cam[..., :2] / cam[..., 2:]  # (T, 17, 2), principal point at 0
    conf = torch.ones(1, T, 17)
    x2d, s = normalise_2d(px[None], conf)
    X = Pt[None] * f / (Z0 * s)  # the true pose in the model's units
    out = LifterOutput(X, X[:, 0], X - X[:, :1], torch.eye(3).expand(1, T, 3, 3), x2d, conf, s)
    weak = float(L.reprojection(out))
    out.extras["perspective"] = s / f
    assert float(L.reprojection(out)) < 1e-5
    assert weak > 0.02  # 2 % of the body's RMS size in the image
    # behind-the-camera depths stay finite (the clamp) and still carry a gradient
    Xb = X.clone().requires_grad_(True)
    far = LifterOutput(Xb * torch.tensor([1.0, 1.0, -50.0]), X[:, 0], X, torch.eye(3).expand(1, T, 3, 3),
                       x2d, conf, s, {"perspective": s / f})
    loss = L.reprojection(far)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(Xb.grad).all()
