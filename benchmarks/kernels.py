"""Kernels suite: fused attention and batched Procrustes against their PyTorch baselines.

Attention, at the model's shapes (S = 17 joints, 27-243 frames; D = 32, H = 2; q, k, v strided
views of one packed (N, S, 3, H, D) projection as in the model), forward and forward+backward:

- "triton": the fused kernels (`streamlift.kernels.attention(impl="triton")`), CUDA only;
- "reference": `attention_reference`, the plain PyTorch math the tests check against;
- "sdpa": torch.nn.functional.scaled_dot_product_attention.

Procrustes on N sets of 17 points, forward (R, s, t, aligned points, error) and
forward+backward (the error's gradient, as PA-MPJPE or a loss would use it):

- "triton": the fused kernels, CUDA only;
- "torch": the same fixed-iteration algorithm in vectorised PyTorch;
- "svd": `procrustes_reference` (torch.linalg.svd).

Derived figures, all from timings taken side by side in this run: `speedup_vs_sdpa` /
`speedup_vs_svd` (baseline median / this median), and `gbps`, the bytes that must move (inputs
read once, outputs written once; listed per case below) over the median time. `frac_copy_bw` sets
that against a device-to-device copy measured in the same run, so "fraction of memory
bandwidth" needs no datasheet.
"""

from __future__ import annotations

import torch

from benchmarks.harness import Result, Timing, measure, result
from streamlift.kernels import attention, procrustes, procrustes_reference
from streamlift.kernels.attention import triton_available

HEADS, HEAD_DIM, JOINTS = 2, 32, 17


def copy_bandwidth(device: torch.device, quick: bool) -> tuple[float, Timing]:
    """Bytes/s of a large device-to-device copy (read + write): the bandwidth ceiling."""
    n = (1 << 24) if device.type == "cpu" or quick else (1 << 28)  # 64 MiB / 1 GiB of fp32
    a = torch.empty(n, device=device)
    b = torch.empty_like(a)
    t = measure(lambda: b.copy_(a), device, warmup=2, repeats=5 if quick else 20)
    return 2 * 4 * n / (t.median / 1e3), t


def attention_bytes(N: int, S: int, e: int, backward: bool) -> int:
    """Forward reads q, k, v and writes o (+ the fp32 LSE); the backward reads q, k, v, o, dO,
    LSE and writes dq, dk, dv."""
    elems, rows = N * HEADS * S * HEAD_DIM, N * HEADS * S
    fwd = 4 * elems * e + 4 * rows
    return fwd + (8 * elems * e + 4 * rows if backward else 0)


def procrustes_bytes(N: int, J: int, e: int, backward: bool) -> int:
    """Forward reads X, Y and writes aligned, R, s, t, err; the backward reads X, Y, the saved
    R, s, V, sigma and d err, and writes dX, dY."""
    fwd = N * ((6 * J + 3 * J + 9 + 3 + 2) * e)
    return fwd + (N * (6 * J * e + 10 * e + 48 + 4 + 6 * J * e) if backward else 0)


def _attention_case(device, N, S, dtype, causal, backward, impls, repeats):
    g = torch.Generator().manual_seed(0)
    qkv = torch.randn(N, S, 3, HEADS, HEAD_DIM, generator=g).to(device, dtype)  # (N, S, 3, H, D)
    qkv.requires_grad_(backward)
    do = torch.randn(N, HEADS, S, HEAD_DIM, generator=g).to(device, dtype)

    def fn_for(impl):
        def fn():
            q, k, v = (qkv[:, :, i].transpose(1, 2) for i in range(3))  # (N, H, S, D) views
            if backward:
                return torch.autograd.grad(attention(q, k, v, causal=causal, impl=impl), qkv, do)
            with torch.no_grad():
                return attention(q, k, v, causal=causal, impl=impl)
        return fn

    return {impl: measure(fn_for(impl), device, repeats=repeats) for impl in impls}


