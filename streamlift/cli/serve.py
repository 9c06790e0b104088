"""`streamlift serve | send | watch | demo`: the engine's commands, registered by add_commands."""

from __future__ import annotations

import argparse
import json
import math
import signal
import sys
import threading
import time
from collections import Counter
from pathlib import Path

from streamlift.cli.common import (SERVER, add_config, command, device, fields, flag, given,
                                   load_model, non_negative, positive_float, positive_int, shared)
from streamlift.errors import UserError

SERVING = "input output pull max_streams idle_timeout_s max_message_bytes backlog pub_hwm sizes"


def log(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _connect(cls, endpoint: str, *args, **kwargs):
    """A client socket, with a malformed endpoint reported as one line."""
    import zmq

    try:
        return cls(endpoint, *args, **kwargs)
    except zmq.ZMQError as e:
        raise UserError(f"cannot connect to {endpoint!r}: {e} (expected e.g. "
                        f"tcp://127.0.0.1:5555)") from None


def _stream_id(sid: str, what: str) -> str:
    from streamlift.serve.protocol import STREAM_ID_RE

    if not STREAM_ID_RE.match(sid):
        raise UserError(f"{what} {sid!r} is not a valid stream id (1-64 characters of "
                        f"A-Z a-z 0-9 _ . : -)")
    return sid


def _signals(handler) -> dict:
    """SIGINT/SIGTERM -> handler (a clean stop); only the main thread may set handlers."""
    if threading.current_thread() is not threading.main_thread():
        return {}
    return {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}


def cmd_serve(a: argparse.Namespace) -> int:
    """Receive 2D keypoint frames from many producers (ZeroMQ DEALER -> ROUTER), lift every
    frame to 3D with the trained lifter, batching all streams into one batch per tick, and
    publish the skeletons on a PUB socket, one topic per stream. Wire protocol:
    docs/protocol.md. Binds to 127.0.0.1 by default: the protocol has no authentication."""
    from streamlift.serve.server import Server, ServerConfig
    from streamlift.serve.stats import format_stats

    dev = device(a.device)
    model, path = load_model(a.weights, dev, a.window, a.mode)
    cfg = ServerConfig(**given(a, SERVING + " height_m threads"),
                       backend="eager" if a.no_graphs or dev.type != "cuda" else "graphs")
    server = Server(model, cfg, dev)
    server.start()
    log(f"streamlift serve: {path.name} ({model.cfg.mode}, window {model.cfg.window}, {dev}, "
        f"{server.runner.backend}); input {server.input_endpoint}"
        + (f", pull {server.pull_endpoint}" if server.pull_endpoint else "")
        + f", output {server.output_endpoint}; Ctrl-C to stop")
    old = _signals(lambda *_: server.stop())
    try:
        last_t, last_out = time.monotonic(), 0
        while not server.wait(a.stats_every or None):
            snap, now = server.stats.snapshot(), time.monotonic()
            log("stats: " + format_stats(snap, (snap["frames_out"] - last_out) / (now - last_t)))
            last_t, last_out = now, snap["frames_out"]
    finally:
        for sig, h in old.items():
            signal.signal(sig, h)
        server.close()
    log("final stats: " + format_stats(server.stats.snapshot()))
    return 0


def _streams(a: argparse.Namespace):
    """The streams to send: {id: kp2d}, {id: intrinsics or None} and the frame rate."""
    import numpy as np

    if a.views is not None:
        from streamlift.data import load_views
        views = load_views(a.views, a.view)
        seqs = {n: v.kp2d for n, v in views.items()}
        cams = {n: v.intrinsics for n, v in views.items()}
        fps = a.fps or next((v.fps for v in views.values() if v.fps), None)
        if fps is None:
            raise UserError(f"{a.views} has no frame rate; pass --fps")
    else:
        from streamlift.data.sample import sample_streams
        # one camera per clip by default; more streams get more cameras of the same rig
        seqs, _, fps, cams = sample_streams(20 if a.view else a.streams or 5)
        for v in a.view or ():
            if v not in seqs:
                raise UserError(f"the shipped sample has no view {v!r}; it has "
                                f"{', '.join(sorted(seqs))}")
        seqs, fps = {v: seqs[v] for v in a.view or seqs}, a.fps or fps
    names, streams, K = list(seqs), {}, {}
    for i in range(a.streams or len(names)):
        base = names[i % len(names)]
        sid = _stream_id(a.prefix + (base if i < len(names) else f"{base}-{i // len(names)}"),
                         "view name")
        streams[sid] = np.asarray(seqs[base], np.float32)
        K[sid] = None if a.no_intrinsics else cams[base]
    return streams, K, fps


def cmd_send(a: argparse.Namespace) -> int:
    """Stream 2D keypoints to a server at a fixed frame rate, one stream per view, timestamped
    as they are sent. Without --views it streams the shipped CMU sample through the studio
    camera rig."""
    from streamlift.serve.clients import Producer, replay

    streams, K, fps = _streams(a)
    producer = _connect(Producer, a.to, lists=a.lists)
    try:
        producer.request("ping", 3.0)
    except TimeoutError:
        producer.close()
        raise UserError(f"no streamlift server answers at {a.to}") from None
    log(f"send: {len(streams)} streams at {fps:g} fps to {a.to}")
    try:
        res = replay(producer, streams, fps, a.frames, a.loop, a.noise_px, a.jitter_ms, a.seed,
                     progress=not a.quiet, intrinsics=K)
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


def _live(a: argparse.Namespace):
    """The --render/--show drawing, its clip's name and the display checked before subscribing."""
    from streamlift.viz.live import LiveRender
    from streamlift.viz.video import check_output

    if a.render_size < 64:
        raise UserError(f"--render-size {a.render_size} is too small to draw on; use at least 64")
    if a.render is not None:
        check_output(a.render, (".mp4",), "--render")
    with flag("--show", " (--render CLIP.mp4 records one)") if a.show else flag("--render"):
        return LiveRender(a.render, a.show, a.stream[0] if a.stream else None, a.render_fps,
                          a.render_size)


def cmd_watch(a: argparse.Namespace) -> int:
    """Subscribe to a server's skeletons (all streams, or the ones named), print one line per
    skeleton and optionally record them (.npz: per stream joints/seq/out_seq/timestamps; .jsonl:
    one message per line), draw them into a video clip (--render) or show them in a window
    (--show). Skeleton messages carry no 2D input, so drawings have the 3D panels only (camera
    view and side view over a ground grid; docs/rendering.md)."""
    from streamlift.serve.clients import Recorder, Subscriber
    from streamlift.serve.messages import Gaps, StreamEnd

    for sid in a.stream or ():
        _stream_id(sid, "--stream")
    live = _live(a) if a.render is not None or a.show else None
    with flag("--out"):
        rec = Recorder(a.out)
    sub = _connect(Subscriber, a.source, a.stream)
    gaps, per_stream, stop = Gaps(), Counter(), threading.Event()  # skeletons per stream
    old = _signals(lambda *_: stop.set())
    count, deadline = a.count or math.inf, time.monotonic() + (a.duration or math.inf)
    try:
        while not stop.is_set() and per_stream.total() < count and time.monotonic() < deadline:
            if (msg := sub.recv(100)) is None:
                continue
            rec.add(msg)
            gaps.add(msg)
            if isinstance(msg, StreamEnd):
                if not a.quiet:
                    print(f"{msg.stream} ended ({msg.reason}): {msg.published} skeletons for "
                          f"{msg.frames} frames")
                continue
            if live is not None:
                live.add(msg, missed=gaps[msg.stream])
                if live.quit:
                    break
            per_stream[msg.stream] += 1
            if not a.quiet:
                at = "({:+.3f}, {:+.3f}, {:+.3f}) m".format
                print(f"{msg.stream} seq {msg.seq} ({msg.mode}) latency {msg.latency_ms:.1f} ms"
                      f"  head {at(*msg.joints[10])}  r_wrist {at(*msg.joints[16])}", flush=True)
    finally:
        for sig, h in old.items():
            signal.signal(sig, h)
        sub.close()
        rec.close()
        if live is not None:
            log("watch: " + live.close())
    log(f"watch: {per_stream.total():,} skeletons from {len(per_stream)} streams, "
        f"{gaps.total:,} missed (gaps in out_seq)" + (f"; recorded to {a.out}" if a.out else ""))
    return 0


def cmd_demo(a: argparse.Namespace) -> int:
    """Start a server in this process on free loopback ports, stream the shipped CMU sample
    (test-split motion) as live streams, subscribe, and report frames sent/received,
    capture->publish latency p50/p99 and accuracy against the sample's 3D ground truth
    (PA-MPJPE and N-MPJPE, which are scale-invariant)."""
    from streamlift.serve.demo import run_demo

    dev = device(a.device)
    model, _ = load_model(a.weights, dev)
    r = run_demo(model, dev, a.streams, a.fps, a.frames, a.noise_px, a.height_m, a.threads,
                 progress=not a.quiet, log=log, intrinsics=not a.no_intrinsics)
    fmt = lambda k, u=" ms": "-" if r[k] is None else f"{r[k]:.1f}{u}"  # noqa: E731
    print(f"frames: sent {r['frames_sent']:,}, received {r['frames_received']:,} "
          f"({r['streams']} streams at {r['fps']:g} fps, {r['mode']} window {r['window']}, "
          f"{r['device']})")
    print(f"latency capture->publish: p50 {fmt('latency_ms_p50')}, p99 {fmt('latency_ms_p99')}")
    print(f"accuracy vs ground truth: PA-MPJPE {fmt('pa_mpjpe_mm', ' mm')}, "
          f"N-MPJPE {fmt('n_mpjpe_mm', ' mm')}")
    if a.json is not None:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(json.dumps(r, indent=1) + "\n")
    return 0


def _add_serve(sub) -> None:
    s = command(sub, "serve", cmd_serve,
                "serve 3D skeletons lifted from live 2D keypoint streams (ZeroMQ)")
    add_config(s, SERVER, "input output pull")
    shared(s, "weights", device="where the model runs; auto picks CUDA when there is one")
    add_config(s, SERVER, "height_m threads")
    s.add_argument("--window", type=positive_int, help="frames per window; must match the "
                   "checkpoint (default: the checkpoint's)")
    shared(s, mode="causal: a frame is published as soon as it arrives; centred: once the "
           "frames after it arrive (more accurate, window//2 frames later). Must match the "
           "checkpoint (default: the checkpoint's)")
    add_config(s, SERVER, "max_streams idle_timeout_s max_message_bytes backlog pub_hwm")
    s.add_argument("--no-graphs", action="store_true",
                   help="on CUDA, run eagerly instead of replaying CUDA graphs")
    add_config(s, SERVER, "sizes")
    s.add_argument("--stats-every", type=non_negative, default=10.0,
                   help="print a stats line every this many seconds (0: only at exit)")


def _add_send(sub) -> None:
    p = command(sub, "send", cmd_send, "replay a views file (or the shipped sample) as live 2D "
                "streams")
    p.add_argument("--to", default=fields(SERVER)["input"][0], help="the server's ingest endpoint")
    p.add_argument("--views", type=Path, help="views .npz to replay (default: the shipped CMU "
                   "sample, 5 clips seen by one camera each, more cameras when --streams asks "
                   "for more)")
    p.add_argument("--view", action="append", metavar="NAME",
                   help="replay only this view (repeatable; default: all)")
    p.add_argument("--streams", type=positive_int, help="number of streams; views are reused "
                   "(ids get -1, -2, ...) when there are more streams than views (default: one "
                   "per view)")
    p.add_argument("--fps", type=positive_float,
                   help="frames per second per stream (default: the views' frame rate)")
    p.add_argument("--frames", type=positive_int,
                   help="frames per stream (default: the whole view)")
    p.add_argument("--loop", type=positive_int, default=1,
                   help="play each view this many times (seq keeps counting up)")
    p.add_argument("--noise-px", type=non_negative, default=0.0,
                   help="std. dev. of Gaussian noise added to every keypoint, pixels")
    p.add_argument("--jitter-ms", type=non_negative, default=0.0,
                   help="std. dev. of Gaussian timing jitter of each send, ms")
    p.add_argument("--seed", type=int, default=0, help="noise and jitter seed")
    p.add_argument("--prefix", default="",
                   help="prepended to every stream id (keeps several senders' streams apart)")
    p.add_argument("--lists", action="store_true",
                   help="send keypoints as nested lists instead of raw float32 bytes")
    p.add_argument("--no-intrinsics", action="store_true", help="leave the views' camera "
                   "matrices out of the frames (by default each frame carries its camera's "
                   "intrinsics, and the server lifts through a virtual camera looking at the "
                   "subject)")
    shared(p, "quiet")


def _add_watch(sub) -> None:
    w = command(sub, "watch", cmd_watch, "subscribe to a server and print or record the 3D "
                "skeletons")
    w.add_argument("--from", dest="source", default=fields(SERVER)["output"][0],
                   help="the server's PUB endpoint")
    w.add_argument("--stream", action="append", metavar="ID",
                   help="only this stream (repeatable; default: all)")
    w.add_argument("--out", type=Path, help="record to this .npz or .jsonl file")
    w.add_argument("--count", type=positive_int, help="stop after this many skeletons")
    w.add_argument("--duration", type=positive_float, help="stop after this many seconds")
    shared(w, quiet="no line per skeleton, only the summary at the end")
    w.add_argument("--render", type=Path, metavar="CLIP.mp4", help="draw one stream's "
                   "skeletons into this .mp4 (mp4v) as they arrive: the first --stream, else the "
                   "first stream heard. 3D panels only (camera view, side view with a ground "
                   "grid): the protocol does not send the 2D input back")
    w.add_argument("--show", action="store_true", help="show the same drawing live in a window "
                   "(needs a display and OpenCV with GUI support; q or Esc in the window stops "
                   "watching)")
    w.add_argument("--render-fps", type=positive_float, help="frame rate of the --render clip "
                   "(default: estimated from the first skeletons' capture times)")
    w.add_argument("--render-size", type=positive_int, default=480, help="panel size of "
                   "--render/--show drawings, pixels (two panels side by side)")


def _add_demo(sub) -> None:
    d = command(sub, "demo", cmd_demo, "serve, stream the shipped sample, and report latency "
                "and accuracy")
    shared(d, "weights", device="where the model runs; auto picks CUDA when there is one")
    add_config(d, SERVER, "height_m threads")
    d.add_argument("--streams", type=positive_int, default=5,
                   help="concurrent streams (the 5 sample clips, then more cameras)")
    d.add_argument("--fps", type=positive_float, help="frames per second per stream (default: "
                   "the sample's 50 on CUDA, 15 on CPU, where 5 streams at 50 fps exceed what 2 "
                   "cores lift; the frames and so the accuracy are the same at any rate)")
    d.add_argument("--frames", type=positive_int, default=300,
                   help="frames per stream (the clips have 600)")
    d.add_argument("--noise-px", type=non_negative, default=0.0,
                   help="std. dev. of Gaussian 2D detector noise, pixels")
    d.add_argument("--no-intrinsics", action="store_true", help="stream the 2D without the "
                   "cameras' matrices (the server then lifts as if each subject stood on the "
                   "optical axis)")
    shared(d, "quiet", json=dict(metavar="OUT", help="also write the report as JSON "
           "(frames_sent, frames_received, latency_ms_p50, latency_ms_p99, pa_mpjpe_mm, "
           "n_mpjpe_mm, ...)"))


def add_commands(sub) -> None:
    """Register serve, send, watch and demo on the top-level subparsers."""
    for add in (_add_serve, _add_send, _add_watch, _add_demo):
        add(sub)
