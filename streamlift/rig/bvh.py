"""BVH (Biovision hierarchy) files of a rig's motion, as Blender's BVH importer reads them.

HIERARCHY: the H36M-17 joints under the pelvis (ROOT), each joint's OFFSET its rest-pose
(T-pose) offset from its parent, End Sites at the ankles, the head and the wrists. MOTION: per
frame the root's position and every joint's local rotation as Z, X, Y Euler angles in degrees
(R = Rz Rx Ry, channels in that order, the most common BVH convention). Units are metres. The
file is Y-up unless written Z-up (then every offset, position and rotation is turned +90
degrees about X). Euler angles are unwrapped over time so that no channel jumps by 360.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from streamlift.rig.rotations import PARENTS, Rig
from streamlift.skeleton import H36M17

NAMES = H36M17.joints
_Y_TO_Z = np.array([[1.0, 0, 0], [0, 0, -1], [0, 1, 0]])  # Y-up -> Z-up: +90 deg about X
END_SITE = 0.25  # an End Site continues its parent's bone by this fraction of it


def euler_zxy(R: np.ndarray) -> np.ndarray:
    """Rotation matrices (..., 3, 3) = Rz(a) Rx(b) Ry(c) -> (..., 3) angles (a, b, c), radians."""
    b = np.arcsin(np.clip(R[..., 2, 1], -1.0, 1.0))
    a = np.arctan2(-R[..., 0, 1], R[..., 1, 1])
    c = np.arctan2(-R[..., 2, 0], R[..., 2, 2])
    return np.stack([a, b, c], axis=-1)


def matrix_zxy(e: np.ndarray) -> np.ndarray:
    """(..., 3) Z, X, Y angles (radians) -> Rz Rx Ry (..., 3, 3): `euler_zxy`'s inverse."""
    a, b, c = (e[..., i] for i in range(3))
    ca, sa, cb, sb, cc, sc = np.cos(a), np.sin(a), np.cos(b), np.sin(b), np.cos(c), np.sin(c)
    z, o = np.zeros_like(a), np.ones_like(a)
    Rz = np.stack([ca, -sa, z, sa, ca, z, z, z, o], -1).reshape(e.shape[:-1] + (3, 3))
    Rx = np.stack([o, z, z, z, cb, -sb, z, sb, cb], -1).reshape(e.shape[:-1] + (3, 3))
    Ry = np.stack([cc, z, sc, z, o, z, -sc, z, cc], -1).reshape(e.shape[:-1] + (3, 3))
    return Rz @ Rx @ Ry


def _children(j: int) -> list[int]:
    return [c for c, p in enumerate(PARENTS) if p == j]


def _hierarchy(rig: Rig, up: np.ndarray, mm: float) -> list[str]:
    lines = ["HIERARCHY"]

    def joint(j: int, depth: int) -> None:
        pad = "\t" * depth
        off = up @ rig.offsets[j] * mm if PARENTS[j] >= 0 else np.zeros(3)
        kind = "ROOT" if PARENTS[j] < 0 else "JOINT"
        chans = ("CHANNELS 6 Xposition Yposition Zposition Zrotation Xrotation Yrotation"
                 if PARENTS[j] < 0 else "CHANNELS 3 Zrotation Xrotation Yrotation")
        lines.extend([f"{pad}{kind} {NAMES[j]}", f"{pad}{{",
                      f"{pad}\tOFFSET {off[0]:.6f} {off[1]:.6f} {off[2]:.6f}", f"{pad}\t{chans}"])
        kids = _children(j)
        for c in kids:
            joint(c, depth + 1)
        if not kids:  # a leaf: continue its bone a little, so that tools can draw it
            end = up @ rig.offsets[j] * END_SITE * mm
            lines.extend([f"{pad}\tEnd Site", f"{pad}\t{{",
                          f"{pad}\t\tOFFSET {end[0]:.6f} {end[1]:.6f} {end[2]:.6f}", f"{pad}\t}}"])
        lines.append(f"{pad}}}")

    joint(0, 0)
    return lines


def _order() -> list[int]:
    """Joints in the order the hierarchy lists them (depth first): the MOTION columns."""
    out: list[int] = []

    def walk(j: int) -> None:
        out.append(j)
        for c in _children(j):
            walk(c)
    walk(0)
    return out


def write_bvh(path: Path, rig: Rig, local: np.ndarray, fps: float, root: np.ndarray | None = None,
              up: str = "y", unit_m: float = 1e-3) -> Path:
    """Write local rotations (T, 17, 3, 3) of a rig (lengths in mm) as BVH; root positions
    (T, 3) mm in the rig frame (default: at the origin); `unit_m` metres per rig unit."""
    if up not in ("y", "z"):
        raise ValueError(f"up must be 'y' or 'z', got {up!r}")
    if not fps > 0:
        raise ValueError(f"a BVH needs a positive frame rate, got {fps}")
    U = np.eye(3) if up == "y" else _Y_TO_Z
    T = len(local)
    L = U @ local @ U.T  # the same rotations, in the file's axes
    e = np.degrees(np.unwrap(euler_zxy(L), axis=0))  # (T, 17, 3)
    pos = np.zeros((T, 3)) if root is None else (np.asarray(root) @ U.T)
    cols = [pos * unit_m] + [e[:, j] for j in _order()]
    motion = np.concatenate(cols, axis=1)  # (T, 3 + 3 * 17)
    lines = _hierarchy(rig, U, unit_m) + ["MOTION", f"Frames: {T}",
                                          f"Frame Time: {1.0 / fps:.8f}"]
    lines += [" ".join(f"{v:.6f}" for v in row) for row in motion]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


class BvhRecorder:
    """Record one stream's published skeletons (the first one heard, or `stream`); `close`
    fits the rig on all of them and writes the BVH. The frame time is `fps`'s, else the
    median step of the skeletons' capture times."""

    def __init__(self, path: Path, stream: str | None = None, fps: float | None = None,
                 up: str = "y"):
        from streamlift.errors import UserError

        self.path = Path(path)
        if self.path.suffix.lower() != ".bvh":
            raise UserError(f"a BVH recording must end in .bvh, got {self.path.name}")
        if up not in ("y", "z"):
            raise UserError(f"up must be y or z, got {up!r}")
        self.stream, self.fps, self.up = stream, fps, up
        self.joints: list[np.ndarray] = []
        self.t: list[float] = []

    def add(self, skel) -> None:
        from streamlift.rig.rotations import to_rig

        if self.stream is None:
            self.stream = skel.stream
        if skel.stream == self.stream:
            self.joints.append(to_rig(np.asarray(skel.joints, np.float64)) * 1000.0)  # mm
            self.t.append(float(skel.t_capture))

    def close(self) -> str:
        from streamlift.rig.rotations import solve

        if len(self.joints) < 2:
            return f"no BVH written: {len(self.joints)} skeletons of {self.stream} heard"
        steps = np.diff(self.t)
        fps = self.fps or (1.0 / float(np.median(steps)) if (steps > 0).any() else 30.0)
        P = np.stack(self.joints)
        rig = Rig.fit(P)
        write_bvh(self.path, rig, solve(rig, P)[1], fps, up=self.up)
        return f"wrote {self.path}: {len(P)} frames of {self.stream} at {fps:.3g} fps"
