"""Python clients of protocol v1: a producer (DEALER), a subscriber (SUB) and a paced replayer.

These are what `streamlift send`, `watch` and `demo` use, and what tests drive the server with;
a client in another language needs only docs/protocol.md.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import zmq

from streamlift.serve import protocol as P
from streamlift.serve.curve import CurveKeys
from streamlift.serve.messages import Published, Skeleton, UnknownMessage, decode
from streamlift.errors import UserError
from streamlift.progress import bar as progress_bar


def _socket(ctx: zmq.Context, kind: int, curve: CurveKeys | None) -> zmq.Socket:
    sock = ctx.socket(kind)
    if curve is not None:
        curve.apply(sock)
    return sock


class Producer:
    """Send frames to a server's ingest socket; errors it answers are collected in `errors`."""

    def __init__(self, endpoint: str, ctx: zmq.Context | None = None, lists: bool = False,
                 hwm: int = 10000, curve: CurveKeys | None = None):
        self.ctx = ctx or zmq.Context.instance()
        self.sock = _socket(self.ctx, zmq.DEALER, curve)
        self.sock.setsockopt(zmq.LINGER, 1000)
        self.sock.setsockopt(zmq.SNDHWM, hwm)
        self.sock.connect(endpoint)
        self.lists = lists
        self.errors: list[dict] = []
        self.sent = 0
        self.dropped = 0  # frames not even queued (the server unreachable for `hwm` frames)

    def send_raw(self, payload: bytes) -> bool:
        """Queue one message; False (and `dropped` + 1) when the server has been unreachable
        for `hwm` messages: a live source drops frames rather than stall."""
        try:
            self.sock.send(payload, zmq.NOBLOCK)
            return True
        except zmq.Again:
            self.dropped += 1
            return False

    def send(self, msg: dict) -> bool:
        return self.send_raw(P.encode(msg))

    def frame(self, stream: str, seq: int, kp: np.ndarray, t_capture: float | None = None,
              layout: str = "h36m17", **extra) -> None:
        """Send one frame: kp (J, 2|3) pixels [, confidence]."""
        if self.send(P.frame_msg(stream, seq, time.time() if t_capture is None else t_capture,
                                 kp, layout, self.lists, **extra)):
            self.sent += 1

    def end(self, stream: str) -> None:
        self.send({"v": P.VERSION, "type": "end", "stream": stream})

    def poll_errors(self, timeout_ms: int = 0) -> list[dict]:
        """Collect the error replies that have arrived (waiting up to timeout_ms for the first)."""
        new, wait = [], timeout_ms
        while self.sock.poll(wait, zmq.POLLIN):
            wait = 0
            msg = P.decode_output(self.sock.recv_multipart()[-1])  # [-1]: past any envelope
            if msg.get("type") == "error":  # a late stats/pong reply is of no use here
                new.append(msg)
        self.errors.extend(new)
        return new

    def request(self, kind: str, timeout_s: float = 2.0) -> dict:
        """Send a 'stats' or 'ping' request and return the reply (errors meanwhile are kept)."""
        self.send({"v": P.VERSION, "type": kind})
        deadline = time.monotonic() + timeout_s
        while (left := deadline - time.monotonic()) > 0:
            if not self.sock.poll(int(1000 * left) + 1, zmq.POLLIN):
                break
            msg = P.decode_output(self.sock.recv_multipart()[-1])  # [-1]: past any envelope
            if msg.get("type") == "error":
                self.errors.append(msg)
            elif msg.get("type") in ("stats", "pong"):
                return msg
        raise TimeoutError(f"no reply to {kind!r} within {timeout_s} s")

    def close(self) -> None:
        self.sock.close()


class Subscriber:
    """Receive published skeletons: all streams, or only the named ones; with `heartbeats`,
    the server's heartbeats too."""

    def __init__(self, endpoint: str, streams: list[str] | None = None,
                 ctx: zmq.Context | None = None, hwm: int = 100000,
                 heartbeats: bool = False, curve: CurveKeys | None = None):
        self.ctx = ctx or zmq.Context.instance()
        self.sock = _socket(self.ctx, zmq.SUB, curve)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.setsockopt(zmq.RCVHWM, hwm)
        for s in streams or [""]:
            self.sock.setsockopt(zmq.SUBSCRIBE, P.topic(s) if s else b"skel/")
        if heartbeats:
            self.sock.setsockopt(zmq.SUBSCRIBE, P.HEARTBEAT_TOPIC)
        self.sock.connect(endpoint)
        self.skipped = 0  # published messages that were neither a skeleton nor an end

    def recv(self, timeout_ms: int = 1000) -> Published | None:
        """The next `Skeleton`, `StreamEnd` (or `Heartbeat`, if asked for), or None after
        timeout_ms.

        Published messages of any other type (or malformed ones) are skipped, as clients skip
        unknown keys; `skipped` counts them."""
        deadline = time.monotonic() + timeout_ms / 1000
        wait = timeout_ms
        while self.sock.poll(wait, zmq.POLLIN):
            _topic, payload = self.sock.recv_multipart()
            try:
                return decode(payload)
            except UnknownMessage:
                self.skipped += 1
                wait = max(0, int(1000 * (deadline - time.monotonic())))
        return None

    def close(self) -> None:
        self.sock.close()


