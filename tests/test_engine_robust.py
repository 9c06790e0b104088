"""The server no message can stop: a live fuzz test, the messages that once crashed it, a bug in
one message or tick, fair overload (newest wins), restarts subscribers can see (epoch,
heartbeat) and CurveZMQ authentication with stream ownership."""

import os
import stat
import time

import msgpack
import numpy as np
import pytest
import zmq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streamlift.serve import protocol as P
from streamlift.serve.clients import Producer, Subscriber
from streamlift.serve.curve import CurveKeys, make_keys
from streamlift.serve.messages import Gaps, Heartbeat, Skeleton, StreamEnd
from streamlift.serve.server import Server, ServerConfig
from streamlift.serve.shed import TickCost, plan
from test_engine_server import (ANY, collect, free_ports, handshake, motion, offline, serve,
                                tiny)

KP = motion(1, 0)[0]


def wait_errors(p: Producer, n: int, timeout: float = 10.0) -> list[str]:
    deadline = time.monotonic() + timeout
    while len(p.errors) < n and time.monotonic() < deadline:
        p.poll_errors(100)
    return [e["code"] for e in p.errors]


# --------------------------------------------------------------------------------- fuzzing
def _frame(**over) -> dict:
    return dict(P.frame_msg("fz", 1, 1.7e9, KP), **over)


_leaf = st.one_of(st.none(), st.booleans(), st.integers(-2**63, 2**64 - 1),
                  st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=12),
                  st.binary(max_size=64))
_key = st.one_of(st.text(max_size=6), st.integers(-3, 3), st.binary(max_size=3))
_any = st.recursive(_leaf, lambda c: st.lists(c, max_size=20)
                    | st.dictionaries(_key, c, max_size=4), max_leaves=60)
_fields = ["v", "type", "stream", "seq", "t_capture", "layout", "kp", "conf", "image_size",
           "intrinsics"]


def _pack(d) -> bytes:
    return msgpack.packb(d, use_bin_type=True, strict_types=False)


_mutated = st.builds(lambda k, v: _pack(_frame(**{k: v})), st.sampled_from(_fields), _any)
_dropped = st.sampled_from(_fields).map(lambda k: _pack({a: b for a, b in _frame().items()
                                                        if a != k}))
_extra_key = st.builds(lambda k, v: _pack({**_frame(), k: v}),
                       st.one_of(st.integers(-100, 100), st.binary(max_size=4)), _leaf)
_num = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-2**63, 2**64 - 1),
                 st.booleans())
_shape = st.lists(st.integers(0, 20), min_size=1, max_size=3)
_array = st.one_of(  # arrays of every form, shape, dtype and value
    st.recursive(_num, lambda c: st.lists(c, max_size=18), max_leaves=80),
    st.fixed_dictionaries({"dtype": st.sampled_from(["<f4", "<f8", ">f4", 4, None]),
                           "shape": st.one_of(_shape, _any), "data": st.binary(max_size=300)}),
    st.builds(lambda shape, x: P.pack_array(np.full(shape, x, np.float32)), _shape,
              st.floats(width=32, allow_nan=True, allow_infinity=True)))
_arrays = st.builds(lambda k, v: _pack(_frame(**{k: v})),
                    st.sampled_from(["kp", "conf", "image_size", "intrinsics"]), _array)
_numbers = st.builds(lambda k, v: _pack(_frame(**{k: v})), st.sampled_from(["seq", "t_capture"]),
                     _num)
_truncated = st.integers(0, len(_pack(_frame())) - 1).map(lambda n: _pack(_frame())[:n])
_nested = st.integers(1, 3000).map(lambda d: b"\x91" * d + b"\x01")
# large ones, always sent (outside hypothesis: their reprs would be megabytes)
HUGE = [_pack(_frame(kp="x" * 70000)), _pack(_frame(pad=[0] * 70000)),
        _pack(_frame(kp=[[1.0] * 2] * 8000)), _pack(_frame(stream="s" * 5000)),
        _pack(_frame(kp=[[[1.0] * 2] * 17] * 60)), _pack(_frame(seq=2**63)),
        _pack(_frame(layout=["h36m17"])), b"\x91" * 100000]
