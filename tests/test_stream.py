"""The streaming lifter: chunk forward and per-frame step agree, the state is exact and per row."""

import subprocess
import sys

import pytest
import torch

from streamlift.errors import UserError
from streamlift.lifter.model import (NRSfMFormer, LifterConfig, load_checkpoint, load_lifter,
                                     normalise_2d)
from streamlift.lifter.onnx import export_onnx
from streamlift.lifter.traced import TracedStep
from streamlift.train.adapt import AdaptConfig, adapt
from streamlift.lifter.stream import (StreamConfig, StreamingNRSfMFormer, load_streaming,
                                      save_streaming)
from streamlift.data import load_mocap, make_views, save_views
from streamlift.paths import SAMPLE_MOCAP

SCRIPT = __import__('pathlib').Path(__file__).resolve().parents[1] / "scripts/distil_stream.py"  # as docs/training.md runs it

J = 17


def _model(window=5, depth=2, seed=0) -> StreamingNRSfMFormer:
    torch.manual_seed(seed)
    m = StreamingNRSfMFormer(StreamConfig(window=window, depth=depth, dim=32, heads=2)).eval()
    with torch.no_grad():  # trained-looking weights: biases that differ by distance, a real D
        for blk in m.temporal:
            blk.attn.bias.normal_(0, 1.0)
        m.head_D.weight.normal_(0, 0.3)
        m.head_R[-1].weight.normal_(0, 0.3)
    return m


def _frames(B, N, seed=1):
    g = torch.Generator().manual_seed(seed)
    kp = torch.randn(B, N, J, 2, generator=g) * 60 + 300
    conf = torch.rand(B, N, J, generator=g)
    conf[0, min(3, N - 1), 4] = 0.0  # a missed joint
    return kp, conf


@torch.no_grad()
def test_chunks_and_steps_agree_with_one_forward():
    m = _model()
    kp, conf = _frames(3, 23)
    whole = m(kp, conf)[0].X  # (3, 23, J, 3)
    assert torch.allclose(m.lift_chunks(kp, conf, chunk=4), whole, atol=1e-5)
    state = m.init_state(3)
    m.start(kp[:, 0], conf[:, 0], state)
    steps = torch.stack([m.step(kp[:, t], conf[:, t], state) for t in range(23)], 1)
    assert torch.allclose(steps, whole, atol=1e-5)
    # from an empty state (nothing before the first frame) too
    empty = m(kp, conf, m.init_state(3))[0].X
    s0 = m.init_state(3)
    assert torch.allclose(torch.stack([m.step(kp[:, t], conf[:, t], s0) for t in range(23)], 1),
                          empty, atol=1e-5)
    assert not torch.allclose(empty[:, 5], whole[:, 5], atol=1e-3)
    # a chunk, then steps, then a chunk: one state serves both entry points
    o, s = m(kp[:, :7], conf[:, :7])
    mid = [m.step(kp[:, t], conf[:, t], s) for t in range(7, 12)]
    rest = m(kp[:, 12:], conf[:, 12:], s)[0].X
    assert torch.allclose(torch.cat([o.X, torch.stack(mid, 1), rest], 1), whole, atol=1e-5)
    assert int(state.n[0]) == 4 + 23  # the still start fills the M = 4 ring slots


