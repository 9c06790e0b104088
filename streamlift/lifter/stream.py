"""Streaming NRSfMFormer: the lifter of `streamlift.lifter.model` made causal frame by frame, so
that a new frame costs one frame's work (17 tokens) and not a whole window's (T x 17).

What changes against the windowed model, and why:
- temporal attention looks back only, over the frame itself and the T - 1 before it, with a
  learned bias per head and distance (a relative position: nothing depends on a frame's slot in
  a window), so each layer's keys and values of the last T - 1 frames are all a stream keeps;
- the 2D scale of frame t is the confidence-weighted RMS over frames t - T + 1 .. t (the causal
  window's, as in the windowed model), kept as running sums per frame;
- B[t] is head_B of the hidden states pooled over frames t - T + 1 .. t (head_B is linear, so
  the pool of head_B(h) is kept);
- a stream starts as if its first frame had been shown still before it (`still_state`): the
  windowed lifter pads a stream's start with repeats of its first frame, so a student distilled
  from it sees at a stream's start what its teacher saw; a cleared state (`init_state`,
  `StreamState.clear`) instead has nothing before its first frame (masked).

A lifter trained with a lookahead of L frames (`StreamConfig.lookahead`; 0 by default) gives,
at the step that takes frame t, its estimate of frame t - L: it has seen L frames after the one
it lifts, for L frames more latency. Everything else is the same; what the outputs are of is the
caller's bookkeeping (`lift_chunks`, the server).

Two entry points that agree to float tolerance (tests/test_stream.py):
- `forward(kp2d, conf, state=None)` over a chunk (B, L, J, 2) of L >= 1 frames, continuing from
  `state` (None: the chunk starts its streams), returns per-frame outputs and the new state;
- `step(kp2d, conf, state)` for one frame (B, J, 2), updates the state tensors in place (fixed
  shapes, no host synchronisation: capturable in a CUDA graph) and returns X (B, J, 3).

The state of a stream: per temporal layer the last T - 1 frames' keys and values, the last
T - 1 frames' scale sums and pooled head_B terms (rings: frame f in slot f mod (T - 1)), and how
many frames it has seen.
A frame's estimate depends on the last `receptive_field()` = (depth + 2)(T - 1) + 1 frames only:
starting a state that many frames back (`prime_frames`) reproduces a stream's state exactly.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import torch
import torch.nn as nn

from streamlift import checkpoint
from streamlift.errors import UserError
from streamlift.geometry import rotation_6d
from streamlift.lifter.model import (FORMAT, Block, LifterConfig, LifterOutput, NRSfMFormer,
                                     is_streaming_config)
from streamlift.skeleton import H36M17, ROOT

EPS = 1e-6


@dataclass
class StreamConfig:
    num_joints: int = H36M17.num_joints
    window: int = field(default=27, metadata={"help": "frames each temporal layer looks back "
                                                      "over (itself included)",
                                              "type": "positive_int"})
    dim: int = 64
    depth: int = 4
    heads: int = 2
    mlp_ratio: float = 2.0
    dropout: float = 0.0
    kind: str = "streaming"  # tells a streaming checkpoint's config from a windowed one's
    mode: str = "causal"  # the estimate of frame t uses frames up to t + lookahead
    # L: the output of the step that takes frame t is the estimate of frame t - L (it has seen
    # L frames after it): L frames more latency for a better estimate. Fixed by the training.
    lookahead: int = 0

    def __post_init__(self):
        if self.kind != "streaming" or self.mode != "causal":
            raise ValueError("a streaming lifter is causal")
        if not 0 <= self.lookahead < self.window:
            raise ValueError(f"lookahead must be in [0, window), got {self.lookahead}")
        if self.dim % self.heads:
            raise ValueError(f"dim {self.dim} is not divisible by heads {self.heads}")
        if self.window < 2:
            raise ValueError("window must be >= 2")

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class StreamState:
    """Per stream (rows): fixed-size rings of the last M = T - 1 frames; frame f sits in slot
    f mod M, so a step writes one slot and moves nothing."""

    k: torch.Tensor  # (depth, B, J, H, M, Dh) temporal keys
    v: torch.Tensor  # (depth, B, J, H, M, Dh) their values
    ms: torch.Tensor  # (B, M, 2) per frame: sum conf * |x|^2 over joints, 2 * sum conf
    pool: torch.Tensor  # (B, M, J, 3) per frame: head_B of the final hidden state (no bias)
    n: torch.Tensor  # (B,) int64 frames seen

    def tensors(self) -> tuple[torch.Tensor, ...]:
        return self.k, self.v, self.ms, self.pool, self.n

    def view(self, sl: slice) -> "StreamState":
        """The states of consecutive rows `sl`, as views (writes reach this state)."""
        return StreamState(self.k[:, sl], self.v[:, sl], self.ms[sl], self.pool[sl], self.n[sl])

    def rows(self, idx: torch.Tensor) -> "StreamState":
        """The states of rows `idx` (copies)."""
        return StreamState(self.k[:, idx], self.v[:, idx], self.ms[idx], self.pool[idx],
                           self.n[idx])

    def copy(self) -> "StreamState":
        """A state of its own (contiguous copies, also of broadcast views)."""
        return StreamState(*(t.clone(memory_format=torch.contiguous_format)
                             for t in self.tensors()))

    def put(self, idx: torch.Tensor, other: "StreamState") -> None:
        """Write `other`'s rows into rows `idx` in place."""
        self.k.index_copy_(1, idx, other.k)
        self.v.index_copy_(1, idx, other.v)
        self.ms.index_copy_(0, idx, other.ms)
        self.pool.index_copy_(0, idx, other.pool)
        self.n.index_copy_(0, idx, other.n)

    def clear(self, idx: torch.Tensor) -> None:
        """Rows `idx` start over (a new stream): nothing seen, and zeros where an earlier
        stream's numbers were (masked weights times a stale non-finite value would be NaN)."""
        for t in (self.ms, self.pool, self.n):
            t[idx] = 0
        self.k[:, idx] = 0
        self.v[:, idx] = 0


