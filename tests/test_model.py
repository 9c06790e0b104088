"""NRSfMFormer: structure of its output, invariances of its pre-processing, checkpoints."""

import math

import numpy as np
import pytest
import torch

from streamlift.lifter.model import (LifterConfig, NRSfMFormer, load_checkpoint, metric_scale, save_checkpoint, skeleton_height)
from streamlift.geometry import rotation_6d
from streamlift.lifter.infer import lift_sequence
from streamlift.windows import window_indices

torch.set_num_threads(1)


def tiny(**kw):
    torch.manual_seed(0)
    return NRSfMFormer(LifterConfig(dim=32, depth=1, heads=2, window=9, **kw)).eval()


def windows(n=3, T=9, seed=0):
    g = torch.Generator().manual_seed(seed)
    kp = 500 + 80 * torch.randn(n, T, 17, 2, generator=g)
    conf = torch.rand(n, T, 17, generator=g).clamp_min(0.2)
    return kp, conf


def test_output_is_rigid_times_reference_plus_deformation():
    m = tiny()
    kp, conf = windows()
    o = m(kp, conf)
    assert o.X.shape == (3, 9, 17, 3) and o.B.shape == (3, 17, 3) and o.R.shape == (3, 9, 3, 3)
    S = o.B[:, None] + o.D
    torch.testing.assert_close(o.X, torch.einsum("btij,btkj->btki", o.R, S))
    torch.testing.assert_close(o.X[:, :, 0], torch.zeros(3, 9, 3))  # root-relative
    eye = torch.eye(3).expand(3, 9, 3, 3)
    torch.testing.assert_close(o.R @ o.R.transpose(-1, -2), eye, atol=1e-5, rtol=0)
    assert torch.allclose(torch.linalg.det(o.R), torch.ones(3, 9), atol=1e-5)


def test_rotation_6d_is_a_rotation_and_identity_at_init():
    a = torch.randn(100, 6, dtype=torch.float64)
    R = rotation_6d(a)
    torch.testing.assert_close(R.transpose(-1, -2) @ R, torch.eye(3, dtype=torch.float64).expand(100, 3, 3))
    assert torch.allclose(torch.linalg.det(R), torch.ones(100, dtype=torch.float64))
    torch.testing.assert_close(rotation_6d(torch.tensor([1.0, 0, 0, 0, 1, 0])), torch.eye(3))


def test_pixels_in_any_scale_and_offset_give_the_same_pose():
    m = tiny()
    kp, conf = windows()
    a = m(kp, conf).X
    b = m(kp * 3.7 + torch.tensor([120.0, -40.0]), conf).X
    torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)


def test_undetected_joints_do_not_leak_into_the_result():
    m = tiny()
    kp, conf = windows()
    conf[:, :, 13] = 0  # l_wrist never detected
    kp2 = kp.clone()
    kp2[:, :, 13] += 300.0
    torch.testing.assert_close(m(kp, conf).X, m(kp2, conf).X)


@pytest.mark.parametrize("mode,target", [("causal", 8), ("centred", 4)])
def test_modes_pick_their_target_frame(mode, target):
    m = tiny(mode=mode)
    assert m.target_index == target and m.receptive_field() == 9
    kp, conf = windows()
    torch.testing.assert_close(m.lift(kp, conf), m(kp, conf).X[:, target])


def test_wrong_window_is_a_clear_error():
    with pytest.raises(ValueError, match="T=9"):
        tiny()(torch.zeros(1, 5, 17, 2))
    with pytest.raises(ValueError, match="mode"):
        LifterConfig(mode="future")


def test_window_indices_pad_like_a_stream():
    idx = window_indices(5, 3, "causal")
    np.testing.assert_array_equal(idx, [[0, 0, 0], [0, 0, 1], [0, 1, 2], [1, 2, 3], [2, 3, 4]])
    idx = window_indices(5, 3, "centred")
    np.testing.assert_array_equal(idx, [[0, 0, 1], [0, 1, 2], [1, 2, 3], [2, 3, 4], [3, 4, 4]])


