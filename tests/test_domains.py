"""What varies between users' domains: joint conventions, bodies, cameras, detectors (MPII-16
input too), and how training draws from several sources."""

import numpy as np
import pytest
import torch

from streamlift.data import load_mocap, make_views
from streamlift.data.bodies import (BodyConfig, median_bones, pelvis_at_hip_centre, random_bodies,
                                    random_bones, random_body, rescale_bones)
from streamlift.data.cameras import WILD_HFOV_DEG, wild_rig
from streamlift.data.detector import DetectorConfig, _runs, detector_noise
from streamlift.data.views import View
from streamlift.paths import SAMPLE_MOCAP
from streamlift.serve import protocol as P
from streamlift.skeleton import H36M17, MPII16, SYMMETRIC_BONES, bone_lengths, to_h36m
from streamlift.train.sampler import WindowSampler

R_HIP, L_HIP = H36M17.index("r_hip"), H36M17.index("l_hip")
QUIET = DetectorConfig(quantise_prob=0.0, swap_rate=0.0, miss_rate=(0.0, 0.0), occlusion_rate=0.0)


@pytest.fixture(scope="module")
def raw():
    return load_mocap(SAMPLE_MOCAP, source_pelvis=True)


@pytest.fixture(scope="module")
def seq(raw):
    return pelvis_at_hip_centre(raw.sequences["salsa_01"])


# ---------------------------------------------------------------------- joint conventions
def test_the_pelvis_is_the_hip_centre_and_nothing_else_moves(raw):
    src = raw.sequences["salsa_01"]
    assert np.linalg.norm(src[:, 0] - 0.5 * (src[:, R_HIP] + src[:, L_HIP]), axis=-1).mean() > 10
    got = load_mocap(SAMPLE_MOCAP).sequences["salsa_01"]  # the default puts it there
    np.testing.assert_allclose(got[:, 0], 0.5 * (src[:, R_HIP] + src[:, L_HIP]), atol=1e-3)
    np.testing.assert_array_equal(got[:, 1:], src[:, 1:])


# --------------------------------------------------------------------------------- bodies
def test_rescaling_one_bone_changes_that_bone_only_and_moves_its_subtree_rigidly(seq):
    scale = np.ones(16, np.float32)
    k = [c for _, c in H36M17.bones].index(H36M17.index("l_elbow"))  # the left upper arm
    scale[k] = 1.5
    out = rescale_bones(seq, scale)
    before, after = bone_lengths(seq), bone_lengths(out)
    np.testing.assert_allclose(after[:, k], 1.5 * before[:, k], rtol=1e-5)
    np.testing.assert_allclose(np.delete(after, k, 1), np.delete(before, k, 1), rtol=1e-4)
    moved = out - seq  # the elbow and the wrist shift by the same vector, nothing else moves
    wrist, elbow = H36M17.index("l_wrist"), H36M17.index("l_elbow")
    np.testing.assert_allclose(moved[:, wrist], moved[:, elbow], atol=1e-3)
    assert np.abs(np.delete(moved, [wrist, elbow], 1)).max() < 1e-3
    # torch gives the same
    np.testing.assert_allclose(rescale_bones(torch.from_numpy(seq), torch.from_numpy(scale)).numpy(),
                               out, atol=1e-3)


def test_random_bodies_are_symmetric_spread_like_people_and_sometimes_the_source():
    rng = np.random.default_rng(0)
    b = random_bones(rng, BodyConfig(), n=4000)
    kept = np.isnan(b).any(axis=1)
    assert abs(kept.mean() - BodyConfig().keep_prob) < 0.03
    b = b[~kept]
    child = {c: i for i, (_, c) in enumerate(H36M17.bones)}
    for left, right in SYMMETRIC_BONES:
        np.testing.assert_array_equal(b[:, child[left]], b[:, child[right]])
    thigh = b[:, child[H36M17.index("r_knee")]]
    adults = (thigh > 330) & (thigh < 520)
    assert 0.05 < np.log(thigh[adults]).std() < 0.1  # the size spread and the bone's own
    assert 0.02 < (thigh < 0.82 * 420).mean() < 0.1  # children at their low rate
    hip = b[:, child[R_HIP]] * 2  # hip widths from the mocap's 129 mm to detectors' ~250 mm
    assert np.quantile(hip, 0.1) < 140 and np.quantile(hip, 0.9) > 260


def test_a_random_body_has_its_drawn_bones(seq):
    out = random_body(seq, np.random.default_rng(0), BodyConfig(keep_prob=0.0))
    want = random_bones(np.random.default_rng(0), BodyConfig(keep_prob=0.0))
    np.testing.assert_allclose(median_bones(out), want, rtol=1e-3)
    np.testing.assert_allclose(out[:, 0], seq[:, 0])  # the root trajectory is kept
    windows = torch.from_numpy(np.stack([seq[:9], seq[100:109]]))
    got = random_bodies(windows, np.random.default_rng(1), BodyConfig(keep_prob=0.0))
    want = random_bones(np.random.default_rng(1), BodyConfig(keep_prob=0.0), n=2)
    p, c = np.array(H36M17.bones).T
    np.testing.assert_allclose(np.median(np.linalg.norm(
        got[:, :, c].numpy() - got[:, :, p].numpy(), axis=-1), axis=1), want, rtol=1e-3)