@torch.no_grad()
def test_a_lookahead_lifts_each_frame_from_the_step_of_a_later_frame():
    """With lookahead a, frame t's estimate is the output of the step of frame t + a (the same
    weights as without), and a sequence's last a frames are lifted by steps of repeats of its
    last frame, so every frame gets one."""
    a = 3
    m = _model()
    la = StreamingNRSfMFormer(StreamConfig(**{**m.cfg.to_dict(), "lookahead": a})).eval()
    la.load_state_dict(m.state_dict())
    kp, conf = _frames(2, 17)
    got = la.lift_chunks(kp, conf, chunk=5)  # (2, 17, J, 3)
    assert got.shape == kp.shape[:2] + (J, 3)
    pad = lambda x: torch.cat([x, x[:, -1:].expand(-1, a, *x.shape[2:])], 1)  # noqa: E731
    whole = m(pad(kp), pad(conf))[0].X  # outputs of the steps of frames 0 .. 16 + a
    assert torch.allclose(got, whole[:, a:], atol=1e-5)
    assert not torch.allclose(got, whole[:, :17], atol=1e-3)  # not the frames' own steps
    # frames asked of a longer sequence: real frames after them, not repeats
    from streamlift.lifter.infer import lift_sequence
    seq = torch.cat([kp[0], conf[0, ..., None]], -1).numpy()
    part = lift_sequence(la, seq, frames=[4, 9])
    assert torch.allclose(torch.from_numpy(part), m(kp[:1], conf[:1])[0].X[0, [4 + a, 9 + a]],
                          atol=1e-5)
    with pytest.raises(ValueError, match="lookahead"):
        StreamConfig(window=5, lookahead=5)


@torch.no_grad()
def test_a_stream_starts_as_if_its_first_frame_had_been_shown_still():
    """still_state: the state after the first frame shown still for longer than the model
    looks back (from an empty state), so a new stream sees what a windowed lifter's padding
    shows it."""
    m = _model()
    kp, conf = _frames(2, 10)
    P = m.prime_frames() + 3
    kp_pad = torch.cat([kp[:, :1].expand(2, P, J, 2), kp], 1)
    conf_pad = torch.cat([conf[:, :1].expand(2, P, J), conf], 1)
    padded = m(kp_pad, conf_pad, m.init_state(2))[0].X[:, P:]
    assert torch.allclose(m(kp, conf)[0].X, padded, atol=1e-5)
    state = m.still_state(kp[:, 0], conf[:, 0])
    assert state.n.tolist() == [4, 4] and torch.equal(state.k[:, :, :, :, 0], state.k[:, :, :, :, 3])


@torch.no_grad()
def test_a_start_that_lifts_its_frame_is_that_frames_step():
    """start(lift=True) returns the first frame's X and leaves the state its step would: the
    next steps go on exactly as after start + step (the engine starts new streams so)."""
    m = _model()
    kp, conf = _frames(3, 8)
    whole = m(kp, conf)[0].X  # (3, 8, J, 3)
    lifted, plain = m.init_state(4), m.init_state(4)
    rows = torch.tensor([3, 0, 2])
    x0 = m.start(kp[:, 0], conf[:, 0], lifted, rows, lift=True)
    assert m.start(kp[:, 0], conf[:, 0], plain, rows) is None
    assert torch.allclose(x0, m.step(kp[:, 0], conf[:, 0], plain, rows), atol=1e-5)
    assert torch.allclose(x0, whole[:, 0], atol=1e-5)
    for a, b in zip(lifted.tensors(), plain.tensors()):
        assert torch.allclose(a, b, atol=1e-6) and a.dtype == b.dtype
    steps = torch.stack([m.step(kp[:, t], conf[:, t], lifted, rows) for t in range(1, 8)], 1)
    assert torch.allclose(steps, whole[:, 1:], atol=1e-5)


@torch.no_grad()
def test_causal_and_windowed():
    """Frame t never sees a later frame, and an estimate depends on the last receptive_field()
    frames only: a state started prime_frames() back gives the same estimate and next state."""
    m = _model()
    kp, conf = _frames(2, 40)
    X = m(kp, conf)[0].X
    kp2 = kp.clone()
    kp2[:, 30:] += 50 * torch.randn_like(kp2[:, 30:])
    X2 = m(kp2, conf)[0].X
    assert torch.equal(X[:, :30], X2[:, :30]) and not torch.allclose(X[:, 30], X2[:, 30])
    P = m.prime_frames()
    assert m.receptive_field() == (2 + 2) * 4 + 1
    start = 39 - P
    o, s_full = m(kp, conf)
    o2, s_primed = m(kp[:, start:], conf[:, start:])
    assert torch.allclose(o2.X[:, -1], o.X[:, -1], atol=1e-5)
    f, fc = kp[:, 0] + 3.0, conf[:, 0]
    assert torch.allclose(m.step(f, fc, s_primed), m.step(f, fc, s_full), atol=1e-5)
    # one frame more than the bound does reach frame 39: a state from frame 0 of a changed
    # prefix differs only outside the receptive field
    kp3 = kp.clone()
    kp3[:, :start] = 0.0
    assert torch.allclose(m(kp3, conf)[0].X[:, -1], o.X[:, -1], atol=1e-5)
    assert not torch.allclose(m(kp3, conf)[0].X[:, start], o.X[:, start], atol=1e-3)