# ---------------------------------------------------------------------------------- replaying
@dataclass
class ReplayResult:
    sent: int = 0
    dropped: int = 0  # frames the producer could not queue (server unreachable)
    per_stream: dict[str, int] = field(default_factory=dict)
    errors: list[dict] = field(default_factory=list)
    seconds: float = 0.0


def replay(producer: Producer, sequences: dict[str, np.ndarray], fps: float,
           frames: int | None = None, loops: int = 1, noise_px: float = 0.0,
           jitter_ms: float = 0.0, seed: int = 0, progress: bool = True,
           stop: threading.Event | None = None, end: bool = True,
           intrinsics: dict[str, np.ndarray | None] | None = None) -> ReplayResult:
    """Stream every sequence {stream id: (N, J, 2|3) px} at `fps`, all streams in step.

    Frame k of every stream is captured (timestamped) at t0 + k / fps, plus Gaussian timing
    jitter of `jitter_ms`; `noise_px` adds Gaussian pixel noise. `intrinsics` {stream id: K
    (3, 3)} go with every frame of their stream. Sends `end` for each stream at the end, so
    that a centred server publishes the stream's last frames at once.
    """
    rng = np.random.default_rng(seed)
    extra = {s: {"intrinsics": (np.asarray(K, np.float32).tolist() if producer.lists
                                else P.pack_array(np.asarray(K, np.float32)))}
             for s, K in (intrinsics or {}).items() if K is not None}
    lengths = {s: len(kp) if frames is None else min(frames, len(kp))
               for s, kp in sequences.items()}
    ticks = max(lengths.values()) * loops
    res = ReplayResult(per_stream={s: 0 for s in sequences})
    sent0, dropped0 = producer.sent, producer.dropped
    t0 = time.time()
    with progress_bar(sum(lengths.values()) * loops, "send", "frames", progress) as bar:
        for k in range(ticks):
            if stop is not None and stop.is_set():
                break
            due = t0 + k / fps + (rng.normal(0.0, jitter_ms * 1e-3) if jitter_ms else 0.0)
            if (wait := due - time.time()) > 0:
                time.sleep(wait)
            n_tick = 0
            for s, kp in sequences.items():
                L = lengths[s]
                if k >= L * loops:
                    continue
                x = np.array(kp[k % L], dtype=np.float32)
                if noise_px:
                    x[:, :2] += rng.normal(0.0, noise_px, x[:, :2].shape).astype(np.float32)
                producer.frame(s, k, x, **extra.get(s, {}))
                n_tick += 1
            for s in sequences:
                if k < lengths[s] * loops:
                    res.per_stream[s] += 1
            if k % 16 == 0:
                producer.poll_errors()
            if producer.errors:
                bar.set_postfix_str(f"{len(producer.errors)} errors", refresh=False)
            bar.update(n_tick)
    if end:
        for s in sequences:
            producer.end(s)
    producer.poll_errors(100)
    res.errors = list(producer.errors)
    res.sent, res.dropped = producer.sent - sent0, producer.dropped - dropped0
    res.seconds = time.time() - t0
    return res


# ---------------------------------------------------------------------------------- recording
class Recorder:
    """Collect skeletons per stream and write them as .npz (arrays per stream) or .jsonl."""

    def __init__(self, path: Path | None):
        self.path = Path(path) if path is not None else None
        if self.path is not None and self.path.suffix not in (".npz", ".jsonl"):
            raise UserError(f"a recording must end in .npz or .jsonl, got {self.path.name}")
        self.rows: dict[str, list[Skeleton]] = {}
        self._jsonl = open(self.path, "w") if self.path and self.path.suffix == ".jsonl" else None

    def add(self, msg: Published) -> None:
        """Keep one `Skeleton` (or, in .jsonl, also a `StreamEnd`) as published."""
        if self._jsonl is not None:
            out = msg.to_msg()
            if "joints" in out:
                out["joints"] = np.asarray(out["joints"]).round(6).tolist()
            self._jsonl.write(json.dumps(out) + "\n")
        elif isinstance(msg, Skeleton) and self.path is not None:
            self.rows.setdefault(msg.stream, []).append(msg)

    def close(self) -> None:
        if self._jsonl is not None:
            self._jsonl.close()
        elif self.path is not None:
            out = {}
            for s, rows in self.rows.items():
                out[f"{s}/joints"] = np.stack([r.joints for r in rows]).astype(np.float32)
                for k in ("seq", "out_seq"):
                    out[f"{s}/{k}"] = np.array([getattr(r, k) for r in rows], np.int64)
                for k in ("t_capture", "t_receive", "t_publish"):
                    out[f"{s}/{k}"] = np.array([getattr(r, k) for r in rows], np.float64)
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "wb") as f:
                np.savez(f, **out)
