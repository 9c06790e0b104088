"""Synchronised views (`streamlift.train.multiview`, `adapt --multiview`): which frames are
pairs, the consistency loss, and the adaptation batches and split that use them."""

import numpy as np
import pytest
import torch

from streamlift.cli import main
from streamlift.data import load_mocap, make_views, save_views
from streamlift.data.views import View
from streamlift.geometry import camera_rotation
from streamlift.paths import SAMPLE_MOCAP, WINDOWED_WEIGHTS
from streamlift.train.adapt import AdaptConfig, _draw, _prepare, adapt, better, split_views
from streamlift.train.multiview import Partners, consistency, sequence_of
from streamlift.train.sampler import WindowSampler, flip_2d


@pytest.fixture(scope="module")
def three_cameras():
    """The sample's sequences (200 frames) seen by 3 cameras, plus a view with no partner and
    one whose length differs from its sequence's."""
    views = make_views(load_mocap(SAMPLE_MOCAP), 3, 0, progress=False)
    views = {k: View(v.kp2d[:200], v.kp3d[:200], v.fps, v.image_size, v.intrinsics,
                     v.extrinsics) for k, v in views.items()}
    first = next(iter(views.values()))
    views["alone"] = first
    seq = sequence_of(next(iter(views)))
    v = views[f"{seq}.cam2"]
    views[f"{seq}.cam2"] = View(v.kp2d[:150], v.kp3d[:150], v.fps, v.image_size, v.intrinsics,
                                v.extrinsics)
    return views


def _world(views, frames):
    """Global frame indices (in the views' order) -> their 3D in world coordinates (n, J, 3)."""
    names = list(views)
    starts = np.cumsum([0] + [views[n].frames for n in names])
    out = []
    for g in frames.tolist():
        i = int(np.searchsorted(starts, g, side="right") - 1)
        v = views[names[i]]
        R, t = v.extrinsics[:, :3], v.extrinsics[:, 3]
        out.append((v.kp3d[g - starts[i]] - t) @ R)  # X_world = R^T (X_cam - t)
    return np.stack(out)


def test_sequence_names():
    assert sequence_of("walk.cam1") == "walk"
    assert sequence_of("f.npz:S9/Walking 1.cam12") == "f.npz:S9/Walking 1"
    assert sequence_of("walk") is None and sequence_of("walk.cam") is None
    assert sequence_of("walk.cam1.x") is None


def test_a_partner_is_the_same_instant_seen_by_another_camera(three_cameras):
    views = three_cameras
    p = Partners(list(views), [v.frames for v in views.values()])
    names = list(views)
    short = [n for n in names if views[n].frames == 150]
    assert p.mismatched == short  # not paired: frame i would not be the same instant
    n = sum(v.frames for v in views.values())
    targets = torch.arange(n)
    starts = np.cumsum([0] + [views[k].frames for k in names])
    view_of = np.searchsorted(starts, targets.numpy(), side="right") - 1
    seen = set()
    for seed in range(6):
        partner = p.of(targets, torch.Generator().manual_seed(seed))
        pv = np.searchsorted(starts, partner.numpy(), side="right") - 1
        paired = partner != targets
        for i in np.flatnonzero(~paired.numpy()):  # only the unpaired views keep their frame
            assert names[view_of[i]] in ("alone", *short)
        idx = np.flatnonzero(paired.numpy())
        assert len(idx) == n - views["alone"].frames - 150
        assert all(sequence_of(names[view_of[i]]) == sequence_of(names[pv[i]]) for i in idx)
        assert (pv[idx] != view_of[idx]).all()
        # the same instant: one body in world coordinates (all 17 joints, to float precision)
        np.testing.assert_allclose(_world(views, partner[idx]), _world(views, targets[idx]),
                                   atol=1e-2)
        seen |= {(names[view_of[i]], names[pv[i]]) for i in idx[::50]}
    # with 3 cameras in a sequence... here 2 (the third is too short): each view's other one
    two = [s for s in {sequence_of(a) for a, _ in seen}]
    assert all((f"{s}.cam0", f"{s}.cam1") in seen and (f"{s}.cam1", f"{s}.cam0") in seen
               for s in two if f"{s}.cam2" not in short)