def test_lift_sequence_scores_every_frame_with_padded_windows():
    m = tiny()
    kp, conf = windows(n=1, T=20)
    seq = torch.cat([kp[0], conf[0, ..., None]], dim=-1).numpy()  # (20, 17, 3)
    out = lift_sequence(m, seq, batch=7)
    assert out.shape == (20, 17, 3)
    w = torch.from_numpy(seq[window_indices(20, 9, "causal")])  # (20, 9, 17, 3)
    torch.testing.assert_close(torch.from_numpy(out), m.lift(w[..., :2], w[..., 2]), atol=1e-5, rtol=1e-5)
    # the first frame's window is nine copies of frame 0
    first = torch.from_numpy(seq[:1]).repeat(9, 1, 1)[None]
    torch.testing.assert_close(torch.from_numpy(out[0]), m.lift(first[..., :2], first[..., 2])[0],
                               atol=1e-5, rtol=1e-5)


def test_checkpoint_round_trip_is_weights_only(tmp_path):
    m = tiny(mode="centred")
    p = tmp_path / "m.pt"
    save_checkpoint(p, m, meta={"note": "test"})
    m2, meta = load_checkpoint(p)
    assert meta == {"note": "test"} and m2.cfg == m.cfg
    kp, conf = windows()
    torch.testing.assert_close(m.lift(kp, conf), m2.lift(kp, conf))
    torch.save({"format": "something-else"}, tmp_path / "x.pt")
    with pytest.raises(ValueError, match="not a streamlift lifter"):
        load_checkpoint(tmp_path / "x.pt")


def test_metric_scale_sets_the_height():
    pose = torch.randn(4, 17, 3)
    scaled = metric_scale(pose, 1700.0)
    torch.testing.assert_close(skeleton_height(scaled), torch.full((4,), 1700.0))