_junk = st.one_of(st.binary(max_size=300), _mutated, _arrays, _arrays, _numbers, _dropped,
                  _extra_key, _truncated, _nested,
                  st.lists(st.binary(min_size=1, max_size=20), min_size=2, max_size=3))  # multipart
# (an empty first frame of several is a REQ-style envelope, answered with it: not junk)


def _expected(msg) -> str | None:
    """The code the server must answer, or None when the message is valid (it is not sent)."""
    if isinstance(msg, list):
        return "bad_message"
    try:
        P.decode_request(msg)
    except P.ProtocolError as e:
        return e.code
    return None


@settings(max_examples=5, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(junk=st.lists(_junk, min_size=120, max_size=120))
def test_fuzzed_messages_never_stop_the_server_nor_touch_valid_streams(junk):
    """Malformed messages of every field and type on both ingest sockets, interleaved with
    three valid streams: each bad DEALER message gets its own error, in order; PULL ones are
    counted; the server stays up and the valid streams equal offline inference."""
    bad = [(m, code) for m in junk + HUGE if (code := _expected(m)) is not None]
    model = tiny()
    kp = {f"v{i}": motion(50, 10 + i) for i in range(3)}
    with serve(model, pull=ANY) as server:
        sub = Subscriber(server.output_endpoint)
        good, fuzzer = Producer(server.input_endpoint), Producer(server.input_endpoint)
        push = zmq.Context.instance().socket(zmq.PUSH)
        push.connect(server.pull_endpoint)
        handshake(good, sub)
        t = 0
        for i, (m, _) in enumerate(bad):
            if isinstance(m, list):
                fuzzer.sock.send_multipart(m)
            else:
                fuzzer.send_raw(m)
                push.send(m)
            if i % 3 == 0 and t < 50:  # a valid frame of each stream every third bad message
                for s, x in kp.items():
                    good.frame(s, t, x[t])
                t += 1
        for t in range(t, 50):
            for s, x in kp.items():
                good.frame(s, t, x[t])
        for s in kp:
            good.end(s)
        assert wait_errors(fuzzer, len(bad)) == [c for _, c in bad]
        got, ended = collect(sub, list(kp))
        for s, x in kp.items():
            assert [m.out_seq for m in got[s]] == list(range(50)) and ended[s].dropped == 0
            np.testing.assert_allclose(np.stack([m.joints for m in got[s]]), offline(model, x),
                                       atol=2e-5)
        pushed = sum(not isinstance(m, list) for m, _ in bad)
        deadline = time.monotonic() + 10
        while (n := sum(good.request("stats")["stats"]["errors"].values())) < len(bad) + pushed \
                and time.monotonic() < deadline:
            time.sleep(0.05)
        assert n == len(bad) + pushed  # every message answered or counted, nothing else
        assert good.errors == [] and "internal_error" not in good.request("stats")["stats"]["errors"]
        push.close(0)
        for p in (good, fuzzer):
            p.close()
        sub.close()


def test_the_messages_that_once_killed_the_server_are_refused():
    """A `layout` that is a list or a map (unhashable: the ingest thread died) and a `seq` of
    2^63 (accepted, then OverflowError in the ring on the compute thread)."""
    with serve(tiny(), pull=ANY) as server:
        p = Producer(server.input_endpoint)
        push = zmq.Context.instance().socket(zmq.PUSH)
        push.connect(server.pull_endpoint)
        for m in (_frame(layout=["h36m17"]), _frame(layout={"a": 1}), _frame(seq=2**63),
                  _frame(seq=2**64 - 1)):
            p.send(m)
            push.send(P.encode(m))
        assert wait_errors(p, 4) == ["bad_message", "bad_message", "bad_value", "bad_value"]
        time.sleep(0.7)  # the compute thread had ~0.6 s to fail
        p.frame("after", 0, KP)
        assert p.request("ping")["type"] == "pong" and server.wait(0) is False
        push.close(0)
        p.close()


def test_a_bug_on_one_message_or_tick_costs_only_that(monkeypatch):
    """An unexpected exception answers `internal_error`, is logged with its stream and
    counted, and the server and every other stream carry on."""
    lines = []
    model = tiny()
    server = Server(model, ServerConfig(input=ANY, output=ANY, threads=1, max_latency_ms=0,
                                        smooth="off"),  # compared with lift_sequence
                    "cpu", log=lines.append)
    admit, push = server._admit, None

    def flaky_admit(f, user, streams):
        if f.stream == "boom":
            raise RuntimeError("a bug")
        return admit(f, user, streams)

    monkeypatch.setattr(server, "_admit", flaky_admit)
    with server.start():
        push = server.ring.push

        def flaky_push(st, *a, **kw):
            if st.name == "crash":
                raise KeyError("another bug")
            return push(st, *a, **kw)

        monkeypatch.setattr(server.ring, "push", flaky_push)
        sub = Subscriber(server.output_endpoint)
        p = Producer(server.input_endpoint)
        handshake(p, sub)
        kp = motion(20, 2)
        for t in range(20):
            p.frame("ok", t, kp[t])
            if t == 5:
                p.frame("boom", 0, KP)
                p.frame("crash", 0, KP)
        p.end("ok")
        assert wait_errors(p, 1) == ["internal_error"]
        got, _ = collect(sub, ["ok"])
        np.testing.assert_allclose(np.stack([m.joints for m in got["ok"]]), offline(model, kp),
                                   atol=2e-5)
        assert p.request("stats")["stats"]["errors"] == {"internal_error": 2}
        assert any("ingest" in line and "RuntimeError: a bug" in line for line in lines)
        assert any("compute (stream crash)" in line and "KeyError" in line for line in lines)
        p.close()
        sub.close()


# --------------------------------------------------------------------------------- overload
def test_a_stream_that_keeps_sending_is_never_idle_even_when_refused():
    """Frames refused as `overloaded` (or as resends) still show the stream is alive."""
    server = Server(tiny(), ServerConfig(queue_limit=0, idle_timeout_s=1.0), "cpu",
                    log=lambda line: None)
    streams = {}
    server.cfg.queue_limit = 10
    server._admit(P.Frame("a", 0, 1.0, KP, np.ones(17, np.float32)), None, streams)
    server.cfg.queue_limit = 0
    streams["a"].last_seen -= 5.0  # silent for 5 s ...
    for seq, code in ((1, "overloaded"), (0, "duplicate_seq")):
        with pytest.raises(P.ProtocolError) as e:
            server._admit(P.Frame("a", seq, 1.0, KP, np.ones(17, np.float32)), None, streams)
        assert e.value.code == code
        assert time.monotonic() - streams["a"].last_seen < 0.5  # ... but it sends again
    server._evict_idle(streams, time.monotonic())
    assert "a" in streams and server._frames.get_nowait().frame.seq == 0
    server.ctx.term()


def _overloaded(n_streams: int, frames: int, cost_s: float, latency_ms: float, spacing: float):
    """A compute loop at a tick with `frames` ready frames per causal stream, received every
    `spacing` s up to now, and a lifting cost of `cost_s` per window."""
    from streamlift.serve.ring import RingStore
    from streamlift.serve.runner import Runner, skeleton_fn

    model = tiny()
    server = Server(model, ServerConfig(max_latency_ms=latency_ms), "cpu", log=lambda l: None)
    server.runner = Runner(skeleton_fn(model, 1.7), 9, 17, "cpu", "eager")
    server.ring = RingStore(server.cfg.max_streams, 9 + server.cfg.backlog)
    now, sts = time.time(), []
    for i in range(n_streams):
        st = server.ring.open(f"s{i}")
        for k in range(frames):  # stream i is i ms older than stream 0
            t = now - spacing * (frames - 1 - k) - 1e-3 * i
            server.ring.push(st, KP[:, :2], KP[:, 2], k, t, t)
        sts.append(st)
    server._cost = linear_cost(cost_s)
    return server, sts, now


def linear_cost(per_window: float, overhead: float = 0.0) -> TickCost:
    cost = TickCost()
    cost.add(1, overhead + per_window)
    cost.add(2, overhead + 2 * per_window)
    return cost


def _lifted(server) -> dict:
    out = {}
    while not server._out.empty():
        b = server._out.get_nowait()
        for name, o in zip(b.streams, b.out_seq):
            out.setdefault(name, []).append(int(o))
    return out


def test_overload_sheds_stale_frames_and_shares_the_tick_fairly():
    """4 streams x 20 frames, frame k received 10 (19 - k) ms ago (stream i another i ms
    earlier); bound 100 ms; 1.02 ms per window; the runner lifts 32 windows per call and
    publishes each call's chunk when it is done. A tick may lift 49 windows (half the bound):
    each stream gets its newest 12 (frames 8-19; 13 each would be 52). The first chunk is out
    32.6 ms from now: frames up to 12 (30 ms or less before their 100 ms are up) would be late;
    frame 13 of the oldest stream has 37 ms left, so each stream publishes 13-19 (28 windows,
    one chunk) and sheds 0-12."""
    server, sts, _ = _overloaded(4, 20, 1.02e-3, 100.0, 0.01)
    assert server.runner.max_batch == 32
    server._tick(sts)
    out = _lifted(server)
    for i, st in enumerate(sts):
        assert out[f"s{i}"] == list(range(13, 20))  # out_seq: the frame index, gaps visible
        assert st.dropped == 13 and st.next_target == 20 and st.published == 7
    s = server.stats.snapshot()
    assert s["frames_shed"] == 52 == s["frames_dropped"]
    assert s["shed_per_stream"] == {f"s{i}": 13 for i in range(4)}
    server.ctx.term()


def test_overload_with_less_than_a_frame_per_stream_serves_the_longest_waiting_first():
    """A budget of 3 windows (16.6 ms each against half of 100 ms) for 10 streams: the 3 that
    waited longest publish their newest frame (their older two are shed), the other 7 wait,
    untouched, and go first next tick."""
    server, sts, _ = _overloaded(10, 3, 0.0166, 100.0, 0.001)
    server._tick(sts)
    first = _lifted(server)
    assert first == {"s7": [2], "s8": [2], "s9": [2]}  # stream i is i ms older than stream 0
    assert sorted(st.name for st in server._deferred.values()) == [f"s{i}" for i in range(7)]
    assert all(st.next_target == 0 and st.dropped == 0 for st in server._deferred.values())
    deferred = list(server._deferred.values())
    server._deferred.clear()
    server._cost = linear_cost(0.0166)
    server._tick(deferred)
    assert _lifted(server) == {"s4": [2], "s5": [2], "s6": [2]}
    server.ctx.term()


def test_frames_beyond_max_lag_of_a_deferred_stream_are_dropped_once():
    """Streams whose oldest frames have left the ring and that then wait a tick: those frames
    are counted when they are dropped, not again when the stream comes back (a stream's
    published + dropped is its frame count, and its out_seq gaps say the same)."""
    n = 9 + ServerConfig().backlog + 10  # 10 frames more than _overloaded's ring holds
    server, sts, _ = _overloaded(10, n, 0.0166, 100.0, 0.001)
    lost = n - server.ring.capacity + server.back  # targets whose windows left the ring
    server._tick(sts)
    deferred = list(server._deferred.values())
    assert len(deferred) == 7
    assert all(st.dropped == lost and st.next_target == lost for st in deferred)
    server._deferred.clear()
    server._cost = linear_cost(0.0166)
    server._tick(deferred)
    server._tick(deferred)  # nothing new: nothing more dropped
    out = _lifted(server)
    for st in sts:
        assert st.published + st.dropped == n, (st.name, st.published, st.dropped)
        assert len(out[st.name]) == st.published and out[st.name][-1] == n - 1
    server.ctx.term()


def test_tick_cost_is_a_fixed_cost_per_call_plus_one_per_window():
    cost = TickCost()
    for n in (1, 4, 16, 8, 1):
        cost.add(n, 0.02 + 0.0005 * n)
    np.testing.assert_allclose(cost(np.array([1, 10, 100])), [0.0205, 0.025, 0.07])
    one = TickCost()
    one.add(3, 0.03)  # one batch size seen: proportional
    assert one(6) == pytest.approx(0.06)


def test_a_costly_call_but_cheap_windows_sheds_nothing_that_is_in_time():
    """20 ms per call, 0.5 ms per window: 2 streams with 2 frames each (30 ms old and new)
    all fit a 150 ms bound. Costed per window at batch 1 (20.5 ms), a tick would seem to hold
    only 3 windows and an in-time frame would be shed."""
    now = 1000.0
    t = [np.array([now - 0.03, now]), np.array([now - 0.03, now - 0.001])]
    assert plan(t, [False, False], now, 0.15, linear_cost(0.0005, 0.02)) == [0, 0]
    assert plan(t, [False, False], now, 0.15, linear_cost(0.0205)) == [1, 1]  # the old rule
    # late frames still go, all but the newest: 200 ms old against a 150 ms bound
    late = [np.array([now - 0.2, now - 0.19, now])]
    assert plan(late, [False], now, 0.15, linear_cost(0.0005, 0.02)) == [2]
    assert plan([np.array([now - 1.0])], [False], now, 0.15, linear_cost(0.001)) == [0]


def test_no_shedding_without_a_latency_bound():
    server, sts, _ = _overloaded(4, 20, 1e-3, 0.0, 0.01)
    server._tick(sts)
    assert all(v == list(range(20)) for v in _lifted(server).values())
    assert server.stats.snapshot()["frames_shed"] == 0
    server.ctx.term()


def test_overload_live_bounds_latency_and_every_stream_is_served():
    """Frames sent much faster than a deliberately slow lift: shed frames are gaps in out_seq
    (Gaps counts them), every stream is served until its last frame, none is evicted, and
    the server's latency stays near its bound instead of growing with the backlog."""
    model = tiny()
    with serve(model, max_latency_ms=100.0, idle_timeout_s=1.0) as server:
        lift = server.runner.fn

        def slow(kp, conf):  # ~4 ms per window: at most ~250 windows/s
            time.sleep(0.004 * len(kp))
            return lift(kp, conf)

        server.runner.fn = slow
        sub = Subscriber(server.output_endpoint)
        p = Producer(server.input_endpoint)
        handshake(p, sub)
        kp = motion(300, 6)
        t0 = time.monotonic()
        for t in range(300):  # 8 streams x ~500 fps: ~16x what the lift keeps up with
            for s in range(8):
                p.frame(f"s{s}", t, kp[t])
            time.sleep(0.002)
        for s in range(8):
            p.end(f"s{s}")
        got, ended = collect(sub, [f"s{s}" for s in range(8)], timeout=30)
        for s in range(8):
            gaps, e = Gaps(from_start=True), ended[f"s{s}"]
            for m in got[f"s{s}"]:
                gaps.add(m)
            gaps.add(e)  # the frames shed after the last skeleton count too
            assert gaps.total == e.dropped == 300 - e.published
            assert e.reason == "end" and got[f"s{s}"][-1].seq == 299 and e.dropped > 0
        stats = p.request("stats")["stats"]
        assert stats["streams_evicted"] == 0
        # shed to keep the bound, or past --max-lag while deferred: each frame counted once
        assert stats["frames_dropped"] == sum(e.dropped for e in ended.values())
        assert 0 < stats["frames_shed"] <= stats["frames_dropped"]
        assert stats["server_ms"]["p99"] < 400  # bound 100 ms; without shedding: seconds
        assert time.monotonic() - t0 < 20
        p.close()
        sub.close()


# ----------------------------------------------------------------------- restarts you can see
def test_every_message_carries_the_run_s_epoch_and_heartbeats_come():
    with serve(tiny(), heartbeat_s=0.2) as server:
        sub = Subscriber(server.output_endpoint, heartbeats=True)
        p = Producer(server.input_endpoint)
        handshake(p, sub)
        for t in range(3):
            p.frame("e", t, KP)
        p.end("e")
        msgs, deadline = [], time.monotonic() + 5
        while time.monotonic() < deadline and sum(isinstance(m, Heartbeat) for m in msgs) < 3:
            if (m := sub.recv(100)) is not None:
                msgs.append(m)
        mine = [m for m in msgs if m.stream in ("e", None)]
        assert {type(m) for m in mine} == {Skeleton, StreamEnd, Heartbeat}
        assert {m.epoch for m in mine} == {server.epoch} and 0 <= server.epoch < 2**63
        beats = [m for m in msgs if isinstance(m, Heartbeat)]
        gaps = np.diff([b.t_publish for b in beats])
        assert ((gaps > 0.1) & (gaps < 0.5)).all() and beats[-1].uptime_s > beats[0].uptime_s
        assert p.request("stats")["epoch"] == p.request("ping")["epoch"] == server.epoch
        p.close()
        sub.close()


def _until(sub, gaps, done, timeout=10.0) -> list:
    """Messages until done(message) (each added to `gaps`), bounded."""
    got, deadline = [], time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (m := sub.recv(100)) is not None:
            gaps.add(m)
            got.append(m)
            if done(m):
                return got
    raise AssertionError(f"timed out after {[type(m).__name__ for m in got]}")


def test_a_restart_is_seen_and_the_frames_lost_across_it_are_counted():
    """Server A lifts frames 0-9 and stops; frames 10-14 reach no server (the outage);
    server B, another epoch, lifts 15-24. The subscriber counts 5 lost and one restart."""
    inp, out = free_ports()
    model = tiny()
    server = serve(model, input=inp, output=out, heartbeat_s=0.2)
    sub, p, gaps = Subscriber(out, ["cam"], heartbeats=True), Producer(inp), Gaps()
    try:
        a = server.epoch
        _until(sub, gaps, lambda m: isinstance(m, Heartbeat))  # subscribed
        for t in range(10):
            p.frame("cam", t, KP)
        _until(sub, gaps, lambda m: isinstance(m, Skeleton) and m.seq == 9)
        server.close()
        server = serve(model, input=inp, output=out, heartbeat_s=0.2)
        _until(sub, gaps, lambda m: isinstance(m, Heartbeat) and m.epoch == server.epoch)
        for t in range(15, 25):
            p.frame("cam", t, KP)
        after = _until(sub, gaps, lambda m: isinstance(m, Skeleton) and m.seq == 24)
        skel = [m for m in after if isinstance(m, Skeleton)]
        assert [m.seq for m in skel] == list(range(15, 25))
        assert [m.out_seq for m in skel] == list(range(10)) and {m.epoch for m in skel} != {a}
        assert (gaps["cam"], gaps.total, gaps.restarts) == (5, 5, 1)
        assert p.errors == []
    finally:
        p.close()
        sub.close()
        server.close()


# ------------------------------------------------------------------------------------ CURVE
@pytest.fixture
def keys(tmp_path):
    make_keys(tmp_path, ["owner", "other"])
    return tmp_path


def test_keys_are_written_private_and_never_overwritten(keys):
    for name in ("server.key_secret", "owner.key_secret", "other.key_secret"):
        assert stat.S_IMODE(os.stat(keys / name).st_mode) == 0o600
    assert sorted(p.name for p in (keys / "clients").iterdir()) == ["other.key", "owner.key"]
    a = CurveKeys.load(keys / "server.key", keys / "owner.key_secret")
    b = CurveKeys.load(keys / "server.key", keys / "other.key_secret")
    assert a.server_public == b.server_public and a.public != b.public and len(a.secret) == 40
    assert (keys / "clients" / "owner.key").read_bytes().count(a.public) == 1
    assert b"secret-key" not in (keys / "clients" / "owner.key").read_bytes()
    before = (keys / "server.key_secret").read_bytes()
    with pytest.raises(ValueError, match="already exists"):
        make_keys(keys, ["new"])
    assert (keys / "server.key_secret").read_bytes() == before
    with pytest.raises(ValueError, match="public key"):
        CurveKeys.load(keys / "server.key", keys / "clients" / "owner.key")


def test_curve_only_authorised_keys_get_in_and_a_stream_belongs_to_its_key(keys):
    intruder_dir = keys / "intruder"
    make_keys(intruder_dir, ["intruder"])
    model = tiny()
    kp = motion(12, 7)
    with serve(model, curve_secret=keys / "server.key_secret",
               curve_clients=keys / "clients") as server:
        own = CurveKeys.load(keys / "server.key", keys / "owner.key_secret")
        other = CurveKeys.load(keys / "server.key", keys / "other.key_secret")
        # a key the server does not list, and a client without CURVE at all
        stranger = CurveKeys.load(keys / "server.key", intruder_dir / "intruder.key_secret")
        p = Producer(server.input_endpoint, curve=own)
        sub = Subscriber(server.output_endpoint, curve=other)
        handshake(p, sub)
        outsiders = [Producer(server.input_endpoint, curve=stranger),
                     Producer(server.input_endpoint)]
        spies = [Subscriber(server.output_endpoint, curve=stranger),
                 Subscriber(server.output_endpoint)]
        for o in outsiders:
            with pytest.raises(TimeoutError):
                o.request("ping", 0.5)
            o.frame("intrusion", 0, KP)
        rival = Producer(server.input_endpoint, curve=other)
        for t in range(12):
            p.frame("mine", t, kp[t])
        rival.frame("mine", 12, KP)  # inject into another key's stream
        rival.end("mine")  # or end it
        assert wait_errors(rival, 2) == ["forbidden", "forbidden"]
        p.end("mine")
        got, ended = collect(sub, ["mine"])
        assert [m.seq for m in got["mine"]] == list(range(12)) and ended["mine"].reason == "end"
        np.testing.assert_allclose(np.stack([m.joints for m in got["mine"]]), offline(model, kp),
                                   atol=2e-5)
        assert all(s.recv(300) is None for s in spies)  # nothing reaches an unlisted subscriber
        stats = p.request("stats")["stats"]
        assert stats["curve"] is True and stats["errors"] == {"forbidden": 2}
        for c in (p, rival, *outsiders, sub, *spies):
            c.close()


def test_curve_settings_are_checked_before_serving(keys, tmp_path):
    with pytest.raises(ValueError, match="both"):
        Server(tiny(), ServerConfig(curve_secret=keys / "server.key_secret"), "cpu")
    with pytest.raises(ValueError, match="public key"):
        Server(tiny(), ServerConfig(curve_secret=keys / "server.key",
                                    curve_clients=keys / "clients"), "cpu")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no client public keys"):
        Server(tiny(), ServerConfig(curve_secret=keys / "server.key_secret",
                                    curve_clients=tmp_path / "empty"), "cpu")


def test_binding_beyond_loopback_warns_only_without_curve(keys):
    for curve, warned in (({}, True), ({"curve_secret": keys / "server.key_secret",
                                        "curve_clients": keys / "clients"}, False)):
        lines = []
        cfg = ServerConfig(input="tcp://0.0.0.0:*", output="tcp://127.0.0.1:*", threads=1,
                           **curve)
        with Server(tiny(), cfg, "cpu", log=lines.append):
            pass
        assert any("without authentication or encryption" in line for line in lines) == warned


def test_watch_says_when_the_server_goes_silent_comes_back_and_restarts(capsys, monkeypatch):
    from streamlift.serve import tools

    clock = [100.0]
    monkeypatch.setattr(tools.time, "monotonic", lambda: clock[0])
    alive = tools._Liveness(Gaps(), silence_s=3.0)
    beat = lambda e: Heartbeat(epoch=e, t_publish=1.7e9, uptime_s=1.0, streams_active=0)  # noqa
    alive.heard(beat(1))
    clock[0] += 2.9
    alive.tick()
    assert capsys.readouterr().err == ""  # quiet for less than 3 s: nothing to say
    clock[0] += 0.2
    alive.tick()
    alive.tick()  # said once
    assert capsys.readouterr().err.count("no heartbeat from the server for 3 s") == 1
    clock[0] += 4.0
    alive.heard(beat(2))
    err = capsys.readouterr().err
    assert "the server is back after 7.1 s" in err and "restarted (epoch 1 -> 2)" in err
    alive.heard(beat(2))
    assert capsys.readouterr().err == "" and alive.gaps.restarts == 1
