"""Newest wins: which ready frames one tick lifts when they arrive faster than the model lifts
them, so that receive -> publish latency stays within a bound (`--max-latency-ms`).

A tick's cost is modelled as a + b n seconds for n windows (`TickCost`, fitted to the last
chunks the runner lifted: a fixed cost per call and a cost per window; on CPU a window alone
costs several times its share of a batch). `plan` then decides, per stream, from the times its
ready frames became ready:
1. the tick may lift as many windows as fit in half the bound (the other half is for the frames
   that arrive while it runs); if there are more, every stream keeps the same number of its
   newest, and with less than one each, the streams that waited longest go first (ended
   streams always: they must be flushed now) and the others wait for the next tick;
2. lifted oldest first, frame m of the tick is out about cost(m) from now (rounded up to the end
   of its runner call, which publishes its chunk at once): a stream starts with
   its first frame that is still in time and keeps every later one; its newest always goes (a
   machine too slow for the bound still publishes).
Everything a stream skips is shed: a gap in its out_seq.
"""

from __future__ import annotations

from collections import deque

import numpy as np


class TickCost:
    """Seconds to lift n windows in one call, a + b n, least squares over the recent calls."""

    def __init__(self, history: int = 64):
        self.calls: deque[tuple[int, float]] = deque(maxlen=history)  # (windows, seconds)

    def add(self, n: int, seconds: float) -> None:
        self.calls.append((n, seconds))

    @property
    def known(self) -> bool:
        return bool(self.calls)

    def __call__(self, n) -> np.ndarray | float:
        ns, ts = np.array(self.calls, np.float64).T  # (k,), (k,)
        if np.ptp(ns) == 0:  # one batch size seen: proportional (an over-estimate above it)
            return n * ts.mean() / ns.mean()
        b = max(np.cov(ns, ts, bias=True)[0, 1] / ns.var(), 0.0)
        a = max(ts.mean() - b * ns.mean(), 0.0)
        return a + b * np.asarray(n, np.float64)


def plan(t_ready: list[np.ndarray], ended: list[bool], now: float, bound: float,
         cost: TickCost, chunk: int | None = None) -> list[int | None]:
    """Per stream, the index of its first ready frame to lift this tick (every later one is
    lifted too), or None: the stream waits for the next tick (nothing shed).

    t_ready[i]: (k_i,) non-decreasing times (s) at which stream i's pending frames became
    ready; ended[i]: the stream is over (it is never deferred); bound: seconds; chunk: the
    windows per runner call (a chunk is published when all of it is lifted)."""
    lens = np.array([len(t) for t in t_ready])
    total = int(lens.sum())
    if cost(total) <= 0.5 * bound and min(t[0] for t in t_ready) + bound >= now + cost(total):
        return [0] * len(t_ready)  # the usual tick: all of it fits, even its oldest in time
    fits = cost(np.arange(1, total + 1)) <= 0.5 * bound  # (total,) windows one tick lifts
    budget = max(1, int(fits.sum()))
    first = [0] * len(t_ready)
    if lens.sum() > budget:
        k = 0  # the most frames per stream that fit the budget
        while k < lens.max() and np.minimum(lens, k + 1).sum() <= budget:
            k += 1
        if k == 0:  # less than one window per stream
            order = sorted(range(len(t_ready)), key=lambda i: (not ended[i], t_ready[i][-1]))
            for i in order[budget:]:
                if not ended[i]:
                    first[i] = None
            k = 1
        first = [None if f is None else max(0, n - k) for f, n in zip(first, lens)]
    return _in_time(t_ready, first, now, bound, cost, chunk)


def _in_time(t_ready, first, now: float, bound: float, cost: TickCost,
             chunk: int | None) -> list[int | None]:
    """Step 2 of the module docstring on the frames step 1 kept."""
    live = [i for i, f in enumerate(first) if f is not None]
    if not live:
        return first
    t_all = np.concatenate([t_ready[i][first[i]:] for i in live])
    stream = np.concatenate([np.full(len(t_ready[i]) - first[i], i) for i in live])
    index = np.concatenate([np.arange(first[i], len(t_ready[i])) for i in live])
    n = len(t_all)
    done = np.arange(1, n + 1) if chunk is None else \
        np.minimum((np.arange(n) // chunk + 1) * chunk, n)  # windows lifted when m is out
    out_at = now + cost(done)  # (n,) when the m-th lifted window is published
    start: dict[int, int] = {}
    m = 0
    for j in np.argsort(t_all, kind="stable"):
        i = stream[j]
        if i not in start and (index[j] == len(t_ready[i]) - 1 or out_at[m] <= t_all[j] + bound):
            start[i] = index[j]
        m += i in start
    return [start[i] if f is not None else None for i, f in enumerate(first)]
