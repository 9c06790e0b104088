"""The server over real loopback TCP: equality with offline inference, bad input, failures.

Every endpoint is tcp://127.0.0.1 with a port the OS picks, so parallel runs cannot collide;
every wait is bounded in time.
"""

import socket
import time

import msgpack
import numpy as np
import pytest
import torch
import zmq

from streamlift.serve import protocol as P
from streamlift.serve.clients import Producer, Subscriber
from streamlift.serve.messages import (STOP, Ended, EndIn, FrameIn, Skeleton, SkeletonBatch,
                                      Stop, StreamEnd, decode)
from streamlift.serve.server import Server, ServerConfig
from streamlift.lifter.model import LifterConfig, NRSfMFormer, metric_scale
from streamlift.skeleton import to_h36m
from streamlift.lifter.infer import lift_sequence

ANY = "tcp://127.0.0.1:*"
HEIGHT = 1.7


def tiny(mode="causal", window=9, seed=0):
    torch.manual_seed(seed)
    return NRSfMFormer(LifterConfig(dim=32, depth=1, heads=2, window=window, mode=mode)).eval()


def serve(model, **kw):
    """A live server; it never sheds frames for latency unless asked (these tests compare every
    frame with offline inference, and a loaded CI machine may lag) and lifts the 2D as it comes
    unless asked (`motion`'s jitter would open the smoothing gate; the filter in front of the
    lifter is tested in test_smooth.py and test_engine_stream.py)."""
    cfg = ServerConfig(input=kw.pop("input", ANY), output=kw.pop("output", ANY), threads=1,
                       height_m=kw.pop("height_m", HEIGHT),
                       max_latency_ms=kw.pop("max_latency_ms", 0.0),
                       smooth=kw.pop("smooth", "off"), **kw)
    return Server(model, cfg, "cpu", log=lambda line: None).start()


def offline(model, kp, K=None):
    """What the server must publish for a whole stream: lift_sequence + the same scaling."""
    X = torch.from_numpy(lift_sequence(model, kp, K=K))
    return (metric_scale(X, 1000 * HEIGHT) * 1e-3).numpy()


def bone_height(joints):
    """Head-to-ankle height along the bones of H36M-17 skeletons (..., 17, 3), in plain numpy:
    pelvis-spine-thorax-neck-head plus the mean of the two legs pelvis-hip-knee-ankle."""
    def chain(*js):
        return sum(np.linalg.norm(joints[..., a, :] - joints[..., b, :], axis=-1)
                   for a, b in zip(js[:-1], js[1:]))
    return chain(0, 7, 8, 9, 10) + (chain(0, 1, 2, 3) + chain(0, 4, 5, 6)) / 2


def motion(n, seed):
    """A plausible-ish 2D sequence: a random pose drifting and swaying, with confidences."""
    g = np.random.default_rng(seed)
    base = g.uniform(-150, 150, (1, 17, 2)) + 500
    t = np.arange(n)[:, None, None]
    kp = base + 20 * np.sin(0.2 * t + g.uniform(0, 6, (1, 17, 1))) + g.normal(0, 2, (n, 17, 2))
    conf = g.uniform(0.3, 1.0, (n, 17, 1))
    return np.concatenate([kp, conf], -1).astype(np.float32)  # (n, 17, 3)


def handshake(producer, sub, timeout=5.0):
    """PUB/SUB only delivers once the subscription has reached the server: send a probe
    stream until its skeleton comes back, then end it."""
    deadline, seq = time.monotonic() + timeout, 0
    while time.monotonic() < deadline:
        producer.frame("probe", seq, motion(1, 0)[0])
        seq += 1
        m = sub.recv(100)
        while m is not None:
            if m.stream == "probe":
                producer.end("probe")
                return
            m = sub.recv(0)
    raise AssertionError("subscription never became active")


