"""`StreamingNRSfMFormer.step` as TorchScript graphs: the CPU server's step.

A step is ~400 small ops; on a CPU at batch 1 most of its time is Python dispatching them
(eager 1.6 ms, traced 0.8 ms on one thread of the 2-core Xeon VM; batch 64: 18.4 and 15.1 ms).
A trace records the ops once and replays them from C++. The step's shapes come from its input
tensors, so one trace serves every batch size; it is traced per call form (the whole state or
a slice's views of it / gathered rows; all rows advance / `keep`) and each graph is checked
against the eager step before it is used (`TracedStep` falls back to eager on any
difference). CUDA captures the eager step as graphs instead (`streamlift.serve.runner`).

torch.jit.trace is deprecated in favour of torch.compile / torch.export; torch.compile of this
step was slower on CPU (its guards and dynamic shapes), and torch 2.13 still traces, so the
fallback is what keeps this working if a later torch drops it.
"""

from __future__ import annotations

import warnings

import torch
import torch.nn as nn

from streamlift.lifter.stream import StreamState, StreamingNRSfMFormer

TOL = 1e-5  # a traced graph must reproduce the eager step to this (X and every state tensor)


class _Form(nn.Module):
    """step in one call form: on gathered `rows` of a larger state or on a whole state (or a
    slice's views of one; `rows` unused), with or without `keep`."""

    def __init__(self, model: StreamingNRSfMFormer, gathered: bool, keep: bool):
        super().__init__()
        self.model, self.gathered, self.keep = model, gathered, keep

    def forward(self, kp, conf, k, v, ms, pool, n, rows, keep):
        return self.model.step(kp, conf, StreamState(k, v, ms, pool, n),
                               rows if self.gathered else None, keep if self.keep else None)


class TracedStep:
    """Called as `model.step(kp2d, conf, state, rows=None, keep=None)` is, with the same results
    (float tolerance `TOL`); graphs are traced on first use of each call form. Inference only:
    the graphs hold the model's weights as they were when traced."""

    def __init__(self, model: StreamingNRSfMFormer):
        self.model = model.eval()
        self.graphs: dict[tuple[bool, bool], torch.jit.ScriptModule | None] = {}
        self.fallbacks: list[str] = []  # why a form runs eagerly, if one does

    def prepare(self, forms=((False, False), (False, True), (True, False))) -> "TracedStep":
        """Trace these call forms now ((gathered rows, keep); default: the CPU runner's), so
        that no step traces (~0.3 s) while serving, or in two threads at once."""
        for form in forms:
            if form not in self.graphs:
                self.graphs[form] = self._trace(*form)
        return self

    def __call__(self, kp2d: torch.Tensor, conf: torch.Tensor, state: StreamState,
                 rows: torch.Tensor | slice | None = None,
                 keep: torch.Tensor | None = None) -> torch.Tensor:
        if isinstance(rows, slice):  # views of consecutive rows: a whole state to the graph
            state, rows = state.view(rows), None
        form = (rows is not None, keep is not None)
        if form not in self.graphs:
            self.graphs[form] = self._trace(*form)
        g = self.graphs[form]
        if g is None:
            return self.model.step(kp2d, conf, state, rows, keep)
        unused = state.n[:0]  # for the graphs that take no rows / keep
        with torch.inference_mode():
            return g(kp2d, conf, *state.tensors(), unused if rows is None else rows,
                     unused if keep is None else keep)

    def _trace(self, gathered: bool, keep: bool):
        """The graph of one call form, traced on a random state of 5 rows and checked against
        the eager step on states of other sizes (9 rows; 1 row); None if it fails."""
        def case(rows_total, B, seed):
            g = torch.Generator().manual_seed(seed)
            p = next(self.model.parameters())
            J = self.model.cfg.num_joints
            st = self.model.init_state(rows_total, p.device, p.dtype)
            kp = torch.rand(rows_total, J, 2, generator=g) * 400
            cf = torch.rand(rows_total, J, generator=g)
            self.model.start(kp.to(p.device), cf.to(p.device), st)
            for _ in range(int(torch.randint(1, 30, (), generator=g))):  # partly filled rings
                self.model.step((torch.rand(rows_total, J, 2, generator=g) * 400).to(p.device),
                                cf.to(p.device), st)
            rows = torch.randperm(rows_total, generator=g)[:B].to(p.device)
            keep_ = torch.randperm(B, generator=g)[:max(1, B // 2)].sort().values.to(p.device)
            kp = (torch.rand(B, J, 2, generator=g) * 400).to(p.device)
            cf = torch.rand(B, J, generator=g).to(p.device)
            return st, kp, cf, rows if gathered else None, keep_ if keep else None

        def args(st, kp, cf, rows, keep_):
            return [kp, cf, *st.tensors(), rows if gathered else st.n[:0],
                    keep_ if keep_ is not None else st.n[:0]]

        module = _Form(self.model, gathered, keep).eval()
        try:
            st, kp, cf, rows, keep_ = case(5, 5 if not gathered else 3, 0)
            with warnings.catch_warnings(), torch.inference_mode():
                warnings.simplefilter("ignore")  # deprecation, and the shape checks' bools
                graph = torch.jit.freeze(torch.jit.trace(module, tuple(args(st, kp, cf, rows,
                                                                            keep_)),
                                                         check_trace=False))
                err = 0.0
                for total, B, seed in ((9, 6 if gathered else 9, 1), (2 if gathered else 1, 1, 2)):
                    st, kp, cf, rows, keep_ = case(total, B, seed)
                    ref = st.copy()
                    want = self.model.step(kp, cf, ref, rows, keep_)
                    got = graph(*args(st, kp, cf, rows, keep_))
                    if keep_ is not None:  # the rows that are not kept give meaningless X
                        want, got = want.index_select(0, keep_), got.index_select(0, keep_)
                    err = max([err, (want - got).abs().max().item()] +
                              [(a - b).abs().max().item() for a, b in zip(ref.tensors(),
                                                                           st.tensors())])
            if not err <= TOL:
                raise RuntimeError(f"traced step differs from eager by {err:.3g}")
            return graph
        except Exception as e:  # eager is always right: run that form eagerly
            self.fallbacks.append(f"{'rows' if gathered else 'whole'}"
                                  f"{'+keep' if keep else ''}: {e}")
            return None
