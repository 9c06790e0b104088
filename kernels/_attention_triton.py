"""Triton kernels for attention over many tiny sequences (imported only when Triton is used).

Shapes: q, k, v, o are (N, H, S, D) read and written through their strides; the N*H (sequence,
head) pairs are flattened to one index b = n*H + h. One program owns BLOCK_B of them and, for
each, the whole S x S score matrix (S padded to S_PAD, a power of two >= 16), so nothing but
Q, K, V (and, backward, O, dO, LSE) is read and nothing but O, LSE (dQ, dK, dV) is written:

    forward   reads Q, K, V            writes O, LSE       = (4*S*D*e + 4*S) bytes per (n, h)
    backward  reads Q, K, V, O, dO, LSE  writes dQ, dK, dV  = (8*S*D*e + 4*S) bytes per (n, h)

with e the element size. FlashAttention's 64/128-row tiles would be mostly padding at S = 17
or 27; here the padding is at most S -> next power of two, and several sequences share a
program through a batched (3D) tl.dot, so a program still issues tensor-core-sized work.

For long sequences (S_PAD > 64: the temporal blocks at 81 or 243 frames) one sequence per
program, and the query rows are walked in BLOCK_M-row slices so that the score slice
(BLOCK_M x S_PAD) stays in registers; K and V (and, backward, dK, dV) stay resident for the
whole walk.
"""

from __future__ import annotations

import math

import torch
import triton
import triton.language as tl


