"""Training and evaluation end to end on the shipped sample (tiny model, few steps)."""

import json

import numpy as np
import pytest
import torch

from streamlift.cli import main
from streamlift.data import load_mocap, make_views, save_views
from streamlift.eval.evaluate import action_group
from streamlift.lifter.model import load_checkpoint
from streamlift.paths import SAMPLE_MOCAP
from streamlift.train.sampler import WindowSampler, flip_2d

torch.set_num_threads(1)
TINY = ["--dim", "32", "--depth", "1", "--heads", "2", "--window", "9"]


@pytest.fixture(scope="module")
def sample_views(tmp_path_factory):
    views = make_views(load_mocap(SAMPLE_MOCAP), n_cameras=1, seed=0, progress=False)
    path = tmp_path_factory.mktemp("views") / "sample.npz"
    save_views(path, views)
    return path, views


def test_sampler_windows_stay_inside_their_view(sample_views):
    _, views = sample_views
    s = WindowSampler(views, window=9, mode="causal")
    starts = np.cumsum([0] + [v.frames for v in views.values()])
    targets = torch.tensor([0, 3, 599, 600, 601, 2999])
    w = s.windows(targets)  # (6, 9, 17, 3)
    assert w.shape == (6, 9, 17, 3)
    kp = s.kp
    torch.testing.assert_close(w[0], kp[0].expand(9, 17, 3))  # padded with frame 0
    torch.testing.assert_close(w[3], kp[600].expand(9, 17, 3))  # the next view starts fresh
    torch.testing.assert_close(w[4, -2:], kp[600:602])
    torch.testing.assert_close(w[5], kp[2991:3000])
    assert starts[-1] == len(s)


def test_flip_mirrors_and_swaps_sides():
    w = torch.randn(2, 3, 17, 3)
    f = flip_2d(w)
    torch.testing.assert_close(f[:, :, 4, 0], -w[:, :, 1, 0])  # l_hip <- mirrored r_hip
    torch.testing.assert_close(f[:, :, 0, 1], w[:, :, 0, 1])
    torch.testing.assert_close(flip_2d(f), w)


def test_train_learns_resumes_and_evaluates(sample_views, tmp_path, capsys):
    data, _ = sample_views
    out = tmp_path / "m.pt"
    args = ["train", "--data", str(data), "--val", str(data), "--out", str(out), "--quiet",
            "--epochs", "2", "--epoch-windows", "256", "--batch", "32", *TINY]
    assert main(args) == 0
    ck = torch.load(out, weights_only=True)
    hist = ck["meta"]["history"]
    assert [h["epoch"] for h in hist] == [1, 2]
    assert hist[1]["reprojection"] < hist[0]["reprojection"]
    assert ck["meta"]["train_views"] == [str(data)] and len(ck["meta"]["train_digest"][0]) == 16
    assert "val_pa_mpjpe" in hist[-1]
    assert ck["train"]["config"]["intrinsics"] is True  # the sample's views carry K
    # resume adds epochs without starting over
    assert main(["train", "--data", str(data), "--out", str(out), "--quiet", "--epochs", "3",
                 "--resume"]) == 0
    ck = torch.load(out, weights_only=True)
    assert [h["epoch"] for h in ck["meta"]["history"]] == [1, 2, 3]
    assert ck["train"]["step"] == 3 * 8
    model, _ = load_checkpoint(out)
    assert model.cfg.window == 9
    # eval: every frame scored, JSON with the documented keys
    js = tmp_path / "e.json"
    capsys.readouterr()
    assert main(["eval", "--data", str(data), "--weights", str(out), "--json", str(js), "--quiet"]) == 0
    printed = capsys.readouterr().out
    res = json.loads(js.read_text())
    assert res["frames"] == 3000 and {"mpjpe", "n_mpjpe", "pa_mpjpe"} <= set(res)
    assert set(res["groups"]) == {"indian", "salsa"}
    assert "ALL" in printed and "salsa" in printed
    assert 0 < res["pa_mpjpe"] <= res["n_mpjpe"] + 1e-6
    assert res["virtual_camera_views"] == 5 and "virtual camera" in printed
    assert main(["eval", "--data", str(data), "--weights", str(out), "--json", str(js), "--quiet",
                 "--no-intrinsics"]) == 0
    plain = json.loads(js.read_text())
    assert plain["virtual_camera_views"] == 0
    # each JSON holds what `evaluate` gives with / without the virtual camera (this barely
    # trained model scores within 1 mm either way, in no particular direction: 359.2 / 359.7)
    from streamlift.data import load_views
    from streamlift.eval.evaluate import evaluate
    views = load_views(data)
    for got, intrinsics in ((res, True), (plain, False)):
        want = evaluate(model, views, progress=False, intrinsics=intrinsics)
        for k in ("mpjpe", "n_mpjpe", "pa_mpjpe"):
            assert got[k] == pytest.approx(want[k], rel=1e-9), (k, intrinsics)


