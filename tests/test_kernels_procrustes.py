"""Batched Procrustes: the fixed-iteration implementations ("torch", "triton") against the SVD
reference, forward and every gradient, weights, and degenerate inputs.

Without a GPU the Triton kernels run on CPU tensors under TRITON_INTERPRET=1 (set in
conftest.py); N = 45 problems is two programs of 32, the second one part-full.
"""

import pytest
import torch

from streamlift.kernels import ProcrustesResult, procrustes, procrustes_reference
from streamlift.kernels.procrustes import FusedProcrustes, _triton_available, resolve_impl

CUDA = torch.cuda.is_available()
DEV = torch.device("cuda" if CUDA else "cpu")
FUSED = ["torch", pytest.param("triton", marks=pytest.mark.skipif(
    not _triton_available(), reason="Triton not importable here"))]
F64 = torch.float64


def random_rotations(n, g, dtype=F64):
    q, r = torch.linalg.qr(torch.randn(n, 3, 3, generator=g, dtype=F64))
    q = q * torch.sign(torch.diagonal(r, dim1=1, dim2=2))[:, None]
    q[:, :, 0] *= torch.linalg.det(q)[:, None]  # proper rotations
    return q.to(dtype)


def problems(N=45, J=17, seed=0, reflect=4):
    """X = a similarity transform of Y plus noise; the first `reflect` sets mirrored (fp64)."""
    g = torch.Generator().manual_seed(seed)
    Y = torch.randn(N, J, 3, generator=g, dtype=F64) * torch.tensor([1.0, 0.6, 0.3], dtype=F64)
    X = 0.7 * Y @ random_rotations(N, g).transpose(1, 2) + torch.randn(N, 1, 3, generator=g, dtype=F64)
    X = X + 0.1 * torch.randn(N, J, 3, generator=g, dtype=F64)
    X[:reflect] *= torch.tensor([-1.0, 1.0, 1.0], dtype=F64)
    w = torch.rand(N, J, generator=g, dtype=F64)
    w[:, 3] = 0  # a masked joint
    return X, Y, w


def cotangents(res, seed=1):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(o.shape, generator=g, dtype=F64) for o in res]


def loss(res, cts):
    return sum((o.double() * c.to(o.device)).sum() for o, c in zip(res, cts) if o.requires_grad)


def grads(impl, X, Y, w, scale, dtype, cts):
    Xd = X.to(DEV, dtype).requires_grad_()
    Yd = Y.to(DEV, dtype).requires_grad_()
    wd = None if w is None else w.to(DEV, dtype)
    fn = procrustes_reference if impl == "reference" else \
        lambda *a: procrustes(*a, impl=impl)
    res = fn(Xd, Yd, wd, scale)
    gX, gY = torch.autograd.grad(loss(res, cts), (Xd, Yd))
    return res, gX, gY


@pytest.mark.parametrize("impl", FUSED)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=["fp32", "fp16"])
@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("scale", [True, False], ids=["similarity", "rigid"])
def test_forward_and_gradients_match_reference(impl, dtype, weighted, scale):
    X, Y, w = problems()
    if dtype == torch.float16:  # compare with the reference on the same rounded inputs
        X, Y, w = (t.half().double() for t in (X, Y, w))
    w = w if weighted else None
    ref = procrustes_reference(X, Y, w, scale)
    cts = cotangents(ref)
    res, gX, gY = grads(impl, X, Y, w, scale, dtype, cts)
    _, gX_ref, gY_ref = grads("reference", X, Y, w, scale, F64, cts)
    assert isinstance(res, ProcrustesResult) and all(o.dtype == dtype for o in res)
    tol = dict(atol=2e-5, rtol=2e-5) if dtype == torch.float32 else dict(atol=1e-2, rtol=1e-2)
    for name, a, b in zip(ProcrustesResult._fields, res, ref):
        torch.testing.assert_close(a.double().cpu(), b, **tol, msg=name)
    gtol = dict(atol=5e-4, rtol=5e-4) if dtype == torch.float32 else dict(atol=5e-2, rtol=5e-2)
    torch.testing.assert_close(gX.double().cpu(), gX_ref, **gtol)
    torch.testing.assert_close(gY.double().cpu(), gY_ref, **gtol)


@pytest.mark.parametrize("scale", [True, False])
def test_gradcheck_fp64_reference_and_analytic_backward(scale):
    X, Y, w = problems(N=5, J=6, seed=3, reflect=1)
    X, Y = X.requires_grad_(), Y.requires_grad_()
    # the SVD reference through autograd, and the analytic backward of the "torch" version
    assert torch.autograd.gradcheck(lambda a, b: tuple(procrustes_reference(a, b, w, scale)), (X, Y))
    assert torch.autograd.gradcheck(lambda a, b: tuple(procrustes(a, b, w, scale, impl="torch")),
                                    (X, Y))


