"""What flows through the engine, as types: the server's hand-offs and what a subscriber reads.

    producer --frame/end--> ingest --FrameIn/EndIn--> compute --SkeletonBatch/Ended--> publish
             --skeleton/end msgpack (docs/protocol.md section 6)--> Subscriber -> Skeleton/StreamEnd

The wire format is docs/protocol.md's; the types here are how Python code on either side of it
holds the messages. `decode` turns one published payload into a `Skeleton`, a `StreamEnd` or a
`Heartbeat` (and raises `UnknownMessage` for any other type, which `clients.Subscriber` skips,
as clients skip unknown keys); `to_msg` turns each back into the exact published dict. `Gaps` is the
one place that counts skeletons a subscriber missed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import msgpack
import numpy as np

from streamlift.serve import protocol as P

# Fields of every v1 skeleton that never vary (docs/protocol.md section 6.1).
SKELETON_CONSTANTS = {"layout": "h36m17", "units": "m", "frame": "camera", "root_relative": True}


class UnknownMessage(ValueError):
    """A published payload that is neither a `skeleton` nor an `end` of protocol v1."""


# ------------------------------------------------------------------------ what subscribers get
@dataclass(frozen=True, eq=False)  # eq=False: `joints` is an array (no elementwise ==)
class Skeleton:
    """One published 3D pose (docs/protocol.md section 6.1)."""

    stream: str
    seq: int  # the input frame's seq
    out_seq: int  # the frame's index in its stream (this server run): a gap is a missed one
    t_capture: float  # producer clock, s since the Unix epoch
    t_receive: float  # server clock: when the frame was accepted
    t_publish: float  # server clock: when this skeleton was published
    joints: np.ndarray  # (17, 3) float32 metres, H36M-17 order, camera frame, root-relative
    mode: str  # "causal" or "centred"
    window: int
    height_m: float
    virtual_camera: bool
    epoch: int | None = None  # the server run's id (None from a server that sends none)

    @property
    def latency_ms(self) -> float:
        """Capture -> publish, milliseconds (meaningful when the two clocks agree)."""
        return 1e3 * (self.t_publish - self.t_capture)

    @classmethod
    def from_msg(cls, msg: dict) -> "Skeleton":
        return cls(stream=msg["stream"], seq=int(msg["seq"]), out_seq=int(msg["out_seq"]),
                   t_capture=float(msg["t_capture"]), t_receive=float(msg["t_receive"]),
                   t_publish=float(msg["t_publish"]),
                   joints=P.unpack_array(msg["joints"], "joints"), mode=msg["mode"],
                   window=int(msg["window"]), height_m=float(msg["height_m"]),
                   virtual_camera=bool(msg["virtual_camera"]), epoch=_epoch(msg))

    def to_msg(self) -> dict:
        """The published dict, keys in the server's order; `joints` stays an array."""
        return {"v": P.VERSION, "type": "skeleton", **SKELETON_CONSTANTS,
                "height_m": self.height_m, "mode": self.mode, "window": self.window,
                "stream": self.stream, "seq": self.seq, "out_seq": self.out_seq,
                "t_capture": self.t_capture, "t_receive": self.t_receive,
                "t_publish": self.t_publish, "joints": self.joints,
                "virtual_camera": self.virtual_camera, **_with_epoch(self.epoch)}


@dataclass(frozen=True)
class StreamEnd:
    """A stream is over (docs/protocol.md section 6.2); its id may be used again, from out_seq 0."""

    stream: str
    reason: str  # "end" | "idle" | "shutdown"
    frames: int  # frames received
    published: int  # skeletons published
    dropped: int  # frames never lifted
    t_publish: float
    epoch: int | None = None

    @classmethod
    def from_msg(cls, msg: dict) -> "StreamEnd":
        return cls(stream=msg["stream"], reason=msg["reason"], frames=int(msg["frames"]),
                   published=int(msg["published"]), dropped=int(msg["dropped"]),
                   t_publish=float(msg["t_publish"]), epoch=_epoch(msg))

    def to_msg(self) -> dict:
        return {"v": P.VERSION, "type": "end", "stream": self.stream, "reason": self.reason,
                "frames": self.frames, "published": self.published, "dropped": self.dropped,
                "t_publish": self.t_publish, **_with_epoch(self.epoch)}


@dataclass(frozen=True)
class Heartbeat:
    """The server is alive (docs/protocol.md section 6.3), about once a second, topic
    'heartbeat'."""

    epoch: int
    t_publish: float
    uptime_s: float
    streams_active: int
    stream = None  # not about any one stream

    @classmethod
    def from_msg(cls, msg: dict) -> "Heartbeat":
        return cls(epoch=int(msg["epoch"]), t_publish=float(msg["t_publish"]),
                   uptime_s=float(msg["uptime_s"]), streams_active=int(msg["streams_active"]))

    def to_msg(self) -> dict:
        return {"v": P.VERSION, "type": "heartbeat", "epoch": self.epoch,
                "t_publish": self.t_publish, "uptime_s": self.uptime_s,
                "streams_active": self.streams_active}


def _epoch(msg: dict) -> int | None:
    return None if msg.get("epoch") is None else int(msg["epoch"])


def _with_epoch(epoch: int | None) -> dict:
    return {} if epoch is None else {"epoch": epoch}


