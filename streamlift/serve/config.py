"""The server's settings (`streamlift serve` builds its flags from them)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from streamlift.serve.protocol import MAX_MESSAGE_BYTES
from streamlift.smoothing import MODES as SMOOTH_MODES

# CUDA-graph batch sizes: a tick's batch is padded to the next size up
DEFAULT_LADDER = (1, 2, 4, 8, 16, 32, 64, 128, 256)
INPUT = "tcp://127.0.0.1:5555"
OUTPUT = "tcp://127.0.0.1:5556"


@dataclass
class ServerConfig:
    # `metadata`: the command-line flag of a field (streamlift.cli.common.add_config)
    input: str = field(default=INPUT, metadata={
        "help": "ROUTER endpoint producers connect DEALER sockets to (errors are answered there)"})
    output: str = field(default=OUTPUT, metadata={
        "help": "PUB endpoint subscribers connect to; topic 'skel/<stream>/'"})
    pull: str | None = field(default=None, metadata={
        "help": "also bind a PULL endpoint for PUSH producers (their errors are only counted: "
                "PUSH cannot receive replies)"})
    smooth: str = field(default="gated", metadata={
        "choices": SMOOTH_MODES,
        "help": "filter each stream's 2D before lifting with a causal One-Euro filter "
                "(streamlift.smoothing): 'gated' only once the stream's 2D jitters (a noisy "
                "detector; exact or smooth 2D mostly passes bit for bit), 'on' always, 'off' "
                "never"})
    height_m: float = field(default=1.70, metadata={
        "help": "subject height the skeletons are scaled to, metres (a monocular lifter only "
                "knows shape up to scale)", "type": "positive_float"})
    max_streams: int = field(default=256, metadata={
        "help": "concurrent streams; a new stream beyond it gets 'too_many_streams'",
        "type": "positive_int"})
    idle_timeout_s: float = field(default=10.0, metadata={
        "flag": "--idle-timeout", "type": "positive_float",
        "help": "seconds without a frame after which a stream is ended and its slot freed"})
    max_message_bytes: int = field(default=MAX_MESSAGE_BYTES, metadata={
        "help": "larger messages are refused with 'too_large'", "type": "positive_int"})
    pub_hwm: int = field(default=1000, metadata={
        "help": "skeletons queued per subscriber before PUB drops (slow subscribers see gaps in "
                "out_seq; the engine never waits for them)", "type": "positive_int"})
    queue_limit: int = 8192  # frames waiting for the compute loop before `overloaded`
    backlog: int = field(default=128, metadata={
        "flag": "--max-lag", "type": "positive_int",
        "help": "frames a stream may wait for the compute loop; beyond it the stream's oldest "
                "frames are skipped (counted as dropped) so latency stays bounded"})
    max_latency_ms: float = field(default=150.0, metadata={
        "type": "non_negative",
        "help": "latency bound, receive -> publish: when frames arrive faster than the model lifts "
                "them, frames that would publish later than this are shed (each stream keeps its "
                "newest; streams share a tick fairly) and show as out_seq gaps and in stats. "
                "0: never shed (frames queue up to --max-lag)"})
    heartbeat_s: float = field(default=1.0, metadata={
        "flag": "--heartbeat", "type": "non_negative",
        "help": "seconds between heartbeats on the 'heartbeat' topic (epoch, uptime, active "
                "streams): lets subscribers tell a dead server from a quiet one. 0: none"})
    curve_secret: Path | None = field(default=None, metadata={
        "type": "path", "metavar": "SERVER.key_secret",
        "help": "turn on CurveZMQ authentication and encryption on every socket with this "
                "server secret key (`streamlift keys` makes one); needs --curve-clients"})
    curve_clients: Path | None = field(default=None, metadata={
        "type": "path", "metavar": "DIR",
        "help": "directory of the client public keys (*.key) allowed to connect; with CURVE a "
                "stream belongs to the key that opened it"})
    record_2d: Path | None = field(default=None, metadata={
        "type": "path", "metavar": "VIEWS.npz",
        "help": "record the 2D every stream sends (as accepted, in H36M-17 order, with "
        "confidences and the stream's camera matrix) and write it as a views file when the "
        "server stops: the data `streamlift adapt` adapts a lifter to"})
    record_2d_max_frames: int = field(default=1_000_000, metadata={
        "type": "positive_int", "help": "frames --record-2d keeps in all (68 bytes each)"})
    threads: int | None = field(default=None, metadata={
        "help": "torch threads of the compute loop (default: 1 for a streaming lifter on CPU, "
                "whose per-frame steps are too small to share out within an op (--workers "
                "shares out streams instead); else torch's choice)",
        "type": "positive_int"})
    workers: int | None = field(default=None, metadata={
        "help": "threads a streaming lifter's step on CPU is split over, each lifting a share "
                "of a tick's streams on one torch thread (default: 2 on a machine with 2 or "
                "more cores, else 1)",
        "type": "positive_int"})
    backend: str | None = None  # 'graphs' | 'eager' | 'standin'; None: graphs on CUDA
    sizes: tuple[int, ...] = field(default=DEFAULT_LADDER, metadata={
        "flag": "--batch-sizes", "type": "ladder",
        "help": "comma-separated CUDA-graph batch ladder; a tick's batch is padded to the next "
                "size up"})