def collect(sub, streams, timeout=20.0):
    """Every message of the given streams until each has sent 'end' (bounded)."""
    got = {s: [] for s in streams}
    ended = {}
    deadline = time.monotonic() + timeout
    while len(ended) < len(streams) and time.monotonic() < deadline:
        m = sub.recv(100)
        if m is None or m.stream not in got:
            continue
        if isinstance(m, StreamEnd):
            ended[m.stream] = m
        else:
            got[m.stream].append(m)
    assert len(ended) == len(streams), f"streams never ended: {set(streams) - set(ended)}"
    return got, ended


@pytest.mark.parametrize("mode", ["causal", "centred"])
def test_many_streams_equal_offline_inference(mode):
    model = tiny(mode)
    n_streams = 12
    lengths = [5 + 7 * i for i in range(n_streams)]  # some shorter than the window
    seqs = {f"s{i}": motion(n, i) for i, n in enumerate(lengths)}
    seqs["coco"] = motion(30, 99)
    with serve(model) as server:
        sub = Subscriber(server.output_endpoint)
        producers = [Producer(server.input_endpoint, lists=bool(k % 2)) for k in range(3)]
        handshake(producers[0], sub)
        names = list(seqs)
        for t in range(max(len(v) for v in seqs.values())):  # interleaved, like live cameras
            for i, s in enumerate(names):
                if t < len(seqs[s]):
                    layout = "coco17" if s == "coco" else "h36m17"
                    producers[i % 3].frame(s, t, seqs[s][t], layout=layout)
            if t % 10 == 0:
                time.sleep(0.01)  # let several ticks happen
        for i, s in enumerate(names):
            producers[i % 3].end(s)
        got, ended = collect(sub, names)
        for p in producers:
            assert p.poll_errors(50) == [] and p.errors == []
            p.close()
        sub.close()
        stats = server.stats.snapshot()
    assert stats["batch_max"] > 1  # streams really were batched together
    for s, kp in seqs.items():
        msgs = got[s]
        assert [m.seq for m in msgs] == list(range(len(kp)))  # every frame, in order
        assert [m.out_seq for m in msgs] == list(range(len(kp)))
        assert ended[s].reason == "end" and ended[s].published == len(kp)
        assert ended[s].frames == len(kp) and ended[s].dropped == 0
        src = to_h36m(kp, "coco17") if s == "coco" else kp
        want = offline(model, src)
        np.testing.assert_allclose(np.stack([m.joints for m in msgs]), want, atol=2e-5)
        m = msgs[0]
        assert (m.mode, m.window, m.height_m, m.virtual_camera) == (mode, 9, HEIGHT, False)
        assert m.t_capture <= m.t_receive <= m.t_publish and m.latency_ms >= 0
        assert np.allclose(m.joints[0], 0)  # root-relative
        np.testing.assert_allclose(bone_height(np.stack([m.joints for m in msgs])), HEIGHT,
                                   rtol=2e-6)


def test_published_skeletons_are_as_tall_as_height_m():
    """Every skeleton is scaled so that head-to-ankle along the bones is --height-m metres,
    measured here independently of the model's own scaling code."""
    kp = motion(25, 11)
    for height in (1.55, 1.92):
        with serve(tiny(), height_m=height) as server:
            sub = Subscriber(server.output_endpoint)
            prod = Producer(server.input_endpoint)
            handshake(prod, sub)
            for t in range(len(kp)):
                prod.frame("h", t, kp[t])
            prod.end("h")
            got, ended = collect(sub, ["h"])
            assert prod.poll_errors(50) == []
            prod.close()
            sub.close()
        joints = np.stack([m.joints for m in got["h"]]).astype(np.float64)
        assert joints.shape == (25, 17, 3) and ended["h"].published == 25
        assert {m.height_m for m in got["h"]} == {height}
        np.testing.assert_allclose(bone_height(joints), height, rtol=2e-6)
        np.testing.assert_array_equal(joints[:, 0], 0)  # root-relative: pelvis at the origin


