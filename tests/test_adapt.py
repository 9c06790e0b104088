"""`streamlift adapt`: the orientation anchor, the held-out split, the guard that keeps the
best weights (or the starting ones), and the command."""

import math

import numpy as np
import pytest
import torch

from streamlift import checkpoint
from streamlift.cli import main
from streamlift.data import load_mocap, make_views, save_views
from streamlift.data.views import View
from streamlift.geometry import camera_rotation
from streamlift.lifter.model import FORMAT, LifterConfig, NRSfMFormer
from streamlift.paths import WINDOWED_WEIGHTS, SAMPLE_MOCAP
from streamlift.train.adapt import (AdaptConfig, _judge, _prepare, adapt, better,
                                    orientation_anchor, split_views)


@pytest.fixture(scope="module")
def views_file(tmp_path_factory):
    views = make_views(load_mocap(SAMPLE_MOCAP), 1, 0, progress=False)
    p = tmp_path_factory.mktemp("adapt") / "mine.npz"
    save_views(p, {k: View(v.kp2d[:200], v.kp3d[:200], v.fps, v.image_size, v.intrinsics,
                           v.extrinsics) for k, v in views.items()})
    return p


def test_the_anchor_measures_rotation_only():
    X0 = torch.randn(2, 5, 17, 3, generator=torch.Generator().manual_seed(0))
    moved = 3.0 * X0 + torch.tensor([10.0, -4.0, 7.0])  # scaled and shifted, not turned
    assert orientation_anchor(moved, X0) < 1e-10
    losses = []
    for deg in (5, 10, 20):
        R = camera_rotation(*(torch.tensor([math.radians(a)]) for a in (deg, 0, 0)))[0]
        losses.append(float(orientation_anchor(X0 @ R.T, X0)))
    assert 0 < losses[0] < losses[1] < losses[2]


def test_held_out_views_are_the_last_frames_or_whole_short_views():
    def v(n):
        return View(np.arange(n * 34, dtype=np.float32).reshape(n, 17, 2),
                    np.zeros((n, 17, 3), np.float32))
    views = {"long": v(300), **{f"short{i}": v(40) for i in range(40)}}
    fit, held = split_views(views, 0.2, 27)
    np.testing.assert_array_equal(fit["long"].kp2d, views["long"].kp2d[:240])
    np.testing.assert_array_equal(held["long"].kp2d, views["long"].kp2d[240:])
    shorts = [k for k in views if k.startswith("short")]
    assert all((k in fit) != (k in held) for k in shorts)  # whole, on one side
    assert 3 <= sum(k in held for k in shorts) <= 16  # about a fifth of them
    assert all(x.kp3d is None for x in (*fit.values(), *held.values()))  # never 3D
    assert split_views(views, 0.2, 27)[1].keys() == held.keys()  # the same split every run


def test_kept_weights_may_not_reproject_worse_than_the_start():
    cfg = AdaptConfig(prior_weight=8.0, reprojection_tol=0.02)
    start = {"reprojection": 0.20, "prior": 0.10}
    assert not better({"reprojection": 0.25, "prior": 0.01}, start, start, cfg)  # prior "won"
    assert better({"reprojection": 0.203, "prior": 0.09}, start, start, cfg)
    assert not better({"reprojection": 0.19, "prior": 0.11}, start, start, cfg)


def _small(**kw):
    return AdaptConfig(**{"steps": 6, "batch": 4, "check_every": 2, "check_windows": 64,
                          "patience": 10, **kw})


def test_a_run_keeps_the_weights_of_its_best_check(views_file, tmp_path):
    cfg = _small(lr=1e-3)
    r = adapt([str(views_file)], str(WINDOWED_WEIGHTS), str(tmp_path / "a.pt"), cfg, None,
              progress=False, log=lambda s: None)
    checks, chosen = r["checks"], r["chosen_step"]
    assert [c["step"] for c in checks] == [0, 2, 4, 6]
    ok = [c for c in checks[1:] if c["reprojection"] <= checks[0]["reprojection"] * 1.02]
    best = min(ok, key=lambda c: c["reprojection"]) if ok else checks[0]
    assert chosen == (best["step"] if best["reprojection"] < checks[0]["reprojection"] else 0)
    # the saved weights are those of that check: judging them again gives its numbers
    ck = checkpoint.read(tmp_path / "a.pt", FORMAT, "lifter")
    model = NRSfMFormer(LifterConfig(**ck["config"]))
    model.load_state_dict(ck["state_dict"])
    run = _prepare([str(views_file)], ck, cfg, None, lambda s: None)
    again = _judge(model, run.judge, run.targets, None, cfg)
    kept = next(c for c in checks if c["step"] == chosen)
    assert again["reprojection"] == pytest.approx(kept["reprojection"], rel=1e-5)
    assert ck["meta"]["adapt"]["init_digest"] == checkpoint.file_digest(WINDOWED_WEIGHTS)


