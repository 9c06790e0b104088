"""Per-stream ring buffers in one preallocated block, and the windows they make.

Every stream owns a slot; a slot holds the stream's last `capacity` frames (keypoints,
confidences, seq, timestamps), indexed by the frame's absolute position in the stream
modulo `capacity`. A window is gathered for many streams at once with one fancy index, and is
padded exactly like `streamlift.windows.window_indices`: positions before the stream's first
frame repeat the first frame, positions after its last frame (only once the stream has ended)
repeat the last frame.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from streamlift.skeleton import H36M17


@dataclass
class StreamState:
    """What the compute loop knows about one live stream."""

    name: str
    slot: int
    n: int = 0  # frames received so far
    next_target: int = 0  # next frame (absolute index) that still needs a skeleton
    out_seq: int = 0  # skeletons published so far (gaps at a subscriber mean PUB drops)
    ended: bool = False
    dropped: int = field(default=0)  # frames skipped because the compute loop fell behind


class RingStore:
    def __init__(self, max_streams: int, capacity: int, joints: int = H36M17.num_joints):
        self.capacity = capacity
        self.kp = np.zeros((max_streams, capacity, joints, 2), np.float32)
        self.conf = np.zeros((max_streams, capacity, joints), np.float32)
        self.seq = np.zeros((max_streams, capacity), np.int64)
        self.t_capture = np.zeros((max_streams, capacity), np.float64)
        self.t_receive = np.zeros((max_streams, capacity), np.float64)
        self._free = list(range(max_streams - 1, -1, -1))  # pop() hands out slot 0 first

    @property
    def free_slots(self) -> int:
        return len(self._free)

    def open(self, name: str) -> StreamState:
        if not self._free:
            raise RuntimeError("no free stream slot")  # the ingest thread caps streams first
        return StreamState(name, self._free.pop())

    def close(self, st: StreamState) -> None:
        self._free.append(st.slot)

    def push(self, st: StreamState, kp, conf, seq: int, t_capture: float,
             t_receive: float) -> None:
        i = st.n % self.capacity
        self.kp[st.slot, i] = kp
        self.conf[st.slot, i] = conf
        self.seq[st.slot, i] = seq
        self.t_capture[st.slot, i] = t_capture
        self.t_receive[st.slot, i] = t_receive
        st.n += 1

    def windows(self, slots: np.ndarray, targets: np.ndarray, n: np.ndarray, window: int,
                mode: str) -> tuple[np.ndarray, np.ndarray]:
        """Windows of target frames: kp (B, T, J, 2) and conf (B, T, J).

        slots, targets (absolute frame index) and n (frames received) are (B,) arrays; every
        index a window needs must still be in the ring (the caller keeps targets recent).
        """
        start = targets - (window - 1) if mode == "causal" else targets - window // 2
        idx = start[:, None] + np.arange(window)[None, :]  # (B, T)
        idx = np.clip(idx, 0, (n - 1)[:, None]) % self.capacity
        s = slots[:, None]
        return self.kp[s, idx], self.conf[s, idx]  # (B, T, J, 2), (B, T, J)

    def meta(self, slots: np.ndarray, targets: np.ndarray):
        """seq, t_capture, t_receive of each target frame, (B,) arrays."""
        i = targets % self.capacity
        return self.seq[slots, i], self.t_capture[slots, i], self.t_receive[slots, i]
