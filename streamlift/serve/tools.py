"""What `streamlift serve`, `send`, `watch` and `demo` do beyond parsing their flags: run a
server until stopped, build and replay streams, subscribe and print, report a demo. Errors are
UserErrors that name no flag."""

from __future__ import annotations

import math
import signal
import sys
import threading
import time
from collections import Counter
from contextlib import contextmanager

from streamlift.errors import UserError
from streamlift.serve.options import SendConfig, WatchConfig


def log(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


@contextmanager
def on_signals(handler):
    """SIGINT/SIGTERM -> handler (a clean stop) inside; only the main thread may set handlers."""
    old = {} if threading.current_thread() is not threading.main_thread() else {
        sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, h in old.items():
            signal.signal(sig, h)


def connect(cls, endpoint: str, *args, **kwargs):
    """A client socket, with a malformed endpoint reported as one line."""
    import zmq

    try:
        return cls(endpoint, *args, **kwargs)
    except zmq.ZMQError as e:
        raise UserError(f"cannot connect to {endpoint!r}: {e} (expected e.g. "
                        f"tcp://127.0.0.1:5555)") from None


def stream_id(sid: str, what: str) -> str:
    from streamlift.serve.protocol import STREAM_ID_RE

    if not STREAM_ID_RE.fullmatch(sid):
        raise UserError(f"{what} {sid!r} is not a valid stream id (1-64 characters of "
                        f"A-Z a-z 0-9 _ . : -)")
    return sid


def serve_until_stopped(server, weights: str, stats_every: float) -> None:
    """Start a server and run it until SIGINT/SIGTERM, logging a stats line every `stats_every`
    seconds (0: only the final one), then close it."""
    from streamlift.serve.stats import format_stats

    server.start()
    cfg = server.model.cfg
    log(f"streamlift serve: {weights} ({getattr(cfg, 'kind', 'windowed')} {cfg.mode}, "
        f"window {cfg.window}, " + (f"lookahead {server.lookahead}, " if server.lookahead else "")
        + f"{server.device}, "
        f"{server.runner.backend}); input {server.input_endpoint}"
        + (f", pull {server.pull_endpoint}" if server.pull_endpoint else "")
        + f", output {server.output_endpoint}; Ctrl-C to stop")
    with on_signals(lambda *_: server.stop()):
        try:
            last_t, last_out = time.monotonic(), 0
            while not server.wait(stats_every or None):
                snap, now = server.stats.snapshot(), time.monotonic()
                rate = (snap["frames_out"] - last_out) / (now - last_t)
                log("stats: " + format_stats(snap, rate))
                last_t, last_out = now, snap["frames_out"]
        finally:
            server.close()
    log("final stats: " + format_stats(server.stats.snapshot()))


def _sources(c: SendConfig):
    """{view: kp2d}, {view: intrinsics or None} and the frame rate of what `c` replays."""
    if c.views is not None:
        from streamlift.data import load_views
        views = load_views(c.views, c.view)
        fps = c.fps or next((v.fps for v in views.values() if v.fps), None)
        if fps is None:
            raise UserError(f"{c.views} has no frame rate; give the frame rate to send at")
        return ({n: v.kp2d for n, v in views.items()},
                {n: v.intrinsics for n, v in views.items()}, fps)
    from streamlift.data.sample import sample_streams
    # one camera per clip by default; more streams get more cameras of the same rig
    seqs, _, fps, cams = sample_streams(20 if c.view else c.streams or 5)
    for v in c.view or ():
        if v not in seqs:
            raise UserError(f"the shipped sample has no view {v!r}; it has "
                            f"{', '.join(sorted(seqs))}")
    return {v: seqs[v] for v in c.view or seqs}, cams, c.fps or fps


def send_streams(c: SendConfig):
    """The streams to send: {id: kp2d}, {id: intrinsics or None} and the frame rate."""
    import numpy as np

    seqs, cams, fps = _sources(c)
    names, streams, K = list(seqs), {}, {}
    for i in range(c.streams or len(names)):
        base = names[i % len(names)]
        sid = stream_id(c.prefix + (base if i < len(names) else f"{base}-{i // len(names)}"),
                        "view name")
        streams[sid] = np.asarray(seqs[base], np.float32)
        K[sid] = None if c.no_intrinsics else cams[base]
    return streams, K, fps


def send(c: SendConfig, curve=None, progress: bool = True) -> int:
    """Replay what `c` names to its server (through CURVE with `curve`, a CurveKeys); prints
    the report. 1 if the server sent errors."""
    from streamlift.serve.clients import Producer, replay

    streams, K, fps = send_streams(c)
    producer = connect(Producer, c.to, lists=c.lists, curve=curve)
    try:
        producer.request("ping", 3.0)
    except TimeoutError:
        producer.close()
        raise UserError(f"no streamlift server answers at {c.to}" + (
            " (with CURVE: is this client's public key in the server's --curve-clients, and "
            "is the server key right?)" if curve is not None else "")) from None
    log(f"send: {len(streams)} streams at {fps:g} fps to {c.to}")
    try:
        res = replay(producer, streams, fps, c.frames, c.loop, c.noise_px, c.jitter_ms, c.seed,
                     progress=progress, intrinsics=K)
    finally:
        producer.close()
    if res.dropped:
        log(f"send: {res.dropped:,} frames dropped locally: the server was unreachable")
    codes = Counter(e["code"] for e in res.errors)
    print(f"sent {res.sent:,} frames on {len(streams)} streams in {res.seconds:.1f} s; "
          f"{len(res.errors)} errors" + (f" ({', '.join(f'{k} {v}' for k, v in codes.items())})"
                                         if codes else ""))
    for e in res.errors[:5]:
        log(f"  error {e['code']} (stream {e.get('stream')}, seq {e.get('seq')}): {e['message']}")
    return 1 if res.errors else 0


def _print(msg, quiet: bool) -> None:
    from streamlift.serve.messages import StreamEnd

    if quiet:
        return
    if isinstance(msg, StreamEnd):
        print(f"{msg.stream} ended ({msg.reason}): {msg.published} skeletons for "
              f"{msg.frames} frames")
        return
    at = "({:+.3f}, {:+.3f}, {:+.3f}) m".format
    print(f"{msg.stream} seq {msg.seq} ({msg.mode}) latency {msg.latency_ms:.1f} ms"
          f"  head {at(*msg.joints[10])}  r_wrist {at(*msg.joints[16])}", flush=True)


class _Liveness:
    """What `watch` says about the server itself: restarts (a new epoch) and silence (no
    heartbeat or skeleton for `silence_s`), each said once when it happens."""

    def __init__(self, gaps, silence_s: float = 3.0):
        self.gaps, self.silence_s = gaps, silence_s
        self.last = time.monotonic()
        self.silent = False

    def heard(self, msg) -> None:
        epoch = self.gaps.epoch
        if self.silent:
            log(f"watch: the server is back after {time.monotonic() - self.last:.1f} s")
        self.last, self.silent = time.monotonic(), False
        if self.gaps.see_epoch(msg.epoch):
            log(f"watch: the server restarted (epoch {epoch} -> {msg.epoch}); frames lost across "
                f"the restart are counted from the input seq")

    def tick(self) -> None:
        if not self.silent and time.monotonic() - self.last > self.silence_s:
            self.silent = True
            log(f"watch: no heartbeat from the server for {self.silence_s:g} s: it is down or "
                f"unreachable (subscribers reconnect by themselves)")


def sinks(s, stream: str | None) -> list:
    """The BVH / VMC / rerun sinks a serve.options.WatchSinks asks for, checked now."""
    out = []
    if s.bvh is not None:
        from streamlift.rig.bvh import BvhRecorder
        out.append(BvhRecorder(s.bvh, stream))
    if s.vmc is not None:
        from streamlift.rig.vmc import VmcSender
        out.append(VmcSender(s.vmc, stream))
    if s.rerun or s.rerun_save is not None:
        from streamlift.rig.rerun_log import RerunLogger
        out.append(RerunLogger(spawn=s.rerun_save is None, save=s.rerun_save))
    return out


def watch(c: WatchConfig, rec, live=None, quiet: bool = False, curve=None,
          outs: list = ()) -> None:
    """Subscribe as `c` says (through CURVE with `curve`) until its count or duration (or
    SIGINT/SIGTERM, or `live.quit`): print each skeleton unless quiet, record it to `rec`, draw
    it on `live`, hand it to each of `outs` (BVH, VMC, rerun), say when the server restarts or
    goes silent; then the summary."""
    from streamlift.serve.clients import Subscriber
    from streamlift.serve.messages import Gaps, Heartbeat, StreamEnd

    sub = connect(Subscriber, c.source, c.stream, heartbeats=True, curve=curve)
    gaps, per_stream, stop = Gaps(), Counter(), threading.Event()  # skeletons per stream
    alive = _Liveness(gaps)
    count, deadline = c.count or math.inf, time.monotonic() + (c.duration or math.inf)
    with on_signals(lambda *_: stop.set()):
        try:
            while not stop.is_set() and per_stream.total() < count and \
                    time.monotonic() < deadline and not (live is not None and live.quit):
                alive.tick()
                if (msg := sub.recv(100)) is None:
                    continue
                alive.heard(msg)
                if isinstance(msg, Heartbeat):
                    continue
                rec.add(msg)
                gaps.add(msg)
                if not isinstance(msg, StreamEnd):
                    for out in outs:
                        out.add(msg)
                if not isinstance(msg, StreamEnd) and live is not None:
                    live.add(msg, missed=gaps[msg.stream])
                    if live.quit:
                        break
                per_stream[msg.stream] += not isinstance(msg, StreamEnd)
                _print(msg, quiet)
        finally:
            sub.close()
            rec.close()
            if live is not None:
                log("watch: " + live.close())
            for out in outs:
                log("watch: " + out.close())
    log(f"watch: {per_stream.total():,} skeletons from {len(+per_stream)} streams, "
        f"{gaps.total:,} missed (gaps in out_seq, and in seq across {gaps.restarts} server "
        f"restarts)" + (f"; recorded to {c.out}" if c.out else ""))


def demo_report(r: dict) -> str:
    """The lines `streamlift demo` prints of run_demo's report."""
    fmt = lambda k, u=" ms": "-" if r[k] is None else f"{r[k]:.1f}{u}"  # noqa: E731
    shed = f", {r['frames_shed']:,} shed to keep the latency bound" if r.get("frames_shed") else ""
    return (f"frames: sent {r['frames_sent']:,}, received {r['frames_received']:,}{shed} "
            f"({r['streams']} streams at {r['fps']:g} fps, {r['mode']} window {r['window']}, "
            f"{r['device']})\n"
            f"latency capture->publish: p50 {fmt('latency_ms_p50')}, "
            f"p99 {fmt('latency_ms_p99')}\n"
            f"accuracy vs ground truth: PA-MPJPE {fmt('pa_mpjpe_mm', ' mm')}, "
            f"N-MPJPE {fmt('n_mpjpe_mm', ' mm')}")
