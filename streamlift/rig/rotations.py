"""Bone rotations from lifted joint positions: a fixed skeleton, a T-pose rest, and per-frame
joint rotations that animation tools (BVH, VMC) consume.

The rig frame is Y-up, the subject's left +X, its forward +Z (right-handed; `to_rig` turns the
published camera frame into it). Each joint j with a bone to a child gets a frame
F_j = [a, b, a x b]: a the bone's direction, b the part of a reference vector r_j
perpendicular to it, which fixes the twist about the bone:
- pelvis: a to the spine, r the right-to-left hip line; spine, thorax, neck: a up the chain, r
  the right-to-left shoulder line;
- thigh and shin: r = a_thigh x (shin + 0.2 backward); upper arm and forearm:
  r = a_upper x (forearm + 0.2 (forward + up)). Bent, that is the knee's or the elbow's hinge
  axis (so the shin and forearm twist with their neighbours); straight, the 0.2 term takes over
  continuously, so the twist does not flip as a limb straightens (only a straight limb along
  that term's own axis leaves r undefined: `solve` keeps the previous frame's twist there).
The same definitions on the rest pose give F0_j; the joint's global rotation is
G_j = F_j F0_j^T (rest -> now) and its local one L_j = G_parent^T G_j. Forward kinematics with
the rig's fixed bone lengths then puts every child of a one-child joint exactly along its
lifted bone; the hips and shoulders (children of the pelvis and thorax, which have several)
sit where they sit on median in their parent's frame. What FK cannot re-create is a lifted
body whose bone lengths change from frame to frame: the rig's are fixed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from streamlift.skeleton import H36M17

PARENTS = (-1, 0, 1, 2, 0, 4, 5, 0, 7, 8, 9, 8, 11, 12, 8, 14, 15)  # H36M-17
# joint -> the child its bone points to (the others follow from its frame)
PRIMARY = {0: 7, 1: 2, 2: 3, 4: 5, 5: 6, 7: 8, 8: 9, 9: 10, 11: 12, 12: 13, 14: 15, 15: 16}
LEAVES = (3, 6, 10, 13, 16)  # ankles, head, wrists: a rotation, no bone of their own
_J = H36M17.index
LIMB_FALLBACK = 0.2  # weight of the fixed direction in a limb's twist reference
_SIDES = [(_J("l_hip"), _J("r_hip")), (_J("l_shoulder"), _J("r_shoulder"))]
_MIRROR = [0, 4, 5, 6, 1, 2, 3, 7, 8, 9, 10, 14, 15, 16, 11, 12, 13]  # left <-> right
# the rest frame of the pelvis and the thorax: bone up (+Y), lateral +X, third axis -Z
_REST_FRAME = np.array([[0.0, 1, 0], [1, 0, 0], [0, 0, -1]]).T


def to_rig(joints: np.ndarray) -> np.ndarray:
    """Published skeletons (..., 17, 3) in the camera frame (x right, y down, z forward) -> the
    rig frame (Y up): a half turn about x, which keeps handedness."""
    return joints * np.array([1.0, -1.0, -1.0], dtype=joints.dtype)


@dataclass
class Rig:
    """A fixed skeleton: bone lengths (17,) from each joint's parent (0 for the root) and the
    rest (T-pose) offsets (17, 3) in the rig frame, left = right."""

    lengths: np.ndarray
    offsets: np.ndarray

    @classmethod
    def fit(cls, joints: np.ndarray) -> "Rig":
        """From poses (T, 17, 3) in the rig frame: the median length of every bone, and where
        the hips and shoulders sit in their parent's frame (median), left = right."""
        joints = np.asarray(joints, np.float64)
        if joints.ndim != 3 or joints.shape[1:] != (17, 3) or not len(joints):
            raise ValueError(f"expected joints (frames, 17, 3), got {joints.shape}")
        lengths = np.zeros(17)
        for j, p in enumerate(PARENTS):
            if p >= 0:
                lengths[j] = np.median(np.linalg.norm(joints[:, j] - joints[:, p], axis=-1))
        lengths = 0.5 * (lengths + lengths[_MIRROR])
        off = _rest_offsets(lengths)
        F = _frames(joints)  # (T, 17, 3, 3)
        for left, right in _SIDES:  # in the parent's frame [a, b, c]: b is the lateral axis
            p = PARENTS[left]
            loc = [np.median(np.einsum("tji,tj->ti", F[:, p], joints[:, c] - joints[:, p]), 0)
                   for c in (left, right)]  # (3,) each
            mean = 0.5 * (loc[0] + loc[1] * np.array([1.0, -1.0, 1.0]))  # mirror b
            off[left] = _REST_FRAME @ mean
            off[right] = _REST_FRAME @ (mean * np.array([1.0, -1.0, 1.0]))
            lengths[left] = lengths[right] = np.linalg.norm(mean)  # what FK will hold fixed
        return cls(lengths, off)

    def rest_positions(self) -> np.ndarray:
        """(17, 3) joint positions of the rest pose, the root at the origin."""
        pos = np.zeros((17, 3))
        for j, p in enumerate(PARENTS):
            if p >= 0:
                pos[j] = pos[p] + self.offsets[j]
        return pos


