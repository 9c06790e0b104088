"""Action groups of `streamlift eval`: view names -> the action they show."""

import numpy as np
import pytest

from streamlift.data import load_mocap, load_views
from streamlift.data.h36m import import_2d
from streamlift.data.views import make_views
from streamlift.eval.evaluate import action_group
from streamlift.paths import SAMPLE_MOCAP

# Human3.6M's 15 actions as VideoPose3D's files name them (a second take carries " 1" or " 2")
H36M_ACTIONS = ("Directions", "Discussion", "Eating", "Greeting", "Phoning", "Photo", "Posing",
                "Purchases", "Sitting", "SittingDown", "Smoking", "Waiting", "WalkDog",
                "Walking", "WalkTogether")
H36M_CAMERAS = ("54138969", "55011271", "58860488", "60457274")


@pytest.mark.parametrize("name", [
    "S9/Directions.54138969", "S9/Directions_1.54138969", "S9/Directions 1.54138969",
    "S9/Directions 2.60457274", "S11/Directions.cam0", "S11/Directions 1.cam3",
    "S9/Directions 1", "Directions 1.55011271", "h36m/S9/Directions_1.58860488",
])
def test_h36m_takes_and_cameras_are_one_action(name):
    assert action_group(name) == "Directions"


def test_h36m_camera_ids_and_take_numbers_give_the_15_actions():
    groups = {}
    for subject in ("S1", "S9", "S11"):
        for action in H36M_ACTIONS:
            for take in ("", " 1", " 2", "_1"):
                for cam in H36M_CAMERAS + ("cam0", "cam3"):
                    name = f"{subject}/{action}{take}.{cam}"
                    groups.setdefault(action_group(name), set()).add(action)
    # one group per action, named as the action, nothing merged (Sitting / SittingDown,
    # Walking / WalkDog / WalkTogether stay apart)
    assert groups == {a: {a} for a in H36M_ACTIONS}


def test_h36m_own_spellings_read_as_videopose3ds():
    # the original .cdf names of S1's and others' takes, which VideoPose3D renames
    assert action_group("S1/TakingPhoto.54138969") == "Photo"
    assert action_group("S5/TakingPhoto 1.cam2") == "Photo"
    assert action_group("S9/WalkingDog 1.60457274") == "WalkDog"
    assert action_group("S9/WalkDog.cam1") == "WalkDog"


def test_hdm05_views_group_by_motion_class():
    assert action_group("hdm05_mm_squat1Reps_037.cam0") == "squat"
    assert action_group("hdm05_tr_squat3Reps_002.cam1") == "squat"
    assert action_group("hdm05_tr_depositFloorR_027.cam1") == "depositFloorR"
    assert action_group("hdm05_bd_elbowToKnee1RepsLelbowStart_019.cam3") == "elbowToKnee"
    assert action_group("hdm05_dg_lieDownFloor_001.cam0") == "lieDownFloor"
    assert action_group("dataset-1_walk-left_angry_001.cam2") == "walk-left"  # not HDM05


def test_views_from_import_h36m_group_by_action(tmp_path):
    g = np.random.default_rng(0)
    actions = ("Directions", "Directions 1", "Photo 1", "Sitting 1", "SittingDown",
               "SittingDown 2", "Walking", "WalkTogether 1")
    pos2d = {s: {a: [g.uniform(0, 1000, (3, 17, 2)) for _ in range(4)] for a in actions}
             for s in ("S9", "S11")}
    src = tmp_path / "data_2d_h36m_cpn.npz"
    np.savez(src, positions_2d=pos2d, metadata={"layout_name": "h36m", "num_joints": 17})
    out = tmp_path / "views.npz"
    import_2d(src, out, allow_pickle=True)
    names = sorted(load_views(out))
    assert len(names) == 2 * len(actions) * 4 and "S9/Directions 1.cam3" in names
    groups = {}
    for n in names:
        groups.setdefault(action_group(n), []).append(n)
    assert {k: len(v) for k, v in groups.items()} == {
        "Directions": 16, "Photo": 8, "Sitting": 8, "SittingDown": 16, "Walking": 8,
        "WalkTogether": 8}


def test_shipped_cmu_sample_views_group_by_action():
    views = make_views(load_mocap(SAMPLE_MOCAP), n_cameras=2, seed=0, progress=False)
    groups = {}
    for n in views:  # indian_15.cam0, ..., salsa_30.cam1
        groups.setdefault(action_group(n), []).append(n)
    assert {k: len(v) for k, v in groups.items()} == {"indian": 2, "salsa": 8}


@pytest.mark.parametrize("name,group", [
    ("dataset-1_walk-left_angry_001.cam2", "walk-left"),  # Bandai: dataset-N_action_style_take
    ("dataset-2_raise-up-both-hands_masculine_003.cam0", "raise-up-both-hands"),
    ("dataset-1_run_normal_012.cam11", "run"),
    ("salsa_01.cam0", "salsa"),  # CMU sample: action_take.camK
    ("indian_02.cam3", "indian"),
    ("salsa_01", "salsa"),
    ("S9/Walking 1.cam2", "Walking"),
    ("plain", "plain"),
])
def test_other_datasets_keep_their_groups(name, group):
    assert action_group(name) == group


