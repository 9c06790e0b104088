"""Batched similarity Procrustes: align point sets X to Y with a rotation, scale and translation.

For each of N problems, with per-point weights w_j >= 0 (all 1 when not given):

    min_{s, R, t}  sum_j w_j |s R x_j + t - y_j|^2,   R in SO(3)

With weighted centroids mu_x, mu_y and centred points x'_j, y'_j, let
H = sum_j w_j x'_j y'_j^T = U S V^T. Then R = V diag(1, 1, d) U^T with d = sign(det(V U^T))
(the reflection fix: a mirror image is never "explained" by a rotation),
s = tr(diag(1, 1, d) S) / sum_j w_j |x'_j|^2 and t = mu_y - s R mu_x.

`procrustes_reference` is the plain PyTorch version (torch.linalg.svd) that tests and
benchmarks compare every faster implementation against.
"""

from __future__ import annotations

from typing import NamedTuple

import torch


class ProcrustesResult(NamedTuple):
    R: torch.Tensor  # (N, 3, 3) rotation applied as R @ x
    s: torch.Tensor  # (N,) scale (1 when scale=False)
    t: torch.Tensor  # (N, 3) translation
    aligned: torch.Tensor  # (N, J, 3) s R x_j + t
    err: torch.Tensor  # (N,) weighted mean over points of |aligned_j - y_j|


def procrustes_reference(X: torch.Tensor, Y: torch.Tensor, w: torch.Tensor | None = None,
                         scale: bool = True, eps: float = 1e-8) -> ProcrustesResult:
    """Reference similarity Procrustes of X onto Y, both (N, J, 3); w is (N, J) or None."""
    if X.shape != Y.shape or X.ndim != 3 or X.shape[-1] != 3:
        raise ValueError(f"expected X and Y of one shape (N, J, 3), got {tuple(X.shape)} "
                         f"and {tuple(Y.shape)}")
    if w is None:
        w = torch.ones(X.shape[:2], dtype=X.dtype, device=X.device)
    w = w.to(X.dtype)
    wsum = w.sum(dim=1, keepdim=True).clamp_min(eps)  # (N, 1)
    wn = (w / wsum).unsqueeze(-1)  # (N, J, 1), sums to 1 over J
    mu_x = (wn * X).sum(dim=1)  # (N, 3)
    mu_y = (wn * Y).sum(dim=1)
    Xc = X - mu_x[:, None]
    Yc = Y - mu_y[:, None]
    H = (wn * Xc).transpose(1, 2) @ Yc  # (N, 3, 3)
    U, S, Vh = torch.linalg.svd(H)
    V = Vh.transpose(1, 2)
    d = torch.sign(torch.linalg.det(V @ U.transpose(1, 2)))
    d = torch.where(d == 0, torch.ones_like(d), d)
    D = torch.ones_like(S)
    D = torch.cat([D[:, :2], d[:, None]], dim=1)  # (N, 3) diag(1, 1, d)
    R = V @ (D[:, :, None] * U.transpose(1, 2))
    if scale:
        var_x = (wn * Xc.square()).sum(dim=(1, 2))
        s = (D * S).sum(dim=1) / var_x.clamp_min(eps)
    else:
        s = torch.ones_like(S[:, 0])
    aligned = s[:, None, None] * (Xc @ R.transpose(1, 2)) + mu_y[:, None]
    t = mu_y - s[:, None] * (mu_x[:, None] @ R.transpose(1, 2))[:, 0]
    err = ((aligned - Y).norm(dim=-1) * wn[..., 0]).sum(dim=1)
    return ProcrustesResult(R, s, t, aligned, err)


def procrustes(X: torch.Tensor, Y: torch.Tensor, w: torch.Tensor | None = None,
               scale: bool = True) -> ProcrustesResult:
    """Similarity Procrustes of X onto Y (N, J, 3), dispatched to the best implementation.

    Today every device runs the reference; the fused Triton kernel plugs in here for CUDA.
    """
    return procrustes_reference(X, Y, w, scale)
