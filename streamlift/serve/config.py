"""The server's settings (`streamlift serve` builds its flags from them)."""

from __future__ import annotations

from dataclasses import dataclass

from streamlift.serve.protocol import MAX_MESSAGE_BYTES

# CUDA-graph batch sizes: a tick's batch is padded to the next size up
DEFAULT_LADDER = (1, 2, 4, 8, 16, 32, 64, 128, 256)


@dataclass
class ServerConfig:
    input: str = "tcp://127.0.0.1:5555"  # ROUTER, for DEALER producers (errors answered)
    output: str = "tcp://127.0.0.1:5556"  # PUB, one topic per stream
    pull: str | None = None  # optional PULL, for PUSH producers (errors only counted)
    height_m: float = 1.70
    max_streams: int = 256
    idle_timeout_s: float = 10.0
    max_message_bytes: int = MAX_MESSAGE_BYTES
    pub_hwm: int = 1000  # messages queued per subscriber before PUB drops
    queue_limit: int = 8192  # frames waiting for the compute loop before `overloaded`
    backlog: int = 128  # frames per stream the compute loop may fall behind before skipping
    threads: int | None = None  # torch threads in the compute loop (None: torch's default)
    backend: str | None = None  # 'graphs' | 'eager' | 'standin'; None: graphs on CUDA
    sizes: tuple[int, ...] = DEFAULT_LADDER
