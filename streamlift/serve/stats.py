"""The server's counters and latency percentiles, shared by its three threads."""

from __future__ import annotations

import threading
import time
from collections import Counter, deque

import numpy as np


def _percentiles(xs, qs=(20, 50, 80, 99)) -> dict:
    if not xs:
        return {**{f"p{q}": None for q in qs}, "max": None}
    a = np.asarray(xs, dtype=np.float64)
    return {**{f"p{q}": round(float(np.percentile(a, q)), 3) for q in qs},
            "max": round(float(a.max()), 3)}


class Stats:
    """Counters shared by the three threads (one lock; increments are rare next to compute)."""

    def __init__(self, window: int = 20000):
        self.lock = threading.Lock()
        self.start = time.time()
        self.frames_in = self.frames_out = self.dropped = self.evicted = self.shed = 0
        self.shed_per_stream: Counter = Counter()  # live streams only: frames shed for latency
        self.errors: Counter = Counter()
        self.batches: Counter = Counter()  # windows per tick -> ticks
        self.latency = deque(maxlen=window)  # capture -> publish, ms
        self.server_ms = deque(maxlen=window)  # receive -> publish, ms
        self.compute_ms = deque(maxlen=window)  # per tick
        self.active = 0

    def snapshot(self) -> dict:
        with self.lock:
            n = sum(self.batches.values())
            return {
                "uptime_s": round(time.time() - self.start, 3),
                "streams_active": self.active,
                "frames_in": self.frames_in,
                "frames_out": self.frames_out,
                "frames_dropped": self.dropped,
                "frames_shed": self.shed,
                "shed_per_stream": dict(self.shed_per_stream),
                "streams_evicted": self.evicted,
                "errors": dict(self.errors),
                "ticks": n,
                "batch_mean": round(sum(k * v for k, v in self.batches.items()) / n, 3) if n else 0,
                "batch_max": max(self.batches) if n else 0,
                "batch_sizes": {str(k): v for k, v in sorted(self.batches.items())},
                "latency_ms": _percentiles(self.latency),
                "server_ms": _percentiles(self.server_ms),
                "compute_ms": _percentiles(self.compute_ms),
            }


def format_stats(s: dict, rate: float | None = None) -> str:
    errs = sum(s["errors"].values())
    detail = ", ".join(f"{k} {v}" for k, v in sorted(s["errors"].items()))
    lat, srv = s["latency_ms"], s["server_ms"]
    fmt = lambda v: "-" if v is None else f"{v:.1f}"  # noqa: E731
    return (f"streams {s['streams_active']} | in {s['frames_in']:,} out {s['frames_out']:,}"
            + (f" ({rate:,.0f}/s)" if rate is not None else "")
            + f" | dropped {s['frames_dropped']:,} (shed {s.get('frames_shed', 0):,})"
            + f" | errors {errs:,}"
            + (f" ({detail})" if detail else "")
            + f" | batch mean {s['batch_mean']:.1f} max {s['batch_max']}"
            + f" | latency p50 {fmt(lat['p50'])} p99 {fmt(lat['p99'])} ms"
            + f" (server p50 {fmt(srv['p50'])} p99 {fmt(srv['p99'])} ms)")