def _rest_offsets(lengths: np.ndarray) -> np.ndarray:
    """T-pose: legs straight down, spine and head up, hips and arms out sideways."""
    X, Y = np.array([1.0, 0, 0]), np.array([0, 1.0, 0])
    d = {1: -X, 2: -Y, 3: -Y, 4: X, 5: -Y, 6: -Y, 7: Y, 8: Y, 9: Y, 10: Y,
         11: X, 12: X, 13: X, 14: -X, 15: -X, 16: -X}
    off = np.zeros((17, 3))
    for j, v in d.items():
        off[j] = lengths[j] * v
    return off


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-9)


def _frames(pos: np.ndarray, weak: np.ndarray | None = None) -> np.ndarray:
    """Bone frames (..., 17, 3, 3) of poses (..., 17, 3), columns [a, b, a x b]; leaves and
    joints without a bone get the identity (their rotation is their parent's). `weak`, if
    given (..., 17) bool, is set where the reference vector is too close to the bone to fix
    the twist."""
    lat_hip = pos[..., _J("l_hip"), :] - pos[..., _J("r_hip"), :]
    lat_sh = pos[..., _J("l_shoulder"), :] - pos[..., _J("r_shoulder"), :]
    up = _unit(pos[..., _J("thorax"), :] - pos[..., _J("pelvis"), :])
    fwd = _unit(np.cross(_unit(lat_hip + lat_sh), up))  # the body's forward (left x up)
    F = np.broadcast_to(np.eye(3), pos.shape[:-2] + (17, 3, 3)).copy()
    bone = {j: pos[..., c, :] - pos[..., j, :] for j, c in PRIMARY.items()}
    ref = {0: lat_hip, 7: lat_sh, 8: lat_sh, 9: lat_sh}
    for hip, knee, ankle in ((1, 2, 3), (4, 5, 6)):
        ref[hip] = ref[knee] = np.cross(bone[hip], _unit(pos[..., ankle, :] - pos[..., knee, :])
                                        - LIMB_FALLBACK * fwd)
    for sh, el, wr in ((11, 12, 13), (14, 15, 16)):  # straight, along +-(fwd + up): rare
        ref[sh] = ref[el] = np.cross(bone[sh], _unit(pos[..., wr, :] - pos[..., el, :])
                                     + LIMB_FALLBACK * (fwd + up))
    for j in PRIMARY:
        a = _unit(bone[j])
        r = ref[j]
        perp = r - (r * a).sum(-1, keepdims=True) * a
        if weak is not None:  # the limbs' r scales with their bone: compare like with like
            weak[..., j] = np.linalg.norm(perp, axis=-1) < 0.01 * np.linalg.norm(bone[j], axis=-1)
        b = _unit(perp)
        F[..., j, :, :] = np.stack([a, b, np.cross(a, b)], axis=-1)
    return F