def test_three_cameras_give_both_other_views_as_partners():
    p = Partners(["a.cam0", "a.cam1", "a.cam2"], [4, 4, 4])
    drawn = torch.stack([p.of(torch.tensor([1]), torch.Generator().manual_seed(s))
                         for s in range(40)])
    assert set(drawn.flatten().tolist()) == {5, 9}  # frame 1 of cam1 and cam2, never its own


def _rotation(a, b, c):
    return camera_rotation(*(torch.tensor([np.radians(x)]) for x in (a, b, c)))[0].double()


def test_consistency_is_zero_for_one_body_and_grows_with_what_differs(three_cameras):
    v0, v1 = (three_cameras[k] for k in list(three_cameras)[:2])
    Xa = torch.from_numpy(v0.kp3d[:54]).double().view(2, 27, 17, 3)
    Xb = torch.from_numpy(v1.kp3d[:54]).double().view(2, 27, 17, 3)
    assert float(consistency(Xa, Xb)) < 1e-6  # one body, two cameras: one shape
    # blind to scale (the lifter's is unknown), turn and shift
    moved = 0.01 * Xb @ _rotation(30, -60, 10).T.to(Xb) + torch.tensor([5.0, 1.0, 2.0]).double()
    assert float(consistency(Xa, moved)) < 1e-6
    assert float(consistency(3 * Xa, 3 * Xb)) < 1e-6
    # a forearm whose depth is mirrored in camera a (its 2D unchanged): no rotation explains it
    flipped = Xa.clone()
    for elbow, wrist in ((12, 13), (15, 16)):
        flipped[..., wrist, 2] = 2 * Xa[..., elbow, 2] - Xa[..., wrist, 2]
    e_flip = float(consistency(flipped, Xb))
    late = torch.from_numpy(v1.kp3d[3:57]).double().view(2, 27, 17, 3)  # 3 frames off
    e_late = float(consistency(Xa, late))
    assert e_flip > 1e-3 and e_late > 1e-3
    assert float(consistency(Xa, Xb + torch.randn_like(Xb) * 100)) > max(e_flip, e_late)


def test_consistency_weights_and_pairs_decide_what_counts(three_cameras):
    v0, v1 = (three_cameras[k] for k in list(three_cameras)[:2])
    Xa = torch.from_numpy(v0.kp3d[:54]).double().view(2, 27, 17, 3)
    Xb = torch.from_numpy(v1.kp3d[:54]).double().view(2, 27, 17, 3)
    garbage = Xa.clone()
    garbage[..., 13, :] = 1e4  # a joint one camera missed (confidence 0)
    w = torch.ones(2, 27, 17, dtype=torch.float64)
    w[..., 13] = 0
    assert float(consistency(garbage, Xb, w)) < 1e-6
    assert float(consistency(garbage, Xb)) > 0.1
    bad = Xb.clone()
    bad[1] = torch.randn_like(bad[1]) * 300  # window 1 is not a real pair
    assert float(consistency(Xa, bad, pairs=torch.tensor([True, False]))) < 1e-6
    assert float(consistency(Xa, bad)) > 0.1


def test_the_consistency_gradient_moves_both_poses_towards_one_shape(three_cameras):
    v0, v1 = (three_cameras[k] for k in list(three_cameras)[:2])
    Xa = torch.from_numpy(v0.kp3d[:27]).double().view(1, 27, 17, 3)
    Xb = torch.from_numpy(v1.kp3d[:27]).double().view(1, 27, 17, 3)
    a = (Xa + torch.randn_like(Xa) * 40).requires_grad_()
    b = Xb.clone().requires_grad_()
    first = consistency(a, b)
    first.backward()
    assert a.grad.abs().sum() > 0 and b.grad.abs().sum() > 0
    with torch.no_grad():
        step = 1e3 / a.grad.norm()
        after = consistency(a - step * a.grad, b)
    assert float(after) < float(first.detach())
    same = Xa.clone().requires_grad_()  # identical poses: a zero distance, finite gradient
    consistency(same, Xa.clone()).backward()
    assert torch.isfinite(same.grad).all()


