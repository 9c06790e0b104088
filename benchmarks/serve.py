"""Engine benchmarks, machine-readable: `python -m benchmarks.serve serve|runner ...`.

- `serve`: a server in this process, P `streamlift send` processes streaming N streams of the
  shipped sample at F fps for K frames; reports the server's own counters (frames in/out,
  drops, batch sizes, capture -> publish latency p50/p99). Producers are separate processes so
  that their Python does not compete with the server's for one interpreter lock.
- `runner`: the model step alone at each batch size of a ladder: eager vs CUDA-graph replay
  (on CUDA), numpy in -> numpy out and device-only; median/p20/p80 ms per call.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks.harness import measure
from streamlift import __version__
from streamlift.cli.common import HelpFormatter, ladder, positive_float, positive_int
from streamlift.serve.clients import Producer
from streamlift.device import pick_device as resolve_device
from streamlift.lifter.model import load_lifter
from streamlift.lifter.stream import StreamingNRSfMFormer
from streamlift.serve.runner import Runner, StepRunner, skeleton_fn
from streamlift.serve.server import Server, ServerConfig
from streamlift.serve.stats import format_stats
from streamlift.errors import UserError


def _timed(fn, device: torch.device, warmup: int, repeats: int) -> dict:
    """benchmarks.harness.measure on the host clock (what the compute loop waits for)."""
    t = measure(fn, device, warmup=warmup, repeats=repeats, wall=True)
    return {"median_ms": round(t.median, 4), "p20_ms": round(t.p20, 4),
            "p80_ms": round(t.p80, 4)}


def bench_runner(a) -> list[dict]:
    device = resolve_device(a.device)
    model, _ = load_lifter(a.weights, device)
    if isinstance(model, StreamingNRSfMFormer):
        return _bench_step_runner(a, model, device)
    T, J = model.cfg.window, model.cfg.num_joints
    fn = skeleton_fn(model, 1.7)
    providers = {"eager": Runner(fn, T, J, device, "eager")}
    if device.type == "cuda":
        providers["graphs"] = Runner(fn, T, J, device, "graphs", a.sizes)
    g = np.random.default_rng(0)
    rows = []
    for b in a.sizes:
        kp = g.uniform(200, 800, (b, T, J, 2)).astype(np.float32)
        conf = np.ones((b, T, J), np.float32)
        for name, r in providers.items():
            base = _base(model, name, b, device)
            rows.append(dict(base, mode="numpy->numpy",
                             **_timed(lambda: r(kp, conf), device, a.warmup, a.repeats)))
            if name == "graphs":
                rep = r.replays[b]
                rows.append(dict(base, mode="device", **_timed(rep.replay, device, a.warmup,
                                                               a.repeats)))
            else:
                x = torch.from_numpy(kp).to(device)
                c = torch.from_numpy(conf).to(device)
                rows.append(dict(base, mode="device", **_timed(lambda: fn(x, c), device,
                                                               a.warmup, a.repeats)))
    return rows


def _base(model, provider: str, b: int, device) -> dict:
    return {"op": "step+scale" if isinstance(model, StreamingNRSfMFormer) else "lift+scale",
            "provider": provider, "batch": b, "window": model.cfg.window, "dim": model.cfg.dim,
            "depth": model.cfg.depth, "device": str(device),
            "device_name": torch.cuda.get_device_name(device) if device.type == "cuda"
            else "cpu", "threads": torch.get_num_threads(), "torch": torch.__version__,
            "streamlift": __version__}


def _bench_step_runner(a, model, device) -> list[dict]:
    """A streaming lifter: the server's StepRunner on b streams of a larger state, eager vs
    CUDA-graph replay; numpy in -> numpy out (what a tick pays) and the replay alone."""
    slots = max(a.sizes)
    providers = {"eager": StepRunner(model, 1.7, slots, device, "eager")}
    if device.type == "cuda":
        providers["graphs"] = StepRunner(model, 1.7, slots, device, "graphs", a.sizes)
    g = np.random.default_rng(0)
    J = model.cfg.num_joints
    rows = []
    for b in a.sizes:
        kp = g.uniform(200, 800, (b, J, 2)).astype(np.float32)
        conf = np.ones((b, J), np.float32)
        rows_ = np.arange(b)
        for name, r in providers.items():
            base = _base(model, name, b, device)
            rows.append(dict(base, mode="numpy->numpy", **_timed(
                lambda: r.step(rows_, kp, conf), device, a.warmup, a.repeats)))
            if name == "graphs":
                r.step(rows_, kp, conf)  # its static inputs now hold this batch
                rows.append(dict(base, mode="device", **_timed(r.replays[b].replay, device,
                                                               a.warmup, a.repeats)))
    return rows


def _memory(server) -> dict:
    """Bytes per stream slot: its ring of frames, and a streaming lifter's state."""
    ring = server.ring
    arrays = (ring.kp, ring.conf, ring.seq, ring.t_capture, ring.t_receive, ring.rot,
              ring.virtual)
    return {"ring_bytes_per_stream": sum(x.nbytes for x in arrays) // len(ring.kp),
            "state_bytes_per_stream": server.runner.memory_per_stream()
            if server.streaming else 0}