@pytest.mark.parametrize("impl", FUSED)
def test_each_output_gradient_alone(impl):
    """Absent output gradients are skipped in the backward (not read as zeros): each alone."""
    X, Y, w = problems(N=40, J=17, seed=5)
    ref = procrustes_reference(X, Y, w)
    cts = cotangents(ref, seed=2)
    for i, name in enumerate(ProcrustesResult._fields):
        only = [c if j == i else torch.zeros_like(c) for j, c in enumerate(cts)]
        Xd, Yd = X.float().to(DEV).requires_grad_(), Y.float().to(DEV).requires_grad_()
        res = procrustes(Xd, Yd, w.float().to(DEV), impl=impl)
        gX, gY = torch.autograd.grad((res[i].double() * only[i].to(DEV)).sum(), (Xd, Yd))
        _, gX_ref, gY_ref = grads("reference", X, Y, w, True, F64, only)
        torch.testing.assert_close(gX.double().cpu(), gX_ref, atol=5e-4, rtol=5e-4, msg=name)
        torch.testing.assert_close(gY.double().cpu(), gY_ref, atol=5e-4, rtol=5e-4, msg=name)


@pytest.mark.parametrize("impl", FUSED)
def test_masked_points_change_nothing(impl):
    X, Y, w = problems(N=33, J=17, seed=7)
    X, Y, w = X.float().to(DEV), Y.float().to(DEV), w.float().to(DEV)
    X2, Y2 = X.clone(), Y.clone()
    X2[:, 3] += 50.0  # joint 3 has weight 0
    Y2[:, 3] -= 80.0
    a = procrustes(X, Y, w, impl=impl)
    b = procrustes(X2.requires_grad_(), Y2.requires_grad_(), w, impl=impl)
    for name in ("R", "s", "t", "err"):
        torch.testing.assert_close(getattr(a, name), getattr(b, name).detach(), atol=1e-5, rtol=1e-5)
    gX, gY = torch.autograd.grad(b.err.sum(), (X2, Y2))
    assert (gX[:, 3] == 0).all() and (gY[:, 3] == 0).all()
    # a zero-weight set: finite, no contribution
    w0 = w.clone()
    w0[0] = 0
    Xr = X.clone().requires_grad_()
    c = procrustes(Xr, Y, w0, impl=impl)
    (gX0,) = torch.autograd.grad(c.err.sum() + c.s.sum(), Xr)
    assert all(torch.isfinite(o).all() for o in c) and torch.isfinite(gX0).all()


def degenerate_cases():
    """Name -> (X, Y) fp64 (N, J, 3); N = 3 copies under different rotations."""
    g = torch.Generator().manual_seed(11)
    N = 3
    rot = random_rotations(N, g)
    base = torch.randn(1, 12, 3, generator=g, dtype=F64).expand(N, 12, 3)
    planar = base * torch.tensor([1.0, 0.5, 0.0], dtype=F64)
    line = torch.linspace(-1, 1, 12, dtype=F64)[None, :, None] * torch.tensor([1.0, 2.0, -0.5], dtype=F64)
    line = line.expand(N, 12, 3)
    cube = torch.tensor([[x, y, z] for x in (-1.0, 1.0) for y in (-1.0, 1.0) for z in (-1.0, 1.0)],
                        dtype=F64)[None].expand(N, 8, 3)  # isotropic: three equal singular values
    square = torch.tensor([[1.0, 1.0, 0.0], [1.0, -1.0, 0.0], [-1.0, 1.0, 0.0], [-1.0, -1.0, 0.0]],
                          dtype=F64)[None].expand(N, 4, 3)  # planar, two equal singular values

    def moved(P, s=1.3):
        return s * P @ rot.transpose(1, 2) + torch.tensor([0.3, -0.2, 1.0], dtype=F64)

    return {
        "identity": (base.clone(), base.clone()),
        "planar": (planar.clone(), moved(planar)),
        "collinear": (line.clone(), moved(line)),
        "isotropic": (cube.clone(), moved(cube)),
        "square": (square.clone(), moved(square)),
        "reflection": (base * torch.tensor([-1.0, 1.0, 1.0], dtype=F64), base.clone()),
        "planar_reflection": (planar * torch.tensor([-1.0, 1.0, 1.0], dtype=F64), planar.clone()),
        "one_point": (torch.ones(N, 6, 3, dtype=F64), moved(base[:, :6])),
        "zeros": (torch.zeros(N, 6, 3, dtype=F64), torch.zeros(N, 6, 3, dtype=F64)),
    }