def run_attention(device: torch.device, quick: bool, copy_bw: float, log=print) -> list[Result]:
    rows: list[Result] = []
    cuda = device.type == "cuda"
    impls = (["triton"] if cuda and triton_available() else []) + ["reference", "sdpa"]
    # sizes: total tokens N*S swept, so every S moves comparable bytes
    if quick:
        tokens = (100_000,) if cuda else (1_700,)
    else:
        tokens = (170_000, 1_700_000, 6_800_000) if cuda else (17_000, 170_000)
    dtypes = (torch.bfloat16, torch.float16, torch.float32) if cuda and not quick else \
        ((torch.float16,) if cuda else (torch.float32,))
    repeats = 5 if quick else 20
    for dtype in dtypes:
        e = torch.finfo(dtype).bits // 8
        for S in (17, 27, 81, 243):
            causal = S != JOINTS  # the temporal blocks of the causal lifter
            for n_tok in tokens:
                N = max(1, n_tok // S)
                for backward in (False, True):
                    mode = "fwd+bwd" if backward else "fwd"
                    ts = _attention_case(device, N, S, dtype, causal, backward, impls, repeats)
                    nbytes = attention_bytes(N, S, e, backward)
                    for impl, t in ts.items():
                        gbps = nbytes / (t.median / 1e3) / 1e9
                        rows.append(result(
                            "kernels", f"attention {mode}", impl,
                            {"N": N, "S": S, "H": HEADS, "D": HEAD_DIM, "causal": causal,
                             "dtype": str(dtype).removeprefix("torch.")}, t,
                            speedup_vs_sdpa=round(ts["sdpa"].median / t.median, 3),
                            gbps=round(gbps, 2), frac_copy_bw=round(gbps * 1e9 / copy_bw, 3)))
                    log(f"  attention {mode:7s} S={S:3d} N={N:>9,} {dtype}: " + ", ".join(
                        f"{k} {v.median:.3f} ms" for k, v in ts.items()))
    return rows


def _procrustes_problems(N, J, device):
    g = torch.Generator().manual_seed(0)
    Y = torch.randn(N, J, 3, generator=g) * torch.tensor([1.0, 0.6, 0.3])
    q, _ = torch.linalg.qr(torch.randn(N, 3, 3, generator=g))
    X = 0.8 * Y @ q.transpose(1, 2) + 0.05 * torch.randn(N, J, 3, generator=g)
    return X.to(device), Y.to(device)


def run_procrustes(device: torch.device, quick: bool, copy_bw: float, log=print) -> list[Result]:
    rows: list[Result] = []
    cuda = device.type == "cuda"
    impls = (["triton"] if cuda and triton_available() else []) + ["torch", "svd"]
    if quick:
        sizes = (10_000, 100_000) if cuda else (1_000,)
    else:
        sizes = (10_000, 100_000, 1_000_000) if cuda else (1_000, 10_000, 100_000)
    repeats = 5 if quick else 20
    for N in sizes:
        X, Y = _procrustes_problems(N, JOINTS, device)
        for backward in (False, True):
            mode = "fwd+bwd" if backward else "fwd"
            Xg = X.clone().requires_grad_(backward)

            def fn_for(impl):
                def fn():
                    with torch.set_grad_enabled(backward):
                        res = procrustes_reference(Xg, Y) if impl == "svd" else \
                            procrustes(Xg, Y, impl=impl)
                        return torch.autograd.grad(res.err.sum(), Xg) if backward else res
                return fn

            ts = {impl: measure(fn_for(impl), device, repeats=repeats, max_seconds=5.0)
                  for impl in impls}
            nbytes = procrustes_bytes(N, JOINTS, 4, backward)
            for impl, t in ts.items():
                gbps = nbytes / (t.median / 1e3) / 1e9
                rows.append(result(
                    "kernels", f"procrustes {mode}", impl, {"N": N, "J": JOINTS, "dtype": "float32"}, t,
                    speedup_vs_svd=round(ts["svd"].median / t.median, 3),
                    sets_per_s=round(N / (t.median / 1e3)), gbps=round(gbps, 2),
                    frac_copy_bw=round(gbps * 1e9 / copy_bw, 3)))
            log(f"  procrustes {mode:7s} N={N:>9,}: " + ", ".join(
                f"{k} {v.median:.3f} ms" for k, v in ts.items()))
    return rows


def run(device: torch.device, quick: bool, log=print) -> list[Result]:
    copy_bw, t = copy_bandwidth(device, quick)
    log(f"  device copy bandwidth measured on this device: {copy_bw / 1e9:,.1f} GB/s")
    rows = [result("kernels", "copy (bandwidth reference)", "torch.copy_", {}, t,
                   gbps=round(copy_bw / 1e9, 2))]
    rows += run_attention(device, quick, copy_bw, log)
    rows += run_procrustes(device, quick, copy_bw, log)
    return rows