def test_streams_with_intrinsics_are_lifted_through_the_virtual_camera():
    """A camera matrix sent with a stream's frames (or once: it holds for the later frames)
    gives what offline lifting with K gives, in the real camera frame; a stream without one is
    lifted as before. Each skeleton says which it was."""
    model = tiny()
    K = np.array([[1150, 0, 500], [0, 1150, 480], [0, 0, 1]], np.float32)
    seqs = {"every": motion(20, 1) + [250, 0, 0], "once": motion(20, 2) - [300, 100, 0],
            "none": motion(20, 3) + [250, 0, 0]}
    with serve(model) as server:
        sub = Subscriber(server.output_endpoint)
        prod = Producer(server.input_endpoint)
        handshake(prod, sub)
        for t in range(20):
            prod.frame("every", t, seqs["every"][t], intrinsics=P.pack_array(K))
            prod.frame("once", t, seqs["once"][t], **({"intrinsics": K.tolist()} if t == 0 else {}))
            prod.frame("none", t, seqs["none"][t])
        for name in seqs:
            prod.end(name)
        got, _ = collect(sub, list(seqs))
        assert prod.poll_errors(50) == []
        prod.close()
        sub.close()
    for name, kp in seqs.items():
        use = None if name == "none" else K
        joints = np.stack([m.joints for m in got[name]])
        np.testing.assert_allclose(joints, offline(model, kp, use), atol=2e-5)
        assert {m.virtual_camera for m in got[name]} == {use is not None}
    # and K matters: for a subject 250 px off-centre it moves the joints by 14.7 mm on average
    moved = np.linalg.norm(offline(model, seqs["none"], K) - offline(model, seqs["none"]), axis=-1)
    assert 0.010 < moved[:, 1:].mean() < 0.020


@pytest.mark.parametrize("lifter", ["windowed", "streaming"])
def test_every_bad_input_gets_an_error_and_spares_other_streams(lifter):
    from streamlift.lifter.stream import StreamConfig, StreamingNRSfMFormer

    model = tiny() if lifter == "windowed" else \
        StreamingNRSfMFormer(StreamConfig(dim=32, depth=1, heads=2, window=9)).eval()
    with serve(model, max_streams=3) as server:
        sub = Subscriber(server.output_endpoint)
        good = Producer(server.input_endpoint)
        bad = Producer(server.input_endpoint)
        handshake(good, sub)
        kp = motion(40, 1)

        def f(**o):
            return P.encode(dict(P.frame_msg("b", o.pop("seq", 0), time.time(), kp[0]), **o))

        cases = [
            (b"\xc1\xc1", "bad_msgpack"),
            (msgpack.packb("hello"), "bad_message"),
            (f(v=9), "unsupported_version"),
            (f(type="nope"), "unknown_type"),
            (f(stream="no spaces"), "bad_stream_id"),
            (f(layout="body25"), "unknown_layout"),
            (f(kp=kp[0, :5].tolist()), "bad_shape"),
            (f(kp=np.full((17, 2), np.nan).tolist()), "not_finite"),
            (f(conf=[2.0] * 17, kp=kp[0, :, :2].tolist()), "bad_value"),
            (f(conf=[-0.5] + [1.0] * 16, kp=kp[0, :, :2].tolist()), "bad_value"),
            (f(t_capture=0), "bad_value"),
            (f(t_capture=0.0), "bad_value"),
            (f(image_size=[1280, 0]), "bad_value"),
            (f(image_size=[1280, 720], seq=3), None),  # accepted
            (f(pad=b"x" * (P.MAX_MESSAGE_BYTES + 1)), "too_large"),
            (f(seq=5), None),  # accepted
            (f(seq=5), "duplicate_seq"),
            (f(seq=4), "out_of_order"),
            (P.encode(P.frame_msg("c", 0, time.time(), kp[0])), None),
            (P.encode(P.frame_msg("d", 0, time.time(), kp[0])), "too_many_streams"),
        ]
        for t in range(40):  # the good stream keeps going while the bad producer misbehaves
            good.frame("a", t, kp[t])
            if t < len(cases):
                bad.send_raw(cases[t][0])
        bad.sock.send_multipart([b"part1", b"part2"])  # two payload frames
        codes = [c for _, c in cases if c] + ["bad_message"]
        deadline = time.monotonic() + 10
        while len(bad.errors) < len(codes) and time.monotonic() < deadline:
            bad.poll_errors(100)
        assert [e["code"] for e in bad.errors] == codes
        assert all(e["message"] and e["v"] == 1 for e in bad.errors)
        dup = bad.errors[codes.index("duplicate_seq")]
        assert (dup["stream"], dup["seq"]) == ("b", 5)
        good.end("a")
        got, _ = collect(sub, ["a"])
        assert [m.seq for m in got["a"]] == list(range(40))
        assert good.errors == []
        stats = good.request("stats")["stats"]
        want = {}
        for c in codes:
            want[c] = want.get(c, 0) + 1
        assert stats["errors"] == want  # one counter per kind
        for p in (good, bad):
            p.close()
        sub.close()