def ring_age(n: torch.Tensor, M: int) -> torch.Tensor:
    """Distance (B, M) from frame n (the next) back to the frame in each ring slot; a slot is
    real when its distance is <= n."""
    j = torch.arange(M, device=n.device)
    return (n[:, None] - j[None] - 1) % M + 1


def _slots(n: torch.Tensor, M: int) -> torch.Tensor:
    """(B, M) ring slots of frames n - M .. n - 1 (oldest first)."""
    return (n[:, None] - M + torch.arange(M, device=n.device)) % M


def _oldest_first(ring: torch.Tensor, n: torch.Tensor, bdim: int) -> torch.Tensor:
    """A ring (rows along `bdim`, slots along bdim + 1 for (B, M, ...), or along 4 for the
    (depth, B, J, H, M, Dh) keys) reordered to frames n - M .. n - 1."""
    return ring.gather(*_index(ring, n, bdim))


def _to_ring(ordered: torch.Tensor, n: torch.Tensor, bdim: int) -> torch.Tensor:
    """The inverse of `_oldest_first`, for n frames seen."""
    return torch.empty_like(ordered).scatter_(*_index(ordered, n, bdim), ordered)


def _index(t: torch.Tensor, n: torch.Tensor, bdim: int):
    dim = 4 if bdim == 1 else 1
    slots = _slots(n, t.shape[dim])
    shape = [1] * t.dim()
    shape[bdim], shape[dim] = slots.shape
    return dim, slots.view(shape).expand_as(t)


def _scale_terms(kp2d: torch.Tensor, conf: torch.Tensor):
    """Root-relative 2D (..., J, 2) and per frame (sum conf |x|^2, 2 sum conf) (..., 2): the
    terms whose sums over the causal window give its 2D scale (`_scale`)."""
    x = kp2d - kp2d[..., ROOT:ROOT + 1, :]
    return x, torch.stack([(conf[..., None] * x.square()).sum(dim=(-2, -1)),
                           2 * conf.sum(dim=-1)], -1)


