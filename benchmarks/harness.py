"""Timing and result records shared by every benchmark suite.

One timer for all suites so that every figure in BENCHMARKS.md is taken the same way: warm-up
calls first (compilation, autotuning, allocator growth), then repeated timed calls; on CUDA each
call is bracketed by CUDA events after a synchronise, on CPU by `time.perf_counter` (or, with
`wall=True`, on the host clock with a synchronise after each call on every device: what a caller
waiting for the result sees). We report the median and the 20th/80th percentiles (numpy's
linear interpolation), never the mean (one preempted call would move it).
"""

from __future__ import annotations

import datetime as _dt
import os
import platform
import subprocess
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Timing:
    median: float  # milliseconds per call
    p20: float
    p80: float
    repeats: int


@dataclass
class Result:
    """One row of a suite's table, as written to the JSON file."""
    suite: str
    case: str
    provider: str
    sizes: dict
    median: float
    p20: float
    p80: float
    unit: str
    extra: dict = field(default_factory=dict)  # derived figures: throughput, ratios, GB/s ...

    def to_json(self) -> dict:
        return asdict(self)


def measure(fn: Callable[[], object], device: torch.device, warmup: int = 3, repeats: int = 20,
            max_seconds: float = 10.0, wall: bool = False) -> Timing:
    """Time `fn()` (milliseconds per call): `warmup` untimed calls, then up to `repeats` timed ones.

    Stops early (but after at least 3 timed calls) once `max_seconds` of timed work has passed,
    so that a slow provider on a slow device cannot stall a whole suite. `wall`: host clock,
    synchronising the device after each call, instead of CUDA events.
    """
    cuda = device.type == "cuda"
    events = cuda and not wall
    for _ in range(warmup):
        fn()
    if cuda:
        torch.cuda.synchronize(device)
    times: list[float] = []
    spent = 0.0
    for i in range(repeats):
        if events:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            ms = start.elapsed_time(end)
        else:
            t0 = time.perf_counter()
            fn()
            if cuda:
                torch.cuda.synchronize(device)
            ms = (time.perf_counter() - t0) * 1e3
        times.append(ms)
        spent += ms / 1e3
        if spent > max_seconds and i >= 2:
            break
    p20, p50, p80 = np.percentile(times, [20, 50, 80])
    return Timing(float(p50), float(p20), float(p80), len(times))


def result(suite: str, case: str, provider: str, sizes: dict, t: Timing, unit: str = "ms",
           **extra) -> Result:
    return Result(suite, case, provider, dict(sizes), round(t.median, 6), round(t.p20, 6),
                  round(t.p80, 6), unit, {"repeats": t.repeats, **extra})


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    name = platform.processor() or platform.machine()
    try:  # the model name is what a reader can look up; platform.processor() is often empty
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{name} ({os.cpu_count()} logical cores, torch threads {torch.get_num_threads()})"


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                             text=True, timeout=5)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                               capture_output=True, text=True, timeout=5).stdout.strip()
        return out.stdout.strip() + ("+dirty" if dirty else "") if out.returncode == 0 else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def environment(device: torch.device) -> dict:
    try:
        import triton
        triton_version = triton.__version__
    except ImportError:
        triton_version = None
    return {
        "device": str(device),
        "device_name": device_name(device),
        "torch": torch.__version__,
        "triton": triton_version,
        "cuda": torch.version.cuda,
        "python": platform.python_version(),
        "git_commit": git_commit(),
        "timestamp": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