def test_oversize_beyond_the_hard_cap_drops_only_that_connection():
    with serve(tiny()) as server:
        huge = Producer(server.input_endpoint)
        huge.send_raw(b"\0" * (2 * P.HARD_MAX_MESSAGE_BYTES))
        other = Producer(server.input_endpoint)
        assert other.request("ping", 5.0)["type"] == "pong"
        huge.close()
        other.close()


def test_overloaded_frames_are_refused_and_counted():
    with serve(tiny(), queue_limit=0) as server:
        p = Producer(server.input_endpoint)
        p.frame("a", 0, motion(1, 0)[0])
        deadline = time.monotonic() + 5
        while not p.errors and time.monotonic() < deadline:
            p.poll_errors(100)
        assert p.errors[0]["code"] == "overloaded"
        s = p.request("stats")["stats"]
        assert s["errors"] == {"overloaded": 1} and s["frames_dropped"] == 1
        p.close()


def test_producer_that_disconnects_is_evicted_and_its_pending_frames_flushed():
    """A centred stream whose producer vanishes: after the idle timeout its last frames are
    published (windows padded with its last frame) and its slot serves a new stream."""
    model = tiny("centred")
    kp = motion(15, 3)
    with serve(model, idle_timeout_s=0.5, max_streams=1) as server:
        sub = Subscriber(server.output_endpoint)
        p = Producer(server.input_endpoint)
        handshake(p, sub)
        time.sleep(0.8)  # the probe stream is evicted too
        for t in range(len(kp)):
            p.frame("gone", t, kp[t])
        p.close()  # no 'end': the producer just disappears
        got, ended = collect(sub, ["gone"], timeout=10)
        assert ended["gone"].reason == "idle"
        assert [m.seq for m in got["gone"]] == list(range(15))
        np.testing.assert_allclose(np.stack([m.joints for m in got["gone"]]),
                                   offline(model, kp), atol=2e-5)
        q = Producer(server.input_endpoint)
        q.frame("next", 0, kp[0])
        q.end("next")
        got, _ = collect(sub, ["next"], timeout=10)
        assert len(got["next"]) == 1 and q.errors == []
        assert q.request("stats")["stats"]["streams_evicted"] >= 1
        q.close()
        sub.close()


