"""The engine with a streaming lifter: per-slot states stepped per tick, caught up, re-primed and
cleared, publishing exactly what offline lifting (`lift_sequence`) gives."""

import time

import numpy as np
import pytest
import torch

from streamlift.lifter.stream import StreamConfig, StreamingNRSfMFormer
from streamlift.lifter.traced import TracedStep
from streamlift.serve.clients import Producer, Subscriber
from streamlift.serve import protocol as P
from streamlift.serve.messages import EndIn, Ended, FrameIn, SkeletonBatch
from streamlift.serve.server import CATCH_UP, Server, ServerConfig
from streamlift.serve.runner import StepRunner

from test_engine_server import (HEIGHT, collect, frames, handshake, motion, offline, published,
                                run_compute, serve)


def tiny_stream(seed=0, lookahead=0) -> StreamingNRSfMFormer:
    torch.manual_seed(seed)
    m = StreamingNRSfMFormer(StreamConfig(dim=32, depth=1, heads=2, window=9,
                                          lookahead=lookahead)).eval()
    with torch.no_grad():  # distance biases and deformations that matter, as trained ones do
        for blk in m.temporal:
            blk.attn.bias.normal_(0, 1.0)
        m.head_D.weight.normal_(0, 0.3)
        m.head_R[-1].weight.normal_(0, 0.3)
    return m


@pytest.mark.parametrize("backend,sizes,lookahead", [("eager", None, 0), ("standin", (1, 2, 4), 0),
                                                    ("eager", None, 3)])
def test_live_streams_equal_offline_streaming_inference(backend, sizes, lookahead):
    """Streams of different lengths, interleaved, some ending while others run: every frame
    published equals the offline chunk forward; 'standin' pads steps to a ladder whose largest
    size is below the stream count (several calls per round, padding into the scratch row);
    with a lookahead, a stream's last frames are published when it ends, as offline pads."""
    model = tiny_stream(lookahead=lookahead)
    seqs = {f"s{i}": motion(4 + 9 * i, i) for i in range(7)}
    kw = {"backend": backend} | ({"sizes": sizes} if sizes else {})
    with serve(model, **kw) as server:
        sub = Subscriber(server.output_endpoint)
        prod = Producer(server.input_endpoint)
        handshake(prod, sub)
        for t in range(max(len(v) for v in seqs.values())):
            for s, kp in seqs.items():
                if t < len(kp):
                    prod.frame(s, t, kp[t])
                elif t == len(kp):
                    prod.end(s)
            time.sleep(0.003)  # live pacing: most ticks step each stream's one new frame
        for s, kp in seqs.items():
            if len(kp) == max(len(v) for v in seqs.values()):
                prod.end(s)
        got, ended = collect(sub, list(seqs))
        assert prod.poll_errors(50) == []
        prod.close()
        sub.close()
        calls = dict(server.runner.calls)
    for s, kp in seqs.items():
        assert [m.out_seq for m in got[s]] == list(range(len(kp)))
        assert ended[s].published == len(kp) and ended[s].dropped == 0
        np.testing.assert_allclose(np.stack([m.joints for m in got[s]]), offline(model, kp),
                                   atol=2e-5)
    if sizes:  # every step call ran a captured size (the padding itself: the test below)
        assert calls and set(calls) <= set(sizes)


def _server(model, **cfg):
    cfg.setdefault("smooth", "off")  # as serve(): the lifting path on the 2D as it comes
    server = Server(model, ServerConfig(height_m=HEIGHT, max_latency_ms=0.0, **cfg), "cpu",
                    log=lambda line: None)
    server._build("eager")
    return server


def _tick(server, st, kp, upto, next_target=None):
    """Push frames st.n .. upto - 1 of kp into the ring, optionally skip targets (as shedding
    does), run one tick; return {frame: joints} published."""
    for t in range(st.n, upto):
        server.ring.push(st, kp[t, :, :2], kp[t, :, 2], t, 1.0 + t, 2.0 + t)
    if next_target is not None:
        st.next_target = next_target
    server._tick([st])
    out = {}
    while not server._out.empty():
        it = server._out.get_nowait()
        out.update({int(o): j for o, j in zip(it.out_seq, it.joints)})
    return out


