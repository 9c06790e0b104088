"""Fused attention (Triton) against the PyTorch reference: forward, LSE, every gradient.

Without a GPU the Triton kernels run on CPU tensors under TRITON_INTERPRET=1 (set in
conftest.py), so sizes here are small: a few programs per call. bf16 and speed need a GPU.
"""

import functools
import math

import pytest
import torch

from streamlift.kernels import attention, attention_reference
from streamlift.kernels.attention import FusedAttention, resolve_impl, triton_available

CUDA = torch.cuda.is_available()
DEV = torch.device("cuda" if CUDA else "cpu")
needs_triton = pytest.mark.skipif(not triton_available(), reason="Triton not importable here")
TOL = {torch.float32: dict(atol=2e-5, rtol=2e-5), torch.float16: dict(atol=3e-3, rtol=3e-3),
       torch.bfloat16: dict(atol=2e-2, rtol=2e-2)}
GRAD_TOL = {torch.float32: dict(atol=5e-5, rtol=5e-5), torch.float16: dict(atol=1e-2, rtol=1e-2),
            torch.bfloat16: dict(atol=6e-2, rtol=6e-2)}


def packed_qkv(N, S, H, D, dtype, seed=0):
    """q, k, v (N, H, S, D) as strided views of one (N, S, 3, H, D) projection, like the model."""
    g = torch.Generator().manual_seed(seed)
    qkv = torch.randn(N, S, 3, H, D, generator=g).to(DEV, dtype).requires_grad_()
    q, k, v = (qkv[:, :, i].transpose(1, 2) for i in range(3))  # (N, H, S, D) views
    return qkv, q, k, v


def run_both(N, S, H, D, dtype, causal, seed=0):
    """(fused output, reference output, fused d qkv, reference d qkv) for one random dO."""
    qkv, q, k, v = packed_qkv(N, S, H, D, dtype, seed)
    o = attention(q, k, v, causal=causal, impl="triton")
    do = torch.randn(o.shape, generator=torch.Generator().manual_seed(seed + 1)).to(DEV, dtype)
    (g,) = torch.autograd.grad(o, qkv, do)
    # the reference in fp32 from the same (rounded) inputs
    qkv32 = qkv.detach().float().requires_grad_()
    q32, k32, v32 = (qkv32[:, :, i].transpose(1, 2) for i in range(3))
    o_ref = attention_reference(q32, k32, v32, causal=causal)
    (g_ref,) = torch.autograd.grad(o_ref, qkv32, do.float())
    return o, o_ref, g, g_ref


# (N, S, H, D): N*H is not a multiple of the pack factor (4 at S <= 32, 16 at S <= 16), and the
# long sequences walk several query slices (81 -> 2 x 64 rows, 243 -> 8 x 32 rows)
SHAPES = [(3, 17, 2, 32), (5, 27, 1, 32), (1, 81, 2, 32), (1, 243, 1, 32)]


@needs_triton
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=["fp32", "fp16"])
@pytest.mark.parametrize("causal", [False, True], ids=["full", "causal"])
@pytest.mark.parametrize("shape", SHAPES, ids=[f"S{s[1]}" for s in SHAPES])
def test_forward_and_gradients_match_reference(shape, causal, dtype):
    o, o_ref, g, g_ref = run_both(*shape, dtype, causal)
    assert o.dtype == dtype and o.shape == o_ref.shape
    torch.testing.assert_close(o.float(), o_ref, **TOL[dtype])
    torch.testing.assert_close(g.float(), g_ref, **GRAD_TOL[dtype])  # dq, dk, dv in one tensor


@needs_triton
@pytest.mark.parametrize("N,S,H,D", [(7, 5, 3, 8), (2, 9, 2, 24), (1, 33, 1, 64)])
def test_awkward_sizes(N, S, H, D):
    # tiny S and D (padded to 16), D not a power of two, S just over a power of two
    for causal in (False, True):
        o, o_ref, g, g_ref = run_both(N, S, H, D, torch.float32, causal, seed=N)
        torch.testing.assert_close(o, o_ref, **TOL[torch.float32])
        torch.testing.assert_close(g, g_ref, **GRAD_TOL[torch.float32])