def solve(rig: Rig, joints: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Joint rotations of poses (T, 17, 3) in the rig frame: global (T, 17, 3, 3), rest ->
    now, and local (T, 17, 3, 3), relative to the parent (the root's is its global)."""
    joints = np.asarray(joints, np.float64)
    weak = np.zeros(joints.shape[:2], bool)  # (T, 17)
    F, F0 = _frames(joints, weak), _frames(rig.rest_positions())
    for t, j in zip(*np.nonzero(weak)):  # keep the last frame's twist (t = 0: as computed)
        if t:
            a, b = F[t, j, :, 0], F[t - 1, j, :, 1]
            b = _unit(b - (b @ a) * a)
            F[t, j] = np.stack([a, b, np.cross(a, b)], axis=-1)
    G = F @ np.swapaxes(F0, -1, -2)  # (T, 17, 3, 3)
    for j in LEAVES:
        G[:, j] = G[:, PARENTS[j]]
    L = G.copy()
    for j, p in enumerate(PARENTS):
        if p >= 0:
            L[:, j] = np.swapaxes(G[:, p], -1, -2) @ G[:, j]
    return G, L


def forward_kinematics(rig: Rig, local: np.ndarray, root: np.ndarray | None = None) -> np.ndarray:
    """Positions (T, 17, 3) from local rotations (T, 17, 3, 3) and root positions (T, 3)."""
    T = len(local)
    G = np.empty_like(local)
    pos = np.zeros((T, 17, 3))
    if root is not None:
        pos[:, 0] = root
    for j, p in enumerate(PARENTS):
        if p < 0:
            G[:, j] = local[:, j]
            continue
        G[:, j] = G[:, p] @ local[:, j]
        pos[:, j] = pos[:, p] + G[:, p] @ rig.offsets[j]
    return pos


def quaternions(R: np.ndarray) -> np.ndarray:
    """Rotation matrices (T, ..., 3, 3) -> unit quaternions (T, ..., 4) as (x, y, z, w), each
    sign chosen to stay on the side of the previous frame's (no flips between frames).

    Per matrix, the largest of |w|, |x|, |y|, |z| is taken from the diagonal and the others
    from the off-diagonal sums and differences (Shepperd), exact near 180 degrees too."""
    m = np.asarray(R, np.float64)
    m00, m11, m22 = m[..., 0, 0], m[..., 1, 1], m[..., 2, 2]
    d = {"w": 1 + m00 + m11 + m22, "x": 1 + m00 - m11 - m22, "y": 1 - m00 + m11 - m22,
         "z": 1 - m00 - m11 + m22}
    zx, yz, xy = m[..., 0, 2] + m[..., 2, 0], m[..., 1, 2] + m[..., 2, 1], m[..., 0, 1] + m[..., 1, 0]
    wx, wy, wz = m[..., 2, 1] - m[..., 1, 2], m[..., 0, 2] - m[..., 2, 0], m[..., 1, 0] - m[..., 0, 1]
    cands = []  # (x, y, z, w) * 4 * (the chosen component) for each choice
    cands.append(np.stack([wx, wy, wz, d["w"]], -1))
    cands.append(np.stack([d["x"], xy, zx, wx], -1))
    cands.append(np.stack([xy, d["y"], yz, wy], -1))
    cands.append(np.stack([zx, yz, d["z"], wz], -1))
    best = np.argmax(np.stack([d["w"], d["x"], d["y"], d["z"]], -1), axis=-1)
    q = np.take_along_axis(np.stack(cands, -2), best[..., None, None], axis=-2)[..., 0, :]
    q = _unit(q)
    for t in range(1, len(q)):
        flip = (q[t] * q[t - 1]).sum(-1) < 0
        q[t][flip] *= -1
    return q
