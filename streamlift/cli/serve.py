"""`streamlift serve | send | watch | demo`: the engine's commands, registered by add_commands."""

from __future__ import annotations

import argparse

from streamlift.cli.common import (SERVER, add_config, command, device, flag, given, load_model,
                                   options, report, shared)

SERVING = ("input output pull max_streams idle_timeout_s max_message_bytes backlog pub_hwm sizes "
           "max_latency_ms heartbeat_s curve_secret curve_clients record_2d record_2d_max_frames")
OPTIONS, CURVE = "streamlift.serve.options:", "streamlift.serve.curve:ClientCurve"
DEVICE = "where the model runs; auto picks CUDA when there is one"


def cmd_serve(a: argparse.Namespace) -> int:
    from streamlift.serve.server import Server, ServerConfig
    from streamlift.serve.tools import serve_until_stopped

    dev = device(a.device)
    model, path = load_model(a.weights, dev, a.window, a.mode, a.backend)
    cfg = ServerConfig(**given(a, SERVING + " height_m threads workers smooth"),
                       backend="eager" if a.no_graphs or dev.type != "cuda" else "graphs")
    serve_until_stopped(Server(model, cfg, dev), path.name, a.stats_every)
    return 0


def cmd_send(a: argparse.Namespace) -> int:
    from streamlift.serve.tools import send

    return send(options(a, OPTIONS + "SendConfig"), options(a, CURVE).keys(), not a.quiet)


def cmd_watch(a: argparse.Namespace) -> int:
    from streamlift.serve.clients import Recorder
    from streamlift.serve.tools import sinks, stream_id, watch

    [stream_id(sid, "--stream") for sid in a.stream or ()]
    live = None
    if a.render is not None or a.show:  # the drawing is checked before subscribing
        from streamlift.viz.live import LiveRender
        with flag("--show", " (--render CLIP.mp4 records one)") if a.show else flag("--render"):
            live = LiveRender(a.render, a.show, a.stream[0] if a.stream else None, a.render_fps,
                              a.render_size)
    with flag("--out"):
        rec = Recorder(a.out)
    outs = sinks(options(a, OPTIONS + "WatchSinks"), a.stream[0] if a.stream else None)
    watch(options(a, OPTIONS + "WatchConfig"), rec, live, a.quiet, options(a, CURVE).keys(), outs)
    return 0


def cmd_keys(a: argparse.Namespace) -> int:
    from streamlift.serve.curve import make_keys

    print("\n".join(map(str, make_keys(a.out, a.client))))
    return 0


def cmd_demo(a: argparse.Namespace) -> int:
    from streamlift.serve.demo import run_demo
    from streamlift.serve.tools import demo_report, log

    dev = device(a.device)
    model, _ = load_model(a.weights, dev, backend=a.backend)
    r = run_demo(model, dev, a.streams, a.fps, a.frames, a.noise_px, a.height_m, a.threads,
                 not a.quiet, log, not a.no_intrinsics, a.curve, a.max_latency_ms)
    report(a, demo_report(r), r)
    return 0


def _add_serve(sub) -> None:
    s = command(sub, "serve", cmd_serve, "serve 3D skeletons lifted from live 2D keypoint "
                "streams (ZeroMQ)", OPTIONS + "ServeOptions")
    add_config(s, SERVER, "input output pull")
    shared(s, "weights", "backend", device=DEVICE)
    add_config(s, SERVER, "height_m threads workers")
    add_config(s, OPTIONS + "ServeOptions", "window mode")
    add_config(s, SERVER, "smooth")
    add_config(s, SERVER, "max_streams idle_timeout_s max_message_bytes backlog max_latency_ms "
               "pub_hwm heartbeat_s curve_secret curve_clients record_2d record_2d_max_frames")
    add_config(s, OPTIONS + "ServeOptions", "no_graphs stats_every")
    add_config(s, SERVER, "sizes")
    add_config(command(sub, "keys", cmd_keys, "make CurveZMQ keys for an authenticated, "
                       "encrypted server and its clients", "streamlift.serve.curve:KeysConfig"),
               "streamlift.serve.curve:KeysConfig")


def _add_clients(sub) -> None:
    p = command(sub, "send", cmd_send, "replay a views file (or the shipped sample) as live 2D "
                "streams", OPTIONS + "SendConfig")
    add_config(p, OPTIONS + "SendConfig")
    add_config(p, CURVE)
    shared(p, "quiet")
    w = command(sub, "watch", cmd_watch, "subscribe to a server and print or record the 3D "
                "skeletons", OPTIONS + "WatchConfig")
    add_config(w, OPTIONS + "WatchConfig")
    add_config(w, CURVE)
    shared(w, quiet="no line per skeleton, only the summary at the end")
    add_config(w, OPTIONS + "WatchDrawing")
    add_config(w, OPTIONS + "WatchSinks")
    d = command(sub, "demo", cmd_demo, "serve, stream the shipped sample, and report latency "
                "and accuracy", OPTIONS + "DemoConfig")
    shared(d, "weights", "backend", device=DEVICE)
    add_config(d, SERVER, "height_m threads max_latency_ms")
    shared(d, "quiet")
    add_config(d, OPTIONS + "DemoConfig")


def add_commands(sub) -> None:
    """Register serve, send, watch and demo on the top-level subparsers."""
    _add_serve(sub)
    _add_clients(sub)