def test_runs_saved_before_the_virtual_camera_resume_without_it(sample_views, tmp_path):
    data, _ = sample_views
    out = tmp_path / "old.pt"
    common = ["--data", str(data), "--quiet", "--epoch-windows", "32", "--batch", "32"]
    assert main(["train", *common, "--out", str(out), "--epochs", "1", *TINY]) == 0
    ck = torch.load(out, weights_only=True)
    cfg = ck["train"]["config"]
    assert cfg["intrinsics"] is True and cfg["perspective"] is True  # the defaults
    del cfg["intrinsics"], cfg["perspective"]  # as a checkpoint from before the options
    torch.save(ck, out)
    assert main(["train", *common, "--out", str(out), "--epochs", "2", "--resume"]) == 0
    cfg = torch.load(out, weights_only=True)["train"]["config"]
    assert cfg["intrinsics"] is False and cfg["perspective"] is False
    flag = tmp_path / "flag.pt"
    assert main(["train", *common, "--out", str(flag), "--epochs", "1", "--no-intrinsics",
                 "--no-perspective", *TINY]) == 0
    cfg = torch.load(flag, weights_only=True)["train"]["config"]
    assert cfg["intrinsics"] is False and cfg["perspective"] is False


def test_init_fine_tunes_from_weights_with_new_settings(sample_views, tmp_path):
    data, _ = sample_views
    base, tuned = tmp_path / "base.pt", tmp_path / "tuned.pt"
    common = ["--data", str(data), "--quiet", "--epoch-windows", "64", "--batch", "32"]
    assert main(["train", *common, "--out", str(base), "--epochs", "1", *TINY]) == 0
    assert main(["train", *common, "--out", str(tuned), "--epochs", "1", "--init", str(base),
                 "--weight", "depth_extent=0", "--prior-t-range", "0.1", "0.7"]) == 0
    ck0, ck = torch.load(base, weights_only=True), torch.load(tuned, weights_only=True)
    assert ck["config"] == ck0["config"]  # the shape came from --init, not the defaults
    assert ck["meta"]["init"] == str(base) and len(ck["meta"]["init_digest"]) == 16
    cfg = ck["train"]["config"]
    assert cfg["weights"]["depth_extent"] == 0 and cfg["prior_t_range"] == [0.1, 0.7]
    assert ck["train"]["step"] == 2 and [h["epoch"] for h in ck["meta"]["history"]] == [1]
    moved = [not torch.equal(ck0["state_dict"][k], v) for k, v in ck["state_dict"].items()]
    assert any(moved)
    # the fine-tune resumes like any run and keeps its provenance
    assert main(["train", *common, "--out", str(tuned), "--epochs", "2", "--resume"]) == 0
    ck = torch.load(tuned, weights_only=True)
    assert ck["meta"]["init"] == str(base) and ck["train"]["config"]["prior_t_range"] == [0.1, 0.7]