@pytest.mark.parametrize("impl", FUSED)
@pytest.mark.parametrize("case", list(degenerate_cases()))
def test_degenerate_inputs(impl, case):
    X, Y = degenerate_cases()[case]
    ref = procrustes_reference(X, Y)
    Xd, Yd = X.float().to(DEV).requires_grad_(), Y.float().to(DEV).requires_grad_()
    res = procrustes(Xd, Yd, impl=impl)
    # a proper rotation every time (the reflection fix), everything finite
    R = res.R.double().cpu()
    torch.testing.assert_close(R @ R.transpose(1, 2), torch.eye(3, dtype=F64).expand_as(R), atol=1e-5, rtol=0)
    torch.testing.assert_close(torch.linalg.det(R), torch.ones(3, dtype=F64), atol=1e-5, rtol=0)
    assert all(torch.isfinite(o).all() for o in res)
    # the aligned points and error are unique even where R is not (collinear, one point)
    torch.testing.assert_close(res.aligned.double().cpu(), ref.aligned, atol=2e-5, rtol=1e-5)
    torch.testing.assert_close(res.err.double().cpu(), ref.err, atol=2e-5, rtol=1e-5)
    if case in ("identity", "planar", "isotropic", "square"):  # exact fits
        assert float(res.err.detach().max()) < 1e-5
    if case in ("planar", "isotropic", "square", "reflection", "planar_reflection"):  # R unique
        torch.testing.assert_close(R, ref.R, atol=1e-5, rtol=0)
    if case == "identity":
        torch.testing.assert_close(R, torch.eye(3, dtype=F64).expand_as(R), atol=1e-6, rtol=0)
    # gradients of every output stay finite (bounded: test_degenerate_gradients_are_bounded)
    cts = cotangents(ref)
    gX, gY = torch.autograd.grad(loss(res, cts), (Xd, Yd))
    assert torch.isfinite(gX).all() and torch.isfinite(gY).all(), case


def unbounded_gradient_cases():
    """Name -> (X, Y, w or None) fp64, unit scale unless named _mm: R (and s) not determined by
    the data, where dividing by sigma_k + sigma_l ~ 0 used to give gradients up to 1e19."""
    g = torch.Generator().manual_seed(13)
    N, J = 3, 12
    X, Y, w = problems(N=N, J=J, seed=13, reflect=1)
    line = torch.linspace(-1, 1, J, dtype=F64)[None, :, None] * torch.tensor([1.0, 2.0, -0.5], dtype=F64)
    line = line.expand(N, J, 3).clone()
    one = torch.zeros(N, J, dtype=F64)
    one[:, 5] = 1.0  # one point carries all the weight
    w0 = w.clone()
    w0[1] = 0.0  # a set with no weight at all
    return {
        "one_joint": (X[:, :1].clone(), Y[:, :1].clone(), None),
        # all points equal: the fp32 centring leaves x'_j ~ 1e-8 (here, for "torch" and
        # "triton" both), so H ~ 1e-17 and sigma_1 + sigma_2 ~ 1e-17, not exactly 0
        "x_all_equal": (torch.full((N, J, 3), 0.1, dtype=F64), Y, None),
        # 7 points at 1 m: x'_j ~ 1e-4 mm ("torch")
        "x_all_equal_mm": (torch.full((N, 7, 3), 1000.0, dtype=F64), 1000.0 * Y[:, :7], None),
        "y_all_equal": (X, torch.full((N, J, 3), -0.7, dtype=F64), None),
        "x_collinear": (line, Y, None),
        "y_collinear": (X, 1.3 * line + 0.2, None),
        "both_collinear": (line, 1.3 * line @ random_rotations(N, g).transpose(1, 2), None),
        "one_weighted_point": (X, Y, one),
        "zero_weight_set": (X, Y, w0),
    }