def _scale(ms: torch.Tensor) -> torch.Tensor:
    """The confidence-weighted RMS of root-relative 2D from summed `_scale_terms` (..., 2)."""
    return (ms[..., 0] / ms[..., 1].clamp_min(EPS)).sqrt().clamp_min(EPS)


class TemporalAttention(nn.Module):
    """Causal attention over a frame and the T - 1 before it, with a learned bias per head and
    distance d = t - s:  P = softmax(q_t k_s^T / sqrt(Dh) + bias[h, d]) over the seen s with
    0 <= d < T,  O_t = sum_s P_ts v_s."""

    def __init__(self, dim: int, heads: int, window: int):
        super().__init__()
        self.heads, self.window = heads, window
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.bias = nn.Parameter(torch.zeros(heads, window))  # (H, T) by distance

    def forward(self, x: torch.Tensor, k_old: torch.Tensor, v_old: torch.Tensor,
                seen: torch.Tensor):
        """x (B, J, L, C) new frames; k_old, v_old (B, J, H, M, Dh) the M = T - 1 frames before
        them (the oldest first), of which the last `seen` (B,) are real. Returns the output
        (B, J, L, C) and the last M frames' keys and values."""
        Bn, J, L, C = x.shape
        H, M = self.heads, self.window - 1
        Dh = C // H
        qkv = self.qkv(x).view(Bn, J, L, 3, H, Dh).permute(3, 0, 1, 4, 2, 5)  # (3, B, J, H, L, Dh)
        q, k_new, v_new = qkv[0], qkv[1], qkv[2]
        k = torch.cat([k_old, k_new], dim=3)  # (B, J, H, M + L, Dh)
        v = torch.cat([v_old, v_new], dim=3)
        # key j sits at time j - M (the chunk's first frame at 0); query i at time i
        d = torch.arange(L, device=x.device)[:, None] + M - torch.arange(M + L, device=x.device)
        in_window = (d >= 0) & (d < self.window)  # (L, M + L)
        seen_key = torch.arange(M + L, device=x.device)[None, :] >= (M - seen)[:, None]  # (B, M+L)
        mask = in_window[None] & seen_key[:, None]  # (B, L, M + L)
        bias = self.bias[:, d.clamp(0, self.window - 1)]  # (H, L, M + L)
        s = (q @ k.transpose(-1, -2)) * (1.0 / math.sqrt(Dh)) + bias  # (B, J, H, L, M + L)
        s = s.masked_fill(~mask[:, None, None], float("-inf"))
        o = s.softmax(dim=-1) @ v  # (B, J, H, L, Dh)
        o = self.proj(o.transpose(2, 3).reshape(Bn, J, L, C))
        return o, k[:, :, :, L:], v[:, :, :, L:]

    def still(self, x: torch.Tensor):
        """A frame x (B, J, C) seen still forever: every key in its window is its own, so the
        softmax weights sum over one value: O = v. -> output (B, J, C), key and value
        (B, J, H, Dh)."""
        Bn, J, C = x.shape
        qkv = self.qkv(x).view(Bn, J, 3, self.heads, C // self.heads)
        k, v = qkv[:, :, 1], qkv[:, :, 2]
        return self.proj(v.reshape(Bn, J, C)), k, v

    def step(self, x: torch.Tensor, k_ring: torch.Tensor, v_ring: torch.Tensor,
             bias_old: torch.Tensor, bias_new: torch.Tensor):
        """One new frame x (B, J, C) against the rings (B, J, H, M, Dh) of the M frames before
        it; `bias_old` (B, 1, H, M) is this layer's bias by each slot's distance, -inf where a
        slot holds no frame of the stream, `bias_new` (H, 1) the bias at distance 0 -> the
        output (B, J, C) and the frame's key and value (B, J, H, Dh), for the caller to write
        into the ring after this layer (the slot they go to holds a frame still in this
        window)."""
        Bn, J, C = x.shape
        H, M = self.heads, self.window - 1
        Dh = C // H
        qkv = self.qkv(x).view(Bn, J, 3, H, Dh)
        q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]  # (B, J, H, Dh)
        q = q * (1.0 / math.sqrt(Dh))
        s_old = (q[..., None, :] @ k_ring.transpose(-1, -2)).squeeze(-2) + bias_old  # (B, J, H, M)
        s_new = (q * k).sum(-1, keepdim=True) + bias_new  # (B, J, H, 1)
        p = torch.cat([s_old, s_new], dim=-1).softmax(dim=-1)  # (B, J, H, M + 1)
        o = torch.addcmul((p[..., None, :M] @ v_ring).squeeze(-2), p[..., M:], v)  # (B, J, H, Dh)
        return self.proj(o.reshape(Bn, J, C)), k, v


