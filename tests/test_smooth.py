"""streamlift.smoothing: the causal One-Euro filter, its jitter gate and missing joints; the
ring's per-slot filtering equal to filtering each stream alone; eval / serve on the same path."""

import numpy as np
import pytest

from streamlift.data import load_mocap, make_views
from streamlift.serve.ring import RingStore
from streamlift.smoothing import (SmoothConfig, Smoother, smooth_config, smooth_sequence,
                                  smooth_sequences, smooth_views)
from streamlift.paths import SAMPLE_MOCAP

ALWAYS = SmoothConfig(gate=None)


@pytest.fixture(scope="module")
def view():
    return next(iter(make_views(load_mocap(SAMPLE_MOCAP), 1, 0, progress=False).values()))


def _noisy(kp, sigma, seed=0):
    return kp + np.random.default_rng(seed).normal(0, sigma, kp.shape)


def _rms(a, b):
    return float(np.sqrt(((a[30:] - b[30:]) ** 2).mean()))


def test_the_filter_is_causal_and_removes_jitter(view):
    exact = view.kp2d[:200, :, :2].astype(np.float64)
    noisy = _noisy(exact, 5.0)
    y = smooth_sequence(noisy, None, view.fps, ALWAYS)
    later = noisy.copy()
    later[120:] += 40.0  # what comes after frame 119 cannot change frames up to it
    np.testing.assert_array_equal(smooth_sequence(later, None, view.fps, ALWAYS)[:120], y[:120])
    assert _rms(y, exact) < 0.8 * _rms(noisy, exact)  # a fast motion at 50 fps: 3.8 against 5.0 px
    assert _rms(smooth_sequence(exact, None, view.fps, ALWAYS), exact) < 0.6 * _rms(noisy, exact)


def test_the_time_step_is_the_frame_interval(view):
    """At a lower frame rate the same samples are further apart in time: the filter smooths
    them less (a filter that ignored te would give the same output)."""
    noisy = _noisy(view.kp2d[:200, :, :2].astype(np.float64), 5.0)
    fast, slow = (smooth_sequence(noisy, None, fps, ALWAYS) for fps in (50.0, 10.0))
    assert _rms(slow, noisy) < 0.8 * _rms(fast, noisy)


def test_the_gate_passes_smooth_2d_bit_for_bit_and_filters_jittery_2d(view):
    exact = view.kp2d[:200, :, :2].astype(np.float32)
    np.testing.assert_array_equal(smooth_sequence(exact, None, view.fps), exact)
    noisy = _noisy(exact, 5.0)
    gated = smooth_sequence(noisy, None, view.fps)
    np.testing.assert_array_equal(gated[:2], noisy[:2].astype(np.float32))  # no jitter seen yet
    np.testing.assert_allclose(gated[60:], smooth_sequence(noisy, None, view.fps, ALWAYS)[60:])
    # a subject 3x the size in pixels (the same relative jitter) is filtered the same way
    np.testing.assert_allclose(smooth_sequence(3 * noisy, None, view.fps), 3 * gated,
                               rtol=1e-5, atol=1e-3)


def test_missing_joints_pass_as_they_came_and_never_reach_the_filter(view):
    """Joint 6 unseen in frames 50-69 and joint 13 in 100-101: whatever values they carry
    there, every output but theirs at those frames is the same; seen again, a joint starts
    afresh from its new position."""
    noisy = _noisy(view.kp2d[:150, :, :2].astype(np.float64), 5.0)
    conf = np.ones(noisy.shape[:2])
    conf[50:70, 6] = conf[100:102, 13] = 0
    a, b = noisy.copy(), noisy.copy()
    a[50:70, 6], b[50:70, 6] = 0.0, 1e4
    a[100:102, 13], b[100:102, 13] = -300.0, 7.0
    ya, yb = smooth_sequence(a, conf, view.fps), smooth_sequence(b, conf, view.fps)
    np.testing.assert_array_equal(ya[50:70, 6], a[50:70, 6].astype(np.float32))
    np.testing.assert_array_equal(yb[50:70, 6], b[50:70, 6].astype(np.float32))
    unseen = conf == 0
    np.testing.assert_array_equal(ya[~unseen], yb[~unseen])
    np.testing.assert_array_equal(ya[70, 6], a[70, 6].astype(np.float32))  # afresh: y = x
    assert not np.array_equal(ya[71, 6], a[71, 6].astype(np.float32))  # then filtered again


