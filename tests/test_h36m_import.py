"""`streamlift data import-h36m`: VideoPose3D's pickled Human3.6M files -> mocap and views files."""

import numpy as np
import pytest

from streamlift.cli import main
from streamlift.data import load_mocap, load_views
from streamlift.data.h36m import KEEP_32_TO_17


@pytest.fixture
def vp3d_files(tmp_path):
    g = np.random.default_rng(0)
    # joint j of the 32 sits at x = j metres, so the kept joints can be read back from x
    pos3d = {s: {a: np.stack([np.tile(np.arange(32.0)[:, None] * [1, 0, 0], (1, 1))
                              + g.normal(0, 1e-3, (32, 3)) * [0, 1, 1] for _ in range(40)])
                 for a in ("Walking", "Sitting 1")}
             for s in ("S1", "S5", "S8", "S9", "S11")}
    pos2d = {s: {a: [g.uniform(0, 1000, (40, 17, 2)) for _ in range(4)] for a in ("Walking",)}
             for s in ("S1", "S9")}
    p3, p2 = tmp_path / "data_3d_h36m.npz", tmp_path / "data_2d_h36m_cpn.npz"
    np.savez(p3, positions_3d=pos3d)
    np.savez(p2, positions_2d=pos2d, metadata={"layout_name": "h36m", "num_joints": 17})
    return p3, p2, pos2d


def test_refuses_pickles_unless_allowed(vp3d_files, tmp_path, capsys):
    p3, _, _ = vp3d_files
    assert main(["data", "import-h36m", "--3d", str(p3), "--out", str(tmp_path / "m.npz")]) == 2
    assert "--allow-pickle" in capsys.readouterr().err
    assert not (tmp_path / "m.npz").exists()


def test_3d_becomes_mocap_with_subject_splits(vp3d_files, tmp_path):
    p3, _, _ = vp3d_files
    out = tmp_path / "h36m17.npz"
    assert main(["data", "import-h36m", "--3d", str(p3), "--out", str(out), "--allow-pickle"]) == 0
    splits = tmp_path / "h36m17.splits.json"
    train = load_mocap(out, splits, "train", source_pelvis=True)  # the file as imported
    test = load_mocap(out, splits, "test")
    assert sorted(train.sequences) == ["S1/Sitting 1", "S1/Walking", "S5/Sitting 1", "S5/Walking"]
    assert {n.split("/")[0] for n in test.sequences} == {"S9", "S11"}
    assert train.fps == 50
    seq = train.sequences["S1/Walking"]
    assert seq.shape == (40, 17, 3)
    # the 17 kept joints, in order, metres -> millimetres
    np.testing.assert_allclose(seq[0, :, 0], np.array(KEEP_32_TO_17) * 1000.0, atol=1e-3)
    # and the result feeds `data views` unchanged
    views = tmp_path / "views.npz"
    assert main(["data", "views", "--mocap", str(out), "--splits", str(splits), "--split", "val",
                 "--out", str(views), "--cameras", "2", "--quiet"]) == 0
    assert sorted(load_views(views)) == ["S8/Sitting 1.cam0", "S8/Sitting 1.cam1",
                                         "S8/Walking.cam0", "S8/Walking.cam1"]


def test_2d_detections_become_views(vp3d_files, tmp_path):
    _, p2, pos2d = vp3d_files
    out = tmp_path / "train2d.npz"
    assert main(["data", "import-h36m", "--2d", str(p2), "--out-views", str(out), "--subjects",
                 "S1", "--allow-pickle"]) == 0
    views = load_views(out)
    assert sorted(views) == [f"S1/Walking.cam{k}" for k in range(4)]
    v = views["S1/Walking.cam2"]
    assert v.kp3d is None and v.fps == 50
    np.testing.assert_allclose(v.kp2d, pos2d["S1"]["Walking"][2], rtol=1e-6)


def test_needs_an_input_and_matching_outputs(vp3d_files, capsys):
    p3, _, _ = vp3d_files
    assert main(["data", "import-h36m"]) == 2
    assert main(["data", "import-h36m", "--3d", str(p3), "--allow-pickle"]) == 2
    assert "--out" in capsys.readouterr().err
