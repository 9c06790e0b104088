import numpy as np
import pytest

from streamlift.skeleton import (COCO17, H36M17, SYMMETRIC_BONES, bone_lengths, coco_to_h36m, to_h36m)


@pytest.mark.parametrize("layout", [H36M17, COCO17])
def test_layout_is_consistent(layout):
    J = layout.num_joints
    assert len(layout.parents) == len(layout.flip) == J == 17
    assert layout.parents.count(-1) == 1
    assert all(p < c for c, p in enumerate(layout.parents) if p >= 0)  # parents come first
    assert all(layout.flip[layout.flip[j]] == j for j in range(J))  # an involution
    for j in range(J):
        twin = layout.joints[layout.flip[j]]
        name = layout.joints[j]
        expected = ("r_" + name[2:] if name.startswith("l_") else
                    "l_" + name[2:] if name.startswith("r_") else name)
        assert twin == expected


def test_h36m_bones_and_symmetry():
    assert len(H36M17.bones) == 16
    names = {(H36M17.joints[a], H36M17.joints[b]) for a, b in SYMMETRIC_BONES}
    assert ("l_knee", "r_knee") in names and ("l_wrist", "r_wrist") in names
    assert len(SYMMETRIC_BONES) == 6
    pose = np.zeros((17, 3))
    pose[1] = [3, 4, 0]  # r_hip 5 away from the pelvis
    assert bone_lengths(pose)[0] == pytest.approx(5.0)


def test_coco_mapping_derived_joints():
    rng = np.random.default_rng(0)
    coco = rng.normal(size=(5, 17, 3)).astype(np.float32)
    coco[..., 2] = rng.uniform(0.1, 1.0, size=(5, 17))
    h = coco_to_h36m(coco)
    c = {n: coco[:, i] for i, n in enumerate(COCO17.joints)}
    j = {n: h[:, i] for i, n in enumerate(H36M17.joints)}
    np.testing.assert_allclose(j["pelvis"][:, :2], (c["l_hip"][:, :2] + c["r_hip"][:, :2]) / 2, rtol=1e-6)
    np.testing.assert_allclose(j["thorax"][:, :2],
                               (c["l_shoulder"][:, :2] + c["r_shoulder"][:, :2]) / 2, rtol=1e-6)
    np.testing.assert_allclose(j["spine"][:, :2], (j["pelvis"][:, :2] + j["thorax"][:, :2]) / 2,
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(j["r_wrist"], c["r_wrist"])
    np.testing.assert_array_equal(j["neck_nose"], c["nose"])
    # a derived joint is as confident as its least confident source
    np.testing.assert_array_equal(j["pelvis"][:, 2], np.minimum(c["l_hip"][:, 2], c["r_hip"][:, 2]))


def test_to_h36m_rejects_unknown_layout_and_shape():
    with pytest.raises(ValueError, match="unknown joint layout"):
        to_h36m(np.zeros((17, 2)), "openpose25")
    with pytest.raises(ValueError, match="COCO-17"):
        coco_to_h36m(np.zeros((18, 2)))