def test_a_run_that_only_gets_worse_gives_back_the_starting_weights(views_file, tmp_path):
    r = adapt([str(views_file)], str(WINDOWED_WEIGHTS), str(tmp_path / "b.pt"), _small(lr=0.5),
              None, progress=False, log=lambda s: None)
    assert r["chosen_step"] == 0
    assert all(c["reprojection"] > r["checks"][0]["reprojection"] for c in r["checks"][1:])
    before = checkpoint.read(WINDOWED_WEIGHTS, FORMAT, "lifter")["state_dict"]
    after = checkpoint.read(tmp_path / "b.pt", FORMAT, "lifter")["state_dict"]
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_the_command_adapts_and_the_result_serves(views_file, tmp_path, capsys):
    out = tmp_path / "mine.pt"
    assert main(["adapt", "--data", str(views_file), "--out", str(out), "--steps", "4",
                 "--batch", "4", "--check-every", "2", "--check-windows", "32", "--no-prior",
                 "--threads", "1", "--quiet"]) == 0
    assert f"wrote {out}" in capsys.readouterr().out
    assert main(["eval", "--data", str(views_file), "--weights", str(out), "--threads", "1",
                 "--quiet"]) == 0
    assert main(["adapt", "--data", str(views_file), "--out", str(out), "--prior",
                 str(tmp_path / "none.pt")]) == 2
    assert "prior checkpoint not found" in capsys.readouterr().err


def test_the_adaptations_2d_noise_is_what_its_flags_say(views_file):
    """--noise-px S: each window's 2D noised by sigma ~ U(0, S) px (none at 0); --detector:
    the detector model's noise (confidences that fall with the error) instead."""
    from streamlift.cli import build_parser
    from streamlift.data.views import load_views
    from streamlift.train.sampler import WindowSampler, draw_batch

    a = build_parser().parse_args(["adapt", "--data", "v.npz", "--out", "o.pt",
                                   "--noise-px", "3", "--detector"])
    assert a.noise_px == 3.0 and a.detector is True
    assert build_parser().parse_args(["adapt", "--data", "v.npz", "--out", "o.pt"]).noise_px == 1.0
    sampler = WindowSampler(load_views(views_file), 9, "causal")

    def deviation(**kw):
        cfg = AdaptConfig(batch=256, flip_prob=0.0, **kw)
        g = torch.Generator().manual_seed(3)
        w, _, _ = draw_batch(sampler, cfg, g)
        exact = sampler.windows(sampler.draw(cfg.batch, torch.Generator().manual_seed(3),
                                             cfg.balance))
        return w, (w[..., :2] - exact[..., :2]).std().item()

    assert deviation(noise_px=0.0)[1] == 0.0
    _, s1 = deviation(noise_px=1.0)
    _, s3 = deviation(noise_px=3.0)
    # sigma ~ U(0, S): the pooled std is S / sqrt(3)
    assert s1 == pytest.approx(1 / math.sqrt(3), rel=0.15)
    assert s3 == pytest.approx(3 / math.sqrt(3), rel=0.15)
    w, _ = deviation(detector=True)
    assert (w[..., 2] < 1).any() and (w[..., 2] >= 0).all()


def test_the_2d_is_adapted_on_with_its_limb_swaps_exchanged_back(views_file, tmp_path):
    """A detector's left/right swaps turned the bodies (docs/generalisation.md): adapt undoes
    them in the frames it fits and in those it judges by, unless --keep-swaps."""
    from streamlift.data import load_views
    from streamlift.data.unswap import LIMBS
    from streamlift.skeleton import H36M17

    views = load_views(views_file)
    legs = LIMBS["leg"] + [H36M17.flip[j] for j in LIMBS["leg"]]
    swapped = {}
    for k, v in views.items():
        kp = v.kp2d.copy()
        for t in (*range(40, 45), 180, 181):  # fitted frames, then held-out ones
            kp[t, legs] = v.kp2d[t, legs[3:] + legs[:3]]
        swapped[k] = View(kp, v.kp3d, v.fps, v.image_size, v.intrinsics, v.extrinsics)
    save_views(tmp_path / "swapped.npz", swapped)
    ck = checkpoint.read(WINDOWED_WEIGHTS, FORMAT, "lifter")
    lines = []
    exact = _prepare([str(views_file)], ck, _small(), None, lambda s: None)
    fixed = _prepare([str(tmp_path / "swapped.npz")], ck, _small(), None, lines.append)
    kept = _prepare([str(tmp_path / "swapped.npz")], ck, _small(keep_swaps=True), None,
                    lambda s: None)
    assert torch.equal(fixed.sampler.kp, exact.sampler.kp)
    assert torch.equal(fixed.judge.kp, exact.judge.kp)
    assert not torch.equal(kept.sampler.kp, exact.sampler.kp)
    assert not torch.equal(kept.judge.kp, exact.judge.kp)
    assert any(f"exchanged back {7 * len(views):,} left/right limb swaps" in s for s in lines)


def test_weight_overrides_one_loss_and_keeps_adapts_other_weights(views_file, tmp_path, capsys):
    from streamlift.train.adapt import ADAPT_WEIGHTS

    out = tmp_path / "w.pt"
    assert main(["adapt", "--data", str(views_file), "--out", str(out), "--steps", "2",
                 "--batch", "4", "--held-out", "0", "--no-prior", "--weight", "bone_constancy=0",
                 "--weight", "smoothness=2.5", "--threads", "1", "--quiet"]) == 0
    saved = checkpoint.read(out, FORMAT, "lifter")["meta"]["adapt"]["config"]["weights"]
    assert saved == {**ADAPT_WEIGHTS, "bone_constancy": 0.0, "smoothness": 2.5}
    assert "depth_extent" not in saved  # train's defaults do not leak in
    capsys.readouterr()
    assert main(["adapt", "--data", str(views_file), "--out", str(out), "--weight", "bone=1"]) == 2
    assert "unknown loss 'bone'" in capsys.readouterr().err