Published = Skeleton | StreamEnd | Heartbeat
_TYPES = {"skeleton": Skeleton, "end": StreamEnd, "heartbeat": Heartbeat}


def from_msg(msg) -> Published:
    """A published message, already unpacked -> Skeleton | StreamEnd | Heartbeat (else
    UnknownMessage)."""
    kind = msg.get("type") if isinstance(msg, dict) else None
    if kind not in _TYPES:
        raise UnknownMessage(f"published message of type {kind!r}; expected skeleton, end or "
                             f"heartbeat")
    try:
        return _TYPES[kind].from_msg(msg)
    except (KeyError, TypeError, ValueError, P.ProtocolError) as e:
        raise UnknownMessage(f"malformed {kind} message: {e!r}") from None


def decode(raw: bytes) -> Published:
    """A published msgpack payload -> Skeleton | StreamEnd | Heartbeat (else UnknownMessage)."""
    try:
        msg = msgpack.unpackb(raw, raw=False)
    except Exception as e:  # msgpack raises several unrelated types for corrupt input
        raise UnknownMessage(f"not valid msgpack ({type(e).__name__})") from None
    return from_msg(msg)


# ------------------------------------------------------------------------------ missed skeletons
class Gaps:
    """Counts the skeletons a subscriber missed, from the gaps in each stream's `out_seq`, and
    the frames lost across a server restart, from the gaps in their input `seq`.

    `out_seq` is a frame's index in its stream on this server run: a skipped value is a frame
    without a skeleton here, shed by the server under overload or dropped by PUB for a slow
    subscriber. `add(msg)` returns how many were missed just before `msg`: for a skeleton, the
    out_seq values skipped since the stream's last one; for a `StreamEnd`, the frames after
    the last one seen (`frames` is their count). A `StreamEnd` resets the stream: a re-created
    stream counts out_seq from 0 again. A stream first seen mid-way (the subscriber joined
    late) is not a gap unless `from_start` says the subscriber was there from its first
    skeleton. An out_seq lower than expected means the stream was re-created and its `end`
    was missed: it counts from 0 again.

    A skeleton from a new server run (another `epoch`) is a restart: what the stream lost is
    the input seq values between its last skeleton before and this one (producers number
    frames 0, 1, 2, ...). `restarts` counts the epoch changes seen (heartbeats included).
    """

    def __init__(self, from_start: bool = False):
        self.from_start = from_start
        self.per_stream: dict[str, int] = {}  # stream -> skeletons missed
        self.total = 0
        self.restarts = 0
        self.epoch: int | None = None  # the server run heard last
        self._next: dict[str, int] = {}  # stream -> the out_seq expected next
        self._last: dict[str, tuple[int | None, int]] = {}  # stream -> (epoch, seq) last seen

    def see_epoch(self, epoch: int | None) -> bool:
        """Note the epoch of a message; True when it is a new server run (a restart)."""
        if epoch is None or epoch == self.epoch:
            return False
        restarted, self.epoch = self.epoch is not None, epoch
        self.restarts += restarted
        return restarted

    def add(self, msg: Published) -> int:
        self.see_epoch(msg.epoch)
        if isinstance(msg, Heartbeat):
            return 0
        s = msg.stream
        expected = self._next.get(s, 0 if self.from_start else None)
        last = self._last.get(s)
        if isinstance(msg, StreamEnd):
            self._next.pop(s, None)
            if msg.reason != "shutdown":  # a restart would follow a shutdown, not an end
                self._last.pop(s, None)
            missed = 0 if expected is None else max(0, msg.frames - expected)
        else:
            if last is not None and last[0] != msg.epoch:  # across a restart
                missed = max(0, msg.seq - last[1] - 1)
            elif expected is None:
                missed = 0
            elif msg.out_seq < expected:  # re-created stream, its end missed
                missed = msg.out_seq
            else:
                missed = msg.out_seq - expected
            self._next[s] = msg.out_seq + 1
            self._last[s] = (msg.epoch, msg.seq)
        self.per_stream[s] = self.per_stream.get(s, 0) + missed
        self.total += missed
        return missed

    def __getitem__(self, stream: str) -> int:
        return self.per_stream.get(stream, 0)


# ------------------------------------------------------------------- hand-offs between threads
class FrameIn(NamedTuple):
    """ingest -> compute: one admitted frame."""

    frame: P.Frame
    t_receive: float  # server clock, s since the epoch


class EndIn(NamedTuple):
    """ingest -> compute: a stream is over."""

    stream: str
    reason: str  # "end" | "idle" | "shutdown"


class SkeletonBatch(NamedTuple):
    """compute -> publish: one lifted chunk, row i for stream streams[i]."""

    streams: list[str]
    out_seq: np.ndarray  # (b,) int64
    seq: np.ndarray  # (b,) int64
    t_capture: np.ndarray  # (b,) float64
    t_receive: np.ndarray  # (b,) float64
    joints: np.ndarray  # (b, 17, 3) float32 metres, real camera frame
    virtual_camera: np.ndarray  # (b,) bool


class Ended(NamedTuple):
    """compute -> publish: a stream's last skeleton has been handed over."""

    stream: str
    reason: str
    published: int  # skeletons published
    frames: int  # frames received (the out_seq after its last)
    dropped: int  # frames never lifted


class Stop(NamedTuple):
    """Either queue: no more items; the reading thread finishes."""


STOP = Stop()