@pytest.mark.parametrize("kind", ["windowed", "streaming"])
def test_eval_every_nth_frame_scores_those_frames_as_a_full_eval_does(kind):
    """`--every N`: the mean over frames 0, N, 2N, ... of each view, each lifted as when every
    frame is scored (a windowed lifter lifts only their windows; a streaming one still runs
    its state through every frame, with its lookahead's frames after them)."""
    import torch

    from streamlift.eval.evaluate import evaluate
    from streamlift.lifter.infer import lift_sequence
    from streamlift.lifter.model import LifterConfig, NRSfMFormer
    from streamlift.lifter.stream import StreamConfig, StreamingNRSfMFormer
    from streamlift.metrics import n_mpjpe

    torch.manual_seed(0)
    model = (NRSfMFormer(LifterConfig(window=9, depth=1, dim=32, heads=2)) if kind == "windowed"
             else StreamingNRSfMFormer(StreamConfig(window=9, depth=1, dim=32, heads=2,
                                                    lookahead=2))).eval()
    with torch.no_grad():
        model.head_D.weight.normal_(0, 0.3)  # poses that differ by frame
    m = load_mocap(SAMPLE_MOCAP)
    views = dict(list(make_views(m, 1, 0, progress=False).items())[:2])
    got = evaluate(model, views, progress=False, every=7)
    errs = []
    for v in views.values():
        pred = torch.from_numpy(lift_sequence(model, v.kp2d, K=v.intrinsics)).double()
        errs.append(n_mpjpe(pred, torch.from_numpy(v.kp3d).double(), reduce=False)[::7])
    errs = torch.cat(errs)
    assert got["frames"] == len(errs) == sum(-(-v.frames // 7) for v in views.values())
    assert got["n_mpjpe"] == pytest.approx(float(errs.mean()), rel=1e-6)
    assert got["n_mpjpe"] != pytest.approx(evaluate(model, views, progress=False)["n_mpjpe"],
                                           rel=1e-4)  # not the mean over every frame


def test_lookahead_gain_at_lag_0_is_eval_and_lag_l_reads_the_window_l_frames_on():
    """scripts/lookahead_gain.py: lag 0 scores what `eval --every` scores; lag L lifts frame f
    from the causal window ending at f + L (its position T - 1 - L)."""
    import importlib.util
    from pathlib import Path

    import torch

    from streamlift.eval.evaluate import evaluate
    from streamlift.lifter.model import LifterConfig, NRSfMFormer
    from streamlift.metrics import n_mpjpe
    from streamlift.virtual_camera import from_virtual, to_virtual

    path = Path(__file__).resolve().parents[1] / "scripts/lookahead_gain.py"
    spec = importlib.util.spec_from_file_location("lookahead_gain", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    torch.manual_seed(0)
    model = NRSfMFormer(LifterConfig(window=9, depth=1, dim=32, heads=2)).eval()
    with torch.no_grad():
        model.head_D.weight.normal_(0, 0.3)
    name, view = next(iter(make_views(load_mocap(SAMPLE_MOCAP), 1, 0, progress=False).items()))
    e0 = mod.lag_errors(model, view, 0, 11)
    assert e0[:, 0].mean() == pytest.approx(
        evaluate(model, {name: view}, progress=False, every=11)["n_mpjpe"], rel=1e-5)
    e3 = mod.lag_errors(model, view, 3, 11)
    f = 22  # frame 22 from the window of frames 17 .. 25
    kp, R = to_virtual(np.asarray(view.kp2d, np.float32), view.intrinsics)
    w = torch.from_numpy(kp[17:26, :, :2])[None]  # exact 2D: no confidences, all seen
    with torch.no_grad():
        X = model(w, torch.ones(w.shape[:3])).X[0, 9 - 1 - 3].numpy()
    X = from_virtual(X[None], R[f:f + 1])
    want = n_mpjpe(torch.from_numpy(X).double(), torch.from_numpy(view.kp3d[f:f + 1]).double(),
                   reduce=False)
    assert e3[2, 0] == pytest.approx(float(want[0]), rel=1e-5)
    assert not np.allclose(e3[:, 0], e0[:, 0])


def test_the_every_nth_frame_line_reads_as_english():
    from streamlift.eval.evaluate import ordinal

    assert [ordinal(n) for n in (1, 2, 3, 4, 8, 11, 12, 13, 21, 22, 23, 101, 111, 112)] == [
        "1st", "2nd", "3rd", "4th", "8th", "11th", "12th", "13th", "21st", "22nd", "23rd",
        "101st", "111th", "112th"]


def test_eval_reports_the_rotation_that_turns_the_lifted_poses_onto_the_truth():
    """A view whose ground truth is the lifter's own output turned 12 deg about the camera's x
    axis (and scaled): PA-MPJPE 0, N-MPJPE not, and eval's rotation to the truth is that pitch."""
    import dataclasses

    import torch

    from streamlift.eval.evaluate import evaluate, format_rotation
    from streamlift.lifter.infer import lift_sequence
    from streamlift.lifter.model import LifterConfig, NRSfMFormer

    torch.manual_seed(0)
    model = NRSfMFormer(LifterConfig(window=9, depth=1, dim=32, heads=2)).eval()
    views = dict(list(make_views(load_mocap(SAMPLE_MOCAP), 1, 0, progress=False).items())[:2])
    a = np.deg2rad(12.0)
    Rx = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    for name, v in views.items():
        pred = lift_sequence(model, v.kp2d, K=v.intrinsics).astype(np.float64)
        views[name] = dataclasses.replace(v, kp3d=1000 * pred @ Rx.T)  # truth = 1000 Rx pred
    got = evaluate(model, views, progress=False)
    assert got["pa_mpjpe"] < 1e-3 and got["n_mpjpe"] > 1.0
    assert got["rotation_deg"] == pytest.approx(12.0, abs=1e-3)
    np.testing.assert_allclose(got["rotation_vector_deg"], [12.0, 0, 0], atol=1e-3)
    assert "mean 12.0 deg; mean rotation vector x +12.0, y +0.0, z +0.0 deg" in format_rotation(got)