# ------------------------------------------------------------------ pre- and post-processing
def test_normalise_2d_root_subtraction_and_confidence_weighted_rms_scale():
    """By hand: ms = sum_j,t c |x - root|^2 / (2 sum_j,t c), scale = sqrt(ms); a joint of
    confidence 0 does not count (even 1,000 px away), and the root is subtracted per frame."""
    from streamlift.lifter.model import normalise_2d

    kp = torch.zeros(2, 2, 17, 2, dtype=torch.float64)
    conf = torch.zeros(2, 2, 17, dtype=torch.float64)
    root = torch.tensor([[100.0, 200.0], [130.0, 190.0]], dtype=torch.float64)  # moves per frame
    kp[0] = root[:, None]  # every joint on the root unless placed below
    conf[0, :, 0] = 1.0  # the root counts in the weight sum (at distance 0)
    kp[0, 0, 1] = root[0] + torch.tensor([3.0, 4.0], dtype=torch.float64)  # |x|^2 = 25, c = 1
    conf[0, 0, 1] = 1.0
    kp[0, 0, 2] = root[0] + torch.tensor([6.0, 8.0], dtype=torch.float64)  # |x|^2 = 100, c = 0.5
    conf[0, 0, 2] = 0.5
    kp[0, 0, 3] = root[0] + torch.tensor([1000.0, 0.0], dtype=torch.float64)  # c = 0: ignored
    kp[0, 1, 1] = root[1] + torch.tensor([0.0, 2.0], dtype=torch.float64)  # |x|^2 = 4, c = 1
    conf[0, 1, 1] = 1.0
    kp[0, 1, 5] = root[1] + torch.tensor([-700.0, 700.0], dtype=torch.float64)  # c = 0: ignored
    # window 1: window 0 scaled by 10 about another origin, confidences halved: scale x 10
    kp[1] = 10 * (kp[0] - 150.0)
    conf[1] = 0.5 * conf[0]
    x, scale = normalise_2d(kp, conf)
    # weights 1 + 1 + 0.5 (frame 0) + 1 + 1 (frame 1) = 4.5; weighted squares 25 + 50 + 4 = 79
    s0 = math.sqrt(79 / (2 * 4.5))  # 2.96273...
    torch.testing.assert_close(scale, torch.tensor([s0, 10 * s0], dtype=torch.float64),
                               rtol=1e-12, atol=0)
    assert float(scale[0]) == pytest.approx(2.962731, abs=1e-6)
    # root-relative per frame, divided by the window's scale (zero-confidence joints too)
    torch.testing.assert_close(x[0], (kp[0] - root[:, None]) / s0, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(x[1], x[0], rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(x[0, 0, 3], torch.tensor([1000 / s0, 0.0], dtype=torch.float64))
    torch.testing.assert_close(x[0, :, 0], torch.zeros(2, 2, dtype=torch.float64))


def stick_figure() -> torch.Tensor:
    """A hand-built H36M-17 pose (mm, y down) with known bones: spine chain 100 + 150 + 60 + 90
    = 400, right leg 50 + 400 + 390 = 840, left leg 50 + 450 + 400 = 900 (3-4-5 triangles keep
    some bones off the axes); the arms are wherever, they do not count."""
    from streamlift.skeleton import H36M17

    j = H36M17.index
    P = torch.zeros(17, 3, dtype=torch.float64)

    def put(child, parent, d):
        P[j(child)] = P[j(parent)] + torch.tensor(d, dtype=torch.float64)

    put("spine", "pelvis", (0.0, -60.0, 80.0))  # 100
    put("thorax", "spine", (0.0, -150.0, 0.0))  # 150
    put("neck_nose", "thorax", (36.0, -48.0, 0.0))  # 60
    put("head", "neck_nose", (0.0, -90.0, 0.0))  # 90
    put("r_hip", "pelvis", (-30.0, 40.0, 0.0))  # 50
    put("r_knee", "r_hip", (0.0, 400.0, 0.0))  # 400
    put("r_ankle", "r_knee", (0.0, 390.0, 0.0))  # 390
    put("l_hip", "pelvis", (30.0, 40.0, 0.0))  # 50
    put("l_knee", "l_hip", (0.0, 360.0, 270.0))  # 450
    put("l_ankle", "l_knee", (0.0, 400.0, 0.0))  # 400
    put("l_shoulder", "thorax", (170.0, 10.0, 0.0))
    put("l_elbow", "l_shoulder", (250.0, 30.0, -40.0))
    put("l_wrist", "l_elbow", (220.0, -60.0, 10.0))
    put("r_shoulder", "thorax", (-170.0, 10.0, 0.0))
    put("r_elbow", "r_shoulder", (-20.0, 260.0, 0.0))
    put("r_wrist", "r_elbow", (0.0, 230.0, 90.0))
    return P + torch.tensor([5.0, -3.0, 2000.0], dtype=torch.float64)  # anywhere in the camera


def test_skeleton_height_is_the_spine_chain_plus_the_mean_leg():
    P = stick_figure()
    # 400 + (840 + 900) / 2; one leg would give 1,240 or 1,300, both legs 2,140
    assert float(skeleton_height(P)) == pytest.approx(1270.0, abs=1e-9)
    moved = P.clone()
    moved[11:] = moved[11:] * 1.7 + 33.0  # the arms do not enter the height
    assert float(skeleton_height(moved)) == pytest.approx(1270.0, abs=1e-9)
    # batched (..., J, 3) -> (...)
    batch = torch.stack([P, 2 * P, P @ torch.tensor(
        [[0.0, -1, 0], [1, 0, 0], [0, 0, 1]], dtype=torch.float64).T])  # a rotation keeps it
    torch.testing.assert_close(skeleton_height(batch[None]),
                               torch.tensor([[1270.0, 2540.0, 1270.0]], dtype=torch.float64))


def test_metric_scale_gives_exactly_the_requested_height():
    P = stick_figure()
    P = P - P[0]
    scaled = metric_scale(P, 1700.0)
    torch.testing.assert_close(scaled, P * (1700.0 / 1270.0), rtol=1e-12, atol=1e-9)
    assert float(skeleton_height(scaled)) == pytest.approx(1700.0, abs=1e-9)
    two = metric_scale(torch.stack([P, 0.01 * P]), 1550.0)  # each skeleton its own factor
    torch.testing.assert_close(two[1], two[0], rtol=1e-12, atol=1e-9)
    torch.testing.assert_close(skeleton_height(two), torch.full((2,), 1550.0, dtype=torch.float64))
