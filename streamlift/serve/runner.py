"""The runner: batches of windows in, skeletons in metres out, at a ladder of batch sizes.

On CUDA it captures one CUDA graph per batch size of a ladder (largest first, one memory pool,
static input buffers shared by all sizes), and at run time copies the live batch into the
static buffers, replays the graph of the next captured size up and slices the result. The
captured function (lift + metric scaling) has no host synchronisation in it. On CPU it runs
eagerly on the batch as it is (padding would only waste work there). `EagerStandIn` replays by
calling the function on the static buffers, so that the padding and slicing logic is exercised
and tested on CPU exactly as the graphs use it.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Callable

import numpy as np
import torch

from streamlift.lifter.model import NRSfMFormer, metric_scale
from streamlift.lifter.traced import TracedStep
from streamlift.serve.config import DEFAULT_LADDER
from streamlift.windows import CPU_BATCH

EAGER_CHUNK = CPU_BATCH  # windows per eager call: per-window cost on CPU rises with batch
DENSE = 0.7  # eager steps: a set of slots this full of its span steps as the whole slice
MIN_SHARE = 8  # eager steps: fewer slots per worker than this are not worth a thread (traced
# steps of 16 on one thread 4.2 ms, in two shares 3.4; of 12: 3.5 and 3.2)


def skeleton_fn(model: NRSfMFormer, height_m: float) -> Callable:
    """kp (B, T, J, 2) px, conf (B, T, J) -> (B, J, 3) metres, root-relative, `height_m` tall."""
    height_mm = 1000.0 * height_m

    def fn(kp: torch.Tensor, conf: torch.Tensor) -> torch.Tensor:
        return metric_scale(model.lift(kp, conf), height_mm) * 1e-3

    return fn


def bucket(n: int, sizes) -> int:
    """The smallest captured size that holds n windows (n <= max(sizes))."""
    for s in sizes:
        if s >= n:
            return s
    raise ValueError(f"batch of {n} exceeds the largest captured size {sizes[-1]}")


class EagerStandIn:
    """Same interface as a captured graph: replay() recomputes `out` from the static inputs."""

    def __init__(self, fn: Callable, kp: torch.Tensor, conf: torch.Tensor):
        self.fn, self.kp, self.conf = fn, kp, conf
        self.out = fn(kp, conf)

    def replay(self) -> None:
        self.out = self.fn(self.kp, self.conf)


class CudaGraphReplay:
    """One CUDA graph of `fn` on fixed input views; `out` is its static output tensor."""

    def __init__(self, fn: Callable, kp: torch.Tensor, conf: torch.Tensor, pool):
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph, pool=pool):
            self.out = fn(kp, conf)

    def replay(self) -> None:
        self.graph.replay()


class Runner:
    """Run windows through the model: `backend` is 'graphs' (CUDA), 'eager' or 'standin'."""

    def __init__(self, fn: Callable, window: int, joints: int, device: torch.device,
                 backend: str = "eager", sizes=DEFAULT_LADDER):
        self.fn, self.device, self.backend = fn, torch.device(device), backend
        self.sizes = tuple(sorted(set(int(s) for s in sizes)))
        self.calls: dict[int, int] = {}  # captured size -> replays (or eager batch -> calls)
        if backend == "eager":
            return
        if backend == "graphs" and self.device.type != "cuda":
            raise ValueError("CUDA graphs need a CUDA device")
        top = self.sizes[-1]
        # Static inputs shared by every size: graph k reads rows [:k]. Rows past the live batch
        # hold an earlier batch's windows (finite numbers), whose results are sliced away; the
        # model treats rows independently, so they cannot change the live rows.
        self.kp_in = torch.zeros(top, window, joints, 2, device=self.device)  # (B, T, J, 2)
        self.conf_in = torch.ones(top, window, joints, device=self.device)  # (B, T, J)
        if self.device.type == "cuda":
            self.kp_host = torch.zeros(top, window, joints, 2).pin_memory()
            self.conf_host = torch.ones(top, window, joints).pin_memory()
        self.replays = {}
        if backend == "standin":
            for s in self.sizes:
                self.replays[s] = EagerStandIn(fn, self.kp_in[:s], self.conf_in[:s])
            return
        # Warm up on a side stream (lazy init, cuBLAS handles, kernel autotuning) before capture.
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for s in reversed(self.sizes):
                for _ in range(3):
                    fn(self.kp_in[:s], self.conf_in[:s])
        torch.cuda.current_stream().wait_stream(side)
        torch.cuda.synchronize()
        pool = torch.cuda.graph_pool_handle()
        for s in reversed(self.sizes):  # largest first: smaller graphs reuse its pool memory
            self.replays[s] = CudaGraphReplay(fn, self.kp_in[:s], self.conf_in[:s], pool)
        torch.cuda.synchronize()

    @property
    def max_batch(self) -> int:
        return EAGER_CHUNK if self.backend == "eager" else self.sizes[-1]

    @torch.no_grad()
    def __call__(self, kp: np.ndarray, conf: np.ndarray) -> np.ndarray:
        """kp (B, T, J, 2), conf (B, T, J) float32 -> (B, J, 3) float32 metres."""
        B = len(kp)
        out = np.empty((B, kp.shape[2], 3), np.float32)
        for i in range(0, B, self.max_batch):
            n = min(self.max_batch, B - i)
            out[i:i + n] = self._run(kp[i:i + n], conf[i:i + n])
        return out

    def _run(self, kp: np.ndarray, conf: np.ndarray) -> np.ndarray:
        n = len(kp)
        if self.backend == "eager":
            self.calls[n] = self.calls.get(n, 0) + 1
            x = torch.from_numpy(kp).to(self.device)
            c = torch.from_numpy(conf).to(self.device)
            return self.fn(x, c).float().cpu().numpy()
        size = bucket(n, self.sizes)
        self.calls[size] = self.calls.get(size, 0) + 1
        if self.device.type == "cuda":
            # pinned staging so that the copies are true async DMA; the .cpu() below is the one
            # synchronisation per chunk, outside the captured region
            self.kp_host[:n].copy_(torch.from_numpy(kp))
            self.conf_host[:n].copy_(torch.from_numpy(conf))
            self.kp_in[:n].copy_(self.kp_host[:n], non_blocking=True)
            self.conf_in[:n].copy_(self.conf_host[:n], non_blocking=True)
        else:
            self.kp_in[:n].copy_(torch.from_numpy(kp))
            self.conf_in[:n].copy_(torch.from_numpy(conf))
        r = self.replays[size]
        r.replay()
        return r.out[:n].float().cpu().numpy()  # slice the live rows


class StepRunner:
    """A streaming lifter's per-slot state and its step (`StreamingNRSfMFormer.step`).

    The state has one row per ring slot and a scratch row that padding writes to. A step lifts
    one new frame for each of a set of slots; on CUDA ('graphs') it is captured once per
    batch size of the ladder on static inputs (frames, confidences, row indices), padded rows
    pointing at the scratch row; 'standin' replays the same padding on CPU, 'eager' calls the
    step on the live rows (on CPU through its TorchScript graphs, `streamlift.lifter.traced`,
    unless `trace` is off). Catching up many frames of one slot (a new stream, or one that fell
    behind) runs the chunk forward on its row instead: one call, not one step per frame.
    """

    def __init__(self, model, height_m: float, slots: int, device: torch.device,
                 backend: str = "eager", sizes=DEFAULT_LADDER, workers: int = 1,
                 trace: bool = True):
        self.model, self.device, self.backend = model, torch.device(device), backend
        # eager on CPU: the step as TorchScript graphs (half the time at batch 1)
        self._step_fn = TracedStep(model).prepare() if trace and backend == "eager" and \
            self.device.type == "cpu" else model.step
        self.workers = workers  # eager: threads a large step is split over
        self._pool = ThreadPoolExecutor(workers - 1, thread_name_prefix="streamlift-step") \
            if backend == "eager" and workers > 1 else None
        self.height_mm = 1000.0 * height_m
        self.sizes = tuple(sorted(set(int(s) for s in sizes)))
        self.scratch = slots
        self.state = model.init_state(slots + 1, self.device)
        self.calls: dict[int, int] = {}  # captured size (or eager batch) -> calls
        J = model.cfg.num_joints
        if backend == "eager":
            self._warm_up(J)
            return
        if backend == "graphs" and self.device.type != "cuda":
            raise ValueError("CUDA graphs need a CUDA device")
        top = self.sizes[-1]
        self.kp_in = torch.zeros(top, J, 2, device=self.device)  # (B, J, 2)
        self.conf_in = torch.ones(top, J, device=self.device)  # (B, J)
        self.rows_in = torch.full((top,), slots, dtype=torch.int64, device=self.device)
        self.replays = {}
        if backend == "standin":
            for s in self.sizes:
                self.replays[s] = EagerStandIn(self._fn(s), None, None)
            return
        side = torch.cuda.Stream()  # warm-up on the scratch row only (rows_in is all scratch)
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for s in reversed(self.sizes):
                for _ in range(3):
                    self._fn(s)(None, None)
        torch.cuda.current_stream().wait_stream(side)
        torch.cuda.synchronize()
        pool = torch.cuda.graph_pool_handle()
        for s in reversed(self.sizes):
            self.replays[s] = CudaGraphReplay(self._fn(s), None, None, pool)
        torch.cuda.synchronize()

    def _warm_up(self, J: int) -> None:
        """First calls of each path on the scratch row (lazy initialisation, allocator
        growth: a first tick of new streams took 60+ ms without it), then a clean state."""
        kp = np.full((1, J, 2), 100.0, np.float32)
        conf = np.ones((1, J), np.float32)
        self.start([self.scratch], kp, conf)
        self.start([self.scratch], kp, conf, lift=True)
        self.catch_up(self.scratch, np.repeat(kp, 9, 0), np.repeat(conf, 9, 0))
        for b in (1, 2, 4, 8, 16, 32, 64):
            self._step(np.full(b, self.scratch), np.repeat(kp, b, 0), np.repeat(conf, b, 0))
        self.calls.clear()
        self.state.clear(torch.tensor([self.scratch], device=self.device))

    def _fn(self, s: int) -> Callable:
        """The captured function of batch size s: the step on the first s static rows."""
        def fn(_kp, _conf):
            X = self.model.step(self.kp_in[:s], self.conf_in[:s], self.state, self.rows_in[:s])
            return metric_scale(X, self.height_mm) * 1e-3
        return fn

    @property
    def max_batch(self) -> int:
        return self.scratch if self.backend == "eager" else min(self.sizes[-1], self.scratch)

    @torch.no_grad()
    def start(self, slots, kp: np.ndarray, conf: np.ndarray,
              lift: bool = False) -> np.ndarray | None:
        """Rows `slots` (distinct) start streams at frames kp (n, J, 2), conf (n, J) (new
        streams, or re-primes), in one call: `StreamingNRSfMFormer.start`; each frame is then
        stepped as usual, or with `lift` lifted by the start itself -> (n, J, 3) metres."""
        X = self.model.start(torch.from_numpy(np.ascontiguousarray(kp)).to(self.device),
                             torch.from_numpy(np.ascontiguousarray(conf)).to(self.device),
                             self.state, torch.as_tensor(np.asarray(slots, np.int64),
                                                         device=self.device), lift)
        return None if X is None else \
            (metric_scale(X, self.height_mm) * 1e-3).float().cpu().numpy()

    @torch.no_grad()
    def step(self, slots: np.ndarray, kp: np.ndarray, conf: np.ndarray) -> np.ndarray:
        """One frame per slot (distinct slots): kp (B, J, 2), conf (B, J) -> (B, J, 3) metres."""
        out = np.empty((len(kp), kp.shape[1], 3), np.float32)
        for i in range(0, len(kp), self.max_batch):
            sl = slice(i, i + self.max_batch)
            out[sl] = self._step(slots[sl], kp[sl], conf[sl])
        return out

    def _step(self, slots, kp, conf) -> np.ndarray:
        n = len(kp)
        if self.backend == "eager":
            self.calls[n] = self.calls.get(n, 0) + 1
            return self._eager_steps(np.asarray(slots, np.int64), kp, conf)
        size = bucket(n, self.sizes)
        self.calls[size] = self.calls.get(size, 0) + 1
        nb = self.device.type == "cuda"
        self.kp_in[:n].copy_(torch.from_numpy(kp), non_blocking=nb)
        self.conf_in[:n].copy_(torch.from_numpy(conf), non_blocking=nb)
        self.rows_in[:n].copy_(torch.from_numpy(np.asarray(slots, np.int64)), non_blocking=nb)
        self.rows_in[n:size].fill_(self.scratch)  # padding: the scratch row, never a live one
        r = self.replays[size]
        r.replay()
        return r.out[:n].float().cpu().numpy()

    def _eager_steps(self, slots: np.ndarray, kp: np.ndarray, conf: np.ndarray) -> np.ndarray:
        """A CPU step of many slots split over the workers: each lifts a run of the slots in
        slot order (disjoint rows of the state) on its own thread. Torch releases the GIL
        inside its ops, so two one-thread steps of 32 run side by side where one two-thread
        step of 64 would wait at every op for the busier core."""
        parts = min(self.workers, len(slots) // MIN_SHARE)
        if parts <= 1:
            return self._eager_step(slots, kp, conf)
        order = np.argsort(slots, kind="stable")
        shares = np.array_split(order, parts)
        futures = [self._pool.submit(self._eager_step, slots[i], kp[i], conf[i])
                   for i in shares[1:]]
        out = np.empty((len(kp), kp.shape[1], 3), np.float32)
        out[shares[0]] = self._eager_step(slots[shares[0]], kp[shares[0]], conf[shares[0]])
        for i, f in zip(shares[1:], futures):
            out[i] = f.result()
        return out

    def _eager_step(self, slots: np.ndarray, kp: np.ndarray, conf: np.ndarray) -> np.ndarray:
        """Consecutive slots step on a slice of the state (its rings read in place). Slots
        that fill at least DENSE of their span step as that whole slice with the idle slots
        computed and not kept (`keep`): gathering the busy rows' rings costs more on CPU than
        lifting a few idle ones (at 64 slots: 60 gathered 28 ms, the slice of 64 21 ms).
        Sparser sets gather their rows."""
        n, lo = len(slots), int(slots.min())
        span = int(slots.max()) - lo + 1
        if span == n and (np.diff(slots) > 0).all():  # consecutive, in order
            rows, keep = slice(lo, lo + n), None
        elif n >= DENSE * span and len(np.unique(slots)) == n:
            pos = slots - lo
            kp_s = np.zeros((span,) + kp.shape[1:], np.float32)  # idle rows: a blank frame
            conf_s = np.zeros((span,) + conf.shape[1:], np.float32)
            kp_s[pos], conf_s[pos] = kp, conf
            kp, conf = kp_s, conf_s
            rows, keep = slice(lo, lo + span), torch.from_numpy(pos).to(self.device)
        else:
            rows, keep = torch.from_numpy(slots).to(self.device), None
        X = self._step_fn(torch.from_numpy(kp).to(self.device),
                          torch.from_numpy(conf).to(self.device), self.state, rows, keep)
        if keep is not None:
            X = X.index_select(0, keep)
        return (metric_scale(X, self.height_mm) * 1e-3).float().cpu().numpy()

    @torch.no_grad()
    def catch_up(self, slot: int, kp: np.ndarray, conf: np.ndarray) -> np.ndarray:
        """Many consecutive frames of one slot: kp (L, J, 2), conf (L, J) -> (L, J, 3) metres,
        the same as L steps."""
        idx = torch.tensor([slot], device=self.device)
        o, new = self.model(torch.from_numpy(kp).to(self.device)[None],
                            torch.from_numpy(conf).to(self.device)[None],
                            self.state.rows(idx))  # (1, L, J, 2) in
        self.state.put(idx, new)
        return (metric_scale(o.X[0], self.height_mm) * 1e-3).float().cpu().numpy()

    def memory_per_stream(self) -> int:
        """Bytes of lifter state per slot."""
        return sum(t[0].numel() * t.element_size() if t.dim() < 6 else
                   t[:, 0].numel() * t.element_size() for t in self.state.tensors())
