"""streamlift.data.unswap: a detector's left/right limb swaps found and exchanged back, exact 2D
left alone, unseen joints neither trusted nor touched."""

import numpy as np
import pytest

from streamlift.data import load_mocap, make_views
from streamlift.data.detector import DetectorConfig, detector_views
from streamlift.data.unswap import LIMBS, find_swaps, unswap
from streamlift.paths import SAMPLE_MOCAP
from streamlift.skeleton import H36M17


@pytest.fixture(scope="module")
def views():
    return make_views(load_mocap(SAMPLE_MOCAP), 2, 0, progress=False)


def swapped(kp, frames, limb):
    """kp with `limb` ("leg" / "arm") exchanged with its twin at `frames`."""
    out = kp.copy()
    right = LIMBS[limb]
    left = [H36M17.flip[j] for j in right]
    for t in frames:
        out[t, right], out[t, left] = kp[t, left], kp[t, right]
    return out


def test_exact_2d_has_no_swaps(views):
    for v in views.values():
        found = find_swaps(v.kp2d)
        assert not found["leg"].any() and not found["arm"].any()


def test_swapped_legs_and_arms_are_exchanged_back_with_their_confidences(views):
    v = next(iter(views.values()))
    conf = np.linspace(0.1, 1.0, v.frames * 17).reshape(v.frames, 17, 1)
    exact = np.concatenate([v.kp2d, conf], axis=-1)
    kp = swapped(swapped(exact, range(40, 45), "leg"), [100, 101], "arm")
    found = find_swaps(kp)
    assert np.flatnonzero(found["leg"]).tolist() == [40, 41, 42, 43, 44]
    assert np.flatnonzero(found["arm"]).tolist() == [100, 101]
    fixed, n = unswap(kp)
    assert n == 7
    np.testing.assert_array_equal(fixed, exact)  # positions and confidences, every frame
    np.testing.assert_array_equal(kp, swapped(swapped(exact, range(40, 45), "leg"), [100, 101], "arm"))


def test_unseen_joints_are_not_evidence_and_stay_where_they_are(views):
    v = next(iter(views.values()))
    exact = np.concatenate([v.kp2d, np.ones((v.frames, 17, 1))], axis=-1)
    kp = swapped(exact, [60, 61], "leg")
    l_knee, r_knee, r_ankle = (H36M17.index(n) for n in ("l_knee", "r_knee", "r_ankle"))
    kp[60, r_ankle] = [0.0, 0.0, 0.0]  # a miss during the swap: the hips and knees tell
    kp[150:165, l_knee] = [5000.0, -5000.0, 0.0]  # a run of misses, reported far away
    fixed, n = unswap(kp)
    assert n == 2
    np.testing.assert_array_equal(fixed[61], exact[61])
    np.testing.assert_array_equal(fixed[60, l_knee], exact[60, l_knee])
    assert fixed[60, H36M17.flip[r_ankle], 2] == 0  # the missed joint moved with its limb, unseen
    np.testing.assert_array_equal(fixed[150:165], kp[150:165])  # not mistaken for a swap


def test_most_of_the_detector_models_swaps_are_undone_and_nothing_else(views):
    cfg = DetectorConfig()  # its noise, misses and swaps (~1.4 % of a limb's frames)
    truth = found = false = 0
    for i, v in enumerate(views.values()):
        det = detector_views(v.kp2d, i, None, cfg)
        fixed, _ = unswap(det)
        for limb in LIMBS.values():
            twins = [H36M17.flip[j] for j in limb]
            err = lambda kp, a, b: (np.linalg.norm(kp[:, a, :2] - v.kp2d[:, b], axis=-1).sum(1)  # noqa: E731
                                    + np.linalg.norm(kp[:, b, :2] - v.kp2d[:, a], axis=-1).sum(1))
            # (T,) frames the model swapped (its misses keep their positions: still comparable)
            was = err(det, limb, twins) < err(det, limb, limb)
            still = err(fixed, limb, twins) < err(fixed, limb, limb)
            truth += was.sum()
            found += (was & ~still).sum()
            false += (~was & still).sum()
    assert truth > 100
    assert found >= 0.75 * truth and false <= 0.01 * truth


def test_margin_out_of_range_is_an_error():
    with pytest.raises(ValueError, match="margin"):
        find_swaps(np.zeros((10, 17, 2)), margin=1.5)


def test_swap_check_counts_swaps_found_missed_and_false(views):
    """scripts/swap_check.py, on hand swaps: a 5-frame swap found, a 20-frame one (longer than
    the median's reach, so the median follows it) missed, nothing false."""
    import dataclasses
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "scripts/swap_check.py"
    spec = importlib.util.spec_from_file_location("swap_check", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    first, second = list(views)[:2]
    detected = {first: dataclasses.replace(views[first], kp2d=swapped(views[first].kp2d, range(40, 45), "leg")),
                second: dataclasses.replace(views[second], kp2d=swapped(views[second].kp2d, range(60, 80), "arm"))}
    s = mod.swap_stats(detected, views)
    assert (s["swapped"], s["found"], s["missed"], s["false"], s["exact_flagged"]) == (25, 5, 20, 0, 0)
    assert s["limb_frames"] == 2 * (views[first].frames + views[second].frames)
    assert 0 < s["displacement_found"] < s["displacement"]