def test_sequences_in_one_batch_equal_each_alone_and_views_keep_confidences(view):
    rng = np.random.default_rng(1)
    seqs = [_noisy(view.kp2d[:n, :, :2].astype(np.float64), 5.0, s) for s, n in
            enumerate((120, 37, 200))]
    confs = [None, rng.uniform(0, 1, (37, 17)) * (rng.uniform(0, 1, (37, 17)) > 0.1), None]
    fps = [50.0, 30.0, 25.0]
    got = smooth_sequences(seqs, confs, fps)
    for s, c, f, g in zip(seqs, confs, fps, got):
        np.testing.assert_array_equal(g, smooth_sequence(s, c, f))
    v = type(view)(np.concatenate([seqs[1], confs[1][..., None]], -1).astype(np.float32),
                   None, 30.0, view.image_size, None, None)
    out = smooth_views({"a": v}, SmoothConfig())["a"]
    np.testing.assert_array_equal(out[..., 2], v.kp2d[..., 2])
    np.testing.assert_array_equal(out[..., :2], smooth_sequence(v.kp2d[..., :2], v.kp2d[..., 2],
                                                                30.0))
    assert smooth_views({"a": v}, smooth_config("off"))["a"] is v.kp2d


def test_the_ring_filters_each_stream_as_alone_whatever_the_ticks(view):
    """Three streams pushed interleaved at their own frame rates (capture times), with
    prepare() after varying numbers of frames (a tick may hold several frames of a stream),
    a stream ending and a new one taking its slot: every stored frame equals its stream
    filtered alone."""
    J = 17
    rng = np.random.default_rng(3)
    seqs = {n: _noisy(view.kp2d[o:o + 90, :, :2].astype(np.float64), 5.0, i)
            for i, (n, o) in enumerate((("a", 0), ("b", 200), ("c", 400)))}
    fps = {"a": 30.0, "b": 60.0, "c": 30.0}
    ring = RingStore(3, 128, J, SmoothConfig())
    st = {n: ring.open(n) for n in ("a", "b")}
    stored = {n: [] for n in seqs}
    t = {n: 0 for n in seqs}

    def push(n, k):
        for _ in range(k):
            i = t[n]
            if i < len(seqs[n]):
                ring.push(st[n], seqs[n][i].astype(np.float32), np.ones(J), i, 1e9 + i / fps[n],
                          0.0)
                t[n] += 1

    def read(n):
        ring.prepare()
        stored[n] = ring.kp[st[n].slot, :st[n].n].copy()

    while t["a"] < 90 or t["b"] < 90:
        push("a", int(rng.integers(0, 4)))
        push("b", int(rng.integers(0, 4)))
        if rng.uniform() < 0.7:
            ring.prepare()
    read("a"), read("b")
    ring.close(st["a"])
    st["c"] = ring.open("c")
    assert st["c"].slot == st["a"].slot  # the freed slot, its filter cleared
    push("c", 90)
    read("c")
    for n in seqs:
        np.testing.assert_allclose(stored[n], smooth_sequence(seqs[n], None, fps[n]),
                                   atol=1e-4)  # float32 storage of float64 capture times


def test_eval_scores_the_2d_as_the_server_filters_it(view, tmp_path):
    """`eval`'s default filters (gated) as serving does, `--smooth off` leaves the 2D as it is,
    and on jittery 2D the two differ."""
    from streamlift.cli import main
    from streamlift.data import save_views
    import json

    kp = view.kp2d[:150].copy()
    kp[..., :2] = _noisy(kp[..., :2], 5.0).astype(np.float32)
    src = tmp_path / "v.npz"
    save_views(src, {"a.cam0": type(view)(kp, view.kp3d[:150], view.fps, view.image_size,
                                          view.intrinsics, view.extrinsics)})
    res = {}
    for mode in ("gated", "off"):
        assert main(["eval", "--data", str(src), "--smooth", mode, "--threads", "1", "--quiet",
                     "--json", str(tmp_path / f"{mode}.json")]) == 0
        res[mode] = json.loads((tmp_path / f"{mode}.json").read_text())
    assert res["gated"]["smooth"] == "gated" and res["off"]["smooth"] == "off"
    assert res["gated"]["n_mpjpe"] != res["off"]["n_mpjpe"]


def test_smoother_state_rows_are_independent():
    """Filtering slot 1 never touches slot 0's state (the scatter goes to the rows given)."""
    sm = Smoother(2, 17, ALWAYS)
    x = np.random.default_rng(0).uniform(0, 500, (40, 17, 2))
    one = [sm(np.array([0]), x[k:k + 1], np.ones((1, 17)), np.array([k / 30]))[0]
           for k in range(20)]
    for k in range(20):
        sm(np.array([1]), x[20 + k:21 + k], np.ones((1, 17)), np.array([k / 30]))
    cont = [sm(np.array([0]), x[k:k + 1], np.ones((1, 17)), np.array([k / 30]))[0]
            for k in range(20, 40)]
    np.testing.assert_array_equal(np.stack(one + cont), smooth_sequence(x, None, 30.0, ALWAYS))


def test_modes_and_bad_settings():
    assert smooth_config("off") is None
    assert smooth_config("on").gate is None and smooth_config("gated").gate == (0.01, 0.04)
    with pytest.raises(ValueError, match="smoothing must be one of"):
        smooth_config("strong")
    with pytest.raises(ValueError, match="lo < hi"):
        SmoothConfig(gate=(0.04, 0.01))