@triton.jit
def _attn_fwd(Q, K, V, O, LSE,
              sqn, sqh, sqs, sqd, skn, skh, sks, skd, svn, svh, svs, svd,
              son, soh, sos, sod,
              NH, H, S, D, scale,
              CAUSAL: tl.constexpr, BLOCK_B: tl.constexpr, BLOCK_M: tl.constexpr,
              S_PAD: tl.constexpr, D_PAD: tl.constexpr, PRECISION: tl.constexpr):
    """O = softmax(scale * Q K^T + M) V and LSE = logsumexp_j(scale * Q K^T + M) per row.

    M is -inf where the key is padding (j >= S) or, when CAUSAL, in the future (j > i).
    Softmax and accumulation in fp32; P is cast to V's dtype for the second product (as in
    FlashAttention) so fp16/bf16 run on tensor cores.
    """
    pid = tl.program_id(0)
    b = pid * BLOCK_B + tl.arange(0, BLOCK_B)  # (BLOCK_B,) flat (n, h) indices
    b_ok = b < NH
    b = tl.where(b_ok, b, 0).to(tl.int64)  # int64: N*S*3*H*D overflows int32 at ~1M sequences
    n3 = (b // H)[:, None, None]  # (BLOCK_B, 1, 1)
    h3 = (b % H)[:, None, None]
    ok3 = b_ok[:, None, None]
    j = tl.arange(0, S_PAD)  # key index
    d = tl.arange(0, D_PAD)
    j3 = j[None, :, None]  # (1, S_PAD, 1)
    d3 = d[None, None, :]  # (1, 1, D_PAD)
    kv_mask = ok3 & (j3 < S) & (d3 < D)
    k = tl.load(K + n3 * skn + h3 * skh + j3 * sks + d3 * skd, mask=kv_mask, other=0.0)
    v = tl.load(V + n3 * svn + h3 * svh + j3 * svs + d3 * svd, mask=kv_mask, other=0.0)
    kt = tl.trans(k, (0, 2, 1))  # (BLOCK_B, D_PAD, S_PAD)
    col = j[None, None, :]  # (1, 1, S_PAD) key index in the score tile
    for m0 in tl.static_range(0, S_PAD, BLOCK_M):
        i = m0 + tl.arange(0, BLOCK_M)  # query rows of this slice
        i3 = i[None, :, None]  # (1, BLOCK_M, 1)
        q_mask = ok3 & (i3 < S) & (d3 < D)
        q = tl.load(Q + n3 * sqn + h3 * sqh + i3 * sqs + d3 * sqd, mask=q_mask, other=0.0)
        s = tl.dot(q, kt, input_precision=PRECISION) * scale  # (BLOCK_B, BLOCK_M, S_PAD) fp32
        keep = col < S
        if CAUSAL:
            keep = keep & (col <= i3)
        s = tl.where(keep, s, float("-inf"))  # every row keeps key 0, so no row is all -inf
        m = tl.max(s, axis=2)  # (BLOCK_B, BLOCK_M)
        p = tl.exp(s - m[:, :, None])
        l = tl.sum(p, axis=2)
        o = tl.dot(p.to(v.dtype), v, input_precision=PRECISION) / l[:, :, None]
        tl.store(O + n3 * son + h3 * soh + i3 * sos + d3 * sod, o.to(O.dtype.element_ty), mask=q_mask)
        # LSE is (N, H, S) contiguous: offset b*S + i
        tl.store(LSE + b[:, None] * S + i[None, :], m + tl.log(l),
                 mask=b_ok[:, None] & (i[None, :] < S))


@triton.jit
def _attn_bwd(Q, K, V, O, DO, LSE, DQ, DK, DV,
              sqn, sqh, sqs, sqd, skn, skh, sks, skd, svn, svh, svs, svd,
              son, soh, sos, sod, sdon, sdoh, sdos, sdod,
              sgqn, sgqh, sgqs, sgqd, sgkn, sgkh, sgks, sgkd, sgvn, sgvh, sgvs, sgvd,
              NH, H, S, D, scale,
              CAUSAL: tl.constexpr, BLOCK_B: tl.constexpr, BLOCK_M: tl.constexpr,
              S_PAD: tl.constexpr, D_PAD: tl.constexpr, PRECISION: tl.constexpr):
    """Gradients of O = P V, P = softmax(scale * Q K^T + M), recomputing P from the stored LSE:

        P  = exp(scale * Q K^T + M - LSE)          (no second softmax pass)
        dV = P^T dO
        dP = dO V^T
        dS = P * (dP - delta),  delta_i = sum_d dO_id O_id  (= rowsum(P * dP))
        dQ = scale * dS K,      dK = scale * dS^T Q

    dK and dV sum over every query row, so the program that owns a sequence walks all its
    query slices and keeps dK, dV in registers: no atomics, each written once.
    """
    pid = tl.program_id(0)
    b = pid * BLOCK_B + tl.arange(0, BLOCK_B)
    b_ok = b < NH
    b = tl.where(b_ok, b, 0).to(tl.int64)
    n3 = (b // H)[:, None, None]
    h3 = (b % H)[:, None, None]
    ok3 = b_ok[:, None, None]
    j = tl.arange(0, S_PAD)
    d = tl.arange(0, D_PAD)
    j3 = j[None, :, None]
    d3 = d[None, None, :]
    kv_mask = ok3 & (j3 < S) & (d3 < D)
    k = tl.load(K + n3 * skn + h3 * skh + j3 * sks + d3 * skd, mask=kv_mask, other=0.0)
    v = tl.load(V + n3 * svn + h3 * svh + j3 * svs + d3 * svd, mask=kv_mask, other=0.0)
    kt = tl.trans(k, (0, 2, 1))  # (BLOCK_B, D_PAD, S_PAD)
    vt = tl.trans(v, (0, 2, 1))
    col = j[None, None, :]
    dk = tl.zeros((BLOCK_B, S_PAD, D_PAD), dtype=tl.float32)
    dv = tl.zeros((BLOCK_B, S_PAD, D_PAD), dtype=tl.float32)
    for m0 in tl.static_range(0, S_PAD, BLOCK_M):
        i = m0 + tl.arange(0, BLOCK_M)
        i3 = i[None, :, None]
        q_mask = ok3 & (i3 < S) & (d3 < D)
        q = tl.load(Q + n3 * sqn + h3 * sqh + i3 * sqs + d3 * sqd, mask=q_mask, other=0.0)
        o = tl.load(O + n3 * son + h3 * soh + i3 * sos + d3 * sod, mask=q_mask, other=0.0)
        do = tl.load(DO + n3 * sdon + h3 * sdoh + i3 * sdos + d3 * sdod, mask=q_mask, other=0.0)
        row_ok = b_ok[:, None] & (i[None, :] < S)  # (BLOCK_B, BLOCK_M)
        lse = tl.load(LSE + b[:, None] * S + i[None, :], mask=row_ok, other=0.0)
        delta = tl.sum(do.to(tl.float32) * o.to(tl.float32), axis=2)  # (BLOCK_B, BLOCK_M)
        s = tl.dot(q, kt, input_precision=PRECISION) * scale  # (BLOCK_B, BLOCK_M, S_PAD)
        keep = (col < S) & row_ok[:, :, None]
        if CAUSAL:
            keep = keep & (col <= i3)
        p = tl.where(keep, tl.exp(s - lse[:, :, None]), 0.0)
        dv += tl.dot(tl.trans(p.to(do.dtype), (0, 2, 1)), do, input_precision=PRECISION)
        dp = tl.dot(do, vt, input_precision=PRECISION)  # (BLOCK_B, BLOCK_M, S_PAD)
        ds = p * (dp - delta[:, :, None])
        dq = tl.dot(ds.to(k.dtype), k, input_precision=PRECISION) * scale
        tl.store(DQ + n3 * sgqn + h3 * sgqh + i3 * sgqs + d3 * sgqd, dq.to(DQ.dtype.element_ty),
                 mask=q_mask)
        dk += tl.dot(tl.trans(ds.to(q.dtype), (0, 2, 1)), q, input_precision=PRECISION)
    tl.store(DK + n3 * sgkn + h3 * sgkh + j3 * sgks + d3 * sgkd, (dk * scale).to(DK.dtype.element_ty),
             mask=kv_mask)
    tl.store(DV + n3 * sgvn + h3 * sgvh + j3 * sgvs + d3 * sgvd, dv.to(DV.dtype.element_ty),
             mask=kv_mask)


def _pad(x: int) -> int:
    return max(16, triton.next_power_of_2(x))  # tl.dot needs every dimension >= 16


def config(S: int, D: int) -> dict:
    """Pack factor and slice height for a sequence length: about 4-8k score elements per
    program (what 4 or 8 warps hold in registers without spilling).

        S <= 16 : 16 sequences per program     S in 33..64 : 1 sequence, 64-row slices
        S <= 32 : 4 sequences (17, 27)         S > 64      : 1 sequence, 32/64-row slices
    """
    S_PAD, D_PAD = _pad(S), _pad(D)
    if S_PAD <= 64:
        block_b, block_m = max(1, 4096 // (S_PAD * S_PAD)), S_PAD
    else:
        block_b, block_m = 1, (64 if S_PAD <= 128 else 32)
    warps = 4 if block_b * block_m * S_PAD <= 4096 else 8
    return dict(BLOCK_B=block_b, BLOCK_M=block_m, S_PAD=S_PAD, D_PAD=D_PAD, num_warps=warps)


def _precision(dtype: torch.dtype, allow_tf32: bool | None = None) -> str:
    """tl.dot's input_precision for q, k, v of `dtype`: "ieee" (exact fp32 products) for fp32
    unless TF32 is allowed, else "tf32" (Triton's default; fp16/bf16 dots ignore it).

    allow_tf32: None follows torch's own CUDA matmul switch,
    torch.backends.cuda.matmul.allow_tf32 (off by default; readable without a GPU)."""
    if allow_tf32 is None:
        allow_tf32 = torch.backends.cuda.matmul.allow_tf32
    if dtype == torch.float32 and not allow_tf32:
        return "ieee"
    return "tf32"


def _empty_like_heads(q: torch.Tensor) -> torch.Tensor:
    """(N, H, S, D) view of an (N, S, H, D) buffer: the model's o.transpose(1, 2).reshape(N, S, C)
    then needs no copy."""
    N, H, S, D = q.shape
    return q.new_empty(N, S, H, D).transpose(1, 2)


def forward(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool):
    """o (N, H, S, D) in q's dtype and lse (N, H, S) fp32."""
    N, H, S, D = q.shape
    o = _empty_like_heads(q)
    lse = torch.empty(N, H, S, dtype=torch.float32, device=q.device)
    cfg = config(S, D)
    grid = (triton.cdiv(N * H, cfg["BLOCK_B"]),)
    _attn_fwd[grid](q, k, v, o, lse, *q.stride(), *k.stride(), *v.stride(), *o.stride(),
                    N * H, H, S, D, 1.0 / math.sqrt(D), CAUSAL=causal,
                    PRECISION=_precision(q.dtype), **cfg)
    return o, lse


def backward(q, k, v, o, lse, do, causal: bool):
    """dq, dk, dv (N, H, S, D) in the inputs' dtypes."""
    N, H, S, D = q.shape
    dq, dk, dv = _empty_like_heads(q), _empty_like_heads(k), _empty_like_heads(v)
    cfg = config(S, D)
    grid = (triton.cdiv(N * H, cfg["BLOCK_B"]),)
    _attn_bwd[grid](q, k, v, o, do, lse, dq, dk, dv,
                    *q.stride(), *k.stride(), *v.stride(), *o.stride(), *do.stride(),
                    *dq.stride(), *dk.stride(), *dv.stride(),
                    N * H, H, S, D, 1.0 / math.sqrt(D), CAUSAL=causal,
                    PRECISION=_precision(q.dtype), **cfg)
    return dq, dk, dv