class TemporalBlock(nn.Module):
    """Pre-norm block of `TemporalAttention` (the windowed model's `Block`, causal)."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float, dropout: float, window: int):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = TemporalAttention(dim, heads, window)
        self.norm2 = nn.LayerNorm(dim)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(dropout),
                                 nn.Linear(hidden, dim))
        self.drop = nn.Dropout(dropout)

    def forward(self, x, k_old, v_old, seen):
        a, k, v = self.attn(self.norm1(x), k_old, v_old, seen)
        x = x + self.drop(a)
        return x + self.drop(self.mlp(self.norm2(x))), k, v

    def still(self, x):
        a, k, v = self.attn.still(self.norm1(x))
        x = x + self.drop(a)
        return x + self.drop(self.mlp(self.norm2(x))), k, v

    def step(self, x, k_ring, v_ring, bias_old, bias_new):
        a, k, v = self.attn.step(self.norm1(x), k_ring, v_ring, bias_old, bias_new)
        x = x + self.drop(a)
        return x + self.drop(self.mlp(self.norm2(x))), k, v


def _window_sum(x: torch.Tensor, old: torch.Tensor, seen: torch.Tensor, window: int):
    """Per frame of a chunk, the sum of x over it and the window - 1 frames before it.
    x (B, L, ...) new frames, old (B, M, ...) the M = window - 1 before them, of which the last
    `seen` are real -> (B, L, ...), and the new last M frames."""
    M = window - 1
    L = x.shape[1]
    real = torch.arange(M, device=x.device)[None] >= (M - seen)[:, None]  # (B, M)
    old = old * real.view(*real.shape, *([1] * (old.dim() - 2))).to(old.dtype)
    allx = torch.cat([old, x], dim=1)  # (B, M + L, ...)
    c = torch.cat([torch.zeros_like(allx[:, :1]), allx.cumsum(dim=1)], dim=1)  # (B, M+L+1, ...)
    out = c[:, M + 1:] - c[:, :L]  # allx[i .. i + M]: chunk frames i - M .. i
    return out, allx[:, L:]


class StreamingNRSfMFormer(nn.Module):
    def __init__(self, cfg: StreamConfig | None = None):
        super().__init__()
        self.cfg = cfg = cfg or StreamConfig()
        J, C = cfg.num_joints, cfg.dim
        self.embed = nn.Linear(3, C)
        self.joint_pos = nn.Parameter(torch.zeros(1, 1, J, C))
        nn.init.trunc_normal_(self.joint_pos, std=0.02)
        self.spatial = nn.ModuleList(Block(C, cfg.heads, cfg.mlp_ratio, cfg.dropout)
                                     for _ in range(cfg.depth))
        self.temporal = nn.ModuleList(
            TemporalBlock(C, cfg.heads, cfg.mlp_ratio, cfg.dropout, cfg.window)
            for _ in range(cfg.depth))
        self.norm = nn.LayerNorm(C)
        self.head_B = nn.Linear(C, 3)
        self.head_D = nn.Linear(C, 3)
        self.head_R = nn.Sequential(nn.Linear(C, C), nn.GELU(), nn.Linear(C, 6))
        nn.init.zeros_(self.head_R[-1].weight)
        with torch.no_grad():
            self.head_R[-1].bias.copy_(torch.tensor([1.0, 0, 0, 0, 1.0, 0]))
        nn.init.normal_(self.head_D.weight, std=1e-3)
        nn.init.zeros_(self.head_D.bias)

    @classmethod
    def from_windowed(cls, model: NRSfMFormer) -> "StreamingNRSfMFormer":
        """A streaming lifter that starts from a windowed one's weights (all but its absolute
        frame positions; the relative biases start at 0): the starting point for distillation."""
        c = model.cfg
        s = cls(StreamConfig(c.num_joints, c.window, c.dim, c.depth, c.heads, c.mlp_ratio,
                             c.dropout))
        sd = {k: v for k, v in model.state_dict().items() if k != "frame_pos"}
        missing, unexpected = s.load_state_dict(sd, strict=False)
        assert not unexpected and all(k.endswith("attn.bias") for k in missing), missing
        return s

    def receptive_field(self) -> int:
        """Frames of 2D behind each estimate (and behind the state after it): the scale window,
        each temporal layer and the pool of B each look T - 1 frames further back."""
        return (self.cfg.depth + 2) * (self.cfg.window - 1) + 1

    def prime_frames(self) -> int:
        """Frames before a target that a fresh state must run through to give it exactly the
        estimate (and state) of a stream that never stopped."""
        return self.receptive_field() - 1

    def init_state(self, batch: int, device="cpu", dtype=torch.float32) -> StreamState:
        c = self.cfg
        M, H = c.window - 1, c.heads
        kv = (c.depth, batch, c.num_joints, H, M, c.dim // H)
        return StreamState(torch.zeros(kv, device=device, dtype=dtype),
                           torch.zeros(kv, device=device, dtype=dtype),
                           torch.zeros(batch, M, 2, device=device, dtype=dtype),
                           torch.zeros(batch, M, c.num_joints, 3, device=device, dtype=dtype),
                           torch.zeros(batch, dtype=torch.int64, device=device))

    def forward(self, kp2d: torch.Tensor, conf: torch.Tensor | None = None,
                state: StreamState | None = None) -> tuple[LifterOutput, StreamState]:
        """kp2d (B, L, J, 2) px, conf (B, L, J) -> per-frame LifterOutput (scale (B, L)) and
        the state after the chunk's last frame. `state` is not modified; None starts new
        streams (`still_state` of the chunk's first frame)."""
        Bn, L, J, _ = kp2d.shape
        c = self.cfg
        if J != c.num_joints:
            raise ValueError(f"expected {c.num_joints} joints, got {J}")
        if conf is None:
            conf = torch.ones(kp2d.shape[:3], dtype=kp2d.dtype, device=kp2d.device)
        if state is None:  # new streams: their first frame, still before it
            state = self._still(kp2d[:, 0], conf[:, 0])[0]
        M = c.window - 1
        n = state.n
        seen = n.clamp(max=M)
        k_old, v_old = _oldest_first(state.k, n, 1), _oldest_first(state.v, n, 1)
        x, ms_frame = _scale_terms(kp2d, conf)  # (B, L, J, 2), (B, L, 2)
        ms, ms_new = _window_sum(ms_frame, _oldest_first(state.ms, n, 0), seen, c.window)  # (B, L, 2)
        scale = _scale(ms)  # (B, L)
        x2d = x / scale[..., None, None]
        h = self._tokens(x2d, conf)  # (B, L, J, C)
        C = h.shape[-1]
        ks, vs = [], []
        for i, (s_blk, t_blk) in enumerate(zip(self.spatial, self.temporal)):
            h = s_blk(h.reshape(Bn * L, J, C)).view(Bn, L, J, C)  # attend over joints
            h, k, v = t_blk(h.transpose(1, 2), k_old[i], v_old[i], seen)  # (B, J, L, C)
            h = h.transpose(1, 2)  # (B, L, J, C)
            ks.append(k)
            vs.append(v)
        h = self.norm(h)
        b = h @ self.head_B.weight.T  # (B, L, J, 3): head_B without its bias, pooled below
        pooled, pool_new = _window_sum(b, _oldest_first(state.pool, n, 0), seen, c.window)
        cnt = (seen[:, None] + torch.arange(1, L + 1, device=h.device)).clamp(max=c.window)
        B = pooled / cnt[..., None, None].to(b.dtype) + self.head_B.bias  # cnt (B, L) pooled  # (B, L, J, 3)
        X, B, D, R = self._skeleton(h, B)
        n_new = n + L
        new = StreamState(_to_ring(torch.stack(ks), n_new, 1), _to_ring(torch.stack(vs), n_new, 1),
                          _to_ring(ms_new, n_new, 0), _to_ring(pool_new, n_new, 0), n_new)
        return LifterOutput(X, B, D, R, x2d, conf, scale), new

    def _skeleton(self, h: torch.Tensor, B: torch.Tensor):
        """Normalised final hidden states h (..., J, C) and the pooled reference B (..., J, 3)
        -> X = R (B + D) per frame (row vectors), root-relative, and B, D, R (..., 3, 3)."""
        D = self.head_D(h)
        R = rotation_6d(self.head_R(h.mean(dim=-2)))
        B = B - B[..., ROOT:ROOT + 1, :]
        D = D - D[..., ROOT:ROOT + 1, :]
        return (B + D) @ R.transpose(-1, -2), B, D, R

    def _tokens(self, x2d: torch.Tensor, conf: torch.Tensor) -> torch.Tensor:
        """Joint tokens (..., J, C) of normalised 2D (..., J, 2): a missed joint (conf 0)
        shows no position."""
        shown = (conf > 0).to(x2d.dtype)[..., None]
        return self.embed(torch.cat([x2d * shown, conf[..., None]], dim=-1)) + \
            self.joint_pos.view(self.cfg.num_joints, -1)

    def still_state(self, kp2d: torch.Tensor, conf: torch.Tensor) -> StreamState:
        """The state of streams that have shown frame kp2d (B, J, 2), conf (B, J), still, for
        as long as the model looks back: how a stream starts, as the windowed lifter pads the
        frames before a stream's first with repeats of it. Every ring slot holds the frame;
        the frame itself is then lifted as the stream's first (differentiable: training
        starts its chunks from it)."""
        return self._still(kp2d, conf)[0].copy()

    def _still(self, kp2d: torch.Tensor, conf: torch.Tensor, lift: bool = False):
        """`still_state` whose rings are read-only broadcast views of one slot each (starting a
        stream writes 0.9 MB of rings; materialising them first would write it twice), and
        with `lift` the frame's X (B, J, 3) and the state after it: stepping a frame onto a
        ring of its own keys changes no slot (it writes the same key) and gives O = v in every
        layer, the pool of B is its own b, the scale its own, so X is the still pass's own
        output and only the count moves on (else X is None)."""
        c = self.cfg
        M = c.window - 1
        x, ms_frame = _scale_terms(kp2d, conf)  # (B, J, 2), (B, 2)
        h = self._tokens(x / _scale(ms_frame)[..., None, None], conf)  # (B, J, C)
        ks, vs = [], []
        for s_blk, t_blk in zip(self.spatial, self.temporal):
            h, k, v = t_blk.still(s_blk(h))  # (B, J, C); k, v (B, J, H, Dh)
            ks.append(k)
            vs.append(v)
        h = self.norm(h)
        b = h @ self.head_B.weight.T  # (B, J, 3)
        Bn = len(kp2d)
        X = self._skeleton(h, b + self.head_B.bias)[0] if lift else None

        def ring(t):  # (depth, B, J, H, Dh) -> (depth, B, J, H, M, Dh)
            return t[..., None, :].expand(*t.shape[:-1], M, t.shape[-1])

        return StreamState(ring(torch.stack(ks)), ring(torch.stack(vs)),
                           ms_frame[:, None].expand(Bn, M, 2),
                           b[:, None].expand(Bn, M, *b.shape[1:]),
                           torch.full((Bn,), M + lift, dtype=torch.int64, device=kp2d.device)), X

    @torch.no_grad()
    def start(self, kp2d: torch.Tensor, conf: torch.Tensor, state: StreamState,
              rows: torch.Tensor | None = None, lift: bool = False) -> torch.Tensor | None:
        """Start streams in rows `rows` (default: all) of `state` at frame kp2d (B, J, 2):
        their rows become `still_state` (in place), and `step` then lifts the frame itself;
        with `lift` the start lifts it too (returns its X (B, J, 3), the same as that step, at
        a fraction of the cost) and `step` goes on with the next frame."""
        rows = torch.arange(len(kp2d), device=kp2d.device) if rows is None else rows
        st, X = self._still(kp2d, conf, lift)
        state.put(rows, st)
        return X

    @torch.inference_mode()  # less per-op overhead than no_grad: a step is ~300 small ops
    def step(self, kp2d: torch.Tensor, conf: torch.Tensor, state: StreamState,
             rows: torch.Tensor | slice | None = None,
             keep: torch.Tensor | None = None) -> torch.Tensor:
        """One new frame per stream: kp2d (B, J, 2) px, conf (B, J) -> X (B, J, 3), the same
        as `forward` on a chunk of one frame. `state` is advanced in place (one ring slot
        written per tensor: static addresses and shapes, no host synchronisation, so the step
        can be captured in a CUDA graph). With `rows` (B,) int64, or a slice of consecutive rows,
        the frames belong to those rows of a larger state (an engine's state of every slot);
        rows must be distinct, except for rows whose results are thrown away (a graph's
        padding). With `keep` (K,) int64, positions in the batch, only those rows' states
        advance; the others are computed and left as they were (on CPU a slice of rows with a
        few idle ones among them is cheaper than gathering the busy ones); their X is
        meaningless."""
        c = self.cfg
        M = c.window - 1
        if rows is None:  # the whole state (sizes from tensors: a trace keeps them dynamic)
            k, v, ms_ring, pool_ring, n = state.tensors()
            rows = torch.arange(kp2d.shape[0], device=kp2d.device)
        elif isinstance(rows, slice):  # consecutive rows: read the rings in place
            k, v, ms_ring, pool_ring, n = state.view(rows).tensors()
            rows = torch.arange(rows.start or 0, rows.stop, device=kp2d.device)
        else:  # gathered copies of the rows' rings (attention reads them all anyway);
            # index_select copies whole rows, 2x faster than advanced indexing on CPU
            k, v = state.k.index_select(1, rows), state.v.index_select(1, rows)
            ms_ring, pool_ring, n = (t.index_select(0, rows) for t in (state.ms, state.pool,
                                                                       state.n))
        age = ring_age(n, M)  # (B, M)
        real = age <= n[:, None]  # (B, M) slots that hold a frame of this stream
        slot = n % M  # (B,) where this frame goes
        realf = real.to(kp2d.dtype)
        bias_old, bias_new = self._step_biases(age, real)
        Dh = c.dim // c.heads
        if keep is None:
            def kept(t):
                return t
        else:
            def kept(t):  # the rows whose states advance
                return t.index_select(0, keep)
        wr_rows, wr_slot = kept(rows), kept(slot)
        wr = self._kv_rows(wr_rows, wr_slot)
        x, ms_frame = _scale_terms(kp2d, conf)  # (B, J, 2), (B, 2)
        ms = ms_frame + (ms_ring * realf[..., None]).sum(dim=1)
        h = self._tokens(x / _scale(ms)[..., None, None], conf)  # (B, J, C)
        for i, (s_blk, t_blk) in enumerate(zip(self.spatial, self.temporal)):
            h, k_new, v_new = t_blk.step(s_blk(h), k[i], v[i], bias_old[i], bias_new[i])  # (B, J, C)
            state.k[i].view(-1, Dh).index_copy_(0, wr, kept(k_new).reshape(-1, Dh))
            state.v[i].view(-1, Dh).index_copy_(0, wr, kept(v_new).reshape(-1, Dh))
        h = self.norm(h)
        b = h @ self.head_B.weight.T  # (B, J, 3)
        pooled = b + (pool_ring * realf[..., None, None]).sum(dim=1)
        X = self._skeleton(h, pooled / (realf.sum(dim=1) + 1)[:, None, None]
                           + self.head_B.bias)[0]
        wr = wr_rows * M + wr_slot  # (K,) rows of the (B * M, ...) views of the per-frame rings
        state.ms.view(-1, 2).index_copy_(0, wr, kept(ms_frame))
        state.pool.view(-1, c.num_joints * 3).index_copy_(0, wr, kept(b).flatten(1))
        state.n.index_copy_(0, wr_rows, kept(n) + 1)
        return X

    def _step_biases(self, age: torch.Tensor, real: torch.Tensor):
        """Every layer's attention bias by ring-slot distance `age` (B, M), -inf on slots that
        hold no frame (`real` False), in one gather -> (depth, B, 1, H, M), and the bias at
        distance 0 (depth, H, 1)."""
        bias = torch.stack([t.attn.bias for t in self.temporal])  # (depth, H, T)
        old = bias[:, :, age].masked_fill(~real, float("-inf"))  # (depth, H, B, M)
        return old.transpose(1, 2)[:, :, None], bias[:, :, :1]

    def _kv_rows(self, rows: torch.Tensor, slot: torch.Tensor) -> torch.Tensor:
        """Where a step writes its keys (and values) of state rows `rows` into ring slots
        `slot` (K,): rows of k[i] viewed (B * J * H * M, Dh), the one of (row b, joint-head
        jh, slot) at (b * JH + jh) * M + slot, so that a layer's write is one index_copy of
        Dh-long rows -> (K * J * H,)."""
        c = self.cfg
        JH = c.num_joints * c.heads
        return ((rows[:, None] * JH + torch.arange(JH, device=rows.device)) * (c.window - 1)
                + slot[:, None]).view(-1)

    @torch.no_grad()
    def lift_chunks(self, kp2d: torch.Tensor, conf: torch.Tensor,
                    chunk: int = 256) -> torch.Tensor:
        """Whole sequences (B, N, J, 2) -> X (B, N, J, 3), in chunks that carry the state (the
        attention of a chunk costs L (L + T) per layer, so chunks bound its memory). With a
        lookahead, the sequences go on with that many repeats of their last frame, as a server
        ends a stream, and the first outputs (of frames before the first) are left out."""
        ahead = self.cfg.lookahead
        if ahead:
            kp2d = torch.cat([kp2d, kp2d[:, -1:].expand(-1, ahead, -1, -1)], dim=1)
            conf = torch.cat([conf, conf[:, -1:].expand(-1, ahead, -1)], dim=1)
        state, out = None, []
        for i in range(0, kp2d.shape[1], chunk):
            o, state = self.forward(kp2d[:, i:i + chunk], conf[:, i:i + chunk], state)
            out.append(o.X)
        return torch.cat(out, dim=1)[:, ahead:]


def save_streaming(path, model: StreamingNRSfMFormer, meta: dict | None = None,
                   train: dict | None = None) -> None:
    """Weights + config + provenance (and a run's state), in the lifter checkpoint format with
    config kind "streaming"; loadable with weights_only=True."""
    ck = {"format": FORMAT, "config": model.cfg.to_dict(), "state_dict": model.state_dict(),
          "meta": meta or {}}
    if train is not None:
        ck["train"] = train
    checkpoint.write(ck, path)


def load_streaming(path, device="cpu", with_train: bool = False):
    """A streaming lifter and its provenance (and the run state with `with_train`); UserError
    when the file is not a streaming lifter checkpoint."""
    ck = checkpoint.read(path, FORMAT, "lifter", device)
    if not is_streaming_config(ck["config"]):
        raise UserError(f"{path} is a windowed lifter, not a streaming one")
    model = from_checkpoint(ck, device)
    meta = ck.get("meta", {})
    return (model, meta, ck.get("train")) if with_train else (model, meta)


def from_checkpoint(ck: dict, device="cpu") -> StreamingNRSfMFormer:
    """The model of a streaming checkpoint's dict (`checkpoint.read`), in eval mode."""
    model = StreamingNRSfMFormer(StreamConfig(**ck["config"])).to(device)
    model.load_state_dict(ck["state_dict"])
    model.eval()
    return model


def windowed_config(cfg: StreamConfig) -> LifterConfig:
    """The windowed lifter of the same shape (its reference in benchmarks and tests)."""
    return LifterConfig(cfg.num_joints, cfg.window, cfg.dim, cfg.depth, cfg.heads,
                        cfg.mlp_ratio, cfg.dropout)