def test_a_subscriber_that_never_reads_does_not_slow_the_engine():
    ctx = zmq.Context.instance()
    # backlog: the 400 frames a stream sends at once may all wait for a CPU that other work
    # shares; what is tested is that the stuck subscriber costs nothing, not the lift's speed
    with serve(tiny(), backlog=512) as server:
        stuck = ctx.socket(zmq.SUB)  # subscribes to everything and never reads
        stuck.setsockopt(zmq.RCVHWM, 5)
        stuck.setsockopt(zmq.RCVBUF, 4096)
        stuck.setsockopt(zmq.SUBSCRIBE, b"")
        stuck.connect(server.output_endpoint)
        sub = Subscriber(server.output_endpoint, ["a", "b", "c"])
        p = Producer(server.input_endpoint)
        handshake_sub = Subscriber(server.output_endpoint, ["probe"])
        handshake(p, handshake_sub)
        handshake_sub.close()
        kp = motion(400, 4)
        t0 = time.monotonic()
        for t in range(400):
            for s in ("a", "b", "c"):
                p.frame(s, t, kp[t])
            time.sleep(0.001)  # ~1,000 frames/s per stream, well past any reader's pace
        for s in ("a", "b", "c"):
            p.end(s)
        got, _ = collect(sub, ["a", "b", "c"], timeout=20)
        elapsed = time.monotonic() - t0
        s = p.request("stats")["stats"]
        # every frame was lifted and published although one subscriber's queue stayed full
        assert s["frames_dropped"] == 0 and s["frames_out"] == s["frames_in"] >= 1201
        assert s["latency_ms"]["p99"] < 2000
        for name in ("a", "b", "c"):  # the reading subscriber got everything
            assert [m.seq for m in got[name]] == list(range(400))
        assert elapsed < 15
        stuck.close(0)
        sub.close()
        p.close()


def free_ports() -> tuple[str, str]:
    """Two loopback endpoints on free ports, chosen by the OS (to restart a server on them)."""
    ports = []
    for _ in range(2):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            ports.append(s.getsockname()[1])
    return tuple(f"tcp://127.0.0.1:{p}" for p in ports)


def test_server_restart_with_reconnecting_producer_and_subscriber():
    inp, out = free_ports()
    model = tiny()
    kp = motion(400, 5)
    server = serve(model, input=inp, output=out)
    p = Producer(inp)
    sub = Subscriber(out, ["cam"])
    probe = Subscriber(out, ["probe"])
    try:
        handshake(p, probe)
        for t in range(10):
            p.frame("cam", t, kp[t])
        first = [sub.recv(2000) for _ in range(10)]
        assert [m.seq for m in first] == list(range(10))
        server.close()
        server = serve(model, input=inp, output=out)
        # keep streaming as a live producer would; both sides reconnect by themselves
        seen = []
        deadline = time.monotonic() + 15
        t = 10
        while time.monotonic() < deadline and len(seen) < 20 and t < 400:
            p.frame("cam", t, kp[t])
            t += 1
            m = sub.recv(20)
            while m is not None:
                if isinstance(m, Skeleton):
                    seen.append(m)
                m = sub.recv(0)
        assert len(seen) >= 20, "no skeletons after the restart"
        assert all(m.seq >= 10 for m in seen)
        # a new server: the stream started over on it (out_seq counts from its first frame;
        # the subscriber may miss the first few while it reconnects, as PUB/SUB does)
        assert all(m.seq - m.out_seq >= 10 for m in seen)
        assert p.errors == []
    finally:
        p.close()
        sub.close()
        probe.close()
        server.close()