@torch.no_grad()
def test_scale_is_the_causal_windows():
    """The 2D scale of frame t is the windowed model's over frames t - T + 1 .. t, padded at a
    stream's start with its first frame as a windowed lifter's ring pads (from an empty state:
    the frames that exist)."""
    m = _model(window=5)
    kp, conf = _frames(2, 12)
    o = m(kp, conf)[0]
    empty = m(kp, conf, m.init_state(2))[0]
    for t in (0, 2, 4, 11):
        idx = torch.arange(t - 4, t + 1).clamp(min=0)
        _, ref = normalise_2d(kp[:, idx], conf[:, idx])
        assert torch.allclose(o.scale[:, t], ref, rtol=1e-5), t
        lo = max(0, t - 4)
        _, ref = normalise_2d(kp[:, lo:t + 1], conf[:, lo:t + 1])
        assert torch.allclose(empty.scale[:, t], ref, rtol=1e-5), t


@torch.no_grad()
def test_rows_are_independent_and_clear_starts_over():
    m = _model()
    kp, conf = _frames(4, 15)
    state = m.init_state(4)
    m.start(kp[:, 0], conf[:, 0], state)
    for t in range(15):
        m.step(kp[:, t], conf[:, t], state)
    # row 2 restarts as a new stream; an earlier stream left a NaN in its memory
    state.k[:, 2] = float("nan")
    state.clear(torch.tensor([2]))
    x = m.step(kp[:, 0], conf[:, 0], state)
    alone = m.step(kp[2:3, 0], conf[2:3, 0], m.init_state(1))
    assert torch.allclose(x[2:3], alone, atol=1e-6)
    # the other rows continue their own streams
    ref = m(kp[[0, 1, 3]], conf[[0, 1, 3]])[1]
    assert torch.allclose(x[[0, 1, 3]], m.step(kp[[0, 1, 3], 0], conf[[0, 1, 3], 0], ref),
                          atol=1e-5)
    # rows() and put() move whole states between batches
    sub = state.rows(torch.tensor([3, 0]))
    y = m.step(kp[[3, 0], 1], conf[[3, 0], 1], sub)
    state.put(torch.tensor([3, 0]), sub)
    assert int(state.n[3]) == 4 + 17 and int(state.n[2]) == 1
    assert torch.allclose(m.step(kp[[0], 2], conf[[0], 2], state.rows(torch.tensor([0]))),
                          m(kp[[0], 2:3], conf[[0], 2:3], sub.rows(torch.tensor([1])))[0].X[:, 0],
                          atol=1e-5)
    assert y.shape == (2, J, 3)


