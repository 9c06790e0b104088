"""Engine suite: the real server over loopback ZeroMQ, N concurrent 30 fps producers, N swept
upwards until the server saturates. The headline is the largest N whose capture -> publish p99
stays within one frame period (33 ms at 30 fps) with nothing dropped.

Each point runs `benchmarks.serve.bench_serve`: the server in this process (its compute,
ingest and publish threads), senders as separate processes (`streamlift send`), latency from
the server's own counters (capture timestamp in each message -> publish).
"""

from __future__ import annotations

import math
import os
from types import SimpleNamespace

import torch

from benchmarks.harness import Result
from benchmarks.serve import bench_serve

FPS = 30.0
P99_BUDGET_MS = 1000.0 / FPS


def run(device: torch.device, quick: bool, log=print, max_streams: int | None = None) -> list[Result]:
    ladder = [1, 2] if quick else [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024]
    if max_streams:
        ladder = [n for n in ladder if n <= max_streams]
    frames = 45 if quick else 150  # 1.5 s / 5 s of streaming per point
    rows, best = [], 0
    for n in ladder:
        producers = max(1, min(math.ceil(n / 64), (os.cpu_count() or 2) // 2))
        a = SimpleNamespace(weights=None, device=device.type, streams=n, fps=FPS, frames=frames,
                            producers=producers, threads=None, no_graphs=False)
        r = bench_serve(a, log=lambda line: None)
        s = r["server"]
        lat = s["latency_ms"]
        ok = (s["frames_dropped"] == 0 and lat["p99"] is not None and lat["p99"] <= P99_BUDGET_MS
              and s["frames_out"] >= 0.99 * n * frames)
        best = n if ok else best
        rows.append(Result(
            "engine", "serve 30 fps streams", "streamlift serve (" + ("cuda graphs" if device.type == "cuda" else "eager") + ")",
            {"streams": n, "fps": FPS, "frames_per_stream": frames, "producers": producers},
            lat["p50"], lat["p20"], lat["p80"], "ms",
            {"latency_p99_ms": lat["p99"], "latency_max_ms": lat["max"],
             "delivered_fps": r["achieved_fps"], "offered_fps": r["offered_fps"],
             "frames_in": s["frames_in"], "frames_out": s["frames_out"],
             "dropped": s["frames_dropped"], "batch_mean": s["batch_mean"],
             "compute_ms_p50": s["compute_ms"]["p50"], "server_cores_busy": r["cpu"]["server_cores_busy"],
             "within_budget": ok}))
        log(f"  {n:4d} streams: delivered {r['achieved_fps']:8.1f} fps of {r['offered_fps']:.0f}, "
            f"latency p50 {lat['p50']} p99 {lat['p99']} max {lat['max']} ms, dropped {s['frames_dropped']}, "
            f"server busy {r['cpu']['server_cores_busy']:.2f} cores -> {'ok' if ok else 'over budget'}")
        if not ok:
            break  # saturated: larger N only gets worse
    rows.append(Result("engine", "max 30 fps streams at p99 <= 33 ms", "streamlift serve", {"fps": FPS},
                       float(best), float(best), float(best), "streams", {"p99_budget_ms": P99_BUDGET_MS}))
    log(f"  headline: {best} concurrent 30 fps streams within p99 <= {P99_BUDGET_MS:.0f} ms")
    return rows