@needs_triton
def test_contiguous_and_strided_inputs_agree_and_output_needs_no_copy():
    qkv, q, k, v = packed_qkv(3, 17, 2, 32, torch.float32)
    assert not q.is_contiguous()
    a = attention(q, k, v, impl="triton")
    b = attention(q.contiguous(), k.contiguous(), v.contiguous(), impl="triton")
    torch.testing.assert_close(a, b, atol=0, rtol=0)
    # O is an (N, S, H, D) buffer seen as (N, H, S, D): the model's merge of heads is a view
    assert a.transpose(1, 2).is_contiguous()


@needs_triton
def test_stored_lse_is_the_log_sum_exp():
    from streamlift.kernels import _attention_triton as kt
    _, q, k, v = packed_qkv(2, 27, 2, 32, torch.float32)
    for causal in (False, True):
        o, lse = kt.forward(q.detach(), k.detach(), v.detach(), causal)
        s = (q.float() @ k.float().transpose(-1, -2)) / math.sqrt(32)  # (N, H, S, S)
        if causal:
            s = s.masked_fill(torch.ones(27, 27, dtype=torch.bool, device=DEV).triu(1), float("-inf"))
        assert lse.shape == (2, 2, 27) and lse.dtype == torch.float32
        torch.testing.assert_close(lse, s.logsumexp(-1), atol=1e-5, rtol=1e-5)


@needs_triton
def test_model_trains_through_the_fused_kernel(monkeypatch):
    """The lifter (spatial S=17, temporal S=9) gives the same output and parameter gradients
    through the Triton kernel as through SDPA."""
    import streamlift.lifter.model as model
    from streamlift.lifter.model import LifterConfig, NRSfMFormer

    torch.manual_seed(0)
    m = NRSfMFormer(LifterConfig(dim=32, depth=1, heads=2, window=9)).to(DEV)
    g = torch.Generator().manual_seed(1)
    kp = (500 + 80 * torch.randn(2, 9, 17, 2, generator=g)).to(DEV)
    conf = torch.rand(2, 9, 17, generator=g).clamp_min(0.2).to(DEV)

    def run():
        m.zero_grad()
        X = m(kp, conf).X
        X.square().sum().backward()
        return X.detach(), [p.grad.clone() for p in m.parameters() if p.grad is not None]

    monkeypatch.setattr(model, "attention", functools.partial(attention, impl="sdpa"))
    X_ref, grads_ref = run()
    monkeypatch.setattr(model, "attention", functools.partial(attention, impl="triton"))
    X, grads = run()
    torch.testing.assert_close(X, X_ref, atol=1e-4, rtol=1e-4)
    for a, b in zip(grads, grads_ref, strict=True):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-3)


def test_reference_gradcheck_fp64():
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 2, 5, 4, generator=g, dtype=torch.float64, requires_grad=True)
               for _ in range(3))
    for causal in (False, True):
        assert torch.autograd.gradcheck(lambda a, b, c: attention_reference(a, b, c, causal), (q, k, v))


@pytest.mark.parametrize("causal", [False, True])
def test_auto_and_sdpa_match_the_reference(causal):
    _, q, k, v = packed_qkv(4, 27, 2, 32, torch.float32)
    ref = attention_reference(q, k, v, causal)
    for impl in ("auto", "sdpa", "reference"):
        torch.testing.assert_close(attention(q, k, v, causal=causal, impl=impl), ref,
                                   atol=2e-5, rtol=2e-5)


def test_dispatch():
    cpu = torch.zeros(1, 1, 2, 4)
    assert resolve_impl("auto", cpu) == "sdpa"  # the reference math, fused by PyTorch on CPU
    assert resolve_impl("reference", cpu) == "reference"
    with pytest.raises(ValueError, match="impl must be one of"):
        attention(cpu, cpu, cpu, impl="flash")
    with pytest.raises(ValueError, match="one shape"):
        attention(cpu, cpu, torch.zeros(1, 1, 3, 4))