def test_a_frame_no_camera_pair_sees_counts_for_nothing_and_keeps_the_gradient_finite(
        three_cameras):
    """A detector's empty frame (every joint's confidence 0 in one view) once gave a NaN
    gradient (the root of a zero radius) that turned every weight of `adapt` NaN."""
    v0, v1 = (three_cameras[k] for k in list(three_cameras)[:2])
    Xa = torch.from_numpy(v0.kp3d[:54]).double().view(2, 27, 17, 3)
    Xb = torch.from_numpy(v1.kp3d[:54]).double().view(2, 27, 17, 3)
    a = (Xa + torch.randn(Xa.shape, generator=torch.Generator().manual_seed(0),
                          dtype=Xa.dtype) * 40).requires_grad_()
    b = Xb.clone().requires_grad_()
    w = torch.ones(2, 27, 17, dtype=torch.float64)
    w[0, 5] = 0  # frame 5 of window 0: nothing seen
    w[1] = 0  # window 1: nothing seen at all
    loss = consistency(a, b, w, pairs=torch.tensor([True, True]))
    loss.backward()
    assert torch.isfinite(a.grad).all() and torch.isfinite(b.grad).all()
    assert a.grad[0, 0].abs().sum() > 0  # the seen frames still pull
    assert a.grad[0, 5].abs().sum() == 0 and a.grad[1].abs().sum() == 0
    # the value: the mean over window 0's 26 seen frames, as if the rest were not there
    keep = [t for t in range(27) if t != 5]
    alone = consistency(a[:1, keep].detach(), b[:1, keep].detach())
    assert float(loss.detach()) == pytest.approx(float(alone), rel=1e-12)


def test_synchronised_short_views_are_held_out_together():
    def v(n):
        return View(np.zeros((n, 17, 2), np.float32))
    views = {f"s{i}.cam{k}": v(40) for i in range(40) for k in range(2)}
    fit, held = split_views(views, 0.2, 27, by_sequence=True)
    for i in range(40):
        assert (f"s{i}.cam0" in held) == (f"s{i}.cam1" in held)
    assert 3 <= len(held) // 2 <= 16
    # by view name (the default, single cameras) the cameras of a sequence part at times
    fit, held = split_views(views, 0.2, 27)
    assert any((f"s{i}.cam0" in held) != (f"s{i}.cam1" in held) for i in range(40))


def test_a_few_short_synchronised_views_still_hold_one_sequence_out():
    import zlib

    def v(n):
        return View(np.zeros((n, 17, 2), np.float32))
    seqs = ["walk", "jump", "sit"]
    views = {f"{s}.cam{k}": v(40) for s in seqs for k in range(2)}
    assert all(zlib.crc32(s.encode()) % 1000 >= 200 for s in seqs)  # the hash draws none
    fit, held = split_views(views, 0.2, 27, by_sequence=True)
    first = min(seqs, key=lambda s: zlib.crc32(s.encode()))
    assert sorted(held) == [f"{first}.cam0", f"{first}.cam1"]
    assert len(fit) == 4 and not set(fit) & set(held)
    assert split_views(views, 0.0, 27, by_sequence=True)[1] == {}  # no guard asked: none
    one = {"walk.cam0": views["walk.cam0"], "walk.cam1": views["walk.cam1"]}
    assert split_views(one, 0.2, 27, by_sequence=True)[1] == {}  # one sequence: all to adapt on


@pytest.fixture(scope="module")
def two_camera_file(three_cameras, tmp_path_factory):
    p = tmp_path_factory.mktemp("mv") / "two.npz"
    save_views(p, {k: v for k, v in three_cameras.items() if k.endswith((".cam0", ".cam1"))})
    return p