@torch.no_grad()
@pytest.mark.parametrize("traced", [False, True])
def test_step_on_rows_of_a_larger_state(traced):
    """The engine's path: streams live in rows of one state (one row per slot, a scratch row for
    padding); a step on some rows is each stream's own step and leaves the other rows alone.
    The same through the CPU server's TorchScript graphs (`TracedStep`), every call form."""
    m = _model()
    step = TracedStep(m) if traced else m.step
    kp, conf = _frames(3, 12)
    whole = m(kp, conf)[0].X  # (3, 12, J, 3) each stream on its own
    state = m.init_state(6)  # 5 slots + scratch row 5
    state.k[:, 0] = 7.0  # another stream's state: must not change
    m.start(kp[:, 0], conf[:, 0], state, torch.tensor([4, 1, 2]))
    before = [t.clone() for t in state.tensors()]
    rows = torch.tensor([4, 1, 2, 5, 5])  # three live streams, two padding rows
    out = []
    for t in range(12):
        pad_kp = torch.cat([kp[:, t], torch.full((2, J, 2), 1e3)])  # padding: arbitrary frames
        pad_conf = torch.cat([conf[:, t], torch.ones(2, J)])
        if t == 6:  # a tick in two calls on different rows, in another order
            a = step(kp[[2, 0], t], conf[[2, 0], t], state, torch.tensor([2, 4]))
            b = step(kp[[1], t], conf[[1], t], state, slice(1, 2))  # consecutive rows: views
            out.append(torch.stack([a[1], b[0], a[0]]))
            continue
        if t == 9:  # a slice of rows 0..4 of which only 1, 2, 4 advance (keep): 0 and 3 idle
            sl_kp = torch.full((5, J, 2), -5e2)
            sl_conf = torch.rand(5, J)
            sl_kp[[4, 1, 2]], sl_conf[[4, 1, 2]] = kp[:, t], conf[:, t]
            x = step(sl_kp, sl_conf, state, slice(0, 5), keep=torch.tensor([1, 2, 4]))
            out.append(x[[4, 1, 2]])
            continue
        out.append(step(pad_kp, pad_conf, state, rows)[:3])
    assert torch.allclose(torch.stack(out, 1), whole, atol=1e-5)
    assert state.n[[4, 1, 2]].tolist() == [4 + 12] * 3
    for a, b in zip(state.tensors(), before):  # rows 0 and 3 untouched
        assert torch.equal(a[:, [0, 3]] if a.dim() == 6 else a[[0, 3]],
                           b[:, [0, 3]] if b.dim() == 6 else b[[0, 3]])
    if traced:  # the graphs ran: none fell back to eager
        assert step.fallbacks == [] and sorted(step.graphs) == [(False, False), (False, True),
                                                                (True, False)]
        assert all(isinstance(g, torch.jit.ScriptModule) for g in step.graphs.values())
        whole = m(kp, conf)[0].X[:, 0]  # the whole-state form: a fresh state of 3 streams
        state = m.init_state(3)
        m.start(kp[:, 0], conf[:, 0], state)
        assert torch.allclose(step(kp[:, 0], conf[:, 0], state), whole, atol=1e-5)
        assert step.fallbacks == [] and step.graphs[(False, False)] is not None


def test_a_traced_graph_that_differs_from_the_eager_step_is_not_used(monkeypatch):
    """TracedStep checks each graph against the eager step before using it: one that is off
    (here by 1e-3 in X, as a trace that baked a shape or a branch would be) runs eagerly."""
    import streamlift.lifter.traced as traced

    class Off(torch.nn.Module):
        def __init__(self, graph):
            super().__init__()
            self.graph = graph

        def forward(self, *args):
            return self.graph(*args) + 1e-3

    freeze = torch.jit.freeze
    monkeypatch.setattr(traced.torch.jit, "freeze", lambda g: Off(freeze(g)))
    m = _model()
    step = TracedStep(m)
    kp, conf = _frames(2, 3)
    state, ref = m.init_state(2), m.init_state(2)
    for s in (state, ref):
        m.start(kp[:, 0], conf[:, 0], s)
    for t in range(3):
        assert torch.equal(step(kp[:, t], conf[:, t], state), m.step(kp[:, t], conf[:, t], ref))
    assert step.graphs == {(False, False): None}
    assert len(step.fallbacks) == 1 and "differs from eager by 0.001" in step.fallbacks[0]