def bench_serve(a, log=None) -> dict:
    device = resolve_device(a.device)
    model, path = load_lifter(a.weights, device)
    cfg = ServerConfig(input="tcp://127.0.0.1:*", output="tcp://127.0.0.1:*",
                       max_streams=a.streams, threads=a.threads, idle_timeout_s=60.0,
                       workers=getattr(a, "workers", None), smooth=getattr(a, "smooth", "gated"),
                       backend="graphs" if device.type == "cuda" and not a.no_graphs
                       else "eager")
    log = log or (lambda line: print(line, file=sys.stderr, flush=True))
    ru0 = None  # CPU time of this process (server threads) from the first frame on
    with Server(model, cfg, device, log=log) as server:
        probe = Producer(server.input_endpoint)
        probe.request("ping", 10.0)
        per = [a.streams // a.producers + (i < a.streams % a.producers)
               for i in range(a.producers)]
        env = dict(os.environ, OMP_NUM_THREADS="1")
        procs = [subprocess.Popen(
            [sys.executable, "-m", "streamlift", "send", "--to", server.input_endpoint,
             "--streams", str(n), "--fps", str(a.fps), "--frames", str(a.frames),
             "--prefix", f"p{i}.", "--quiet", "--noise-px", "1"],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            for i, n in enumerate(per) if n]
        t_first = None  # the senders' start-up (imports, views) is not streaming time
        last = 0.0
        expected = a.streams * a.frames
        while any(p.poll() is None for p in procs) and server.stats.frames_in < expected:
            time.sleep(0.01)
            if t_first is None and server.stats.frames_in:
                t_first, ru0 = time.time(), resource.getrusage(resource.RUSAGE_SELF)
            if time.time() - last >= 2:
                last = time.time()
                log("bench: " + format_stats(server.stats.snapshot()))
        deadline = time.time() + 30
        while time.time() < deadline:  # let the last frames through (bounded)
            s = server.stats.snapshot()
            if s["frames_out"] + s["frames_dropped"] >= s["frames_in"]:
                break
            time.sleep(0.01)
        seconds = time.time() - (t_first or time.time())  # first frame in -> last frame out
        ru1 = resource.getrusage(resource.RUSAGE_SELF)
        for p in procs:
            p.wait(timeout=60)
        failed = [p.stderr.read().strip().splitlines()[-1:] for p in procs if p.returncode]
        if failed:
            raise UserError(f"a sender failed: {failed[0]}")
        stats = probe.request("stats", 10.0)["stats"]
        probe.close()
        memory, workers = _memory(server), getattr(server.runner, "workers", None)
    busy = ((ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)) if ru0 else 0.0
    # cores the server process kept busy while streams were live (1.0 = one whole core)
    cpu = {"server_cpu_s": round(busy, 2), "server_cores_busy": round(busy / max(seconds, 1e-9), 3),
           "machine_cores": os.cpu_count()}
    return {"weights": str(path), "streams": a.streams, "fps": a.fps,
            "frames_per_stream": a.frames, "producers": a.producers, "seconds": round(seconds, 3),
            "offered_fps": a.streams * a.fps,
            "achieved_fps": round(stats["frames_out"] / max(seconds, 1e-9), 1), "window": model.cfg.window,
            "dim": model.cfg.dim, "depth": model.cfg.depth, "mode": model.cfg.mode,
            "lifter": getattr(model.cfg, "kind", "windowed"), "memory": memory,
            "device": str(device), "threads": torch.get_num_threads(), "workers": workers,
            "torch": torch.__version__, "streamlift": __version__, "server": stats, "cpu": cpu}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks.serve",
                                description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    for name in ("serve", "runner"):
        q = sub.add_parser(name, help=("end-to-end server throughput and latency" if name ==
                                       "serve" else "model step per batch size, eager vs graphs"),
                           formatter_class=HelpFormatter)
        q.add_argument("--weights", type=Path, default=None,
                       help="lifter checkpoint (default: the shipped streaming lifter; 'windowed': the shipped windowed one)")
        q.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto",
                       help="where the model runs")
        q.add_argument("--json", type=Path, default=None, help="write the results here too")
        if name == "serve":
            q.add_argument("--streams", type=positive_int, default=16, help="concurrent streams")
            q.add_argument("--fps", type=positive_float, default=30.0,
                           help="frames per second per stream")
            q.add_argument("--frames", type=positive_int, default=300, help="frames per stream")
            q.add_argument("--producers", type=positive_int, default=1,
                           help="sender processes the streams are split over")
            q.add_argument("--threads", type=positive_int, default=None,
                           help="torch threads of the compute loop")
            q.add_argument("--workers", type=positive_int, default=None,
                           help="threads a streaming step on CPU is split over (default: the "
                                "server's)")
            q.add_argument("--no-graphs", action="store_true", help="eager on CUDA")
            q.add_argument("--smooth", choices=("gated", "on", "off"), default="gated",
                           help="the server's 2D smoothing (`serve --smooth`)")
        else:
            q.add_argument("--sizes", type=ladder, default=(1, 2, 4, 8, 16, 32, 64),
                           help="batch sizes (comma-separated)")
            q.add_argument("--warmup", type=positive_int, default=5, help="untimed calls")
            q.add_argument("--repeats", type=positive_int, default=30, help="timed calls")
    return p


def main(argv=None) -> int:
    a = build_parser().parse_args(argv)
    try:
        out = bench_serve(a) if a.cmd == "serve" else bench_runner(a)
    except UserError as e:
        print(f"streamlift: error: {e}", file=sys.stderr)
        return 2
    text = json.dumps(out, indent=1)
    print(text)
    if a.json is not None:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
