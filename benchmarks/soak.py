"""Soak and chaos suite: the server over a long run with malformed traffic mixed in, a flood of
malformed messages, restarts mid-stream (SIGTERM and SIGKILL), and the cost of CURVE.

    python benchmarks/run.py --suite soak                      # the full run (about 40 min)
    python benchmarks/run.py --suite soak --quick              # every case in about a minute
    python benchmarks/run.py --suite soak --soak-cases fuzz,curve

Cases (one or more Result rows each):
- `soak`: `streamlift serve` as its own process (the shipped lifter, 1 torch thread); N streams
  at F fps from one sender thread here, plus malformed messages at a fraction of that rate from
  another socket. Every ~10 s: the server's RSS and open file descriptors (/proc) and its p99
  latency (its `stats`). Reported: RSS growth from the end of warm-up (the first fifth) to the
  end, fds first/last, p99 first/last sample after warm-up, frames lost (gaps a subscriber
  counted, plus what the server dropped or shed), malformed messages sent / answered.
- `fuzz`: M malformed messages (a pool of varied ones, cycled) through the DEALER socket at a
  rate the CPU absorbs beside 2 valid 30 fps streams (--fuzz-rate); every answer is checked
  against the code the protocol gives, the valid streams against what they sent.
- `overload`: N streams at 30 fps into `streamlift serve` (the shipped lifter, 1 torch thread)
  well past what it lifts: per stream, the receive -> publish p99 against --max-latency-ms,
  frames shed (its `end`) against the gaps its subscriber counted, and whether any live stream
  was evicted; the overload factor is offered / published frames per second.
- `restart`: 2 streams at 30 fps into a `streamlift serve` process that is stopped (SIGTERM)
  or killed (SIGKILL) mid-stream and started again at once on the same ports. Reported: the
  outage (stop -> first skeleton of the new run), the time the new process takes to answer,
  frames lost (sent, never published) and whether the subscriber's `Gaps` counted exactly them.
- `curve`: plain vs CURVE in one run: frames/s from a producer through the server to a
  subscriber with the lift replaced by a stub (zeros), so what is timed is the transport,
  decoding and publishing that CURVE adds to; and the ping round trip.
"""

from __future__ import annotations

import math
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import msgpack
import numpy as np
import torch
import zmq

from benchmarks.harness import Result
from streamlift.serve import protocol as P
from streamlift.serve.clients import Producer, Subscriber
from streamlift.serve.messages import Gaps, Heartbeat, Skeleton

CASES = ("soak", "fuzz", "overload", "restart", "curve")
VALID_STREAMS = 2  # beside the fuzz flood: 60 windows/s, well within what 2 cores lift
BAD_VALUES = [None, True, False, -1, 2**63, 2**64 - 1, -2**63, 1.5, math.nan, math.inf, "",
              "x" * 70, b"\x00", [], {}, [[1.0] * 3] * 16, [[True, 1.0]] * 17, [[[[1.0]]]],
              {"dtype": "<f8", "shape": [17, 2], "data": b"\0" * 272},
              {"dtype": "<f4", "shape": [17, 2], "data": b"\0" * 12}, {1: 2}]
FIELDS = ("v", "type", "stream", "seq", "t_capture", "layout", "kp", "conf", "image_size",
          "intrinsics")


def _kp(rng) -> np.ndarray:
    return rng.uniform(300, 700, (17, 2)).astype(np.float32)


def malformed(n: int, seed: int = 0) -> list[tuple[bytes, str]]:
    """n varied malformed messages with the error code each must get (all non-empty, one
    ZeroMQ frame each): field mutations, missing fields, non-string keys, truncations, random
    bytes, deep nesting, oversize."""
    rng = np.random.default_rng(seed)
    out = []
    while len(out) < n:
        base = P.frame_msg("fz", int(rng.integers(0, 1000)), 1.7e9, _kp(rng))
        kind = rng.integers(0, 7)
        if kind <= 2:
            msg = dict(base, **{FIELDS[rng.integers(len(FIELDS))]:
                                BAD_VALUES[rng.integers(len(BAD_VALUES))]})
            raw = msgpack.packb(msg, use_bin_type=True)
        elif kind == 3:
            raw = msgpack.packb({k: v for k, v in base.items() if k != FIELDS[rng.integers(5)]})
        elif kind == 4:
            raw = P.encode(base)[:int(rng.integers(1, 60))]
        elif kind == 5:
            raw = rng.bytes(int(rng.integers(1, 200)))
        else:
            raw = [msgpack.packb({**base, 7: 1}), b"\x91" * 5000, b"\x00" * 70000][rng.integers(3)]
        try:
            P.decode_request(raw)
        except P.ProtocolError as e:
            out.append((raw, e.code))
    return out


