"""Model suite: the lifter's forward pass, windows per second, eager vs CUDA graph, against a
peer architecture (VideoPose3D's temporal convolutions) timed in the same harness.

Each case times the step the engine runs per tick (2D pixels + confidences in, metric 3D of the
newest frame out: `streamlift.serve.runner.skeleton_fn`) on a batch of windows already on the
device. The achieved FLOP/s is set against a peak *measured in the same run* — a large fp32
matrix multiply on the same device — so "fraction of peak" needs no datasheet.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from benchmarks.harness import Result, measure, result
from benchmarks.videopose3d import VideoPose3D, receptive_field_config
from streamlift.serve.runner import Runner, skeleton_fn
from streamlift.lifter.model import LifterConfig, NRSfMFormer, load_lifter
from streamlift.smoothing import Smoother


def count_flops(fn, *args) -> int:
    """FLOPs of one call, counted by torch (matmuls, convolutions and attention)."""
    with FlopCounterMode(display=False) as fc:
        fn(*args)
    return int(fc.get_total_flops())


def gemm_peak(device: torch.device, quick: bool) -> tuple[float, dict]:
    """Measured fp32 matmul FLOP/s on this device: the ceiling our figures are read against."""
    n = 1024 if device.type == "cpu" else 8192
    a = torch.randn(n, n, device=device)
    b = torch.randn(n, n, device=device)
    prev = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False  # the lifter runs in plain fp32
    try:
        t = measure(lambda: a @ b, device, warmup=2, repeats=5 if quick else 20)
    finally:
        torch.backends.cuda.matmul.allow_tf32 = prev
    return 2 * n ** 3 / (t.median / 1e3), {"n": n, "timing": t}


def _windows(batch: int, window: int, joints: int, device: torch.device):
    g = torch.Generator().manual_seed(0)
    kp = (torch.rand(batch, window, joints, 2, generator=g) * 600 + 200).to(device)  # pixels
    conf = torch.ones(batch, window, joints).to(device)
    return kp, conf


def run(device: torch.device, quick: bool, log=print) -> list[Result]:
    rows: list[Result] = []
    peak, peak_info = gemm_peak(device, quick)
    log(f"  fp32 GEMM peak measured on this device: {peak / 1e9:,.1f} GFLOP/s "
        f"({peak_info['n']}x{peak_info['n']} matmul, {peak_info['timing'].median:.2f} ms)")
    rows.append(result("model", "fp32 GEMM (peak reference)", "torch.matmul", {"n": peak_info["n"]},
                       peak_info["timing"], gflops=round(peak / 1e9, 1)))
    shipped, _ = load_lifter("windowed", device)
    ort = _onnx_fn(shipped, log) if device.type == "cpu" else None  # (B, T, J, 2) -> (B, J, 3)
    windows = (27,) if quick else (27, 81, 243)
    batches = (1, 16) if quick else (1, 8, 64, 256) if device.type == "cpu" else (1, 8, 64, 256, 1024)
    repeats = 5 if quick else 20
    for T in windows:
        if T == shipped.cfg.window:
            model = shipped
        else:  # same architecture, longer window; random weights cost the same
            cfg = LifterConfig(**{**shipped.cfg.to_dict(), "window": T})
            model = NRSfMFormer(cfg).to(device).eval()
        J = model.cfg.num_joints
        fn = skeleton_fn(model, 1.7)
        peer = VideoPose3D(J, receptive_field_config(T)).to(device).eval()
        graphs = Runner(fn, T, J, device, "graphs", batches) if device.type == "cuda" else None
        single = None
        for B in batches:
            got, single = _case(fn, peer, graphs, ort if T == shipped.cfg.window else None, B, T,
                                J, device, repeats, peak, single, log)
            rows += got
    rows += _stream_cases(shipped, batches, device, repeats, peak, log)
    return rows


def _served_step(model, frame, fconf, state, device, repeats: int):
    """The step as the server runs it, timed: on CPU its TorchScript graphs (`TracedStep`), on
    CUDA replayed as a CUDA graph (`StepRunner`) -> (provider, timing)."""
    from streamlift.lifter.model import metric_scale
    from streamlift.lifter.traced import TracedStep
    from streamlift.serve.runner import StepRunner

    B = len(frame)
    if device.type == "cuda":
        r = StepRunner(model, 1.7, B, device, "graphs", (B,))
        r.rows_in[:B].copy_(torch.arange(B, device=device))  # live rows, not the scratch row
        r.kp_in[:B].copy_(frame)
        r.conf_in[:B].copy_(fconf)
        return "streamlift stream step (cuda graph)", measure(r.replays[B].replay, device,
                                                                repeats=repeats)
    traced = TracedStep(model).prepare(((False, False),))
    assert not traced.fallbacks, traced.fallbacks  # else this row would time eager
    with torch.no_grad():
        t = measure(lambda: metric_scale(traced(frame, fconf, state), 1700.0) * 1e-3, device,
                    repeats=repeats)
    return "streamlift stream step (traced)", t


def _stream_cases(shipped: NRSfMFormer, batches, device, repeats: int, peak: float,
                  log) -> list[Result]:
    """Per new frame: the shipped streaming lifter's `step` (state cached per stream) against a
    window recompute of the shipped windowed lifter and VideoPose3D (RF 27), side by side in one
    run; the step as the server runs it (`_served_step`); and the 2D smoothing the server runs
    on each new frame before it (`_smoothing`, numpy on the host)."""
    from streamlift.lifter.model import metric_scale

    rows: list[Result] = []
    T, J = shipped.cfg.window, shipped.cfg.num_joints
    model, _ = load_lifter("streaming", device)
    window_fn = skeleton_fn(shipped, 1.7)
    peer = VideoPose3D(J, receptive_field_config(T)).to(device).eval()
    for B in batches:
        kp, conf = _windows(B, T, J, device)
        state = model.init_state(B, device)
        with torch.no_grad():
            model.start(kp[:, 0], conf[:, 0], state)  # every ring slot real, as in a live stream
        frame, fconf = kp[:, -1].clone(), conf[:, -1].clone()

        def step():
            return metric_scale(model.step(frame, fconf, state), 1700.0) * 1e-3

        flops = count_flops(step)
        window_flops = count_flops(window_fn, kp, conf)
        peer_flops = count_flops(peer, kp)
        with torch.no_grad():
            t_step = measure(step, device, repeats=repeats)
            t_window = measure(lambda: window_fn(kp, conf), device, repeats=repeats)
            t_peer = measure(lambda: peer(kp), device, repeats=repeats)
        served, t_served = _served_step(model, frame, fconf, state, device, repeats)
        sizes = {"batch": B, "window": T, "joints": J}

        def row(provider, t, fl, **extra):
            achieved = fl / (t.median / 1e3)
            return result("model", "per new frame", provider, sizes, t,
                          frames_per_s=round(B / (t.median / 1e3), 1),
                          us_per_frame=round(1e3 * t.median / B, 2),
                          gflop_per_frame=round(fl / B / 1e9, 5),
                          fraction_of_gemm_peak=round(achieved / peak, 4), **extra)

        rows.append(row("streamlift stream step", t_step, flops,
                        vs_window_recompute=round(t_window.median / t_step.median, 2),
                        flops_vs_window_recompute=round(window_flops / flops, 1),
                        vs_videopose3d=round(t_peer.median / t_step.median, 2)))
        rows.append(row(served, t_served, flops,
                        vs_eager_step=round(t_step.median / t_served.median, 2),
                        vs_window_recompute=round(t_window.median / t_served.median, 2),
                        vs_videopose3d=round(t_peer.median / t_served.median, 2)))
        rows.append(smoothed := _smoothing(frame, fconf, repeats, sizes, t_served))
        rows.append(row("streamlift window recompute", t_window, window_flops))
        rows.append(row(f"videopose3d rf{T}", t_peer, peer_flops))
        log(f"  per new frame B={B}: step {t_step.median:.3f} ms, {served.split('(')[1][:-1]} "
            f"{t_served.median:.3f} ms, window recompute {t_window.median:.3f} ms "
            f"({t_window.median / t_step.median:.1f}x), videopose3d {t_peer.median:.3f} ms, "
            f"2D smoothing {smoothed.median:.3f} ms; "
            f"FLOPs window/step {window_flops / flops:.1f}x")
    return rows


def _smoothing(frame: torch.Tensor, fconf: torch.Tensor, repeats: int, sizes: dict,
               t_served) -> Result:
    """The server's 2D filter (`streamlift.smoothing.Smoother`, gated) on one new frame of each
    of B streams, a frame interval apart each call (the cost is the same with the gate shut),
    against the served step."""
    B = len(frame)
    sm, rows = Smoother(B, frame.shape[1]), np.arange(B)
    x, c = frame.cpu().numpy(), fconf.cpu().numpy()
    clock = iter(np.arange(10_000) / 30.0)
    t = measure(lambda: sm(rows, x, c, np.full(B, next(clock))), torch.device("cpu"),
                repeats=repeats)
    return result("model", "per new frame", "streamlift 2D smoothing (numpy)", sizes, t,
                  us_per_frame=round(1e3 * t.median / B, 2),
                  vs_served_step=round(t.median / t_served.median, 3))


def _case(fn, peer, graphs, ort, B: int, T: int, J: int, device, repeats: int, peak: float,
          single: float | None, log) -> tuple[list[Result], float]:
    """One (window, batch) point: streamlift eager (and CUDA graph, onnxruntime) vs the peer;
    `single`: ms per window at the first (smallest) batch, None when this is it."""
    rows: list[Result] = []
    kp, conf = _windows(B, T, J, device)
    flops = count_flops(fn, kp, conf)
    peer_flops = count_flops(peer, kp)
    sizes = {"batch": B, "window": T, "joints": J}
    with torch.no_grad():
        t_eager = measure(lambda: fn(kp, conf), device, repeats=repeats)
        t_peer = measure(lambda: peer(kp), device, repeats=repeats)
        t_ort = measure(lambda: ort(kp, conf), device, repeats=repeats) if ort else None
        t_graph = None
        if graphs is not None:
            graphs.kp_in[:B].copy_(kp)
            graphs.conf_in[:B].copy_(conf)
            t_graph = measure(graphs.replays[B].replay, device, repeats=repeats)

    def row(provider, t, fl, **extra):
        achieved = fl / (t.median / 1e3)
        return result("model", f"lift T={T}", provider, sizes, t,
                      windows_per_s=round(B / (t.median / 1e3), 1),
                      gflop_per_window=round(fl / B / 1e9, 4),
                      achieved_gflops=round(achieved / 1e9, 2),
                      fraction_of_gemm_peak=round(achieved / peak, 4), **extra)

    single = single or t_eager.median / B  # per-stream cost: one window per call
    # batched vs per-stream: B windows in one call against B calls of one window
    rows.append(row("streamlift eager", t_eager, flops,
                    speedup_vs_per_stream=round(single * B / t_eager.median, 2)))
    if t_ort is not None:  # same windows, same threads, same metric scaling
        rows.append(row("streamlift onnxruntime", t_ort, flops,
                        vs_torch_eager=round(t_eager.median / t_ort.median, 2)))
    if t_graph is not None:
        rows.append(row("streamlift cuda-graph", t_graph, flops,
                        speedup_vs_eager=round(t_eager.median / t_graph.median, 2)))
    best = t_graph or t_eager
    rows.append(row(f"videopose3d rf{T}", t_peer, peer_flops,
                    params=sum(p.numel() for p in peer.parameters()),
                    streamlift_speedup=round(t_peer.median / best.median, 2)))
    log(f"  T={T} B={B}: eager {t_eager.median:.3f} ms"
        + (f", graph {t_graph.median:.3f} ms" if t_graph else "")
        + (f", onnxruntime {t_ort.median:.3f} ms" if t_ort else "")
        + f", videopose3d {t_peer.median:.3f} ms")
    return rows, single


def _onnx_fn(model: NRSfMFormer, log):
    """The engine's step through onnxruntime (the shipped lifter exported and checked), with
    as many threads as torch has; None without the onnx extra."""
    try:
        from streamlift.lifter.onnx import OnnxLifter, export_checked
    except ImportError:
        return None
    import tempfile
    from pathlib import Path

    try:
        path = Path(tempfile.mkdtemp(prefix="bench-onnx-")) / "lifter.onnx"
        export_checked(model, path)
        return skeleton_fn(OnnxLifter(path, threads=torch.get_num_threads()), 1.7)
    except Exception as e:  # the extra not installed, or an export that fails its check
        log(f"  onnxruntime rows skipped: {e}")
        return None