@pytest.mark.parametrize("impl", FUSED)
@pytest.mark.parametrize("case", list(unbounded_gradient_cases()))
def test_degenerate_gradients_are_bounded(impl, case):
    """Not only finite: each output's gradient is at most a small multiple of its cotangent,
    as for well-posed sets of the same scale (where the ratio is about 1.5), not 1e4 or 1e19."""
    X, Y, w = unbounded_gradient_cases()[case]
    Xd, Yd = X.float().to(DEV), Y.float().to(DEV)
    wd = None if w is None else w.float().to(DEV)
    cts = cotangents(procrustes_reference(X, Y, w))
    for name, ct in zip(ProcrustesResult._fields, cts):
        Xr, Yr = Xd.clone().requires_grad_(), Yd.clone().requires_grad_()
        res = getattr(procrustes(Xr, Yr, wd, impl=impl), name)
        gX, gY = torch.autograd.grad((res.double() * ct.to(DEV)).sum(), (Xr, Yr))
        bound = 3.0 * float(ct.norm())
        assert float(gX.norm()) <= bound and float(gY.norm()) <= bound, \
            (name, float(gX.norm()), float(gY.norm()), bound)
        if w is not None:  # weight 0: no gradient but that of its own aligned point to x_j
            assert (gY[w == 0] == 0).all() and (name == "aligned" or (gX[w == 0] == 0).all()), name
        if name == "t" and case in ("one_joint", "x_all_equal", "x_all_equal_mm"):
            # X one point: t = mu_y - s R mu_x with R and s held, so dt/dy_j = I / J and
            # dt/dx_j = -s R / J
            out = procrustes(Xd, Yd, wd, impl=impl)
            J = X.shape[1]
            RTct = (out.R.transpose(1, 2) @ ct.to(out.R)[..., None])[..., 0]
            gX_hand = -out.s[:, None] * RTct / J
            torch.testing.assert_close(gY.double().cpu(), (ct[:, None] / J).expand_as(Y),
                                       atol=1e-6, rtol=1e-6)
            torch.testing.assert_close(gX, gX_hand[:, None].expand_as(gX), atol=1e-6, rtol=1e-5)


def test_reference_gradient_is_nan_where_the_fused_one_is_not():
    """Why the fused backward exists: the SVD's gradient is NaN at repeated singular values."""
    X, Y = degenerate_cases()["isotropic"]
    Xr = X.clone().requires_grad_()
    (g_ref,) = torch.autograd.grad(procrustes_reference(Xr, Y).R.sum(), Xr)
    (g,) = torch.autograd.grad(procrustes(Xr, Y, impl="torch").R.sum(), Xr)
    assert not torch.isfinite(g_ref).all() and torch.isfinite(g).all()


def test_pa_mpjpe_and_error_agree():
    from streamlift.metrics import pa_mpjpe
    X, Y, _ = problems(N=12, reflect=2)
    torch.testing.assert_close(pa_mpjpe(X, Y, reduce=False), procrustes(X, Y, impl="torch").err)


def test_dispatch_and_validation():
    X = torch.zeros(2, 5, 3)
    assert resolve_impl("auto", X) == "reference"
    with pytest.raises(ValueError, match="impl must be one of"):
        procrustes(X, X, impl="svd")
    with pytest.raises(ValueError, match="one shape"):
        procrustes(X, torch.zeros(2, 4, 3))
    with pytest.raises(ValueError, match="weights"):
        procrustes(X, X, torch.ones(2, 4))
    assert issubclass(FusedProcrustes, torch.autograd.Function)


@pytest.mark.parametrize("impl", FUSED)
def test_empty_batch(impl):
    X = torch.zeros(0, 17, 3, device=DEV)
    assert procrustes(X, X, impl=impl).aligned.shape == (0, 17, 3)


# ---- GPU only ------------------------------------------------------------------------------

@pytest.mark.gpu
@pytest.mark.skipif(not CUDA, reason="needs a CUDA GPU")
@pytest.mark.parametrize("impl", ["torch", "triton"])
def test_gpu_graph_capture_and_no_host_sync(impl):
    X, Y, w = (t.float().to(DEV) for t in problems(N=1000))
    procrustes(X, Y, w, impl=impl)  # compile outside the capture
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        res = procrustes(X, Y, w, impl=impl)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = procrustes(X, Y, w, impl=impl)
    graph.replay()
    torch.testing.assert_close(out.err, res.err)


@pytest.mark.gpu
@pytest.mark.skipif(not CUDA, reason="needs a CUDA GPU")
def test_gpu_bf16_and_speed_sanity():
    X, Y, w = problems(N=200_000, J=17)
    Xg, Yg = X.float().to(DEV), Y.float().to(DEV)
    ref = procrustes_reference(Xg, Yg)
    torch.testing.assert_close(procrustes(Xg.bfloat16(), Yg.bfloat16(), impl="triton").err.float(),
                               ref.err, atol=5e-2, rtol=5e-2)

    def ms(fn):
        fn()
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        b.synchronize()
        return a.elapsed_time(b)

    fused = ms(lambda: procrustes(Xg, Yg, impl="triton"))
    svd = ms(lambda: procrustes_reference(Xg, Yg))
    assert fused * 5 < svd, (fused, svd)
