"""`streamlift serve | send | watch | demo`: the engine's commands, registered by add_commands."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time
from pathlib import Path

from streamlift.cli.common import HelpFormatter, non_negative, positive_float, positive_int
from streamlift.errors import UserError

INPUT = "tcp://127.0.0.1:5555"
OUTPUT = "tcp://127.0.0.1:5556"


def _ladder(s: str) -> tuple[int, ...]:
    try:
        sizes = tuple(sorted({int(x) for x in s.split(",") if x.strip()}))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {s!r}") from None
    if not sizes or sizes[0] < 1:
        raise argparse.ArgumentTypeError(f"batch sizes must be >= 1, got {s!r}")
    return sizes


def _model_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--weights", type=Path, default=None,
                   help="lifter checkpoint (default: the trained lifter shipped in the package, "
                        "streamlift/assets/lifter.pt)")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto",
                   help="where the model runs; auto picks CUDA when there is one")
    p.add_argument("--height-m", type=positive_float, default=1.70,
                   help="subject height the skeletons are scaled to, metres (a monocular "
                        "lifter only knows shape up to scale)")
    p.add_argument("--threads", type=positive_int, default=None,
                   help="torch threads of the compute loop (default: torch's choice)")


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Register serve, send, watch and demo on the top-level subparsers."""
    # ------------------------------------------------------------------------------ serve
    s = sub.add_parser(
        "serve", help="serve 3D skeletons lifted from live 2D keypoint streams (ZeroMQ)",
        description="Receive 2D keypoint frames from many producers (ZeroMQ DEALER -> ROUTER), "
                    "lift every frame to 3D with the trained lifter, batching all streams "
                    "into one batch per tick, and publish the skeletons on a PUB socket, one "
                    "topic per stream. Wire protocol: docs/protocol.md. Binds to 127.0.0.1 by "
                    "default: the protocol has no authentication.",
        formatter_class=HelpFormatter)
    s.add_argument("--input", default=INPUT,
                   help="ROUTER endpoint producers connect DEALER sockets to (errors are "
                        "answered there)")
    s.add_argument("--output", default=OUTPUT,
                   help="PUB endpoint subscribers connect to; topic 'skel/<stream>/'")
    s.add_argument("--pull", default=None,
                   help="also bind a PULL endpoint for PUSH producers (their errors are only "
                        "counted: PUSH cannot receive replies)")
    _model_flags(s)
    s.add_argument("--window", type=positive_int, default=None,
                   help="frames per window; must match the checkpoint (default: the checkpoint's)")
    s.add_argument("--mode", choices=["causal", "centred"], default=None,
                   help="causal: a frame is published as soon as it arrives; centred: once the "
                        "frames after it arrive (more accurate, window//2 frames later). Must "
                        "match the checkpoint (default: the checkpoint's)")
    s.add_argument("--max-streams", type=positive_int, default=256,
                   help="concurrent streams; a new stream beyond it gets 'too_many_streams'")
    s.add_argument("--idle-timeout", type=positive_float, default=10.0,
                   help="seconds without a frame after which a stream is ended and its slot freed")
    s.add_argument("--max-message-bytes", type=positive_int, default=64 * 1024,
                   help="larger messages are refused with 'too_large'")
    s.add_argument("--max-lag", type=positive_int, default=128,
                   help="frames a stream may wait for the compute loop; beyond it the stream's "
                        "oldest frames are skipped (counted as dropped) so latency stays bounded")
    s.add_argument("--pub-hwm", type=positive_int, default=1000,
                   help="skeletons queued per subscriber before PUB drops (slow subscribers "
                        "see gaps in out_seq; the engine never waits for them)")
    s.add_argument("--no-graphs", action="store_true",
                   help="on CUDA, run eagerly instead of replaying CUDA graphs")
    s.add_argument("--batch-sizes", type=_ladder, default=(1, 2, 4, 8, 16, 32, 64, 128, 256),
                   help="comma-separated CUDA-graph batch ladder; a tick's batch is padded to "
                        "the next size up")
    s.add_argument("--stats-every", type=non_negative, default=10.0,
                   help="print a stats line every this many seconds (0: only at exit)")
    s.set_defaults(func=_cmd_serve)

    # ------------------------------------------------------------------------------- send
    p = sub.add_parser(
        "send", help="replay a views file (or the shipped sample) as live 2D streams",
        description="Stream 2D keypoints to a server at a fixed frame rate, one stream per "
                    "view, timestamped as they are sent. Without --views it streams the "
                    "shipped CMU sample through the studio camera rig.",
        formatter_class=HelpFormatter)
    p.add_argument("--to", default=INPUT, help="the server's ingest endpoint")
    p.add_argument("--views", type=Path, default=None,
                   help="views .npz to replay (default: the shipped CMU sample, 5 clips seen "
                        "by one camera each, more cameras when --streams asks for more)")
    p.add_argument("--view", action="append", default=None, metavar="NAME",
                   help="replay only this view (repeatable; default: all)")
    p.add_argument("--streams", type=positive_int, default=None,
                   help="number of streams; views are reused (ids get -1, -2, ...) when there "
                        "are more streams than views (default: one per view)")
    p.add_argument("--fps", type=positive_float, default=None,
                   help="frames per second per stream (default: the views' frame rate)")
    p.add_argument("--frames", type=positive_int, default=None,
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
    p.add_argument("--no-intrinsics", action="store_true",
                   help="leave the views' camera matrices out of the frames (by default each "
                        "frame carries its camera's intrinsics, and the server lifts through a "
                        "virtual camera looking at the subject)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_send)

    # ------------------------------------------------------------------------------ watch
    w = sub.add_parser(
        "watch", help="subscribe to a server and print or record the 3D skeletons",
        description="Subscribe to a server's skeletons (all streams, or the ones named), print "
                    "one line per skeleton and optionally record them (.npz: per stream "
                    "joints/seq/out_seq/timestamps; .jsonl: one message per line), draw them "
                    "into a video clip (--render) or show them in a window (--show). Skeleton "
                    "messages carry no 2D input, so drawings have the 3D panels only (camera "
                    "view and side view over a ground grid; docs/rendering.md).",
        formatter_class=HelpFormatter)
    w.add_argument("--from", dest="source", default=OUTPUT, help="the server's PUB endpoint")
    w.add_argument("--stream", action="append", default=None, metavar="ID",
                   help="only this stream (repeatable; default: all)")
    w.add_argument("--out", type=Path, default=None, help="record to this .npz or .jsonl file")
    w.add_argument("--count", type=positive_int, default=None,
                   help="stop after this many skeletons")
    w.add_argument("--duration", type=positive_float, default=None,
                   help="stop after this many seconds")
    w.add_argument("--quiet", action="store_true",
                   help="no line per skeleton, only the summary at the end")
    w.add_argument("--render", type=Path, default=None, metavar="CLIP.mp4",
                   help="draw one stream's skeletons into this .mp4 (mp4v) as they arrive: the "
                        "first --stream, else the first stream heard. 3D panels only (camera "
                        "view, side view with a ground grid): the protocol does not send the 2D "
                        "input back")
    w.add_argument("--show", action="store_true",
                   help="show the same drawing live in a window (needs a display and OpenCV "
                        "with GUI support; q or Esc in the window stops watching)")
    w.add_argument("--render-fps", type=positive_float, default=None,
                   help="frame rate of the --render clip (default: estimated from the first "
                        "skeletons' capture times)")
    w.add_argument("--render-size", type=positive_int, default=480,
                   help="panel size of --render/--show drawings, pixels (two panels side by side)")
    w.set_defaults(func=_cmd_watch)

    # ------------------------------------------------------------------------------- demo
    d = sub.add_parser(
        "demo", help="serve, stream the shipped sample, and report latency and accuracy",
        description="Start a server in this process on free loopback ports, stream the shipped "
                    "CMU sample (test-split motion) as live streams, subscribe, and report "
                    "frames sent/received, capture->publish latency p50/p99 and accuracy "
                    "against the sample's 3D ground truth (PA-MPJPE and N-MPJPE, which are "
                    "scale-invariant).",
        formatter_class=HelpFormatter)
    _model_flags(d)
    d.add_argument("--streams", type=positive_int, default=5,
                   help="concurrent streams (the 5 sample clips, then more cameras)")
    d.add_argument("--fps", type=positive_float, default=None,
                   help="frames per second per stream (default: the sample's 50 on CUDA, 15 on "
                        "CPU, where 5 streams at 50 fps exceed what 2 cores lift; the frames "
                        "and so the accuracy are the same at any rate)")
    d.add_argument("--frames", type=positive_int, default=300,
                   help="frames per stream (the clips have 600)")
    d.add_argument("--noise-px", type=non_negative, default=0.0,
                   help="std. dev. of Gaussian 2D detector noise, pixels")
    d.add_argument("--no-intrinsics", action="store_true",
                   help="stream the 2D without the cameras' matrices (the server then lifts as "
                        "if each subject stood on the optical axis)")
    d.add_argument("--json", type=Path, default=None, metavar="OUT",
                   help="also write the report as JSON (frames_sent, frames_received, "
                        "latency_ms_p50, latency_ms_p99, pa_mpjpe_mm, n_mpjpe_mm, ...)")
    d.add_argument("--quiet", action="store_true", help="no progress bar")
    d.set_defaults(func=_cmd_demo)


# ------------------------------------------------------------------------------------ commands
def _connect(cls, endpoint: str, *args, **kwargs):
    """A client socket, with a malformed endpoint reported as one line."""
    import zmq

    try:
        return cls(endpoint, *args, **kwargs)
    except zmq.ZMQError as e:
        raise UserError(f"cannot connect to {endpoint!r}: {e} (expected e.g. "
                        f"tcp://127.0.0.1:5555)") from None


def _install_signals(handler) -> dict:
    """SIGINT/SIGTERM -> handler (a clean stop); only the main thread may set handlers."""
    if threading.current_thread() is not threading.main_thread():
        return {}
    return {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}


def _cmd_serve(a: argparse.Namespace) -> int:
    from streamlift.device import pick_device as resolve_device
    from streamlift.cli.common import load_model
    from streamlift.serve.server import Server, ServerConfig
    from streamlift.serve.stats import format_stats

    device = resolve_device(a.device)
    model, path = load_model(a.weights, device, a.window, a.mode)
    cfg = ServerConfig(input=a.input, output=a.output, pull=a.pull, height_m=a.height_m,
                       max_streams=a.max_streams, idle_timeout_s=a.idle_timeout,
                       max_message_bytes=a.max_message_bytes, pub_hwm=a.pub_hwm,
                       backlog=a.max_lag,
                       threads=a.threads, sizes=a.batch_sizes,
                       backend="eager" if a.no_graphs or device.type != "cuda" else "graphs")
    server = Server(model, cfg, device)
    server.start()
    log = lambda line: print(line, file=sys.stderr, flush=True)  # noqa: E731
    log(f"streamlift serve: {path.name} ({model.cfg.mode}, window {model.cfg.window}, "
        f"{device}, {server.runner.backend}); input {server.input_endpoint}"
        + (f", pull {server.pull_endpoint}" if server.pull_endpoint else "")
        + f", output {server.output_endpoint}; Ctrl-C to stop")

    def on_signal(signum, _frame):
        server.stop()

    old = _install_signals(on_signal)
    try:
        last_t, last_out = time.monotonic(), 0
        while not server.wait(a.stats_every or None):
            snap = server.stats.snapshot()
            now = time.monotonic()
            rate = (snap["frames_out"] - last_out) / (now - last_t)
            last_t, last_out = now, snap["frames_out"]
            log("stats: " + format_stats(snap, rate))
    finally:
        for sig, h in old.items():
            signal.signal(sig, h)
        server.close()
    log("final stats: " + format_stats(server.stats.snapshot()))
    return 0


def _cmd_send(a: argparse.Namespace) -> int:
    import numpy as np

    from streamlift.serve.clients import Producer, replay
    from streamlift.serve.protocol import STREAM_ID_RE

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
        seqs, _, sample_fps, cams = sample_streams(20 if a.view else a.streams or 5)
        if a.view:
            unknown = [v for v in a.view if v not in seqs]
            if unknown:
                raise UserError(f"the shipped sample has no view {unknown[0]!r}; it has "
                                f"{', '.join(sorted(seqs))}")
            seqs = {v: seqs[v] for v in a.view}
        fps = a.fps or sample_fps
    names = list(seqs)
    n = a.streams or len(names)
    streams, stream_K = {}, {}
    for i in range(n):
        base = names[i % len(names)]
        sid = a.prefix + (base if i < len(names) else f"{base}-{i // len(names)}")
        if not STREAM_ID_RE.match(sid):
            raise UserError(f"view name {sid!r} is not a valid stream id (1-64 characters of "
                            f"A-Z a-z 0-9 _ . : -)")
        streams[sid] = np.asarray(seqs[base], np.float32)
        stream_K[sid] = None if a.no_intrinsics else cams[base]
    producer = _connect(Producer, a.to, lists=a.lists)
    try:
        producer.request("ping", 3.0)
    except TimeoutError:
        producer.close()
        raise UserError(f"no streamlift server answers at {a.to}") from None
    print(f"send: {len(streams)} streams at {fps:g} fps to {a.to}", file=sys.stderr)
    try:
        res = replay(producer, streams, fps, a.frames, a.loop, a.noise_px, a.jitter_ms, a.seed,
                     progress=not a.quiet, intrinsics=stream_K)
    finally:
        producer.close()
    codes: dict[str, int] = {}
    for e in res.errors:
        codes[e["code"]] = codes.get(e["code"], 0) + 1
    if res.dropped:
        print(f"send: {res.dropped:,} frames dropped locally: the server was unreachable",
              file=sys.stderr)
    print(f"sent {res.sent:,} frames on {len(streams)} streams in {res.seconds:.1f} s; "
          f"{len(res.errors)} errors" + (f" ({', '.join(f'{k} {v}' for k, v in codes.items())})"
                                         if codes else ""))
    for e in res.errors[:5]:
        print(f"  error {e['code']} (stream {e.get('stream')}, seq {e.get('seq')}): "
              f"{e['message']}", file=sys.stderr)
    return 1 if res.errors else 0


def _cmd_watch(a: argparse.Namespace) -> int:
    from streamlift.serve.clients import Recorder, Subscriber

    from streamlift.serve.protocol import STREAM_ID_RE

    for sid in a.stream or ():
        if not STREAM_ID_RE.match(sid):
            raise UserError(f"--stream {sid!r} is not a valid stream id (1-64 characters of "
                            f"A-Z a-z 0-9 _ . : -)")
    live = None
    if a.render is not None or a.show:
        from streamlift.viz.live import LiveRender
        if a.render_size < 64:
            raise UserError(f"--render-size {a.render_size} is too small to draw on; use at "
                            f"least 64")
        # checks the clip's extension/folder and the display before subscribing
        live = LiveRender(a.render, a.show, a.stream[0] if a.stream else None, a.render_fps,
                          a.render_size)
    sub = _connect(Subscriber, a.source, a.stream)
    rec = Recorder(a.out)
    stop = {"flag": False}

    def on_signal(signum, _frame):
        stop["flag"] = True

    old = _install_signals(on_signal)
    deadline = None if a.duration is None else time.monotonic() + a.duration
    counts: dict[str, list[int]] = {}  # stream -> [skeletons, gaps in out_seq]
    last_out: dict[str, int] = {}
    n = 0
    try:
        while not stop["flag"] and (a.count is None or n < a.count):
            if deadline is not None and time.monotonic() >= deadline:
                break
            msg = sub.recv(100)
            if msg is None:
                continue
            rec.add(msg)
            if live is not None:
                live.add(msg)
                if live.quit:
                    break
            s = msg.get("stream", "?")
            if msg.get("type") == "end":
                if not a.quiet:
                    print(f"{s} ended ({msg.get('reason')}): {msg.get('published')} skeletons "
                          f"for {msg.get('frames')} frames")
                last_out.pop(s, None)
                continue
            if msg.get("type") != "skeleton":
                continue
            n += 1
            c = counts.setdefault(s, [0, 0])
            c[0] += 1
            if s in last_out and msg["out_seq"] > last_out[s] + 1:
                c[1] += msg["out_seq"] - last_out[s] - 1
            last_out[s] = msg["out_seq"]
            if not a.quiet:
                j = msg["joints"]
                lat = 1e3 * (msg["t_publish"] - msg["t_capture"])
                print(f"{s} seq {msg['seq']} ({msg['mode']}) latency {lat:.1f} ms  head "
                      f"({j[10, 0]:+.3f}, {j[10, 1]:+.3f}, {j[10, 2]:+.3f}) m  r_wrist "
                      f"({j[16, 0]:+.3f}, {j[16, 1]:+.3f}, {j[16, 2]:+.3f}) m", flush=True)
    finally:
        for sig, h in old.items():
            signal.signal(sig, h)
        sub.close()
        rec.close()
        if live is not None:
            print("watch: " + live.close(), file=sys.stderr)
    gaps = sum(c[1] for c in counts.values())
    print(f"watch: {n:,} skeletons from {len(counts)} streams, {gaps:,} missed (gaps in out_seq)"
          + (f"; recorded to {a.out}" if a.out else ""), file=sys.stderr)
    return 0


def _cmd_demo(a: argparse.Namespace) -> int:
    from streamlift.device import pick_device as resolve_device
    from streamlift.serve.demo import run_demo
    from streamlift.cli.common import load_model

    device = resolve_device(a.device)
    model, _ = load_model(a.weights, device)
    log = lambda line: print(line, file=sys.stderr, flush=True)  # noqa: E731
    r = run_demo(model, device, a.streams, a.fps, a.frames, a.noise_px, a.height_m, a.threads,
                 progress=not a.quiet, log=log, intrinsics=not a.no_intrinsics)
    fmt = lambda v, u="": "-" if v is None else f"{v:.1f}{u}"  # noqa: E731
    print(f"frames: sent {r['frames_sent']:,}, received {r['frames_received']:,} "
          f"({r['streams']} streams at {r['fps']:g} fps, {r['mode']} window {r['window']}, "
          f"{r['device']})")
    print(f"latency capture->publish: p50 {fmt(r['latency_ms_p50'], ' ms')}, "
          f"p99 {fmt(r['latency_ms_p99'], ' ms')}")
    print(f"accuracy vs ground truth: PA-MPJPE {fmt(r['pa_mpjpe_mm'], ' mm')}, "
          f"N-MPJPE {fmt(r['n_mpjpe_mm'], ' mm')}")
    if a.json is not None:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(json.dumps(r, indent=1) + "\n")
    return 0