# -------------------------------------------------------------------------------- cameras
def test_wild_cameras_see_the_subject_from_users_places(seq):
    cams = [c for k in range(20) for c in wild_rig(seq, 4, 0, f"clip{k}")]
    hfov = [np.degrees(2 * np.arctan(c.image_size[0] / 2 / c.K[0, 0])) for c in cams]
    assert WILD_HFOV_DEG[0] - 1e-6 <= min(hfov) and max(hfov) <= WILD_HFOV_DEG[1] + 1e-6
    assert max(hfov) - min(hfov) > 30
    eye = np.array([-c.R.T @ c.t for c in cams])
    dist = np.linalg.norm(eye[:, :2] - seq[:, 0, :2].mean(0), axis=1) / 1000
    assert dist.min() < 2.5 and dist.max() > 6  # near webcams and far cameras
    looks_down = np.degrees(np.arcsin(np.array([c.R[2] for c in cams])[:, 2] * -1))
    assert looks_down.min() < -5 and looks_down.max() > 35
    for c in cams:  # every joint in front of every camera
        assert c.to_camera(seq)[..., 2].min() > 100
    centre = np.array([c.K[:2, :2] @ (c.to_camera(seq[:, 0].mean(0))[:2] /
                                      c.to_camera(seq[:, 0].mean(0))[2]) for c in cams])
    offset = np.abs(centre) / (np.array([c.image_size for c in cams]) / 2)
    assert offset.max() > 0.3  # not always in the middle of the image
    assert {c.image_size for c in cams} > {(1000, 1000), (1920, 1080)}
    a, b = wild_rig(seq, 2, 0, "x"), wild_rig(seq, 2, 0, "x")
    assert all(np.array_equal(x.extrinsics, y.extrinsics) for x, y in zip(a, b))


def test_views_made_with_random_bodies_and_wild_cameras_project_exactly(raw):
    views = make_views(raw, 2, 0, image_size=None, rig="wild", bodies=BodyConfig(keep_prob=0),
                       progress=False)
    v = views["salsa_01.cam0"]
    uv = v.kp3d[..., :2] / v.kp3d[..., 2:] * np.diag(v.intrinsics)[:2] + v.intrinsics[:2, 2]
    np.testing.assert_allclose(uv, v.kp2d, atol=0.05)
    src = bone_lengths(raw.sequences["salsa_01"]).mean(0)
    assert np.abs(bone_lengths(v.kp3d).mean(0) / src - 1).max() > 0.05  # another body


# ------------------------------------------------------------------------------ detectors
def test_runs_cover_exactly_the_frames_after_each_start():
    g = torch.Generator().manual_seed(0)
    starts = torch.rand(3, 40, 2, generator=g) < 0.08
    lengths = torch.randint(1, 9, (3, 40, 2), generator=g)
    want = torch.zeros_like(starts)
    for i, t, k in starts.nonzero().tolist():
        want[i, t:t + lengths[i, t, k], k] = True
    assert torch.equal(_runs(starts, lengths), want)


def _window(seq, n=64, size=1.0):
    kp = torch.from_numpy(seq[:n, :, :2] * size).float()[None]  # (1, n, J, 2) "pixels"
    return kp


def test_detector_error_scales_with_the_subject_and_is_worst_at_wrists(seq):
    a = detector_noise(_window(seq), torch.Generator().manual_seed(5), QUIET)
    b = detector_noise(_window(seq, size=2.0), torch.Generator().manual_seed(5), QUIET)
    ea = a[..., :2] - _window(seq)
    np.testing.assert_allclose((b[..., :2] - _window(seq, size=2.0)).numpy(), 2 * ea.numpy(),
                               rtol=1e-3, atol=1e-3)
    many = torch.from_numpy(np.repeat(seq[None, :27, :, :2], 256, 0)).float()
    err = (detector_noise(many, torch.Generator().manual_seed(1), QUIET)[..., :2] - many).norm(dim=-1)
    per_joint = err.mean(dim=(0, 1))
    assert per_joint[H36M17.index("l_wrist")] > 1.8 * per_joint[0]
    conf = detector_noise(many, torch.Generator().manual_seed(1), QUIET)[..., 2]
    r = np.corrcoef(conf.flatten().numpy(), err.flatten().numpy())[0, 1]
    assert r < -0.3  # confidences fall as the error grows