@pytest.mark.parametrize("a", [0, 3])
def test_state_steps_catches_up_and_reprimes_exactly(a):
    """One stream's state through every path of a tick: a long first run (chunk forward), one
    new frame (a step), skipped targets within the priming span (steps through the skipped
    frames without publishing them), a gap beyond it (cleared and re-primed from the ring);
    each published frame equals the uninterrupted stream's. With a lookahead of `a` frames,
    target t is lifted by the step of frame t + a, so every tick has `a` frames more."""
    model = tiny_stream(1, lookahead=a)
    prime = model.prime_frames()  # 24 for depth 1, window 9
    kp = motion(200, 3)
    want = offline(model, kp)
    server = _server(model, backlog=64)
    st = server.ring.open("a")
    steps = []
    real_step = server.runner.step
    server.runner.step = lambda slots, k, c: steps.append(len(slots)) or real_step(slots, k, c)
    got = _tick(server, st, kp, 40 + a)  # 40 > CATCH_UP frames: one chunk forward
    assert sorted(got) == list(range(40)) and steps == []
    got |= _tick(server, st, kp, 41 + a)  # one step
    assert steps == [1]
    shed = _tick(server, st, kp, 46 + a, next_target=44)  # 41..43 skipped: stepped, not published
    assert sorted(shed) == [44, 45] and len(steps) == 1 + 5
    got |= shed
    far = _tick(server, st, kp, 150 + a, next_target=140)  # gap > prime: re-primed from 116 + a
    assert sorted(far) == list(range(140, 150)) and st.fed == 150 + a
    got |= far
    frames_ = sorted(got)
    np.testing.assert_allclose(np.stack([got[f] for f in frames_]), want[frames_], atol=2e-5)
    assert 140 + a - prime >= 150 + a - server.ring.capacity  # the priming frames were in the ring


@pytest.mark.parametrize("a", [0, 3])
def test_a_stream_shed_beyond_catch_up_starts_afresh_at_its_target(a):
    """Frames shed for latency: a few are stepped through (exact), but more than CATCH_UP
    would cost what shedding saved, so the stream starts over at its first target, exactly
    as a new stream starting there (with a lookahead of `a`: stepped on to frame target + a
    before the target is published)."""
    model = tiny_stream(1, lookahead=a)
    kp = motion(120, 3)
    want = offline(model, kp)
    server = _server(model, backlog=64)
    st = server.ring.open("a")
    _tick(server, st, kp, 40 + a)
    st.shed = True  # as Server._shed marks a stream whose frames it dropped
    near = _tick(server, st, kp, 50 + a, next_target=40 + CATCH_UP - 2)
    assert sorted(near) == list(range(40 + CATCH_UP - 2, 50)) and not st.shed
    np.testing.assert_allclose(np.stack([near[f] for f in sorted(near)]),
                               want[sorted(near)], atol=2e-5)
    lo = 50 + CATCH_UP + 5
    st.shed = True
    far = _tick(server, st, kp, lo + 10 + a, next_target=lo)
    assert sorted(far) == list(range(lo, lo + 10)) and st.fed == lo + 10 + a
    fresh = offline(model, kp[lo:lo + 10 + a])[:10]  # a stream that starts at frame lo
    np.testing.assert_allclose(np.stack([far[f] for f in sorted(far)]), fresh, atol=2e-5)
    assert not np.allclose(fresh, want[lo:lo + 10], atol=1e-3)  # which is not the exact state
    st.shed = False  # not shed: the same gap is stepped through, exactly
    lo2 = lo + 10 + CATCH_UP + 5
    exact = _tick(server, st, kp, lo2 + 3 + a, next_target=lo2)
    ref = offline(model, kp[lo:lo2 + 3 + a])[lo2 - lo:lo2 - lo + 3]  # the stream as restarted at lo
    np.testing.assert_allclose(np.stack([exact[f] for f in sorted(exact)]), ref, atol=2e-5)


def test_rounds_step_streams_with_different_backlogs_together():
    """Three streams with 1, 3 and CATCH_UP new frames in one tick: rounds of steps, each round
    one batch over the streams that still have a frame."""
    model = tiny_stream(2)
    server = _server(model)
    kps = [motion(30, 10 + i) for i in range(3)]
    sts = [server.ring.open(f"s{i}") for i in range(3)]
    for st, kp in zip(sts, kps):  # three new streams in one tick: their states start together
        for t in range(12):
            server.ring.push(st, kp[t, :, :2], kp[t, :, 2], t, 1.0 + t, 2.0 + t)
    server._tick(sts)
    first = []
    while not server._out.empty():
        first.append(server._out.get_nowait())
    for st, kp in zip(sts, kps):
        np.testing.assert_allclose(published(first, st.name)[1], offline(model, kp[:12]), atol=2e-5)
    batches = []
    real_step = server.runner.step
    server.runner.step = lambda slots, k, c: batches.append(len(slots)) or real_step(slots, k, c)
    for st, kp, n in zip(sts, kps, (1, 3, CATCH_UP)):
        for t in range(12, 12 + n):
            server.ring.push(st, kp[t, :, :2], kp[t, :, 2], t, 1.0 + t, 2.0 + t)
    server._tick(sts)
    assert batches == [3, 2, 2] + [1] * (CATCH_UP - 3)
    out = []
    while not server._out.empty():
        out.append(server._out.get_nowait())
    for st, kp, n in zip(sts, kps, (1, 3, CATCH_UP)):
        seqs, joints = published(out, st.name)
        assert seqs == list(range(12, 12 + n))
        np.testing.assert_allclose(joints, offline(model, kp[:12 + n])[12:], atol=2e-5)


