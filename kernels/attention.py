"""Attention over many tiny sequences (17 joints per frame, 27-243 frames per joint).

For each sequence n and head h, with scale = 1 / sqrt(D):

    P = softmax(scale * Q K^T + M),   O = P V

where M is 0, or -inf above the diagonal when `causal` (a frame attends to itself and earlier
frames only). Inputs are (N, H, S, D) and may be strided views of a packed (N, S, 3, H, D)
projection: nothing here needs them contiguous.

Implementations (the `impl` argument of `attention`):

- "triton": the fused kernels in `_attention_triton` (many sequences per program, the whole
  score tile on chip, LSE stored, a backward that recomputes P in-tile), wrapped in the
  autograd.Function `FusedAttention`. CUDA tensors, or CPU tensors under TRITON_INTERPRET=1.
- "reference": `attention_reference`, the plain PyTorch math (softmax in fp32) that tests and
  benchmarks compare every faster implementation against.
- "sdpa": torch.nn.functional.scaled_dot_product_attention.
- "auto": "triton" for CUDA tensors of fp32/fp16/bf16 when Triton imports; otherwise "sdpa",
  which on CPU is PyTorch's fused flash kernel - the same math as the reference, several
  times faster than it, and what the shipped model was trained and measured with.
"""

from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F

IMPLS = ("auto", "triton", "reference", "sdpa")
TRITON_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


def attention_reference(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                        causal: bool = False) -> torch.Tensor:
    """Reference attention; q, k, v (N, H, S, D) -> (N, H, S, D) in q's dtype.

    Computed in fp32 (fp64 for fp64 inputs, so that it can be gradchecked)."""
    ct = torch.promote_types(q.dtype, torch.float32)
    scale = 1.0 / math.sqrt(q.shape[-1])
    s = (q.to(ct) @ k.to(ct).transpose(-1, -2)) * scale  # (N, H, S, S)
    if causal:
        S = q.shape[-2]
        mask = torch.ones(S, S, dtype=torch.bool, device=q.device).triu(1)
        s = s.masked_fill(mask, float("-inf"))
    return (s.softmax(dim=-1) @ v.to(ct)).to(q.dtype)


@functools.cache
def triton_available() -> bool:
    """True when the Triton kernels can be imported (not on macOS, where Triton is absent)."""
    try:
        from streamlift.kernels import _attention_triton  # noqa: F401
    except ImportError:
        return False
    return True


class FusedAttention(torch.autograd.Function):
    """Autograd wrapper of the Triton forward/backward; saves q, k, v, o and the fp32 LSE."""

    @staticmethod
    def forward(ctx, q, k, v, causal: bool):
        from streamlift.kernels import _attention_triton as kt
        o, lse = kt.forward(q, k, v, causal)
        ctx.save_for_backward(q, k, v, o, lse)
        ctx.causal = causal
        return o

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, do):
        from streamlift.kernels import _attention_triton as kt
        q, k, v, o, lse = ctx.saved_tensors
        dq, dk, dv = kt.backward(q, k, v, o, lse, do, ctx.causal)
        return dq, dk, dv, None


def _check(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> None:
    if q.ndim != 4 or q.shape != k.shape or q.shape != v.shape:
        raise ValueError(f"expected q, k, v of one shape (N, H, S, D), got {tuple(q.shape)}, "
                         f"{tuple(k.shape)}, {tuple(v.shape)}")


def resolve_impl(impl: str, x: torch.Tensor) -> str:
    """The implementation `impl` stands for on tensors like x ("auto" resolved)."""
    if impl not in IMPLS:
        raise ValueError(f"impl must be one of {IMPLS}, got {impl!r}")
    if impl == "auto":
        ok = x.is_cuda and x.dtype in TRITON_DTYPES and triton_available()
        return "triton" if ok else "sdpa"
    return impl


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool = False,
              impl: str = "auto") -> torch.Tensor:
    """Attention entry point used by the model; q, k, v (N, H, S, D) -> (N, H, S, D).

    impl: "auto" (Triton on CUDA, SDPA otherwise), "triton", "reference" or "sdpa"; see the
    module docstring. Every implementation is differentiable in q, k and v.
    """
    _check(q, k, v)
    impl = resolve_impl(impl, q)
    if impl == "triton":
        if q.dtype not in TRITON_DTYPES or k.dtype != q.dtype or v.dtype != q.dtype:
            raise ValueError(f"the Triton attention takes fp32/fp16/bf16 q, k, v of one dtype, "
                             f"got {q.dtype}, {k.dtype}, {v.dtype}")
        if q.numel() == 0:
            return attention_reference(q, k, v, causal)
        return FusedAttention.apply(q, k, v, causal)
    if impl == "reference":
        return attention_reference(q, k, v, causal)
    return F.scaled_dot_product_attention(q, k, v, is_causal=causal)
