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


# ------------------------------------------------------------------ pinned to hand values
def test_reprojection_is_normalised_by_the_confidence_sum_not_the_joint_count():
    B = symmetric_skeleton()[None]
    D = torch.zeros(1, 2, 17, 3)
    x2d = make_output(B, D).x2d.clone()
    x2d[:, 0, 3] += torch.tensor([3.0, 4.0])  # distance 5
    x2d[:, 1, 5] += torch.tensor([-1.0, 0.0])  # distance 1
    conf = torch.full((1, 2, 17), 0.2)
    conf[:, 0, 3], conf[:, 1, 5] = 1.0, 0.5
    # (1.0 * 5 + 0.5 * 1) / (32 * 0.2 + 1.0 + 0.5) = 5.5 / 7.9; the count would give 5.5 / 34
    assert float(L.reprojection(make_output(B, D, x2d=x2d, conf=conf))) == pytest.approx(
        5.5 / 7.9, rel=1e-6)


def test_canonicalisation_hand_value_and_the_sign_of_the_deformation():
    """B: joints 1, 2 at e_x, e_y (the rest at the root). Frame 0: D = 0. Frame 1: D moves
    joint 1 by (1, 1, 0), so S = B + D has s_1 = (2, 1, 0), s_2 = (0, 1, 0):
    H = sum_j s_j b_j^T = [[2, 0, 0], [1, 1, 0], [0, 0, 0]], |H - H^T|^2 = 2, |S|^2 = 6,
    |B|^2 = 2: loss 2 / (6 * 2) = 1/6 in frame 1, 0 in frame 0, mean 1/12.
    (With S = B - D: s_1 = (0, -1, 0), |S|^2 = 2, loss 1/2 in frame 1, mean 1/4.)"""
    B = torch.zeros(1, 17, 3)
    B[0, 1, 0] = B[0, 2, 1] = 1.0
    D = torch.zeros(1, 2, 17, 3)
    D[0, 1, 1] = torch.tensor([1.0, 1.0, 0.0])
    assert float(L.canonicalisation(make_output(B, D))) == pytest.approx(1 / 12, rel=1e-6)


def test_depth_extent_is_the_mean_squared_depth_z():
    B = torch.zeros(1, 17, 3)
    B[0, :, 0] = 10.0 * torch.arange(17.0)  # x and y much larger than z: another axis shows
    B[0, :, 1] = -7.0
    B[0, 1:, 2] = torch.tensor([1.0, -2.0, 3.0] + [0.0] * 13)
    D = torch.zeros(1, 2, 17, 3)
    D[0, 1, 4, 2] = 4.0  # frame 1 only
    o = make_output(B, D)
    # frame 0: 1 + 4 + 9 = 14; frame 1: 14 + 16 = 30; over 2 x 17 joints
    assert float(L.depth_extent(o)) == pytest.approx(44 / 34, rel=1e-6)


def proportional_pose(factors=None) -> torch.Tensor:
    """A pose (17, 3) whose 16 bones have the lengths BONE_PROPORTIONS (sum 1), each bone i
    times factors[i], along assorted directions."""
    from streamlift.skeleton import BONE_PROPORTIONS, H36M17

    g = torch.Generator().manual_seed(3)
    P = torch.zeros(17, 3, dtype=torch.float64)
    for i, (p, c) in enumerate(H36M17.bones):
        d = torch.randn(3, generator=g, dtype=torch.float64)
        f = 1.0 if factors is None else factors[i]
        P[c] = P[p] + d / d.norm() * BONE_PROPORTIONS[i] * f
    return P


def test_bone_proportions_zero_within_the_tolerance_and_the_hinge_outside():
    from streamlift.skeleton import BONE_PROPORTION_LOG_TOL as TOL, BONE_PROPORTIONS as PROP

    def loss(P):
        B = P[None].float()
        return float(L.bone_proportions(make_output(B, torch.zeros(1, 3, 17, 3))))

    assert loss(proportional_pose()) == pytest.approx(0.0, abs=1e-7)
    # every bone off by up to 0.8 of its tolerance (after renormalising by the new sum): still 0
    f = [math.exp(0.8 * t * (-1) ** i) for i, t in enumerate(TOL)]
    total = sum(p * fi for p, fi in zip(PROP, f))
    assert max(abs(math.log(fi / total)) / t for fi, t in zip(f, TOL)) < 1  # really inside
    assert loss(proportional_pose(f)) == pytest.approx(0.0, abs=1e-7)
    # the left forearm (bone 12) twice as long: the sum becomes 1 + PROP[12], every other bone's
    # proportion drops by log(1 + PROP[12]) = 0.061 (inside every tolerance), bone 12's rises by
    # log 2 - 0.061: the hinge is that minus its tolerance, averaged over the 16 bones
    long = [1.0] * 16
    long[12] = 2.0
    s = math.log(1 + PROP[12])
    assert s < min(TOL)
    want = (math.log(2.0) - s - TOL[12]) / 16  # 0.0320...
    assert loss(proportional_pose(long)) == pytest.approx(want, rel=1e-5)
    assert want == pytest.approx(0.03204, abs=1e-4)
    # half as long: the deviation is negative, the hinge the same on its absolute value
    short = [1.0] * 16
    short[12] = 0.5
    s = math.log(1 - 0.5 * PROP[12])
    assert loss(proportional_pose(short)) == pytest.approx(
        (abs(math.log(0.5) - s) - TOL[12]) / 16, rel=1e-5)
