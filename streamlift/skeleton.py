"""Joint layouts: Human3.6M-17 (what the model speaks), COCO-17 (what most 2D detectors emit)
and MPII-16 (Stacked Hourglass, OpenPose-MPI).

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

MPII16 = Layout(
    name="mpii16",
    joints=(
        "r_ankle", "r_knee", "r_hip", "l_hip", "l_knee", "l_ankle", "pelvis", "thorax",
        "upper_neck", "head_top", "r_wrist", "r_elbow", "r_shoulder", "l_shoulder", "l_elbow",
        "l_wrist",
    ),
    # the MPII order of Stacked Hourglass and OpenPose-MPI style detectors
    parents=(1, 2, 6, 6, 3, 4, -1, 6, 7, 8, 11, 12, 7, 7, 13, 14),
    flip=(5, 4, 3, 2, 1, 0, 6, 7, 8, 9, 15, 14, 13, 12, 11, 10),
)

LAYOUTS = {H36M17.name: H36M17, COCO17.name: COCO17, MPII16.name: MPII16}
ROOT = 0  # pelvis in H36M-17

# Bone pairs whose lengths must match on a symmetric body: (left bone child, right bone child).
SYMMETRIC_BONES = tuple(
    (c, H36M17.flip[c]) for c in range(H36M17.num_joints)
    if H36M17.side(c) == "left" and H36M17.parents[c] >= 0
)

# The right leg and arm of H36M-17, the chains a 2D detector swaps with their twins (flip):
# streamlift.data.detector models the swaps, streamlift.data.unswap undoes them.
LIMBS = {"leg": [H36M17.index(n) for n in ("r_hip", "r_knee", "r_ankle")],
         "arm": [H36M17.index(n) for n in ("r_shoulder", "r_elbow", "r_wrist")]}

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


# MPII-16 -> H36M-17. The pelvis is the hip centre (as for COCO; MPII's own pelvis point
# sits differently from detector to detector), the spine the midpoint of it and the thorax.
_MPII_TO_H36M_SOURCES: tuple[tuple[int, ...], ...] = (
    (2, 3),  # pelvis = mid-hip
    (2,),  # r_hip
    (1,),  # r_knee
    (0,),  # r_ankle
    (3,),  # l_hip
    (4,),  # l_knee
    (5,),  # l_ankle
    (2, 3, 7, 7),  # spine = midpoint of mid-hip and thorax
    (7,),  # thorax
    (8,),  # neck_nose = upper neck
    (9,),  # head = head top
    (13,),  # l_shoulder
    (14,),  # l_elbow
    (15,),  # l_wrist
    (12,),  # r_shoulder
    (11,),  # r_elbow
    (10,),  # r_wrist
)

_SOURCES = {COCO17.name: _COCO_TO_H36M_SOURCES, MPII16.name: _MPII_TO_H36M_SOURCES}
_TITLE = {COCO17.name: "COCO-17", MPII16.name: "MPII-16"}


def _map_to_h36m(kp: np.ndarray, layout: Layout) -> np.ndarray:
    """Keypoints `(..., J, C)` of `layout` -> H36M-17 `(..., 17, C)`.

    Coordinates of derived joints are the mean of their sources (a source listed twice counts
    twice). If C == 3 the last channel is a confidence, and a derived joint gets the smallest
    confidence of its sources (a mid-hip is only as trustworthy as the worse hip).
    """
    kp = np.asarray(kp)
    J = layout.num_joints
    if kp.ndim < 2 or kp.shape[-2] != J or kp.shape[-1] not in (2, 3):
        raise ValueError(f"expected {_TITLE[layout.name]} keypoints of shape (..., {J}, 2|3), "
                         f"got {kp.shape}")
    out = np.empty((*kp.shape[:-2], H36M17.num_joints, kp.shape[-1]), dtype=kp.dtype)
    for j, src in enumerate(_SOURCES[layout.name]):
        out[..., j, :2] = kp[..., list(src), :2].mean(axis=-2)
        if kp.shape[-1] == 3:
            out[..., j, 2] = kp[..., list(src), 2].min(axis=-1)
    return out


def coco_to_h36m(kp: np.ndarray) -> np.ndarray:
    """Map COCO-17 keypoints `(..., 17, C)` to H36M-17 `(..., 17, C)` (`_map_to_h36m`)."""
    return _map_to_h36m(kp, COCO17)


def mpii_to_h36m(kp: np.ndarray) -> np.ndarray:
    """Map MPII-16 keypoints `(..., 16, C)` to H36M-17 `(..., 17, C)` (`_map_to_h36m`)."""
    return _map_to_h36m(kp, MPII16)


def to_h36m(kp: np.ndarray, layout: str) -> np.ndarray:
    """Return keypoints in H36M-17 order, from any layout named in LAYOUTS."""
    if layout == H36M17.name:
        return np.asarray(kp)
    if layout in _SOURCES:
        return _map_to_h36m(kp, LAYOUTS[layout])
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