def test_decoded_messages_are_exactly_what_was_published():
    """Skeleton/StreamEnd.to_msg() give back every published key and value, in order."""
    kp = motion(3, 8)
    with serve(tiny()) as server:
        sub = Subscriber(server.output_endpoint)
        prod = Producer(server.input_endpoint)
        handshake(prod, sub)
        raw = zmq.Context.instance().socket(zmq.SUB)
        raw.setsockopt(zmq.SUBSCRIBE, P.topic("raw"))
        raw.connect(server.output_endpoint)
        time.sleep(0.3)  # let the subscription reach the publisher
        for t in range(3):
            prod.frame("raw", t, kp[t])
        prod.end("raw")
        payloads = []
        while raw.poll(5000) and len(payloads) < 4:
            payloads.append(raw.recv_multipart()[1])
        raw.close(0)
        prod.close()
        sub.close()
    assert len(payloads) == 4
    for payload in payloads:
        msg = msgpack.unpackb(payload)
        back = decode(payload).to_msg()
        assert list(back) == list(msg)
        if msg["type"] == "skeleton":
            np.testing.assert_array_equal(back.pop("joints"), P.unpack_array(msg.pop("joints")))
        assert back == msg
    assert [decode(p).out_seq for p in payloads[:3]] == [0, 1, 2]
    assert isinstance(decode(payloads[3]), StreamEnd) and decode(payloads[3]).published == 3


def test_push_producers_and_stats_and_ping():
    with serve(tiny(), pull=ANY) as server:
        sub = Subscriber(server.output_endpoint)
        dealer = Producer(server.input_endpoint)
        handshake(dealer, sub)
        push = zmq.Context.instance().socket(zmq.PUSH)
        push.setsockopt(zmq.LINGER, 1000)
        push.connect(server.pull_endpoint)
        kp = motion(12, 6)
        for t in range(12):
            push.send(P.encode(P.frame_msg("pushed", t, time.time(), kp[t])))
        push.send(b"\xc1")  # an error from a PUSH producer is only counted
        push.send(P.encode({"v": 1, "type": "end", "stream": "pushed"}))
        got, _ = collect(sub, ["pushed"])
        assert [m.seq for m in got["pushed"]] == list(range(12))
        pong = dealer.request("ping")
        assert pong["type"] == "pong" and abs(pong["t_server"] - time.time()) < 5  # epoch s
        s = dealer.request("stats")["stats"]
        for key in ("frames_in", "frames_out", "frames_dropped", "errors", "batch_mean",
                    "latency_ms", "server_ms", "compute_ms", "streams_active", "mode", "window"):
            assert key in s
        assert s["errors"] == {"bad_msgpack": 1}
        assert s["latency_ms"]["p50"] is not None and s["latency_ms"]["p99"] >= 0
        push.close()
        dealer.close()
        sub.close()


def run_compute(model, items, **cfg):
    """Drive the compute loop synchronously on a list of queue items; return what it publishes."""
    cfg.setdefault("max_latency_ms", 0.0)
    cfg.setdefault("smooth", "off")  # as serve(): the lifting path on the 2D as it comes
    server = Server(model, ServerConfig(height_m=HEIGHT, **cfg), "cpu", log=lambda line: None)
    server._build(cfg.get("backend") or "eager")
    for it in items:
        server._frames.put(it)
    server._frames.put(STOP)
    server._compute_loop()  # returns after STOP
    out = []
    while not isinstance(it := server._out.get_nowait(), Stop):
        assert isinstance(it, (SkeletonBatch, Ended)), it
        out.append(it)
    server.ctx.term()
    return out, server


def frames(name, kp, start=0):
    return [FrameIn(P.Frame(name, start + t, 1.0 + t, kp[t, :, :2], kp[t, :, 2]), 2.0 + t)
            for t in range(len(kp))]


def published(out, name):
    rows = [(seq, j) for it in out if isinstance(it, SkeletonBatch)
            for n, seq, j in zip(it.streams, it.seq, it.joints) if n == name]
    return [r[0] for r in rows], np.stack([r[1] for r in rows]) if rows else None


