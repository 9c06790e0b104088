"""NRSfMFormer: structure of its output, invariances of its pre-processing, checkpoints."""

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