def test_reused_slot_starts_a_fresh_state_and_lag_limit_reprimes():
    """A stream ends and a new one takes its slot in the same tick: the new one starts from an
    empty state. A burst beyond --max-lag skips the oldest targets and the rest are exact."""
    model = tiny_stream(3)
    a, b = motion(30, 4), motion(9, 5)
    items = frames("s", a) + [EndIn("s", "end")] + frames("s", b, start=100) + [EndIn("s", "end")]
    out, _ = run_compute(model, items, max_streams=1)
    rows = [(s, j) for it in out if isinstance(it, SkeletonBatch) for s, j in zip(it.seq, it.joints)]
    assert [r[0] for r in rows] == list(range(30)) + list(range(100, 109))
    got = np.stack([r[1] for r in rows])
    np.testing.assert_allclose(got[:30], offline(model, a), atol=2e-5)
    np.testing.assert_allclose(got[30:], offline(model, b), atol=2e-5)

    kp = motion(120, 6)
    out, server = run_compute(model, frames("a", kp) + [EndIn("a", "end")], backlog=20)
    seqs, joints = published(out, "a")
    oldest = 120 - server.ring.capacity + model.prime_frames()  # newest 21 = backlog + 1
    assert seqs == list(range(oldest, 120)) and len(seqs) == 21
    np.testing.assert_allclose(joints, offline(model, kp)[oldest:], atol=2e-5)
    end = [it for it in out if isinstance(it, Ended)][0]
    assert end.dropped == oldest and end.published == 21


def test_step_runner_memory_and_padding_rows():
    model = tiny_stream()
    r = StepRunner(model, HEIGHT, 4, "cpu", "standin", (1, 4))
    c = model.cfg
    per_kv = c.depth * c.num_joints * c.dim * (c.window - 1) * 4  # keys or values, fp32
    assert r.memory_per_stream() == 2 * per_kv + (c.window - 1) * (2 + 3 * c.num_joints) * 4 + 8
    kp = motion(3, 1)
    before = r.state.k[:, [0, 2, 3]].clone()
    x = r.step(np.array([1]), kp[None, 0, :, :2].copy(), kp[None, 0, :, 2].copy())
    assert r.calls == {1: 1}
    x4 = r.step(np.array([2, 3]), np.repeat(kp[None, 1, :, :2], 2, 0), np.repeat(kp[None, 1, :, 2], 2, 0))
    assert r.calls == {1: 1, 4: 1}  # two rows padded to four, into the scratch row
    assert torch.equal(r.state.k[:, 0], before[:, 0])
    assert r.state.n[:4].tolist() == [0, 1, 1, 1]
    np.testing.assert_allclose(x4[0], x4[1], atol=1e-6)  # same frame, fresh states
    np.testing.assert_allclose(x[0], offline(model, kp[:1])[0], atol=2e-5)