def test_compute_loop_skips_frames_beyond_the_lag_limit():
    """A burst longer than --max-lag in one tick: the oldest frames are skipped and counted,
    the rest still equal offline inference (their windows are intact)."""
    model = tiny("causal")
    kp = motion(60, 7)
    out, server = run_compute(model, frames("a", kp) + [EndIn("a", "end")], backlog=20)
    seqs, joints = published(out, "a")
    oldest = 60 - (9 + 20) + 8  # n - capacity + (window - 1)
    assert seqs == list(range(oldest, 60))
    np.testing.assert_allclose(joints, offline(model, kp)[oldest:], atol=2e-5)
    end = [it for it in out if isinstance(it, Ended)][0]
    assert end == Ended("a", "end", published=60 - oldest, frames=60, dropped=oldest)
    assert server.stats.snapshot()["frames_dropped"] == oldest


def test_compute_loop_stream_ending_and_restarting_in_one_tick():
    """`end` then a new first frame of the same id, with every slot taken: the old stream is
    flushed (centred: its last frames), then the new one starts from scratch."""
    model = tiny("centred")
    a, b = motion(12, 8), motion(5, 9)
    items = frames("s", a) + [EndIn("s", "end")] + frames("s", b, start=100) + \
        [EndIn("s", "end")]
    out, _ = run_compute(model, items, max_streams=1)
    rows = [(seq, j) for it in out if isinstance(it, SkeletonBatch)
            for seq, j in zip(it.seq, it.joints)]
    assert [r[0] for r in rows] == list(range(12)) + list(range(100, 105))
    got = np.stack([r[1] for r in rows])
    np.testing.assert_allclose(got[:12], offline(model, a), atol=2e-5)
    np.testing.assert_allclose(got[12:], offline(model, b), atol=2e-5)
    assert [it.published for it in out if isinstance(it, Ended)] == [12, 5]
    # out_seq counts from 0 again for the re-created stream
    out_seq = [int(o) for it in out if isinstance(it, SkeletonBatch) for o in it.out_seq]
    assert out_seq == list(range(12)) + list(range(5))


def wait_for(cond, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_record_2d_writes_what_was_accepted_as_a_views_file(tmp_path):
    """`--record-2d`: each stream's accepted frames (a refused duplicate left out), in H36M-17
    order with confidences, its frame rate from the capture times and its camera matrix; the
    file is what `streamlift adapt` reads."""
    from streamlift.data.views import load_views
    from streamlift.skeleton import MPII16

    K = np.array([[1000, 0, 320], [0, 1000, 240], [0, 0, 1]], np.float32)
    a, b = motion(12, 1), motion(8, 2)[:, :MPII16.num_joints]
    out = tmp_path / "mine.npz"
    with serve(tiny(), record_2d=out) as server:
        prod = Producer(server.input_endpoint)
        for t in range(12):
            prod.frame("a", t, a[t], t_capture=1000 + t / 25, intrinsics=K.tolist())
        prod.frame("a", 11, a[11], t_capture=2000.0)  # a duplicate: refused, not recorded
        for t in range(8):
            prod.frame("b", t, b[t], t_capture=1000 + t / 30, layout="mpii16")
        assert [e["code"] for e in prod.poll_errors(2000)] == ["duplicate_seq"]
        wait_for(lambda: server.stats.frames_in == 20)
        prod.close()
    views = load_views(out)
    assert set(views) == {"a", "b"}
    np.testing.assert_allclose(views["a"].kp2d, a, atol=1e-4)
    np.testing.assert_allclose(views["b"].kp2d, to_h36m(b, "mpii16"), atol=1e-3)
    assert views["a"].fps == pytest.approx(25, rel=1e-3) and views["b"].fps == pytest.approx(30, rel=1e-3)
    np.testing.assert_array_equal(views["a"].intrinsics, K)
    assert views["b"].intrinsics is None and views["a"].kp3d is None
    capped = tmp_path / "capped.npz"
    with serve(tiny(), record_2d=capped, record_2d_max_frames=5) as server:
        prod = Producer(server.input_endpoint)
        for t in range(12):
            prod.frame("a", t, a[t])
        wait_for(lambda: server.stats.frames_in == 12)
        prod.close()
    assert load_views(capped)["a"].frames == 5