def test_detector_swaps_limbs_misses_joints_and_drops_what_is_outside_the_image(seq):
    swap = DetectorConfig(sigma_frac=(0, 0), quantise_prob=0, swap_rate=1.0, swap_frames=(1, 1),
                          miss_rate=(0, 0), occlusion_rate=0)
    kp = _window(seq)
    out = detector_noise(kp, torch.Generator().manual_seed(0), swap)
    flip = list(H36M17.flip)
    legs_arms = [H36M17.index(n) for n in ("r_hip", "r_knee", "r_ankle", "l_hip", "l_knee",
                                           "l_ankle", "r_shoulder", "r_elbow", "r_wrist",
                                           "l_shoulder", "l_elbow", "l_wrist")]
    np.testing.assert_allclose(out[0, :, legs_arms, :2], kp[0][:, flip][:, legs_arms], atol=1e-4)
    miss = DetectorConfig(miss_rate=(0.1, 0.1), occlusion_rate=0.0)
    many = torch.from_numpy(np.repeat(seq[None, :64, :, :2], 64, 0)).float()
    conf = detector_noise(many, torch.Generator().manual_seed(2), miss)[..., 2]
    assert abs((conf == 0).float().mean() - 0.1) < 0.01
    # with an image, joints outside it are missed (confidence 0), those inside are not
    shifted = many.clone()
    shifted[..., 0] -= shifted[..., 0].mean()  # half the body left of x = 0
    conf = detector_noise(shifted, torch.Generator().manual_seed(2), QUIET, (10_000, 10_000))[..., 2]
    outside = (shifted[..., 0] < 0) | (shifted[..., 1] < 0)
    assert torch.all(conf[outside] == 0) and torch.all(conf[~outside] > 0)


# ---------------------------------------------------------------------------- MPII-16 input
def _mpii_from(h: np.ndarray) -> np.ndarray:
    """An MPII-16 detection of an H36M-17 pose (what such a detector reports)."""
    names = {"r_ankle": "r_ankle", "r_knee": "r_knee", "r_hip": "r_hip", "l_hip": "l_hip",
             "l_knee": "l_knee", "l_ankle": "l_ankle", "pelvis": "pelvis", "thorax": "thorax",
             "upper_neck": "neck_nose", "head_top": "head", "r_wrist": "r_wrist",
             "r_elbow": "r_elbow", "r_shoulder": "r_shoulder", "l_shoulder": "l_shoulder",
             "l_elbow": "l_elbow", "l_wrist": "l_wrist"}
    return np.stack([h[..., H36M17.index(names[j]), :] for j in MPII16.joints], axis=-2)


def test_mpii_maps_to_h36m_with_the_derived_joints(seq):
    h = seq[:5, :, :2]
    m = np.concatenate([_mpii_from(h), np.random.default_rng(0).uniform(0.2, 1, (5, 16, 1))], -1)
    got = to_h36m(m, "mpii16")
    hc = 0.5 * (h[:, R_HIP] + h[:, L_HIP])
    np.testing.assert_allclose(got[:, 0, :2], hc, atol=1e-4)
    np.testing.assert_allclose(got[:, 7, :2], 0.5 * (hc + h[:, 8]), atol=1e-4)  # spine
    direct = [j for j in range(17) if j not in (0, 7)]
    np.testing.assert_allclose(got[:, direct, :2], h[:, direct], atol=1e-4)
    c = {n: m[:, i, 2] for i, n in enumerate(MPII16.joints)}
    np.testing.assert_allclose(got[:, 0, 2], np.minimum(c["r_hip"], c["l_hip"]))
    np.testing.assert_allclose(got[:, 7, 2], np.minimum.reduce([c["r_hip"], c["l_hip"], c["thorax"]]))
    assert [MPII16.flip[MPII16.flip[j]] for j in range(16)] == list(range(16))


def test_the_server_reads_mpii_frames(seq):
    kp = _mpii_from(seq[0, :, :2])
    _, f = P.decode_request(P.encode(P.frame_msg("s", 0, 1.0, kp, layout="mpii16")))
    np.testing.assert_allclose(f.kp, to_h36m(kp, "mpii16"), atol=1e-3)
    with pytest.raises(P.ProtocolError) as e:
        P.decode_request(P.encode(P.frame_msg("s", 0, 1.0, seq[0, :, :2], layout="mpii16")))
    assert e.value.code == "bad_shape"


# --------------------------------------------------------------------- drawing from sources
def test_sqrt_balance_gives_a_small_source_its_square_root_share():
    def view(n):
        return View(np.zeros((n, 17, 2), np.float32))
    views = {"big": view(90_000), "small": view(10_000)}
    s = WindowSampler(views, 27, "causal", groups={"big": 0, "small": 1})
    g = torch.Generator().manual_seed(0)
    small = (s.draw(20_000, g, "sqrt") >= 90_000).float().mean()
    assert abs(small - 0.25) < 0.015  # sqrt(1) / (sqrt(9) + sqrt(1))
    small = (s.draw(20_000, g, "frames") >= 90_000).float().mean()
    assert abs(small - 0.10) < 0.015