def _free_ports(n: int) -> list[str]:
    ports = []
    for _ in range(n):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            ports.append(f"tcp://127.0.0.1:{s.getsockname()[1]}")
    return ports


def _start_server(inp: str, out: str, *extra: str) -> subprocess.Popen:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.Popen([sys.executable, "-m", "streamlift", "serve", "--input", inp,
                             "--output", out, "--device", "cpu", "--threads", "1",
                             "--stats-every", "0", *extra],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def _wait_ready(inp: str, timeout: float = 120.0) -> float:
    """Seconds until a server at `inp` answers a ping."""
    t0, p = time.monotonic(), Producer(inp)
    try:
        while time.monotonic() - t0 < timeout:
            try:
                p.request("ping", 0.5)
                return time.monotonic() - t0
            except TimeoutError:
                continue
        raise RuntimeError(f"no server answered at {inp} within {timeout:g} s")
    finally:
        p.sock.setsockopt(zmq.LINGER, 0)  # unanswered pings need not wait
        p.close()


class _Sender(threading.Thread):
    """`streams` streams at `fps`, seq 0, 1, 2, ... each, until stopped, their frames spread
    evenly over each frame period (cameras are not in step); keeps what it sent."""

    def __init__(self, inp: str, streams: int, fps: float, prefix: str = "s"):
        super().__init__(daemon=True)
        self.p, self.fps = Producer(inp), fps
        self.names = [f"{prefix}{i}" for i in range(streams)]
        self.sent: dict[str, int] = {n: 0 for n in self.names}  # frames sent per stream
        self.stop_at: float | None = None
        self.done = threading.Event()
        self.kp = _kp(np.random.default_rng(1))

    def run(self) -> None:
        t0, j, rate = time.monotonic(), 0, self.fps * len(self.names)
        while not self.done.is_set():
            time.sleep(max(0.0, t0 + j / rate - time.monotonic()))
            k, i = divmod(j, len(self.names))
            self.p.frame(self.names[i], k, self.kp)
            self.sent[self.names[i]] = k + 1
            j += 1
        for n in self.names:
            self.p.end(n)
        self.p.poll_errors(200)


class _Collector(threading.Thread):
    """A subscriber (with heartbeats) keeping what arrived, the epochs seen and its Gaps."""

    def __init__(self, out: str):
        super().__init__(daemon=True)
        self.sub = Subscriber(out, heartbeats=True)
        self.gaps, self.seqs, self.epochs = Gaps(from_start=True), {}, []
        self.first_of_epoch: dict[int, float] = {}
        self.hook = None  # called with every message, when set
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            m = self.sub.recv(50)
            if m is None:
                continue
            if self.hook is not None:
                self.hook(m)
            if m.epoch is not None and (not self.epochs or self.epochs[-1] != m.epoch):
                self.epochs.append(m.epoch)
            if isinstance(m, Skeleton):
                self.first_of_epoch.setdefault(m.epoch, time.monotonic())
                self.seqs.setdefault(m.stream, set()).add(m.seq)
            if not isinstance(m, Heartbeat):
                self.gaps.add(m)
        self.sub.close()


def _proc_sample(pid: int) -> tuple[float, int]:
    """RSS (MiB) and open file descriptors of a process (Linux /proc)."""
    rss = next(int(line.split()[1]) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
               if line.startswith("VmRSS:"))
    return rss / 1024.0, len(os.listdir(f"/proc/{pid}/fd"))


def _row(case: str, provider: str, sizes: dict, value: float, unit: str, extra: dict) -> Result:
    return Result("soak", case, provider, sizes, value, value, value, unit, extra)


# ----------------------------------------------------------------------------------- cases
def soak(streams: int, fps: float, minutes: float, bad_fraction: float, log) -> Result:
    inp, out = _free_ports(2)
    proc = _start_server(inp, out, "--max-streams", str(max(streams, 1)))
    try:
        ready = _wait_ready(inp)
        col = _Collector(out)
        col.start()
        time.sleep(0.5)
        sender = _Sender(inp, streams, fps)
        sender.start()
        fuzz, pool = Producer(inp), malformed(2000, seed=3)
        probe = Producer(inp)
        t0, samples, n_bad, k = time.monotonic(), [], 0, 0
        every = min(10.0, 60 * minutes / 6)
        next_sample = t0 + every
        while (now := time.monotonic()) - t0 < 60 * minutes:
            # malformed messages at bad_fraction of the valid rate, spread evenly
            while n_bad < (now - t0) * streams * fps * bad_fraction:
                fuzz.send_raw(pool[k % len(pool)][0])
                n_bad, k = n_bad + 1, k + 1
            fuzz.poll_errors(0)
            if now >= next_sample:
                next_sample += every
                rss, fds = _proc_sample(proc.pid)
                s = probe.request("stats", 10.0)["stats"]
                samples.append((now - t0, rss, fds, s["latency_ms"]["p99"]))
                log(f"  soak {now - t0:6.0f} s: RSS {rss:.1f} MiB, {fds} fds, p99 "
                    f"{s['latency_ms']['p99']} ms, in {s['frames_in']:,}, out {s['frames_out']:,}")
            time.sleep(0.005)
        sender.done.set()
        sender.join(10)
        time.sleep(1.0)
        fuzz.poll_errors(2000)
        stats = probe.request("stats", 10.0)["stats"]
        col.done.set()
        col.join(5)
    finally:
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(60)
    warm = [x for x in samples if x[0] >= 0.2 * 60 * minutes] or samples
    sent = sum(sender.sent.values())
    got = sum(len(v) for v in col.seqs.values())
    return _row("soak", "streamlift serve (process)",
                {"streams": streams, "fps": fps, "minutes": minutes,
                 "malformed_fraction": bad_fraction},
                round(100 * (warm[-1][1] - warm[0][1]) / warm[0][1], 2), "% RSS growth",
                {"rss_mib_after_warmup": round(warm[0][1], 1), "rss_mib_end": round(warm[-1][1], 1),
                 "fds_first": samples[0][2], "fds_last": samples[-1][2],
                 "p99_ms_first": warm[0][3], "p99_ms_last": warm[-1][3],
                 "p99_ms_max_sample": max(x[3] for x in warm if x[3] is not None),
                 "frames_sent": sent, "frames_published_seen": got,
                 "frames_lost": sent - got, "subscriber_gaps": col.gaps.total,
                 "server_dropped": stats["frames_dropped"], "malformed_sent": n_bad,
                 "malformed_answered": len(fuzz.errors), "internal_errors":
                 stats["errors"].get("internal_error", 0), "server_exit_code": rc,
                 "server_ready_s": round(ready, 2)})


def flood(n: int, rate: float, log) -> Result:
    """n malformed messages at `rate` per second against an in-process server (the shipped
    lifter) with 4 valid 30 fps streams alongside."""
    from streamlift.lifter.model import load_lifter
    from streamlift.serve.server import Server, ServerConfig

    model, _ = load_lifter(None, torch.device("cpu"))
    cfg = ServerConfig(input="tcp://127.0.0.1:*", output="tcp://127.0.0.1:*", threads=1)
    pool = malformed(5000, seed=5)
    with Server(model, cfg, "cpu", log=lambda line: None) as server:
        col = _Collector(server.output_endpoint)
        col.start()
        time.sleep(0.5)
        sender = _Sender(server.input_endpoint, VALID_STREAMS, 30.0)
        sender.start()
        fuzz = Producer(server.input_endpoint, hwm=100000)
        fuzz.sock.setsockopt(zmq.RCVHWM, 0)  # no limit: every answer is read
        t0, wrong, answered, window = time.monotonic(), 0, 0, 2000
        for i in range(n):
            if i % 100 == 0:
                time.sleep(max(0.0, t0 + i / rate - time.monotonic()))
            fuzz.send_raw(pool[i % len(pool)][0])
            if i - answered >= window:  # keep at most `window` unanswered: the server's pace
                answered, wrong = _answers(fuzz, pool, answered, wrong, block=True)
        while answered < n and time.monotonic() - t0 < 600:
            answered, wrong = _answers(fuzz, pool, answered, wrong, block=True)
        seconds = time.monotonic() - t0
        sender.done.set()
        sender.join(10)
        time.sleep(1.0)
        col.done.set()
        col.join(5)
        stats = Producer(server.input_endpoint).request("stats", 10.0)["stats"]
        alive = not server.wait(0)
    sent = sum(sender.sent.values())
    got = sum(len(v) for v in col.seqs.values())
    log(f"  fuzz: {n:,} malformed in {seconds:.1f} s ({n / seconds:,.0f}/s), {answered:,} "
        f"answered, {wrong} with the wrong code; valid {got:,}/{sent:,}")
    return _row("fuzz", "streamlift serve (in process)",
                {"malformed": n, "offered_per_s": rate, "valid_streams": VALID_STREAMS},
                round(n / seconds), "malformed msg/s",
                {"answered": answered, "wrong_code": wrong, "server_alive": alive,
                 "valid_shed": stats["frames_shed"], "valid_p99_ms": stats["latency_ms"]["p99"],
                 "internal_errors": stats["errors"].get("internal_error", 0),
                 "valid_sent": sent, "valid_published": got, "valid_lost": sent - got,
                 "seconds": round(seconds, 1)})


def _answers(p: Producer, pool, answered: int, wrong: int, block: bool) -> tuple[int, int]:
    """Read the replies waiting (or the next one, with block), checking each one's code."""
    while p.sock.poll(1000 if block else 0):
        block = False
        msg = P.decode_output(p.sock.recv())
        wrong += msg.get("code") != pool[answered % len(pool)][1]
        answered += 1
    return answered, wrong


def overload(streams: int, seconds: float, log) -> Result:
    inp, out = _free_ports(2)
    proc = _start_server(inp, out, "--max-streams", str(streams), "--idle-timeout", "2")
    try:
        _wait_ready(inp)
        col = _Collector(out)
        col.lat: dict[str, list[float]] = {}
        ends: dict = {}

        def keep(m):  # every skeleton's receive -> publish, per stream; every end
            if isinstance(m, Skeleton):
                col.lat.setdefault(m.stream, []).append(1e3 * (m.t_publish - m.t_receive))
            elif not isinstance(m, Heartbeat):
                ends[m.stream] = m
        col.hook = keep
        col.start()
        time.sleep(0.5)
        sender = _Sender(inp, streams, 30.0)
        sender.start()
        time.sleep(seconds)
        sender.done.set()
        sender.join(10)
        probe = Producer(inp)
        stats = probe.request("stats", 10.0)["stats"]  # before the idle timeout ends anything
        time.sleep(1.5)
        col.done.set()
        col.join(5)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
    p99 = {s: float(np.percentile(v, 99)) for s, v in col.lat.items()}
    shed = sum(e.dropped for e in ends.values())
    published = sum(len(v) for v in col.lat.values())
    offered = sum(sender.sent.values())
    log(f"  overload: {streams} x 30 fps offered {offered / seconds:,.0f}/s, published "
        f"{published / seconds:,.0f}/s; per-stream receive->publish p99 "
        f"{min(p99.values()):.0f}-{max(p99.values()):.0f} ms (bound 150); shed {shed:,}, "
        f"subscriber gaps {col.gaps.total:,}; evicted {stats['streams_evicted']}")
    return _row("overload", "streamlift serve (process)", {"streams": streams, "fps": 30.0,
                                                          "seconds": seconds},
                round(max(p99.values()), 1), "ms worst stream p99",
                {"bound_ms": 150.0, "best_stream_p99_ms": round(min(p99.values()), 1),
                 "overload_factor": round(offered / max(published, 1), 2),
                 "published_per_s": round(published / seconds), "frames_shed": shed,
                 "subscriber_gaps": col.gaps.total, "all_shed_visible": col.gaps.total == shed,
                 "streams_evicted_while_live": stats["streams_evicted"],
                 "streams_ended": len(ends)})


def restart(how: signal.Signals, log, seconds: float = 4.0) -> Result:
    inp, out = _free_ports(2)
    proc = _start_server(inp, out, "--heartbeat", "0.25")
    try:
        _wait_ready(inp)
        col = _Collector(out)
        col.start()
        time.sleep(0.5)
        sender = _Sender(inp, 2, 30.0)
        sender.start()
        time.sleep(seconds)
        t_stop = time.monotonic()
        proc.send_signal(how)
        proc.wait(60)
        proc = _start_server(inp, out, "--heartbeat", "0.25")
        ready = _wait_ready(inp)
        while len(col.first_of_epoch) < 2 and time.monotonic() - t_stop < 120:
            time.sleep(0.01)
        outage = max(col.first_of_epoch.values()) - t_stop
        time.sleep(seconds)
        sender.done.set()
        sender.join(10)
        time.sleep(1.0)
        col.done.set()
        col.join(5)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
    sent = {n: set(range(k)) for n, k in sender.sent.items()}
    lost = sum(len(s - col.seqs.get(n, set())) for n, s in sent.items())
    log(f"  restart ({how.name}): outage {outage:.2f} s (new process answering after "
        f"{ready:.2f} s), {lost} frames lost, subscriber counted {col.gaps.total}, "
        f"restarts seen {col.gaps.restarts}")
    return _row("restart", f"streamlift serve ({how.name})", {"streams": 2, "fps": 30.0},
                round(outage, 3), "s outage",
                {"process_ready_s": round(ready, 2), "frames_lost": lost,
                 "lost_counted_by_subscriber": col.gaps.total,
                 "all_detected": col.gaps.total == lost, "restarts_seen": col.gaps.restarts})


def curve_cost(frames: int, log) -> list[Result]:
    from streamlift.lifter.model import load_lifter
    from streamlift.serve.curve import CurveKeys, make_keys
    from streamlift.serve.server import Server, ServerConfig

    model, _ = load_lifter("windowed", torch.device("cpu"))  # runner.fn: a windowed Runner
    rows, rates = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        make_keys(Path(tmp), ["bench"])
        keys = CurveKeys.load(Path(tmp, "server.key"), Path(tmp, "bench.key_secret"))
        for curve in (False, True):
            extra = {"curve_secret": Path(tmp, "server.key_secret"),
                     "curve_clients": Path(tmp, "clients")} if curve else {}
            cfg = ServerConfig(input="tcp://127.0.0.1:*", output="tcp://127.0.0.1:*", threads=1,
                               max_latency_ms=0.0, **extra)
            with Server(model, cfg, "cpu", log=lambda line: None) as server:
                server.runner.fn = lambda kp, conf: torch.zeros(len(kp), 17, 3)  # no model cost
                c = keys if curve else None
                p = Producer(server.input_endpoint, curve=c, hwm=frames + 10)
                sub = Subscriber(server.output_endpoint, curve=c)
                rtt = [_ping_ms(p) for _ in range(200)]
                time.sleep(0.3)
                kp, t0, got = _kp(np.random.default_rng(2)), time.monotonic(), 0
                for i in range(frames):
                    p.frame(f"c{i % 20}", i // 20, kp)
                    while i - got > 1000:  # at most 1,000 in flight: the pipeline's own pace
                        got += sub.recv(1000) is not None
                while got < frames and time.monotonic() - t0 < 120:
                    got += sub.recv(1000) is not None
                fps = got / (time.monotonic() - t0)
                p.close()
                sub.close()
            name = "CURVE" if curve else "plain"
            rates[name] = fps
            rows.append(_row("curve", name, {"frames": frames, "streams": 20}, round(fps),
                             "frames/s", {"ping_rtt_ms_p50": round(float(np.median(rtt)), 3),
                                          "ping_rtt_ms_p99": round(float(np.percentile(rtt, 99)), 3),
                                          "received": got}))
    for r in rows:
        r.extra["vs_plain"] = round(r.median / rates["plain"], 3)
    log(f"  curve: plain {rates['plain']:,.0f} frames/s, CURVE {rates['CURVE']:,.0f} frames/s "
        f"({rates['CURVE'] / rates['plain']:.2f}x)")
    return rows


def _ping_ms(p: Producer) -> float:
    t = time.perf_counter()
    p.request("ping", 5.0)
    return 1e3 * (time.perf_counter() - t)


def run(device: torch.device, quick: bool, log=print, cases: tuple[str, ...] = CASES,
        streams: int = 100, fps: float = 1.0, minutes: float = 30.0,
        fuzz: int = 1_000_000, fuzz_rate: float = 2000.0) -> list[Result]:
    if device.type != "cpu":
        log("  (the soak suite runs the server on the CPU: it measures reliability, not speed)")
    rows = []
    if "soak" in cases:
        rows.append(soak(10 if quick else streams, fps, 0.25 if quick else minutes, 0.1, log))
    if "fuzz" in cases:
        rows.append(flood(20_000 if quick else fuzz, fuzz_rate, log))
    if "overload" in cases:
        rows.append(overload(16, 5.0 if quick else 30.0, log))
    if "restart" in cases:
        rows += [restart(sig, log, 1.5 if quick else 4.0) for sig in (signal.SIGTERM,
                                                                     signal.SIGKILL)]
    if "curve" in cases:
        rows += curve_cost(3000 if quick else 30000, log)
    return rows
