"""Per-stream ring buffers in one preallocated block, and the windows they make.

Every stream owns a slot; a slot holds the stream's last `capacity` frames (keypoints,
confidences, seq, timestamps, and the rotation from the frame's virtual camera back to the real
one: the identity unless the stream sent intrinsics), indexed by the frame's absolute position
in the stream modulo `capacity`. With a `SmoothConfig` each stream's 2D goes through the
jitter-gated One-Euro filter (`streamlift.smoothing`, its state per slot, cleared when a slot is
handed out) before anything reads it, the frames of a tick filtered together. A window is
gathered for many streams at once with one fancy index, by the window rule of `streamlift.windows`: positions before the stream's first frame
repeat the first frame, positions after its last frame (only once the stream has ended) repeat
the last frame.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from streamlift.skeleton import H36M17
from streamlift.smoothing import SmoothConfig, Smoother
from streamlift.virtual_camera import to_virtual
from streamlift.windows import window_offsets

_EYE = np.eye(3, dtype=np.float32)


@dataclass
class StreamState:
    """What the compute loop knows about one live stream."""

    name: str
    slot: int
    n: int = 0  # frames received so far
    next_target: int = 0  # next frame (absolute index) that still needs a skeleton
    published: int = 0  # skeletons handed to the publisher
    ended: bool = False
    closed: bool = False  # its slot is back in the free list
    dropped: int = field(default=0)  # frames skipped because the compute loop fell behind
    K: np.ndarray | None = None  # the stream's camera matrix, once it has sent one
    fed: int = 0  # a streaming lifter's state: frames before this one are in it
    primed: bool = False  # ... since it was cleared for this stream
    shed: bool = False  # frames of it were shed in this tick (latency over budget)


class RingStore:
    def __init__(self, max_streams: int, capacity: int, joints: int = H36M17.num_joints,
                 smooth: SmoothConfig | None = None):
        self.capacity = capacity
        self.kp = np.zeros((max_streams, capacity, joints, 2), np.float32)
        self.conf = np.zeros((max_streams, capacity, joints), np.float32)
        self.seq = np.zeros((max_streams, capacity), np.int64)
        self.t_capture = np.zeros((max_streams, capacity), np.float64)
        self.t_receive = np.zeros((max_streams, capacity), np.float64)
        self.rot = np.zeros((max_streams, capacity, 3, 3), np.float32)  # virtual -> real camera
        self.virtual = np.zeros((max_streams, capacity), bool)  # seen through a virtual camera
        self._pending: list[tuple[int, int, np.ndarray]] = []  # (slot, index, K) to re-project
        self.smoother = None if smooth is None else Smoother(max_streams, joints, smooth)
        self._unsmoothed: list[tuple[int, int]] = []  # (slot, index) in the order pushed
        self._free = list(range(max_streams - 1, -1, -1))  # pop() hands out slot 0 first

    @property
    def free_slots(self) -> int:
        return len(self._free)

    def open(self, name: str) -> StreamState:
        if not self._free:
            raise RuntimeError("no free stream slot")  # the ingest thread caps streams first
        slot = self._free.pop()
        if self.smoother is not None:
            self.smoother.reset(slot)
        return StreamState(name, slot)

    def close(self, st: StreamState) -> None:
        """Free st's slot (once: closing a closed stream does nothing)."""
        if st.closed:
            return
        self.prepare()  # no re-projection may be left pending for a slot a new stream will get
        st.closed = True
        self._free.append(st.slot)

    def push(self, st: StreamState, kp, conf, seq: int, t_capture: float,
             t_receive: float, K: np.ndarray | None = None) -> None:
        """Store one frame. A camera matrix K, once a stream has sent one, holds for its later
        frames too: `prepare` turns those into what a virtual camera looking at the subject sees."""
        i = st.n % self.capacity
        if K is not None:
            st.K = K
        self.kp[st.slot, i] = kp
        self.conf[st.slot, i] = conf
        self.seq[st.slot, i] = seq
        self.t_capture[st.slot, i] = t_capture
        self.t_receive[st.slot, i] = t_receive
        self.rot[st.slot, i] = _EYE
        self.virtual[st.slot, i] = st.K is not None
        if self.smoother is not None:
            self._unsmoothed.append((st.slot, i))
        if st.K is not None:
            self._pending.append((st.slot, i, st.K))
        st.n += 1

    def prepare(self) -> None:
        """Smooth the frames pushed since the last call (if smoothing: one batched call per
        round, round r filtering every stream's r-th new frame), then re-project those pushed
        with a camera matrix into their virtual cameras, all in one batched call (one frame at
        a time costs ~40x more)."""
        if self._unsmoothed:
            self._smooth()
        if not self._pending:
            return
        slots, idx, Ks = zip(*self._pending)
        self._pending.clear()
        s, i = np.array(slots), np.array(idx)
        kpc = np.concatenate([self.kp[s, i], self.conf[s, i][..., None]], axis=-1)  # (n, J, 3)
        kpv, R = to_virtual(kpc, np.stack(Ks), checked=True)  # checked as each frame arrived
        self.kp[s, i], self.rot[s, i] = kpv[..., :2], R

    def _smooth(self) -> None:
        todo = np.array(self._unsmoothed, np.int64)  # (n, 2): slot, index, in the order pushed
        self._unsmoothed.clear()
        count: dict[int, int] = {}
        rank = np.empty(len(todo), np.int64)  # the entry is its slot's rank-th new frame
        for k, slot in enumerate(todo[:, 0].tolist()):
            rank[k] = count.get(slot, 0)
            count[slot] = rank[k] + 1
        for r in range(int(rank.max()) + 1):
            s, i = todo[rank == r].T
            self.kp[s, i] = self.smoother(s, self.kp[s, i], self.conf[s, i],
                                          self.t_capture[s, i])

    def windows(self, slots: np.ndarray, targets: np.ndarray, n: np.ndarray, window: int,
                mode: str) -> tuple[np.ndarray, np.ndarray]:
        """Windows of target frames: kp (B, T, J, 2) and conf (B, T, J).

        slots, targets (absolute frame index) and n (frames received) are (B,) arrays; every
        index a window needs must still be in the ring (the caller keeps targets recent).
        """
        self.prepare()
        idx = targets[:, None] + window_offsets(window, mode)[None, :]  # (B, T)
        idx = np.clip(idx, 0, (n - 1)[:, None]) % self.capacity
        s = slots[:, None]
        return self.kp[s, idx], self.conf[s, idx]  # (B, T, J, 2), (B, T, J)

    def meta(self, slots: np.ndarray, targets: np.ndarray):
        """seq, t_capture, t_receive, virtual (B,) arrays and the rotation (B, 3, 3) from each
        target frame's virtual camera back to the real one."""
        self.prepare()
        i = targets % self.capacity
        return (self.seq[slots, i], self.t_capture[slots, i], self.t_receive[slots, i],
                self.virtual[slots, i], self.rot[slots, i])