def test_decomposition_measures_the_rotation_hidden_in_the_shapes(sample_views):
    """A stand-in lifter whose shapes S[t] = B + D[t] are its reference B turned about z by
    10 + 5 t degrees (t = 0..8): the mean residual rotation is 30 degrees, and since
    |D_j[t]| = 2 sin(theta_t / 2) |(b_j)_xy|, deformation_ratio = RMS |D| / RMS |B| =
    sqrt(mean_t 4 sin^2(theta_t / 2) * mean_j |(b_j)_xy|^2 / mean_j |b_j|^2)."""
    import math

    from streamlift.eval.diagnose import decomposition
    from streamlift.lifter.model import LifterConfig, LifterOutput

    _, views = sample_views
    g = torch.Generator().manual_seed(0)
    B = torch.randn(17, 3, generator=g)
    B = B - B[0]
    theta = torch.deg2rad(10.0 + 5.0 * torch.arange(9.0))  # (T,)
    c, s = theta.cos(), theta.sin()
    Rz = torch.zeros(9, 3, 3)
    Rz[:, 0, 0], Rz[:, 0, 1], Rz[:, 1, 0], Rz[:, 1, 1], Rz[:, 2, 2] = c, -s, s, c, 1.0
    D = B @ Rz.transpose(-1, -2) - B  # (T, J, 3)

    class Stand_in:
        cfg = LifterConfig(window=9, mode="causal")

        def __call__(self, kp, conf):
            n = len(kp)
            return LifterOutput(None, B.expand(n, 17, 3), D.expand(n, 9, 17, 3), None, kp, conf,
                                None)

    d = decomposition(Stand_in(), views, windows=40)
    assert d["windows"] == 40
    assert d["residual_rotation_deg"] == pytest.approx(30.0, abs=1e-3)
    xy, all3 = float(B[:, :2].square().sum(-1).mean()), float(B.square().sum(-1).mean())
    want = math.sqrt(sum(4 * math.sin(float(a) / 2) ** 2 for a in theta) / 9 * xy / all3)
    assert d["deformation_ratio"] == pytest.approx(want, rel=1e-5)


def test_train_and_eval_errors(sample_views, tmp_path):
    data, _ = sample_views
    assert main(["train", "--data", str(data), "--out", str(tmp_path / "a.pt"), "--resume"]) == 2
    assert main(["train", "--data", str(data), "--out", str(tmp_path / "a.pt"),
                 "--weight", "bogus=1"]) == 2
    assert main(["train", "--data", str(data), "--out", str(tmp_path / "a.pt"), "--no-prior",
                 "--prior-weight", "1"]) == 2
    assert main(["train", "--data", str(data), "--out", str(tmp_path / "a.pt"),
                 "--prior", str(tmp_path / "missing.pt")]) == 2
    assert main(["train", "--data", str(data), "--out", str(tmp_path / "a.pt"), *TINY,
                 "--window", "5"]) == 2  # shorter than the prior's window
    assert main(["eval", "--data", str(data), "--weights", str(tmp_path / "none.pt")]) == 2
    out = ["train", "--data", str(data), "--out", str(tmp_path / "a.pt")]
    assert main([*out, "--init", str(tmp_path / "none.pt")]) == 2
    assert main([*out, "--init", str(data)]) == 2  # not a checkpoint
    assert main([*out, "--init", str(data), "--resume"]) == 2
    assert main([*out, "--init", str(data), "--dim", "32"]) == 2
    assert main([*out, "--prior-t-range", "0.5", "0.2"]) == 2
    assert main([*out, "--no-prior", "--prior-t-range", "0.1", "0.5"]) == 2


def test_action_groups_from_view_names():
    assert action_group("dataset-1_walk-left_angry_001.cam2") == "walk-left"
    assert action_group("dataset-2_raise-up-both-hands_masculine_003.cam0") == "raise-up-both-hands"
    assert action_group("salsa_01.cam0") == "salsa"
    assert action_group("S9/Walking 1.cam2") == "Walking"
    assert action_group("plain") == "plain"