@pytest.mark.parametrize("workers", [1, 2])
def test_eager_steps_on_slices_dense_slices_and_gathers_agree(workers):
    """The CPU runner steps consecutive slots on a slice, a nearly full span as the whole slice
    with the idle slots not kept, a sparse set by gathering, and a large set in shares on
    `workers` threads: each slot's skeleton and state are its own one-slot steps', and idle
    slots are left exactly as they were. The runner steps through its traced graphs, the
    reference through the eager step."""
    model = tiny_stream()
    runner = StepRunner(model, HEIGHT, 40, "cpu", "eager", workers=workers)
    ref = StepRunner(model, HEIGHT, 40, "cpu", "eager", trace=False)
    assert isinstance(runner._step_fn, TracedStep) and ref._step_fn == model.step
    # every form the runner uses is traced up front (not mid-tick, not on two threads at once)
    assert runner._step_fn.fallbacks == [] and all(runner._step_fn.graphs.values()) and \
        sorted(runner._step_fn.graphs) == [(False, False), (False, True), (True, False)]
    g = np.random.default_rng(5)

    def frames_for(n):
        return (g.normal(300, 60, (n, 17, 2)).astype(np.float32),
                g.uniform(0.2, 1, (n, 17)).astype(np.float32))

    kp, conf = frames_for(40)
    for r in (runner, ref):
        r.start(np.arange(40), kp, conf)
    calls = []  # (rows stepped, kept a subset) per step call
    step = runner._step_fn

    def spy(kp, conf, state, rows, keep=None):
        calls.append((len(kp), keep is not None))
        return step(kp, conf, state, rows, keep)

    sparse = sorted(g.choice(40, 12, replace=False).tolist())
    for slots in (list(range(40)), [i for i in range(40) if i not in (4, 17, 33)], sparse,
                  list(range(35, -1, -1)), [6]):
        kp, conf = frames_for(len(slots))
        before = [t.clone() for t in runner.state.tensors()]
        runner._step_fn = spy
        got = runner.step(np.array(slots), kp, conf)
        runner._step_fn = step
        want = np.concatenate([ref.step(np.array([s]), kp[i:i + 1], conf[i:i + 1])
                               for i, s in enumerate(slots)])
        np.testing.assert_allclose(got, want, atol=1e-5)
        idle = [i for i in range(41) if i not in slots]
        for a, b, c in zip(runner.state.tensors(), ref.state.tensors(), before):
            assert torch.allclose(a.float(), b.float(), atol=1e-5)
            assert torch.equal(a[:, idle] if a.dim() == 6 else a[idle],
                               c[:, idle] if c.dim() == 6 else c[idle])
    if workers == 1:
        assert calls == [(40, False), (40, True), (12, False), (36, True), (1, False)]
    else:  # in two shares of slot order (the second share's call may come first)
        assert sorted(calls) == sorted([(20, False), (20, False), (21, True), (19, True),
                                        (12, False), (18, False), (18, False), (1, False)])


@pytest.mark.gpu
def test_cuda_graph_step_runner_matches_eager():
    """Captured steps on a ladder (padding into the scratch row) give the eager steps' skeletons
    and leave the same states, over ticks of changing stream sets."""
    model = tiny_stream().cuda()
    graphs = StepRunner(model, HEIGHT, 12, "cuda", "graphs", (1, 2, 4, 8))
    eager = StepRunner(model, HEIGHT, 12, "cuda", "eager")
    g = np.random.default_rng(4)
    for slots in ([0, 1, 2], [5], [0, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11], [1, 0]):
        slots = np.array(slots)
        kp = g.uniform(200, 800, (len(slots), 17, 2)).astype(np.float32)
        conf = g.uniform(0.2, 1, (len(slots), 17)).astype(np.float32)
        np.testing.assert_allclose(graphs.step(slots, kp, conf), eager.step(slots, kp, conf),
                                   atol=1e-4, rtol=1e-4)
    for a, b in zip(graphs.state.tensors(), eager.state.tensors()):
        torch.testing.assert_close(a[:, :12] if a.dim() == 6 else a[:12],
                                   b[:, :12] if b.dim() == 6 else b[:12], atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("kind", ["streaming", "windowed"])
def test_the_server_smooths_each_streams_2d_as_eval_does(kind):
    """The default server (--smooth gated) on jittery 2D with a few missing joints, two streams
    interleaved at 30 fps by their capture times: every skeleton equals lifting the stream's 2D
    filtered alone (`smooth_sequence`, what `eval` runs); it differs from the 2D unfiltered."""
    from streamlift.smoothing import smooth_sequence
    from test_engine_server import tiny

    model = tiny_stream() if kind == "streaming" else tiny("causal")
    seqs = {"a": motion(40, 1), "b": motion(33, 2)}
    seqs["a"][10:14, 3, 2] = 0.0  # unseen joints
    items = []
    for t in range(40):
        for s, kp in seqs.items():
            if t < len(kp):
                items.append(FrameIn(P.Frame(s, t, 1e9 + t / 30, kp[t, :, :2], kp[t, :, 2]),
                                     1e9 + t / 30))
    items += [EndIn(s, "end") for s in seqs]
    out, _ = run_compute(model, items, smooth="gated")
    for s, kp in seqs.items():
        seq, joints = published(out, s)
        assert seq == list(range(len(kp)))
        sm = kp.copy()
        sm[..., :2] = smooth_sequence(kp[..., :2], kp[..., 2], 30.0)
        np.testing.assert_allclose(joints, offline(model, sm), atol=2e-5)
        assert np.abs(joints - offline(model, kp)).max() > 1e-3  # the gate opened
