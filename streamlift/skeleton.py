"""Joint layouts: Human3.6M-17 (what the model speaks) and COCO-17 (what most 2D detectors emit).

Everything that knows a joint index lives here, so that the data pipeline, the model, the
server and the renderer agree on one layout.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Layout:
    name: str
    joints: tuple[str, ...]
    parents: tuple[int, ...]  # -1 for the root
    flip: tuple[int, ...]  # index of each joint's mirror twin (itself on the midline)

    @property
    def num_joints(self) -> int:
        return len(self.joints)

    @property
    def bones(self) -> tuple[tuple[int, int], ...]:
        """(parent, child) pairs, one per non-root joint."""
        return tuple((p, c) for c, p in enumerate(self.parents) if p >= 0)

    def side(self, j: int) -> str:
        """'left', 'right' or 'mid' for joint j (by name)."""
        n = self.joints[j]
        return "left" if n.startswith("l_") else "right" if n.startswith("r_") else "mid"

    def index(self, name: str) -> int:
        return self.joints.index(name)


H36M17 = Layout(
    name="h36m17",
    joints=(
        "pelvis", "r_hip", "r_knee", "r_ankle", "l_hip", "l_knee", "l_ankle", "spine",
        "thorax", "neck_nose", "head", "l_shoulder", "l_elbow", "l_wrist",
        "r_shoulder", "r_elbow", "r_wrist",
    ),
    parents=(-1, 0, 1, 2, 0, 4, 5, 0, 7, 8, 9, 8, 11, 12, 8, 14, 15),
    flip=(0, 4, 5, 6, 1, 2, 3, 7, 8, 9, 10, 14, 15, 16, 11, 12, 13),
)

COCO17 = Layout(
    name="coco17",
    joints=(
        "nose", "l_eye", "r_eye", "l_ear", "r_ear", "l_shoulder", "r_shoulder", "l_elbow",
        "r_elbow", "l_wrist", "r_wrist", "l_hip", "r_hip", "l_knee", "r_knee", "l_ankle",
        "r_ankle",
    ),
    # COCO has no kinematic tree; this one (hips and shoulders hang off a virtual midline)
    # is only used for drawing: the nose is the root and the eyes/shoulders/hips hang off it.
    parents=(-1, 0, 0, 1, 2, 0, 0, 5, 6, 7, 8, 5, 6, 11, 12, 13, 14),
    flip=(0, 2, 1, 4, 3, 6, 5, 8, 7, 10, 9, 12, 11, 14, 13, 16, 15),
)

LAYOUTS = {H36M17.name: H36M17, COCO17.name: COCO17}
ROOT = 0  # pelvis in H36M-17

# Bone pairs whose lengths must match on a symmetric body: (left bone child, right bone child).
SYMMETRIC_BONES = tuple(
    (c, H36M17.flip[c]) for c in range(H36M17.num_joints)
    if H36M17.side(c) == "left" and H36M17.parents[c] >= 0
)

# COCO-17 -> H36M-17: each H36M joint is the mean of these COCO joints.
_COCO_TO_H36M_SOURCES: tuple[tuple[int, ...], ...] = (
    (11, 12),  # pelvis = mid-hip
    (12,),  # r_hip
    (14,),  # r_knee
    (16,),  # r_ankle
    (11,),  # l_hip
    (13,),  # l_knee
    (15,),  # l_ankle
    (5, 6, 11, 12),  # spine = mean of shoulders and hips (midpoint of pelvis and thorax)
    (5, 6),  # thorax = mid-shoulder
    (0,),  # neck_nose = nose
    (1, 2),  # head = mid-eyes (COCO has no head top)
    (5,),  # l_shoulder
    (7,),  # l_elbow
    (9,),  # l_wrist
    (6,),  # r_shoulder
    (8,),  # r_elbow
    (10,),  # r_wrist
)


def coco_to_h36m(kp: np.ndarray) -> np.ndarray:
    """Map COCO-17 keypoints `(..., 17, C)` to H36M-17 `(..., 17, C)`.

    Coordinates of derived joints are the mean of their sources. If C == 3 the last channel is a
    confidence, and a derived joint gets the smallest confidence of its sources (a mid-hip is only
    as trustworthy as the worse hip).
    """
    kp = np.asarray(kp)
    if kp.ndim < 2 or kp.shape[-2] != COCO17.num_joints or kp.shape[-1] not in (2, 3):
        raise ValueError(f"expected COCO-17 keypoints of shape (..., 17, 2|3), got {kp.shape}")
    out = np.empty_like(kp)
    for j, src in enumerate(_COCO_TO_H36M_SOURCES):
        out[..., j, :2] = kp[..., list(src), :2].mean(axis=-2)
        if kp.shape[-1] == 3:
            out[..., j, 2] = kp[..., list(src), 2].min(axis=-1)
    return out


def to_h36m(kp: np.ndarray, layout: str) -> np.ndarray:
    """Return keypoints in H36M-17 order, from any layout named in LAYOUTS."""
    if layout == H36M17.name:
        return np.asarray(kp)
    if layout == COCO17.name:
        return coco_to_h36m(kp)
    raise ValueError(f"unknown joint layout {layout!r}; known: {sorted(LAYOUTS)}")


def bone_lengths(pose: np.ndarray) -> np.ndarray:
    """Bone lengths `(..., 16)` of H36M-17 poses `(..., 17, 3)`, in the order of H36M17.bones."""
    p, c = np.array(H36M17.bones).T
    return np.linalg.norm(pose[..., c, :] - pose[..., p, :], axis=-1)


# Human bone-length proportions (each bone / the sum of all 16, in H36M17.bones order) and a
# tolerance on their log: the geometric mean of the median skeletons of the two *training*
# splits in ../shared/data (Bandai, CMU), tolerance = half their log disagreement + 0.1. An
# unpaired prior on body shape (like the motion prior); no evaluated sequence went into it.
BONE_PROPORTIONS = (0.0215, 0.1032, 0.1174, 0.0215, 0.1032, 0.1174, 0.0615, 0.0641, 0.0186,
                    0.0408, 0.0316, 0.0712, 0.0625, 0.0318, 0.0712, 0.0625)
BONE_PROPORTION_LOG_TOL = (0.201, 0.181, 0.101, 0.201, 0.181, 0.101, 0.239, 0.413, 0.101, 0.15,
                           0.123, 0.124, 0.12, 0.118, 0.124, 0.12)