def test_from_windowed_and_checkpoints(tmp_path):
    w = NRSfMFormer(LifterConfig(window=5, depth=2, dim=32, heads=2)).eval()
    s = StreamingNRSfMFormer.from_windowed(w)
    assert torch.equal(s.spatial[1].mlp[0].weight, w.spatial[1].mlp[0].weight)
    assert torch.equal(s.temporal[0].attn.qkv.weight, w.temporal[0].attn.qkv.weight)
    assert all(float(b.attn.bias.detach().abs().max()) == 0 for b in s.temporal)
    # one frame: attention over itself only, so the streaming lifter is the windowed lifter
    # of window 1 with the same weights (frame positions aside)
    w1 = NRSfMFormer(LifterConfig(window=1, depth=2, dim=32, heads=2)).eval()
    w1.load_state_dict({**w.state_dict(), "frame_pos": torch.zeros(1, 1, 1, 32)})
    kp, conf = _frames(2, 1)
    with torch.no_grad():
        assert torch.allclose(s(kp, conf)[0].X, w1(kp, conf).X, atol=1e-5)
    path = tmp_path / "stream.pt"
    save_streaming(path, s, {"note": "x"})
    s2, meta = load_streaming(path)
    assert meta == {"note": "x"} and s2.cfg == s.cfg
    with torch.no_grad():
        assert torch.equal(s2(kp, conf)[0].X, s(kp, conf)[0].X)
    with pytest.raises(UserError, match="streaming lifter"):
        load_checkpoint(path)
    # load_lifter gives either kind; what needs a windowed lifter says so
    assert isinstance(load_lifter(path, "cpu")[0], StreamingNRSfMFormer)
    assert isinstance(load_lifter("streaming", "cpu")[0], StreamingNRSfMFormer)
    with pytest.raises(UserError, match="ONNX export takes a windowed lifter"):
        export_onnx(s2, tmp_path / "s.onnx")
    with pytest.raises(UserError, match="adapt needs a windowed one"):
        adapt([str(tmp_path / "none.npz")], str(path), str(tmp_path / "a.pt"), AdaptConfig(),
              None, progress=False)


def test_distil_script_resumes(tmp_path):
    sample = tmp_path / "views.npz"
    save_views(sample, make_views(load_mocap(SAMPLE_MOCAP), 1, 0, progress=False))
    out = tmp_path / "s.pt"
    cmd = [sys.executable, str(SCRIPT), "--data", str(sample),
           "--out", str(out), "--chunk", "8", "--batch", "2", "--save-every", "1", "--threads", "1"]
    subprocess.run(cmd + ["--steps", "2", "--lookahead", "2"], check=True, capture_output=True)
    first = load_streaming(out, with_train=True)
    r = subprocess.run(cmd + ["--steps", "3", "--resume"], check=True, capture_output=True,
                       text=True)
    model, meta, train = load_streaming(out, with_train=True)
    assert train["step"] == 3 and meta["steps"] == 3 and "step 3/3" in r.stdout
    assert first[2]["step"] == 2
    assert not torch.equal(model.head_D.weight, first[0].head_D.weight)  # it trained on
    assert model.cfg.lookahead == first[0].cfg.lookahead == 2  # a resumed run keeps its own


@torch.no_grad()
def test_distillation_targets_of_a_lookahead_are_the_teachers_frame_that_far_back():
    """A student with lookahead a learns, at chunk frame t, the teacher's estimate of frame
    t - a from the causal window ending at t (the frames it has seen), scaled by that
    window's 2D scale."""
    import importlib.util
    spec = importlib.util.spec_from_file_location("distil_stream", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    torch.manual_seed(0)
    teacher = NRSfMFormer(LifterConfig(window=5, depth=2, dim=32, heads=2)).eval()
    kp, conf = _frames(2, 9)
    w = torch.cat([kp, conf[..., None]], -1)  # (2, 9, J, 3)
    X, scale = mod.teacher_targets(teacher, w, lookahead=2)
    t = 6
    win = w[:, t - 4:t + 1]  # frames 2 .. 6: the causal window of frame 6
    o = teacher(win[..., :2], win[..., 2])
    assert torch.allclose(X[:, t], o.X[:, 5 - 1 - 2], atol=1e-6)  # frame 4 = 6 - 2
    assert torch.allclose(scale[:, t], o.scale, atol=1e-6)
    X0, _ = mod.teacher_targets(teacher, w)
    assert torch.allclose(X0[:, t], o.X[:, -1], atol=1e-6)
