"""The VMC protocol (Virtual Motion Capture: OSC over UDP), as VSeeFace, VMagicMirror, Warudo
and Unity VMC receivers read it: per frame, one OSC bundle of `/VMC/Ext/Root/Pos`, a
`/VMC/Ext/Bone/Pos` for each Unity humanoid bone mapped from H36M-17, `/VMC/Ext/OK` and
`/VMC/Ext/T`.

Each bone carries its local position (the rig's rest offset, metres) and local rotation
(relative to the T-pose rest: what a T-posed Unity humanoid's localRotation means) as
(x, y, z, w). Unity is left-handed, Y-up, the avatar facing +Z with its left at -X: our rig
frame (right-handed, left +X) is mirrored in x, which maps a rotation's quaternion
(x, y, z, w) to (x, -y, -z, w). Needs python-osc: `pip install "streamlift[vmc]"`.
"""

from __future__ import annotations

import numpy as np

from streamlift.errors import UserError
from streamlift.rig.rotations import Rig, quaternions, solve, to_rig

# Unity HumanBodyBones for each H36M-17 joint (the joint whose bone they rotate)
BONES = ("Hips", "RightUpperLeg", "RightLowerLeg", "RightFoot", "LeftUpperLeg",
         "LeftLowerLeg", "LeftFoot", "Spine", "Chest", "Neck", "Head", "LeftUpperArm",
         "LeftLowerArm", "LeftHand", "RightUpperArm", "RightLowerArm", "RightHand")
_MIRROR_Q = np.array([1.0, -1.0, -1.0, 1.0])  # x-mirror of a quaternion (x, y, z, w)
_MIRROR_P = np.array([-1.0, 1.0, 1.0])


def to_unity(q: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Quaternions (..., 4) and positions (..., 3) of the rig frame -> Unity's."""
    return q * _MIRROR_Q, p * _MIRROR_P


def from_unity(q: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return q * _MIRROR_Q, p * _MIRROR_P  # the mirror is its own inverse


def parse_address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise UserError(f"expected HOST:PORT for VMC (e.g. 127.0.0.1:39539), got {text!r}")
    return host, int(port)


class VmcSender:
    """Send one stream's skeletons as VMC. The rig (bone lengths) is fitted on the first
    `fit_frames` skeletons, which are sent once it is; every later one is sent as it comes."""

    def __init__(self, address: str, stream: str | None = None, fit_frames: int = 30):
        try:
            from pythonosc.udp_client import SimpleUDPClient
        except ImportError:
            raise UserError('python-osc is not installed: pip install "streamlift[vmc]"') from None
        self.host, self.port = parse_address(address)
        self.client = SimpleUDPClient(self.host, self.port)
        self.stream, self.fit_frames = stream, fit_frames
        self.rig: Rig | None = None
        self.pending: list[tuple[np.ndarray, float]] = []  # before the rig is fitted
        self.prev: tuple[np.ndarray, np.ndarray] | None = None  # last pose and quaternions
        self.frames = 0

    def add(self, skel) -> None:
        """A published `Skeleton` (metres, camera frame); other streams are ignored."""
        if self.stream is None:
            self.stream = skel.stream
        if skel.stream != self.stream:
            return
        self.pending.append((to_rig(np.asarray(skel.joints, np.float64)) * 1000.0,
                             float(skel.t_capture)))
        if self.rig is None and len(self.pending) >= self.fit_frames:
            self._flush()
        elif self.rig is not None:
            self._flush()

    def _flush(self) -> None:
        if self.rig is None:
            self.rig = Rig.fit(np.stack([p for p, _ in self.pending]))
        for pose, t in self.pending:
            self._send(pose, t)
        self.pending.clear()

    def _send(self, pose: np.ndarray, t: float) -> None:
        from pythonosc.osc_bundle_builder import IMMEDIATELY, OscBundleBuilder
        from pythonosc.osc_message_builder import OscMessageBuilder

        poses = pose[None] if self.prev is None else np.stack([self.prev[0], pose])
        _, L = solve(self.rig, poses)  # the previous frame keeps a straight limb's twist
        q = quaternions(L)[-1]  # (17, 4)
        if self.prev is not None:  # the same side as the last frame's: no sign flips
            q = np.where(((q * self.prev[1]).sum(-1) < 0)[:, None], -q, q)
        self.prev = (pose, q)
        qu, pu = to_unity(q, self.rig.offsets * 1e-3)
        bundle = OscBundleBuilder(IMMEDIATELY)

        def msg(address: str, *args) -> None:
            m = OscMessageBuilder(address=address)
            for a in args:
                m.add_arg(a)
            bundle.add_content(m.build())

        msg("/VMC/Ext/Root/Pos", "root", 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0)
        for j, name in enumerate(BONES):
            msg("/VMC/Ext/Bone/Pos", name, *map(float, pu[j]), *map(float, qu[j]))
        msg("/VMC/Ext/OK", 1)
        msg("/VMC/Ext/T", float(t))
        self.client.send(bundle.build())
        self.frames += 1

    def close(self) -> str:
        if self.pending:
            self._flush()
        return f"sent {self.frames} frames of {self.stream} as VMC to {self.host}:{self.port}"
