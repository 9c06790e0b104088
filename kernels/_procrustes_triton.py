"""Triton kernels for batched similarity Procrustes (imported only when Triton is used).

The algorithm and its backward are stated in `procrustes.py`'s docstring; this is the same
arithmetic as its "torch" implementation, fused. One program owns BLOCK_P problems, one lane
per problem for the 3x3 algebra and a (BLOCK_P, J_PAD) tile per coordinate for the points.
Everything is fp32 inside whatever the input dtype; there are no data-dependent branches (only
selects) and no host synchronisation, so a launch can be captured in a CUDA graph.

Bytes per problem of J points (e = element size of X, Y):

    forward   reads X, Y (and w)       writes aligned, R, s, t, err (+ V, sigma fp32 for backward)
              6Je (+ 4J)               3Je + 13e + 48
    backward  reads X, Y, w, R, s, V, sigma and the output gradients present; writes dX, dY

A 3x3 matrix lives in nine (BLOCK_P,) registers named m00 ... m22 (row, column).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from streamlift.kernels.procrustes import _RANK1_TOL, GRAD_CLAMP, SWEEPS, ProcrustesResult

_TINY = tl.constexpr(1.0842021724855044e-19)  # sqrt of fp32's smallest normal


@triton.jit
def _mm(a00, a01, a02, a10, a11, a12, a20, a21, a22,
        b00, b01, b02, b10, b11, b12, b20, b21, b22):
    """C = A B for 3x3 matrices held entry by entry (pass A's entries transposed for A^T B)."""
    return (a00 * b00 + a01 * b10 + a02 * b20, a00 * b01 + a01 * b11 + a02 * b21,
            a00 * b02 + a01 * b12 + a02 * b22,
            a10 * b00 + a11 * b10 + a12 * b20, a10 * b01 + a11 * b11 + a12 * b21,
            a10 * b02 + a11 * b12 + a12 * b22,
            a20 * b00 + a21 * b10 + a22 * b20, a20 * b01 + a21 * b11 + a22 * b21,
            a20 * b02 + a21 * b12 + a22 * b22)


@triton.jit
def _jacobi_rotation(app, aqq, apq, apr, aqr, vp0, vp1, vp2, vq0, vq1, vq2):
    """Zero the (p, q) entry of a symmetric 3x3 matrix; r is the third index. Returns a'pp,
    a'qq, a'pr, a'qr and V's columns p and q rotated. t = tan(phi), the smaller root:
    t = sign(d) 2 apq / (|d| + sqrt(d^2 + 4 apq^2)), d = aqq - app (0 when apq = d = 0)."""
    d = aqq - app
    den = tl.abs(d) + tl.sqrt(d * d + 4.0 * apq * apq)
    ok = den > 0
    sgn = tl.where(d >= 0, 1.0, -1.0)
    t = tl.where(ok, sgn * 2.0 * apq / tl.where(ok, den, 1.0), 0.0)
    c = 1.0 / tl.sqrt(t * t + 1.0)
    s = t * c
    return (app - t * apq, aqq + t * apq, c * apr - s * aqr, s * apr + c * aqr,
            c * vp0 - s * vq0, c * vp1 - s * vq1, c * vp2 - s * vq2,
            s * vp0 + c * vq0, s * vp1 + c * vq1, s * vp2 + c * vq2)


@triton.jit
def _sort_pair(ep, eq, vp0, vp1, vp2, vq0, vq1, vq2):
    """(ep, eq) in descending order; a swap negates one column so det V stays +1."""
    sw = ep < eq
    return (tl.where(sw, eq, ep), tl.where(sw, ep, eq),
            tl.where(sw, vq0, vp0), tl.where(sw, vq1, vp1), tl.where(sw, vq2, vp2),
            tl.where(sw, -vp0, vq0), tl.where(sw, -vp1, vq1), tl.where(sw, -vp2, vq2))


@triton.jit
def _wsum3(w, a0, a1, a2):
    """sum_j w_j a_j per set for the three coordinates of (BLOCK_P, J_PAD) tiles -> 3 x (BLOCK_P,)."""
    return tl.sum(w * a0, axis=1), tl.sum(w * a1, axis=1), tl.sum(w * a2, axis=1)


@triton.jit
def _load_points(X, Y, Wt, sxn, sxj, sxc, syn, syj, syc, swn, swj, p2, j2, m2, eps,
                 HAS_W: tl.constexpr):
    """Centring pass: normalised weights, centroids, centred coordinates (BLOCK_P, J_PAD)."""
    xb = X + p2 * sxn + j2 * sxj
    yb = Y + p2 * syn + j2 * syj
    x0 = tl.load(xb, mask=m2, other=0.0).to(tl.float32)
    x1 = tl.load(xb + sxc, mask=m2, other=0.0).to(tl.float32)
    x2 = tl.load(xb + 2 * sxc, mask=m2, other=0.0).to(tl.float32)
    y0 = tl.load(yb, mask=m2, other=0.0).to(tl.float32)
    y1 = tl.load(yb + syc, mask=m2, other=0.0).to(tl.float32)
    y2 = tl.load(yb + 2 * syc, mask=m2, other=0.0).to(tl.float32)
    if HAS_W:
        w = tl.load(Wt + p2 * swn + j2 * swj, mask=m2, other=0.0).to(tl.float32)
    else:
        w = tl.where(m2, 1.0, 0.0)
    wn = w / tl.maximum(tl.sum(w, axis=1), eps)[:, None]  # padding points have weight 0
    mx0, mx1, mx2 = _wsum3(wn, x0, x1, x2)
    my0, my1, my2 = _wsum3(wn, y0, y1, y2)
    return (wn, mx0, mx1, mx2, my0, my1, my2,
            x0 - mx0[:, None], x1 - mx1[:, None], x2 - mx2[:, None],
            y0, y1, y2, y0 - my0[:, None], y1 - my1[:, None], y2 - my2[:, None])


@triton.jit
def _load_mat3(base, mask):
    """A row-major 3x3 matrix per set (9 loads of (BLOCK_P,) vectors, fp32; 0 where masked)."""
    a00 = tl.load(base + 0, mask=mask, other=0.0).to(tl.float32)
    a01 = tl.load(base + 1, mask=mask, other=0.0).to(tl.float32)
    a02 = tl.load(base + 2, mask=mask, other=0.0).to(tl.float32)
    a10 = tl.load(base + 3, mask=mask, other=0.0).to(tl.float32)
    a11 = tl.load(base + 4, mask=mask, other=0.0).to(tl.float32)
    a12 = tl.load(base + 5, mask=mask, other=0.0).to(tl.float32)
    a20 = tl.load(base + 6, mask=mask, other=0.0).to(tl.float32)
    a21 = tl.load(base + 7, mask=mask, other=0.0).to(tl.float32)
    a22 = tl.load(base + 8, mask=mask, other=0.0).to(tl.float32)
    return a00, a01, a02, a10, a11, a12, a20, a21, a22


@triton.jit
def _procrustes_fwd(X, Y, Wt, R, Sc, T, A, E, V, SIG,
                    sxn, sxj, sxc, syn, syj, syc, swn, swj,
                    N, J, eps,
                    HAS_W: tl.constexpr, SCALE: tl.constexpr, SWEEPS: tl.constexpr,
                    RANK1_TOL: tl.constexpr, BLOCK_P: tl.constexpr, J_PAD: tl.constexpr):
    """Fused centring, H = sum_j w^_j x'_j y'_j^T, Jacobi eigenvectors V of H^T H, U by QR of
    H V, R = V U^T, s = (sigma_1 + sigma_2 + sigma_3) / var_x, t, aligned points and error."""
    pid = tl.program_id(0)
    p = pid * BLOCK_P + tl.arange(0, BLOCK_P)  # (BLOCK_P,) problem indices
    p_ok = p < N
    p = tl.where(p_ok, p, 0).to(tl.int64)
    jj = tl.arange(0, J_PAD)
    p2 = p[:, None]  # (BLOCK_P, 1)
    j2 = jj[None, :]  # (1, J_PAD)
    m2 = p_ok[:, None] & (j2 < J)
    (wn, mx0, mx1, mx2, my0, my1, my2, xc0, xc1, xc2,
     y0, y1, y2, yc0, yc1, yc2) = _load_points(X, Y, Wt, sxn, sxj, sxc, syn, syj, syc, swn, swj,
                                               p2, j2, m2, eps, HAS_W)
    wx0 = wn * xc0
    wx1 = wn * xc1
    wx2 = wn * xc2
    var_x = tl.sum(wx0 * xc0 + wx1 * xc1 + wx2 * xc2, axis=1)
    h00, h01, h02 = _wsum3(wx0, yc0, yc1, yc2)  # H = sum_j w_j x'_j y'_j^T, row by row
    h10, h11, h12 = _wsum3(wx1, yc0, yc1, yc2)
    h20, h21, h22 = _wsum3(wx2, yc0, yc1, yc2)
    # A = H^T H / tr(H^T H) (symmetric: six entries); unit trace, so no overflow in any units
    TINY = _TINY
    a00 = h00 * h00 + h10 * h10 + h20 * h20
    a01 = h00 * h01 + h10 * h11 + h20 * h21
    a02 = h00 * h02 + h10 * h12 + h20 * h22
    a11 = h01 * h01 + h11 * h11 + h21 * h21
    a12 = h01 * h02 + h11 * h12 + h21 * h22
    a22 = h02 * h02 + h12 * h12 + h22 * h22
    rtr = 1.0 / tl.maximum(a00 + a11 + a22, TINY)
    a00 *= rtr
    a01 *= rtr
    a02 *= rtr
    a11 *= rtr
    a12 *= rtr
    a22 *= rtr
    one = tl.full((BLOCK_P,), 1.0, tl.float32)
    zero = tl.zeros((BLOCK_P,), tl.float32)
    # V's columns (v_k0, v_k1, v_k2) = column k
    v00, v01, v02 = one, zero, zero
    v10, v11, v12 = zero, one, zero
    v20, v21, v22 = zero, zero, one
    for _ in tl.static_range(SWEEPS):
        a00, a11, a02, a12, v00, v01, v02, v10, v11, v12 = _jacobi_rotation(
            a00, a11, a01, a02, a12, v00, v01, v02, v10, v11, v12)
        a01 = zero
        a00, a22, a01, a12, v00, v01, v02, v20, v21, v22 = _jacobi_rotation(
            a00, a22, a02, a01, a12, v00, v01, v02, v20, v21, v22)
        a02 = zero
        a11, a22, a01, a02, v10, v11, v12, v20, v21, v22 = _jacobi_rotation(
            a11, a22, a12, a01, a02, v10, v11, v12, v20, v21, v22)
        a12 = zero
    a00, a11, v00, v01, v02, v10, v11, v12 = _sort_pair(a00, a11, v00, v01, v02, v10, v11, v12)
    a00, a22, v00, v01, v02, v20, v21, v22 = _sort_pair(a00, a22, v00, v01, v02, v20, v21, v22)
    a11, a22, v10, v11, v12, v20, v21, v22 = _sort_pair(a11, a22, v10, v11, v12, v20, v21, v22)
    # b_k = H v_k = sigma_k u_k
    b00 = h00 * v00 + h01 * v01 + h02 * v02
    b01 = h10 * v00 + h11 * v01 + h12 * v02
    b02 = h20 * v00 + h21 * v01 + h22 * v02
    b10 = h00 * v10 + h01 * v11 + h02 * v12
    b11 = h10 * v10 + h11 * v11 + h12 * v12
    b12 = h20 * v10 + h21 * v11 + h22 * v12
    b20 = h00 * v20 + h01 * v21 + h02 * v22
    b21 = h10 * v20 + h11 * v21 + h12 * v22
    b22 = h20 * v20 + h21 * v21 + h22 * v22
    # Gram-Schmidt QR of B: u_0, u_1, u_2 = u_0 x u_1 (det U = +1)
    n0 = b00 * b00 + b01 * b01 + b02 * b02
    ok0 = n0 > TINY
    r0 = 1.0 / tl.sqrt(tl.maximum(n0, TINY))
    u00 = tl.where(ok0, b00 * r0, 1.0)
    u01 = tl.where(ok0, b01 * r0, 0.0)
    u02 = tl.where(ok0, b02 * r0, 0.0)
    dot01 = u00 * b10 + u01 * b11 + u02 * b12
    w0 = b10 - dot01 * u00
    w1 = b11 - dot01 * u01
    w2 = b12 - dot01 * u02
    n1 = w0 * w0 + w1 * w1 + w2 * w2
    # fallback for collinear points: u_0 x e_x, or u_0 x e_y when u_0 is close to e_x
    near_x = tl.abs(u00) >= 0.6
    f0 = tl.where(near_x, -u02, 0.0)
    f1 = tl.where(near_x, 0.0, u02)
    f2 = tl.where(near_x, u00, -u01)
    rf = 1.0 / tl.sqrt(f0 * f0 + f1 * f1 + f2 * f2)
    ok1 = (n1 > (RANK1_TOL * RANK1_TOL) * n0) & (n1 > TINY)
    r1 = 1.0 / tl.sqrt(tl.maximum(n1, TINY))
    u10 = tl.where(ok1, w0 * r1, f0 * rf)
    u11 = tl.where(ok1, w1 * r1, f1 * rf)
    u12 = tl.where(ok1, w2 * r1, f2 * rf)
    u20 = u01 * u12 - u02 * u11
    u21 = u02 * u10 - u00 * u12
    u22 = u00 * u11 - u01 * u10
    sig0 = u00 * b00 + u01 * b01 + u02 * b02
    sig1 = u10 * b10 + u11 * b11 + u12 * b12
    sig2 = u20 * b20 + u21 * b21 + u22 * b22  # signed: < 0 when det H < 0 (reflection fix)
    # R = V U^T: R_ij = sum_k v_k[i] u_k[j]
    r00 = v00 * u00 + v10 * u10 + v20 * u20
    r01 = v00 * u01 + v10 * u11 + v20 * u21
    r02 = v00 * u02 + v10 * u12 + v20 * u22
    r10 = v01 * u00 + v11 * u10 + v21 * u20
    r11 = v01 * u01 + v11 * u11 + v21 * u21
    r12 = v01 * u02 + v11 * u12 + v21 * u22
    r20 = v02 * u00 + v12 * u10 + v22 * u20
    r21 = v02 * u01 + v12 * u11 + v22 * u21
    r22 = v02 * u02 + v12 * u12 + v22 * u22
    if SCALE:
        s = (sig0 + sig1 + sig2) / tl.maximum(var_x, eps)
    else:
        s = one
    # aligned_j = s R x'_j + mu_y; err = sum_j w^_j |aligned_j - y_j|
    al0 = s[:, None] * (r00[:, None] * xc0 + r01[:, None] * xc1 + r02[:, None] * xc2) + my0[:, None]
    al1 = s[:, None] * (r10[:, None] * xc0 + r11[:, None] * xc1 + r12[:, None] * xc2) + my1[:, None]
    al2 = s[:, None] * (r20[:, None] * xc0 + r21[:, None] * xc1 + r22[:, None] * xc2) + my2[:, None]
    e0 = al0 - y0
    e1 = al1 - y1
    e2 = al2 - y2
    err = tl.sum(wn * tl.sqrt(e0 * e0 + e1 * e1 + e2 * e2), axis=1)
    t0 = my0 - s * (r00 * mx0 + r01 * mx1 + r02 * mx2)
    t1 = my1 - s * (r10 * mx0 + r11 * mx1 + r12 * mx2)
    t2 = my2 - s * (r20 * mx0 + r21 * mx1 + r22 * mx2)
    # stores: aligned (N, J, 3), R and V (N, 3, 3), t and sigma (N, 3), s and err (N,), contiguous
    out_ty = A.dtype.element_ty
    ab = A + p2 * (3 * J) + j2 * 3
    tl.store(ab, al0.to(out_ty), mask=m2)
    tl.store(ab + 1, al1.to(out_ty), mask=m2)
    tl.store(ab + 2, al2.to(out_ty), mask=m2)
    rb = R + p * 9
    tl.store(rb + 0, r00.to(out_ty), mask=p_ok)
    tl.store(rb + 1, r01.to(out_ty), mask=p_ok)
    tl.store(rb + 2, r02.to(out_ty), mask=p_ok)
    tl.store(rb + 3, r10.to(out_ty), mask=p_ok)
    tl.store(rb + 4, r11.to(out_ty), mask=p_ok)
    tl.store(rb + 5, r12.to(out_ty), mask=p_ok)
    tl.store(rb + 6, r20.to(out_ty), mask=p_ok)
    tl.store(rb + 7, r21.to(out_ty), mask=p_ok)
    tl.store(rb + 8, r22.to(out_ty), mask=p_ok)
    vb = V + p * 9  # V (N, 3, 3) row-major: V[i, k] = v_k[i]
    tl.store(vb + 0, v00, mask=p_ok)
    tl.store(vb + 1, v10, mask=p_ok)
    tl.store(vb + 2, v20, mask=p_ok)
    tl.store(vb + 3, v01, mask=p_ok)
    tl.store(vb + 4, v11, mask=p_ok)
    tl.store(vb + 5, v21, mask=p_ok)
    tl.store(vb + 6, v02, mask=p_ok)
    tl.store(vb + 7, v12, mask=p_ok)
    tl.store(vb + 8, v22, mask=p_ok)
    tl.store(SIG + p * 3, sig0, mask=p_ok)
    tl.store(SIG + p * 3 + 1, sig1, mask=p_ok)
    tl.store(SIG + p * 3 + 2, sig2, mask=p_ok)
    tl.store(T + p * 3, t0.to(out_ty), mask=p_ok)
    tl.store(T + p * 3 + 1, t1.to(out_ty), mask=p_ok)
    tl.store(T + p * 3 + 2, t2.to(out_ty), mask=p_ok)
    tl.store(Sc + p, s.to(out_ty), mask=p_ok)
    tl.store(E + p, err.to(out_ty), mask=p_ok)


@triton.jit
def _procrustes_bwd(X, Y, Wt, R, Sc, V, SIG, GR, GS, GT, GA, GE, DX, DY,
                    sxn, sxj, sxc, syn, syj, syc, swn, swj,
                    N, J, eps,
                    HAS_W: tl.constexpr, SCALE: tl.constexpr, HAS_GR: tl.constexpr,
                    HAS_GS: tl.constexpr, HAS_GT: tl.constexpr, HAS_GA: tl.constexpr,
                    HAS_GE: tl.constexpr, GRAD_CLAMP: tl.constexpr,
                    BLOCK_P: tl.constexpr, J_PAD: tl.constexpr):
    """dL/dX, dL/dY from the gradients of (R, s, t, aligned, err); the centring is recomputed
    from X, Y, w rather than stored. Each HAS_* flag skips the reads of an absent gradient.

        err:     ge_j = gerr w^_j e_j / |e_j|  ->  g_aligned_j += ge_j, gy_j -= ge_j
        t:       g_mu_y += gt, gs -= gt . R mu_x, gR -= s gt mu_x^T, g_mu_x -= s R^T gt
        aligned: gs += sum_j g_a_j . R x'_j, gR += s sum_j g_a_j x'_j^T, gx'_j += s R^T g_a_j
        s:       gH += gs / var_x R^T,  g_var_x = -gs s / var_x
        R:       gH -= 2 R^T V [skew(V^T gR R^T V) / (sigma_k + sigma_l)] V^T, planes with
                 sigma_k + sigma_l <= GRAD_CLAMP sigma_1 dropped; R and s terms dropped when
                 sigma_1 <= GRAD_CLAMP sqrt(var_x var_y)
        H, var:  gx'_j += w^_j (gH y'_j + 2 g_var x'_j),  gy'_j += w^_j gH^T x'_j
        centring: gx_j = gx'_j + w^_j (g_mu_x - sum_i gx'_i), likewise for y
    """
    pid = tl.program_id(0)
    p = pid * BLOCK_P + tl.arange(0, BLOCK_P)
    p_ok = p < N
    p = tl.where(p_ok, p, 0).to(tl.int64)
    jj = tl.arange(0, J_PAD)
    p2 = p[:, None]
    j2 = jj[None, :]
    m2 = p_ok[:, None] & (j2 < J)
    (wn, mx0, mx1, mx2, my0, my1, my2, xc0, xc1, xc2,
     y0, y1, y2, yc0, yc1, yc2) = _load_points(X, Y, Wt, sxn, sxj, sxc, syn, syj, syc, swn, swj,
                                               p2, j2, m2, eps, HAS_W)
    rb = R + p * 9
    r00, r01, r02, r10, r11, r12, r20, r21, r22 = _load_mat3(rb, p_ok)
    s = tl.load(Sc + p, mask=p_ok, other=0.0).to(tl.float32)
    zero = tl.zeros((BLOCK_P,), tl.float32)
    zero2 = tl.zeros((BLOCK_P, J_PAD), tl.float32)
    # R x'_j, (BLOCK_P, J_PAD) per coordinate
    rx0 = r00[:, None] * xc0 + r01[:, None] * xc1 + r02[:, None] * xc2
    rx1 = r10[:, None] * xc0 + r11[:, None] * xc1 + r12[:, None] * xc2
    rx2 = r20[:, None] * xc0 + r21[:, None] * xc1 + r22[:, None] * xc2
    if HAS_GR:
        gb = GR + p * 9
        g00, g01, g02, g10, g11, g12, g20, g21, g22 = _load_mat3(gb, p_ok)
    else:
        g00, g01, g02, g10, g11, g12, g20, g21, g22 = zero, zero, zero, zero, zero, zero, zero, zero, zero
    if HAS_GS and SCALE:
        gs = tl.load(GS + p, mask=p_ok, other=0.0).to(tl.float32)
    else:
        gs = zero
    if HAS_GA:
        ab = GA + p2 * (3 * J) + j2 * 3
        ga0 = tl.load(ab, mask=m2, other=0.0).to(tl.float32)
        ga1 = tl.load(ab + 1, mask=m2, other=0.0).to(tl.float32)
        ga2 = tl.load(ab + 2, mask=m2, other=0.0).to(tl.float32)
    else:
        ga0, ga1, ga2 = zero2, zero2, zero2
    gy0, gy1, gy2 = zero2, zero2, zero2
    gmx0, gmx1, gmx2 = zero, zero, zero
    gmy0, gmy1, gmy2 = zero, zero, zero
    if HAS_GE:
        gerr = tl.load(GE + p, mask=p_ok, other=0.0).to(tl.float32)
        e0 = s[:, None] * rx0 + my0[:, None] - y0
        e1 = s[:, None] * rx1 + my1[:, None] - y1
        e2 = s[:, None] * rx2 + my2[:, None] - y2
        nrm = tl.sqrt(e0 * e0 + e1 * e1 + e2 * e2)
        f = tl.where(nrm > 0, gerr[:, None] * wn / tl.maximum(nrm, 1e-30), 0.0)
        ga0 += f * e0
        ga1 += f * e1
        ga2 += f * e2
        gy0 -= f * e0
        gy1 -= f * e1
        gy2 -= f * e2
    if HAS_GT:
        gt0 = tl.load(GT + p * 3, mask=p_ok, other=0.0).to(tl.float32)
        gt1 = tl.load(GT + p * 3 + 1, mask=p_ok, other=0.0).to(tl.float32)
        gt2 = tl.load(GT + p * 3 + 2, mask=p_ok, other=0.0).to(tl.float32)
        gmy0 += gt0
        gmy1 += gt1
        gmy2 += gt2
        if SCALE:
            gs -= (gt0 * (r00 * mx0 + r01 * mx1 + r02 * mx2) + gt1 * (r10 * mx0 + r11 * mx1 + r12 * mx2)
                   + gt2 * (r20 * mx0 + r21 * mx1 + r22 * mx2))
        g00 -= s * gt0 * mx0
        g01 -= s * gt0 * mx1
        g02 -= s * gt0 * mx2
        g10 -= s * gt1 * mx0
        g11 -= s * gt1 * mx1
        g12 -= s * gt1 * mx2
        g20 -= s * gt2 * mx0
        g21 -= s * gt2 * mx1
        g22 -= s * gt2 * mx2
        gmx0 -= s * (r00 * gt0 + r10 * gt1 + r20 * gt2)
        gmx1 -= s * (r01 * gt0 + r11 * gt1 + r21 * gt2)
        gmx2 -= s * (r02 * gt0 + r12 * gt1 + r22 * gt2)
    # aligned_j = s R x'_j + mu_y
    if SCALE:
        gs += tl.sum(ga0 * rx0 + ga1 * rx1 + ga2 * rx2, axis=1)
    g00 += s * tl.sum(ga0 * xc0, axis=1)
    g01 += s * tl.sum(ga0 * xc1, axis=1)
    g02 += s * tl.sum(ga0 * xc2, axis=1)
    g10 += s * tl.sum(ga1 * xc0, axis=1)
    g11 += s * tl.sum(ga1 * xc1, axis=1)
    g12 += s * tl.sum(ga1 * xc2, axis=1)
    g20 += s * tl.sum(ga2 * xc0, axis=1)
    g21 += s * tl.sum(ga2 * xc1, axis=1)
    g22 += s * tl.sum(ga2 * xc2, axis=1)
    gxc0 = s[:, None] * (r00[:, None] * ga0 + r10[:, None] * ga1 + r20[:, None] * ga2)
    gxc1 = s[:, None] * (r01[:, None] * ga0 + r11[:, None] * ga1 + r21[:, None] * ga2)
    gxc2 = s[:, None] * (r02[:, None] * ga0 + r12[:, None] * ga1 + r22[:, None] * ga2)
    gmy0 += tl.sum(ga0, axis=1)
    gmy1 += tl.sum(ga1, axis=1)
    gmy2 += tl.sum(ga2, axis=1)
    sig0 = tl.load(SIG + p * 3, mask=p_ok, other=0.0)
    sig1 = tl.load(SIG + p * 3 + 1, mask=p_ok, other=0.0)
    sig2 = tl.load(SIG + p * 3 + 2, mask=p_ok, other=0.0)
    # scale: d(sum sigma)/dH = R^T (R maximises tr(R H)); var_x through the clamp
    var_x = tl.sum(wn * (xc0 * xc0 + xc1 * xc1 + xc2 * xc2), axis=1)
    # H negligible next to sqrt(var_x var_y) (one point, zero weights): no R or s gradient
    var_y = tl.sum(wn * (yc0 * yc0 + yc1 * yc1 + yc2 * yc2), axis=1)
    live = sig0 > GRAD_CLAMP * tl.sqrt(var_x) * tl.sqrt(var_y)
    if SCALE:
        vc = tl.maximum(var_x, eps)
        gs = tl.where(live, gs, 0.0)
        k = gs / vc
        gvar = tl.where(var_x > eps, -k * (sig0 + sig1 + sig2) / vc, 0.0)
    else:
        k = zero
        gvar = zero
    # rotation: M = gR R^T, G = V^T M V, Zt = skew(G) / (sigma_k + sigma_l), Z = V Zt V^T
    vb = V + p * 9
    v00, v01, v02, v10, v11, v12, v20, v21, v22 = _load_mat3(vb, p_ok)
    m00, m01, m02, m10, m11, m12, m20, m21, m22 = _mm(
        g00, g01, g02, g10, g11, g12, g20, g21, g22,
        r00, r10, r20, r01, r11, r21, r02, r12, r22)  # gR R^T
    m00, m01, m02, m10, m11, m12, m20, m21, m22 = _mm(
        m00, m01, m02, m10, m11, m12, m20, m21, m22,
        v00, v01, v02, v10, v11, v12, v20, v21, v22)  # (gR R^T) V
    c00, c01, c02, c10, c11, c12, c20, c21, c22 = _mm(
        v00, v10, v20, v01, v11, v21, v02, v12, v22,
        m00, m01, m02, m10, m11, m12, m20, m21, m22)  # G = V^T (gR R^T V)
    # a plane with sigma_k + sigma_l <= GRAD_CLAMP sigma_1 (R free in it: collinear) is dropped
    floor = GRAD_CLAMP * sig0
    d01 = sig0 + sig1
    d02 = sig0 + sig2
    d12 = sig1 + sig2
    ok01 = live & (d01 > floor)
    ok02 = live & (d02 > floor)
    ok12 = live & (d12 > floor)
    z01 = tl.where(ok01, 0.5 * (c01 - c10) / tl.where(ok01, d01, 1.0), 0.0)
    z02 = tl.where(ok02, 0.5 * (c02 - c20) / tl.where(ok02, d02, 1.0), 0.0)
    z12 = tl.where(ok12, 0.5 * (c12 - c21) / tl.where(ok12, d12, 1.0), 0.0)
    m00, m01, m02, m10, m11, m12, m20, m21, m22 = _mm(
        v00, v01, v02, v10, v11, v12, v20, v21, v22,
        zero, z01, z02, -z01, zero, z12, -z02, -z12, zero)  # V Zt
    m00, m01, m02, m10, m11, m12, m20, m21, m22 = _mm(
        m00, m01, m02, m10, m11, m12, m20, m21, m22,
        v00, v10, v20, v01, v11, v21, v02, v12, v22)  # Z = V Zt V^T
    m00, m01, m02, m10, m11, m12, m20, m21, m22 = _mm(
        r00, r10, r20, r01, r11, r21, r02, r12, r22,
        m00, m01, m02, m10, m11, m12, m20, m21, m22)  # R^T Z
    # gH = k R^T - 2 R^T Z
    q00 = k * r00 - 2.0 * m00
    q01 = k * r10 - 2.0 * m01
    q02 = k * r20 - 2.0 * m02
    q10 = k * r01 - 2.0 * m10
    q11 = k * r11 - 2.0 * m11
    q12 = k * r21 - 2.0 * m12
    q20 = k * r02 - 2.0 * m20
    q21 = k * r12 - 2.0 * m21
    q22 = k * r22 - 2.0 * m22
    # H = sum_j w^_j x'_j y'_j^T, var_x = sum_j w^_j |x'_j|^2
    tv = 2.0 * gvar[:, None]
    gxc0 += wn * (q00[:, None] * yc0 + q01[:, None] * yc1 + q02[:, None] * yc2 + tv * xc0)
    gxc1 += wn * (q10[:, None] * yc0 + q11[:, None] * yc1 + q12[:, None] * yc2 + tv * xc1)
    gxc2 += wn * (q20[:, None] * yc0 + q21[:, None] * yc1 + q22[:, None] * yc2 + tv * xc2)
    gyc0 = wn * (q00[:, None] * xc0 + q10[:, None] * xc1 + q20[:, None] * xc2)
    gyc1 = wn * (q01[:, None] * xc0 + q11[:, None] * xc1 + q21[:, None] * xc2)
    gyc2 = wn * (q02[:, None] * xc0 + q12[:, None] * xc1 + q22[:, None] * xc2)
    # centring
    gx0 = gxc0 + wn * (gmx0 - tl.sum(gxc0, axis=1))[:, None]
    gx1 = gxc1 + wn * (gmx1 - tl.sum(gxc1, axis=1))[:, None]
    gx2 = gxc2 + wn * (gmx2 - tl.sum(gxc2, axis=1))[:, None]
    gy0 += gyc0 + wn * (gmy0 - tl.sum(gyc0, axis=1))[:, None]
    gy1 += gyc1 + wn * (gmy1 - tl.sum(gyc1, axis=1))[:, None]
    gy2 += gyc2 + wn * (gmy2 - tl.sum(gyc2, axis=1))[:, None]
    out_ty = DX.dtype.element_ty
    db = DX + p2 * (3 * J) + j2 * 3
    tl.store(db, gx0.to(out_ty), mask=m2)
    tl.store(db + 1, gx1.to(out_ty), mask=m2)
    tl.store(db + 2, gx2.to(out_ty), mask=m2)
    db = DY + p2 * (3 * J) + j2 * 3
    tl.store(db, gy0.to(out_ty), mask=m2)
    tl.store(db + 1, gy1.to(out_ty), mask=m2)
    tl.store(db + 2, gy2.to(out_ty), mask=m2)


def config(J: int) -> dict:
    """BLOCK_P problems per program: about 1-2k points per coordinate tile (J = 17: 32 sets)."""
    J_PAD = triton.next_power_of_2(max(J, 1))
    return dict(BLOCK_P=max(1, min(64, 1024 // J_PAD)), J_PAD=J_PAD, num_warps=4)


def _weights(X, w):
    # a dummy pointer when there are no weights (HAS_W=False never reads it)
    return (w, *w.stride()) if w is not None else (X, 0, 0)


def forward(X: torch.Tensor, Y: torch.Tensor, w: torch.Tensor | None, scale: bool, eps: float):
    """ProcrustesResult in X's dtype, plus V (N, 3, 3) and signed sigma (N, 3) fp32."""
    N, J, _ = X.shape
    dev, dt = X.device, X.dtype
    R = torch.empty(N, 3, 3, dtype=dt, device=dev)
    s = torch.empty(N, dtype=dt, device=dev)
    t = torch.empty(N, 3, dtype=dt, device=dev)
    aligned = torch.empty(N, J, 3, dtype=dt, device=dev)
    err = torch.empty(N, dtype=dt, device=dev)
    V = torch.empty(N, 3, 3, dtype=torch.float32, device=dev)
    sig = torch.empty(N, 3, dtype=torch.float32, device=dev)
    if N:
        cfg = config(J)
        Wt, swn, swj = _weights(X, w)
        _procrustes_fwd[(triton.cdiv(N, cfg["BLOCK_P"]),)](
            X, Y, Wt, R, s, t, aligned, err, V, sig, *X.stride(), *Y.stride(), swn, swj,
            N, J, eps, HAS_W=w is not None, SCALE=scale, SWEEPS=SWEEPS, RANK1_TOL=_RANK1_TOL, **cfg)
    return ProcrustesResult(R, s, t, aligned, err), V, sig


def backward(X, Y, w, R, s, V, sig, gR, gs, gt, ga, gerr, scale: bool, eps: float):
    """dX, dY (N, J, 3) fp32; absent (None) output gradients are skipped, not read as zeros."""
    N, J, _ = X.shape
    dX = torch.empty(N, J, 3, dtype=torch.float32, device=X.device)
    dY = torch.empty_like(dX)
    if N:
        cfg = config(J)
        Wt, swn, swj = _weights(X, w)
        grads = [g.contiguous() if g is not None else None for g in (gR, gs, gt, ga, gerr)]
        ptrs = [g if g is not None else X for g in grads]
        has = dict(zip(("HAS_GR", "HAS_GS", "HAS_GT", "HAS_GA", "HAS_GE"),
                       (g is not None for g in grads)))
        _procrustes_bwd[(triton.cdiv(N, cfg["BLOCK_P"]),)](
            X, Y, Wt, R, s, V, sig, *ptrs, dX, dY, *X.stride(), *Y.stride(), swn, swj,
            N, J, eps, HAS_W=w is not None, SCALE=scale, GRAD_CLAMP=GRAD_CLAMP, **has, **cfg)
    return dX, dY
