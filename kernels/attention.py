"""Attention over many tiny sequences (17 joints per frame, 27-243 frames per joint).

For each sequence n and head h, with scale = 1 / sqrt(D):

    P = softmax(scale * Q K^T + M),   O = P V

where M is 0, or -inf above the diagonal when `causal` (a frame attends to itself and earlier
frames only). Inputs are (N, H, S, D) and may be strided views of a packed (N, S, 3, H, D)
projection: nothing here needs them contiguous.

`attention_reference` is the plain PyTorch math (softmax in fp32) that tests and benchmarks
compare every faster implementation against.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def attention_reference(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                        causal: bool = False) -> torch.Tensor:
    """Reference attention; q, k, v (N, H, S, D) -> (N, H, S, D) in q's dtype."""
    scale = 1.0 / math.sqrt(q.shape[-1])
    s = (q.float() @ k.float().transpose(-1, -2)) * scale  # (N, H, S, S)
    if causal:
        S = q.shape[-2]
        mask = torch.ones(S, S, dtype=torch.bool, device=q.device).triu(1)
        s = s.masked_fill(mask, float("-inf"))
    return (s.softmax(dim=-1) @ v.float()).to(q.dtype)


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool = False) -> torch.Tensor:
    """Attention entry point used by the model; q, k, v (N, H, S, D) -> (N, H, S, D).

    Dispatches to PyTorch's fused scaled_dot_product_attention (same math as the reference);
    the Triton kernel for CUDA plugs in here.
    """
    return F.scaled_dot_product_attention(q, k, v, is_causal=causal)