@needs_triton
def test_triton_rejects_fp64_and_handles_empty_batches():
    x = torch.zeros(1, 1, 4, 8, dtype=torch.float64, device=DEV)
    with pytest.raises(ValueError, match="fp32/fp16/bf16"):
        attention(x, x, x, impl="triton")
    e = torch.zeros(0, 2, 17, 32, device=DEV)
    assert attention(e, e, e, impl="triton").shape == (0, 2, 17, 32)


@needs_triton
def test_dot_precision_follows_dtype_and_torchs_tf32_switch(monkeypatch):
    from streamlift.kernels import _attention_triton as kt
    assert kt._precision(torch.float32, allow_tf32=False) == "ieee"
    assert kt._precision(torch.float32, allow_tf32=True) == "tf32"
    for dt in (torch.float16, torch.bfloat16):  # half-precision inputs: never "ieee"
        assert kt._precision(dt, allow_tf32=False) == "tf32"
        assert kt._precision(dt, allow_tf32=True) == "tf32"
    # by default it reads torch.backends.cuda.matmul.allow_tf32 (off unless a user turns it on)
    matmul = torch.backends.cuda.matmul
    before = matmul.allow_tf32
    try:
        matmul.allow_tf32 = False
        assert kt._precision(torch.float32) == "ieee" and kt._precision(torch.float16) == "tf32"
        matmul.allow_tf32 = True
        assert kt._precision(torch.float32) == "tf32" and kt._precision(torch.bfloat16) == "tf32"
    finally:
        matmul.allow_tf32 = before
    # and forward/backward launch with it, for q's dtype
    seen = []
    monkeypatch.setattr(kt, "_precision", lambda dtype: seen.append(dtype) or "ieee")
    qkv, q, k, v = packed_qkv(1, 5, 1, 8, torch.float32)
    torch.autograd.grad(attention(q, k, v, impl="triton").sum(), qkv)
    assert seen == [torch.float32, torch.float32]


# ---- GPU only ------------------------------------------------------------------------------

@pytest.mark.gpu
@pytest.mark.skipif(not CUDA, reason="needs a CUDA GPU")
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("shape", SHAPES + [(300, 17, 2, 64)], ids=lambda s: f"S{s[1]}D{s[3]}")
def test_bf16_on_gpu(shape, causal):
    o, o_ref, g, g_ref = run_both(*shape, torch.bfloat16, causal)
    torch.testing.assert_close(o.float(), o_ref, **TOL[torch.bfloat16])
    torch.testing.assert_close(g.float(), g_ref, **GRAD_TOL[torch.bfloat16])


@pytest.mark.gpu
@pytest.mark.skipif(not CUDA, reason="needs a CUDA GPU")
def test_gpu_auto_uses_triton_and_is_graph_capturable():
    _, q, k, v = packed_qkv(1000, 17, 2, 32, torch.float16)
    q, k, v = q.detach(), k.detach(), v.detach()
    assert resolve_impl("auto", q) == "triton"
    attention(q, k, v)  # compile outside the capture
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = attention(q, k, v)
    graph.replay()
    torch.testing.assert_close(out.float(), attention_reference(q, k, v).float(), **TOL[torch.float16])


@pytest.mark.gpu
@pytest.mark.skipif(not CUDA, reason="needs a CUDA GPU")
def test_gpu_speed_sanity():
    """At the spatial shape (S=17, D=32, 100k sequences) the fused forward beats the reference."""
    _, q, k, v = packed_qkv(100_000, 17, 2, 32, torch.float16)
    q, k, v = q.detach(), k.detach(), v.detach()
    fused = gpu_ms(lambda: attention(q, k, v, impl="triton"))
    ref = gpu_ms(lambda: attention_reference(q, k, v))
    assert fused < ref, (fused, ref)


def gpu_ms(fn, repeats=10):
    """Median milliseconds of fn() on the GPU, after a warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        b.synchronize()
        times.append(a.elapsed_time(b))
    return sorted(times)[len(times) // 2]
