"""Batched similarity Procrustes: align point sets X to Y with a rotation, scale and translation.

For each of N problems, with per-point weights w_j >= 0 (all 1 when not given; 0 = a masked
point, which then affects nothing):

    min_{s, R, t}  sum_j w_j |s R x_j + t - y_j|^2,   R in SO(3)

With normalised weights w^_j = w_j / sum_i w_i, weighted centroids mu_x, mu_y and centred points
x'_j, y'_j, let H = sum_j w^_j x'_j y'_j^T = U S V^T. Then R = V diag(1, 1, d) U^T with
d = sign(det(V U^T)) (the reflection fix: a mirror image is never "explained" by a rotation),
s = tr(diag(1, 1, d) S) / sum_j w^_j |x'_j|^2 and t = mu_y - s R mu_x. The result also carries
the aligned points s R x_j + t and the per-set error sum_j w^_j |s R x_j + t - y_j| (PA-MPJPE
when X is the prediction and Y the truth).

Implementations (the `impl` argument of `procrustes`):

- "reference": `procrustes_reference`, the plain PyTorch version (torch.linalg.svd, autograd
  through it) that tests and benchmarks compare every faster one against. On CUDA the SVD
  synchronises with the host, and its gradient is NaN at repeated singular values.
- "torch": the fixed-iteration algorithm below in vectorised PyTorch, with the analytic
  backward: branch-free, no host synchronisation (CUDA-graph capturable), any device.
- "triton": the same algorithm fused into one Triton program per BLOCK_P problems
  (`_procrustes_triton`), forward and backward. CUDA, or CPU under TRITON_INTERPRET=1.
- "auto": "triton" for CUDA tensors when Triton imports, else "reference".

The fixed-iteration algorithm ("torch" and "triton", fp32 inside or the input's precision if
higher for "torch"):

1. centroids, centred points, H and var_x = sum_j w^_j |x'_j|^2 in one pass;
2. eigenvectors V of H^T H by SWEEPS cyclic Jacobi sweeps (3 rotations each, every rotation
   zeroing one off-diagonal entry exactly; no data-dependent branches, only selects), sorted by
   eigenvalue with det V = +1 kept through every swap;
3. U from a Gram-Schmidt QR of B = H V = U diag(sigma): u1 = b1/|b1|, u2 = the part of b2
   orthogonal to u1, normalised (any unit vector orthogonal to u1 when that part is ~0:
   collinear points), u3 = u1 x u2. So det U = +1 and sigma_3 = u3 . b3 carries the sign of
   det H: R = V U^T is then exactly V diag(1, 1, d) U'^T of the SVD, with no det to take;
4. s = (sigma_1 + sigma_2 + sigma_3) / var_x, t, the aligned points and the error.

Using B = H V rather than the eigenvalues for U keeps R accurate when singular values are
close or zero: a mix of v1, v2 inside a (near-)degenerate eigenspace mixes u1, u2 the same way
and leaves V U^T unchanged.

Backward (the Procrustes-specific form, not the generic SVD backward). With M = R H =
V diag(sigma) V^T symmetric, a perturbation dH turns R by dR = Omega R, Omega skew, where in
V's basis Omega~_kl = K~_kl / (sigma_k + sigma_l), K~ = V^T ((R dH)^T - R dH) V. The adjoint
of gR is therefore

    Z = V [skew(V^T gR R^T V) / (sigma_k + sigma_l)] V^T,    gH = -2 R^T Z

where a term with sigma_k + sigma_l <= GRAD_CLAMP * sigma_1 is dropped (R is free to turn in
that plane: collinear points, sigma_2 = sigma_3 = 0), and all of Z and the scale's gradient
through H are dropped when sigma_1 <= GRAD_CLAMP * sqrt(var_x var_y), its upper bound (H ~ 0 up
to rounding: X or Y one point, zero weights; R and s are then not determined by the data).
So gradients stay bounded, of the size they have at well-posed sets of the same scale, for
identity, planar (sigma_3 = 0), collinear, one-point and repeated singular values; dividing by
the ~0 sum instead gave up to 1e19. The scale's gradient needs no SVD at all: tr(R H) is
maximal in R, so d(sigma_1+sigma_2+sigma_3)/dH = R^T.
Centring, var_x, the aligned points and the error are differentiated directly. The weights
are treated as constants (no gradient to w) by "torch" and "triton".
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import torch

IMPLS = ("auto", "triton", "torch", "reference")
SWEEPS = 6  # cyclic Jacobi sweeps: convergence is quadratic, 6 reach fp64 on 3x3 matrices
GRAD_CLAMP = 1e-4  # backward: drop 1 / (sigma_k + sigma_l) below GRAD_CLAMP * sigma_1
_RANK1_TOL = 1e-6  # |part of b2 orthogonal to u1| below this * sigma_1: collinear points


class ProcrustesResult(NamedTuple):
    R: torch.Tensor  # (N, 3, 3) rotation applied as R @ x
    s: torch.Tensor  # (N,) scale (1 when scale=False)
    t: torch.Tensor  # (N, 3) translation
    aligned: torch.Tensor  # (N, J, 3) s R x_j + t
    err: torch.Tensor  # (N,) weighted mean over points of |aligned_j - y_j|


def _check(X: torch.Tensor, Y: torch.Tensor, w: torch.Tensor | None) -> None:
    if X.shape != Y.shape or X.ndim != 3 or X.shape[-1] != 3:
        raise ValueError(f"expected X and Y of one shape (N, J, 3), got {tuple(X.shape)} "
                         f"and {tuple(Y.shape)}")
    if w is not None and tuple(w.shape) != tuple(X.shape[:2]):
        raise ValueError(f"expected weights w of shape (N, J) = {tuple(X.shape[:2])}, "
                         f"got {tuple(w.shape)}")


def procrustes_reference(X: torch.Tensor, Y: torch.Tensor, w: torch.Tensor | None = None,
                         scale: bool = True, eps: float = 1e-8) -> ProcrustesResult:
    """Reference similarity Procrustes of X onto Y, both (N, J, 3); w is (N, J) or None."""
    _check(X, Y, w)
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


# ---------------------------------------------------------------------------------------------
# The fixed-iteration algorithm in vectorised PyTorch ("torch"); `_procrustes_triton` mirrors it.


def _centre(X, Y, w, eps):
    """Normalised weights (N, J), centroids (N, 3), centred points (N, J, 3), var_x (N,)."""
    wn = w / w.sum(dim=1, keepdim=True).clamp_min(eps)  # (N, J)
    mu_x = (wn[..., None] * X).sum(dim=1)  # (N, 3)
    mu_y = (wn[..., None] * Y).sum(dim=1)
    Xc, Yc = X - mu_x[:, None], Y - mu_y[:, None]  # (N, J, 3)
    var_x = (wn * Xc.square().sum(dim=-1)).sum(dim=1)  # (N,)
    return wn, mu_x, mu_y, Xc, Yc, var_x


def _jacobi_rotation(app, aqq, apq, apr, aqr, vp, vq):
    """One Jacobi rotation in the (p, q) plane of a symmetric 3x3 matrix (r the third index):
    the (p, q) entry becomes exactly 0. Returns a'pp, a'qq, a'pr, a'qr and V's columns p, q.

    t = tan(phi) is the smaller root of t^2 + 2 theta t - 1 = 0, theta = (aqq - app) / (2 apq),
    written without the division by apq (no overflow when apq ~ 0):
    t = sign(d) 2 apq / (|d| + sqrt(d^2 + 4 apq^2)), d = aqq - app; t = 0 when apq = d = 0.
    """
    d = aqq - app
    den = d.abs() + torch.sqrt(d * d + 4 * apq * apq)
    ok = den > 0
    sgn = torch.where(d >= 0, 1.0, -1.0).to(d)
    t = torch.where(ok, sgn * 2 * apq / torch.where(ok, den, torch.ones_like(den)), torch.zeros_like(d))
    c = torch.rsqrt(t * t + 1)
    s = t * c
    return (app - t * apq, aqq + t * apq, c * apr - s * aqr, s * apr + c * aqr,
            c[:, None] * vp - s[:, None] * vq, s[:, None] * vp + c[:, None] * vq)


def _sort_pair(ep, eq, vp, vq):
    """Order (ep, eq) descending; a swap negates one column so det V stays +1."""
    sw = ep < eq
    swc = sw[:, None]
    return (torch.where(sw, eq, ep), torch.where(sw, ep, eq),
            torch.where(swc, vq, vp), torch.where(swc, -vp, vq))


def _rotation_from_h(H: torch.Tensor, sweeps: int = SWEEPS):
    """R (N, 3, 3), V (N, 3, 3) and signed sigma (N, 3) from H (N, 3, 3); see the module doc."""
    tiny = torch.finfo(H.dtype).tiny ** 0.5
    A = H.transpose(1, 2) @ H  # (N, 3, 3) = V diag(sigma^2) V^T
    # unit trace: same eigenvectors, and no overflow in the rotations whatever the units
    A = A / A.diagonal(dim1=1, dim2=2).sum(-1).clamp_min(tiny)[:, None, None]
    a00, a01, a02, a11, a12, a22 = A[:, 0, 0], A[:, 0, 1], A[:, 0, 2], A[:, 1, 1], A[:, 1, 2], A[:, 2, 2]
    eye = torch.eye(3, dtype=H.dtype, device=H.device).expand(H.shape[0], 3, 3)
    v0, v1, v2 = eye[:, :, 0], eye[:, :, 1], eye[:, :, 2]  # columns of V, (N, 3) each
    zero = torch.zeros_like(a00)
    for _ in range(sweeps):
        a00, a11, a02, a12, v0, v1 = _jacobi_rotation(a00, a11, a01, a02, a12, v0, v1)
        a01 = zero
        a00, a22, a01, a12, v0, v2 = _jacobi_rotation(a00, a22, a02, a01, a12, v0, v2)
        a02 = zero
        a11, a22, a01, a02, v1, v2 = _jacobi_rotation(a11, a22, a12, a01, a02, v1, v2)
        a12 = zero
    a00, a11, v0, v1 = _sort_pair(a00, a11, v0, v1)  # a 3-input sorting network
    a00, a22, v0, v2 = _sort_pair(a00, a22, v0, v2)
    a11, a22, v1, v2 = _sort_pair(a11, a22, v1, v2)
    V = torch.stack([v0, v1, v2], dim=-1)  # (N, 3, 3), columns v_k
    B = H @ V  # (N, 3, 3), columns b_k = sigma_k u_k
    b0, b1, b2 = B[:, :, 0], B[:, :, 1], B[:, :, 2]
    n0 = b0.square().sum(-1)
    ex = torch.zeros_like(b0)
    ex[:, 0] = 1
    u0 = torch.where((n0 > tiny)[:, None], b0 * torch.rsqrt(n0.clamp_min(tiny))[:, None], ex)
    w1 = b1 - (u0 * b1).sum(-1, keepdim=True) * u0
    n1 = w1.square().sum(-1)
    # any unit vector orthogonal to u0: u0 x e_x, or u0 x e_y when u0 is close to e_x
    e = torch.where((u0[:, :1].abs() < 0.6), ex, ex.roll(1, dims=-1))
    f = torch.linalg.cross(u0, e)
    f = f * torch.rsqrt(f.square().sum(-1, keepdim=True))
    ok1 = (n1 > (_RANK1_TOL ** 2) * n0) & (n1 > tiny)
    u1 = torch.where(ok1[:, None], w1 * torch.rsqrt(n1.clamp_min(tiny))[:, None], f)
    u2 = torch.linalg.cross(u0, u1)
    U = torch.stack([u0, u1, u2], dim=-1)  # (N, 3, 3), det +1
    sig = (U * B).sum(dim=1)  # (N, 3): u_k . b_k; sigma_3 signed
    R = V @ U.transpose(1, 2)
    return R, V, sig


def _forward_torch(X, Y, w, scale: bool, eps: float):
    """Fixed-iteration Procrustes; returns the result and (V, sigma) for the backward."""
    ct = torch.promote_types(X.dtype, torch.float32)
    Xf, Yf, wf = X.to(ct), Y.to(ct), w.to(ct)
    wn, mu_x, mu_y, Xc, Yc, var_x = _centre(Xf, Yf, wf, eps)
    H = (wn[..., None] * Xc).transpose(1, 2) @ Yc  # (N, 3, 3) = sum_j w^_j x'_j y'_j^T
    R, V, sig = _rotation_from_h(H)
    s = sig.sum(-1) / var_x.clamp_min(eps) if scale else torch.ones_like(var_x)
    aligned = s[:, None, None] * (Xc @ R.transpose(1, 2)) + mu_y[:, None]  # (N, J, 3)
    t = mu_y - s[:, None] * (R @ mu_x[..., None])[..., 0]
    err = (wn * (aligned - Yf).norm(dim=-1)).sum(dim=1)
    out = ProcrustesResult(*(x.to(X.dtype) for x in (R, s, t, aligned, err)))
    return out, V, sig


def _backward_torch(X, Y, w, R, s, V, sig, gR, gs, gt, ga, gerr, scale: bool, eps: float):
    """dL/dX, dL/dY (N, J, 3) from the output gradients (any of which may be None)."""
    ct = V.dtype
    X, Y, w, R, s = X.to(ct), Y.to(ct), w.to(ct), R.to(ct), s.to(ct)
    wn, mu_x, mu_y, Xc, Yc, var_x = _centre(X, Y, w, eps)
    RXc = Xc @ R.transpose(1, 2)  # (N, J, 3) R x'_j
    gR = torch.zeros_like(R) if gR is None else gR.to(ct)
    gs = torch.zeros_like(s) if gs is None or not scale else gs.to(ct)
    ga = torch.zeros_like(X) if ga is None else ga.to(ct)
    gY = torch.zeros_like(Y)
    gmu_x = torch.zeros_like(mu_x)
    gmu_y = torch.zeros_like(mu_y)
    if gerr is not None:  # err = sum_j w^_j |e_j|, e_j = aligned_j - y_j
        e = s[:, None, None] * RXc + mu_y[:, None] - Y
        nrm = e.norm(dim=-1, keepdim=True)  # (N, J, 1)
        ge = gerr.to(ct)[:, None, None] * wn[..., None] * torch.where(
            nrm > 0, e / nrm.clamp_min(torch.finfo(ct).tiny), torch.zeros_like(e))
        ga = ga + ge
        gY = gY - ge
    if gt is not None:  # t = mu_y - s R mu_x
        gt = gt.to(ct)
        Rmu = (R @ mu_x[..., None])[..., 0]
        gmu_y = gmu_y + gt
        gs = gs - (gt * Rmu).sum(-1) if scale else gs
        gR = gR - s[:, None, None] * gt[:, :, None] * mu_x[:, None, :]
        gmu_x = gmu_x - s[:, None] * (R.transpose(1, 2) @ gt[..., None])[..., 0]
    # aligned_j = s R x'_j + mu_y
    if scale:
        gs = gs + (ga * RXc).sum(dim=(1, 2))
    gR = gR + s[:, None, None] * (ga.transpose(1, 2) @ Xc)
    gXc = s[:, None, None] * (ga @ R)
    gmu_y = gmu_y + ga.sum(dim=1)
    # H negligible next to its bound sqrt(var_x var_y) (X or Y one point up to rounding, zero
    # weights): R and s are not determined by the data, their gradients are dropped
    var_y = (wn * Yc.square().sum(dim=-1)).sum(dim=1)
    live = sig[:, 0] > GRAD_CLAMP * var_x.sqrt() * var_y.sqrt()  # (N,)
    gH = torch.zeros_like(R)
    gvar = torch.zeros_like(var_x)
    if scale:  # s = (sigma_1 + sigma_2 + sigma_3) / var_x, d(sum sigma)/dH = R^T
        vc = var_x.clamp_min(eps)
        gs = torch.where(live, gs, torch.zeros_like(gs))
        gH = gH + (gs / vc)[:, None, None] * R.transpose(1, 2)
        gvar = torch.where(var_x > eps, -gs * sig.sum(-1) / vc.square(), torch.zeros_like(gs))
    # rotation: gH += -2 R^T V [skew(V^T gR R^T V) / (sigma_k + sigma_l)] V^T, each term with
    # sigma_k + sigma_l <= GRAD_CLAMP sigma_1 (R free in that plane: collinear points) dropped
    G = V.transpose(1, 2) @ gR @ R.transpose(1, 2) @ V  # (N, 3, 3)
    den = sig[:, :, None] + sig[:, None, :]  # (N, 3, 3) sigma_k + sigma_l
    ok = (den > GRAD_CLAMP * sig[:, :1, None]) & live[:, None, None]
    Zt = torch.where(ok, 0.5 * (G - G.transpose(1, 2)) / torch.where(ok, den, torch.ones_like(den)),
                     torch.zeros_like(den))  # skew; diagonal 0
    Z = V @ Zt @ V.transpose(1, 2)
    gH = gH - 2 * R.transpose(1, 2) @ Z
    # H = sum_j w^_j x'_j y'_j^T, var_x = sum_j w^_j |x'_j|^2
    gXc = gXc + wn[..., None] * (Yc @ gH.transpose(1, 2)) + 2 * (wn * gvar[:, None])[..., None] * Xc
    gYc = wn[..., None] * (Xc @ gH)
    # x'_j = x_j - mu_x, mu_x = sum_j w^_j x_j
    gX = gXc + wn[..., None] * (gmu_x - gXc.sum(dim=1))[:, None]
    gY = gY + gYc + wn[..., None] * (gmu_y - gYc.sum(dim=1))[:, None]
    return gX, gY


@functools.cache
def _triton_available() -> bool:
    try:
        from streamlift.kernels import _procrustes_triton  # noqa: F401
    except ImportError:
        return False
    return True


def _ones_if_none(w, X):
    return torch.ones(X.shape[:2], dtype=X.dtype, device=X.device) if w is None else w


class FusedProcrustes(torch.autograd.Function):
    """Fixed-iteration Procrustes with the analytic backward, on "torch" or "triton"."""

    @staticmethod
    def forward(ctx, X, Y, w, scale: bool, eps: float, impl: str):
        if impl == "triton":
            from streamlift.kernels import _procrustes_triton as kt
            out, V, sig = kt.forward(X, Y, w, scale, eps)
        else:
            out, V, sig = _forward_torch(X, Y, _ones_if_none(w, X), scale, eps)
        ctx.save_for_backward(X, Y, w, out.R, out.s, V, sig)
        ctx.scale, ctx.eps, ctx.impl = scale, eps, impl
        ctx.set_materialize_grads(False)  # absent output gradients stay None: less to read
        if not scale:
            ctx.mark_non_differentiable(out.s)
        return tuple(out)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, gR, gs, gt, ga, gerr):
        X, Y, w, R, s, V, sig = ctx.saved_tensors
        if ctx.impl == "triton":
            from streamlift.kernels import _procrustes_triton as kt
            gX, gY = kt.backward(X, Y, w, R, s, V, sig, gR, gs, gt, ga, gerr, ctx.scale, ctx.eps)
        else:
            gX, gY = _backward_torch(X, Y, _ones_if_none(w, X), R, s, V, sig, gR, gs, gt, ga, gerr,
                                     ctx.scale, ctx.eps)
        return gX.to(X.dtype), gY.to(Y.dtype), None, None, None, None


def resolve_impl(impl: str, x: torch.Tensor) -> str:
    """The implementation `impl` stands for on tensors like x ("auto" resolved)."""
    if impl not in IMPLS:
        raise ValueError(f"impl must be one of {IMPLS}, got {impl!r}")
    if impl == "auto":
        return "triton" if x.is_cuda and x.dtype.is_floating_point and _triton_available() \
            else "reference"
    return impl


def procrustes(X: torch.Tensor, Y: torch.Tensor, w: torch.Tensor | None = None,
               scale: bool = True, impl: str = "auto", eps: float = 1e-8) -> ProcrustesResult:
    """Similarity Procrustes of X onto Y (N, J, 3) with optional weights w (N, J).

    impl: "auto" (Triton on CUDA, the SVD reference otherwise), "triton", "torch" or
    "reference"; see the module docstring. "triton" and "torch" never synchronise with the
    host, so they can run inside a captured CUDA graph, and their gradients stay finite at
    degenerate inputs.
    """
    _check(X, Y, w)
    impl = resolve_impl(impl, X)
    if impl == "reference":
        return procrustes_reference(X, Y, w, scale, eps)
    return ProcrustesResult(*FusedProcrustes.apply(X, Y, w, scale, eps, impl))