def test_an_adaptation_batch_is_pairs_mirrored_together(two_camera_file):
    from streamlift import checkpoint
    from streamlift.lifter.model import FORMAT

    ck = checkpoint.read(WINDOWED_WEIGHTS, FORMAT, "lifter")
    cfg = AdaptConfig(batch=64, multiview=1.0, noise_px=0.0, held_out=0.0)
    run = _prepare([str(two_camera_file)], ck, cfg, None, lambda s: None)
    w, _, _, targets = _draw(run, cfg, torch.Generator().manual_seed(0))
    n = 32
    assert len(targets) == 64
    raw = run.sampler.windows(targets)
    mirrored = torch.tensor([torch.equal(w[i], flip_2d(raw[i:i + 1])[0]) for i in range(64)])
    as_is = torch.tensor([torch.equal(w[i], raw[i]) for i in range(64)])
    assert (mirrored | as_is).all() and mirrored.any() and as_is.any()
    assert torch.equal(mirrored[:n], mirrored[n:])  # a pair is mirrored together
    local = targets - run.sampler.start[targets]
    assert torch.equal(local[:n], local[n:])  # the same frame
    assert (run.sampler.start[targets[:n]] != run.sampler.start[targets[n:]]).all()  # other view


def test_adapting_with_multiview_lowers_the_held_out_inconsistency(two_camera_file, tmp_path):
    def run(weight):  # a negligible weight: the checks measure it, the loss barely moves it
        cfg = AdaptConfig(steps=8, batch=8, check_every=4, check_windows=64, patience=10,
                          lr=1e-3, multiview=weight)
        r = adapt([str(two_camera_file)], str(WINDOWED_WEIGHTS), str(tmp_path / "mv.pt"), cfg,
                  None, progress=False, log=lambda s: None)
        return [c["multiview"] for c in r["checks"]]

    used, unused = run(5.0), run(1e-9)
    assert used[0] == unused[0]  # the same start, judged the same way
    assert used[2] < used[1] < used[0]
    assert used[2] < unused[2] - 0.1 * (unused[0] - used[2])


def test_the_guard_counts_the_held_out_inconsistency_by_its_weight():
    start = {"reprojection": 0.20, "prior": 0.10, "multiview": 0.30}
    more_consistent = {"reprojection": 0.202, "prior": 0.11, "multiview": 0.20}
    assert better(more_consistent, start, start, AdaptConfig(prior_weight=2.0, multiview=1.0))
    assert not better(more_consistent, start, start, AdaptConfig(prior_weight=2.0, multiview=0.1))
    # never at the price of reprojecting worse than the start allows
    worse_2d = {"reprojection": 0.25, "prior": 0.10, "multiview": 0.01}
    assert not better(worse_2d, start, start, AdaptConfig(multiview=10.0))


def test_multiview_needs_synchronised_views(tmp_path, capsys, three_cameras):
    single = tmp_path / "single.npz"
    save_views(single, {"walk": next(iter(three_cameras.values()))})
    assert main(["adapt", "--data", str(single), "--out", str(tmp_path / "o.pt"),
                 "--multiview", "1", "--held-out", "0", "--no-prior", "--quiet"]) == 2
    assert "--multiview needs views of one sequence" in capsys.readouterr().err


def test_multiview_turns_the_orientation_anchor_off_unless_it_is_given(two_camera_file,
                                                                      tmp_path, capsys):
    # the anchor holds the starting rotation, which the consistency is there to correct
    assert (AdaptConfig().anchor, AdaptConfig(multiview=1.0).anchor) == (1.0, 0.0)
    assert AdaptConfig(multiview=1.0, anchor=0.5).anchor == 0.5
    run = ["adapt", "--data", str(two_camera_file), "--out", str(tmp_path / "o.pt"), "--steps",
           "1", "--batch", "4", "--held-out", "0", "--no-prior", "--quiet", "--threads", "1"]
    assert main(run + ["--multiview", "1"]) == 0
    err = capsys.readouterr().err
    assert "(1 x; orientation anchor 0)" in err and "warning" not in err
    assert main(run + ["--multiview", "1", "--anchor", "1"]) == 0
    err = capsys.readouterr().err
    assert "(1 x; orientation anchor 1)" in err and "warning: the orientation anchor" in err
    assert main(run) == 0
    assert "multiview 1 would use that" in capsys.readouterr().err
