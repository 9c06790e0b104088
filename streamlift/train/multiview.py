"""Synchronised views of one sequence: the same body at the same instant, so one 3D shape.

What a monocular lifter gets least right off its training domain is depth: the 2D of one
camera barely changes when a limb swings towards or away from it. A second camera sees that depth across its
image. With two or more cameras filming the same person, each lifted on its own, the poses of
one frame must be one shape up to the cameras' relative rotation (and the lifter's unknown
scale) — a constraint from 2D alone, no calibration and no 3D needed. `adapt --multiview`
adds it as a loss (`consistency`).

Views are synchronised when they come from one views file, their names differ only in a
trailing `.camK` (`streamlift data views` names them `SEQUENCE.camK`) and they have as many
frames: frame i of one is frame i of the other.
"""

from __future__ import annotations

import re

import torch

from streamlift.kernels.procrustes import procrustes

_CAMERA_SUFFIX = re.compile(r"\.cam\d+$")


def sequence_of(name: str) -> str | None:
    """The sequence a view name belongs to (`walk.cam1` -> `walk`), None without a `.camK`."""
    return _CAMERA_SUFFIX.sub("", name) if _CAMERA_SUFFIX.search(name) else None


class Partners:
    """For each frame of a `WindowSampler`, the same frame in the other views of its sequence.

    `names`, `lengths`: the sampler's views in its order. Views whose sequence has a single
    view, or whose length differs from the sequence's first view's, have no partner.
    """

    def __init__(self, names: list[str], lengths: list[int]):
        starts, s = [], 0
        for n in lengths:
            starts.append(s)
            s += n
        groups: dict[str, list[int]] = {}
        self.mismatched: list[str] = []
        for i, name in enumerate(names):
            seq = sequence_of(name)
            if seq is None:
                continue
            members = groups.setdefault(seq, [])
            if members and lengths[members[0]] != lengths[i]:
                self.mismatched.append(name)
                continue
            members.append(i)
        groups = {k: m for k, m in groups.items() if len(m) > 1}
        width = max((len(m) for m in groups.values()), default=1)
        member_start = torch.zeros(max(len(groups), 1), width, dtype=torch.long)
        size = torch.ones(len(lengths), dtype=torch.long)  # per view: views in its sequence
        group = torch.zeros(len(lengths), dtype=torch.long)
        slot = torch.zeros(len(lengths), dtype=torch.long)
        for g, members in enumerate(groups.values()):
            for k, i in enumerate(members):
                member_start[g, k] = starts[i]
                size[i], group[i], slot[i] = len(members), g, k
        n = sum(lengths)
        view = torch.repeat_interleave(torch.arange(len(lengths)), torch.tensor(lengths))
        self._start = torch.tensor(starts, dtype=torch.long)[view]  # (N,)
        self._size, self._group, self._slot = size[view], group[view], slot[view]  # (N,)
        self._member_start = member_start  # (groups, width)
        self.sequences = len(groups)
        self.paired_views = sum(len(m) for m in groups.values())
        self.frames = n

    def of(self, targets: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        """Global frames (n,) -> the same frame (n,) in another view of its sequence, drawn at
        random among them; a frame with no partner is its own."""
        size = self._size[targets]
        k = torch.randint(0, 2**30, targets.shape, generator=gen) % (size - 1).clamp_min(1)
        other = (self._slot[targets] + 1 + k) % size  # never the frame's own slot
        start = self._member_start[self._group[targets], other]
        partner = start + targets - self._start[targets]
        return torch.where(size > 1, partner, targets)


def consistency(Xa: torch.Tensor, Xb: torch.Tensor, w: torch.Tensor | None = None,
                pairs: torch.Tensor | None = None) -> torch.Tensor:
    """How far the poses of synchronised views (B, T, J, 3) are from one shape.

    Per frame, the similarity (s, R, t) that best maps Xa onto Xb (weighted Procrustes over the
    joints; weights w (B, T, J), e.g. both views' confidences multiplied: a joint unseen in
    either counts for nothing) is found without gradient, and the loss is the mean weighted
    joint distance |s R xa_j + t - xb_j| over the RMS radius of Xb about its weighted centre:
    unitless, blind to each camera's rotation and to the lifter's scale. The gradient reaches
    both poses; holding (s, R, t) fixed loses nothing at the optimum (the envelope theorem).
    `pairs` (B,) bool: the windows that are real pairs (others count for nothing). A frame with
    no joint seen in both views counts for nothing either (a detector's empty frame).
    """
    B, T, J, _ = Xa.shape
    a, b = Xa.flatten(0, 1).double(), Xb.flatten(0, 1).double()  # (B*T, J, 3)
    wt = (torch.ones(B * T, J, dtype=a.dtype, device=a.device) if w is None
          else w.flatten(0, 1).to(a.dtype))  # (B*T, J)
    with torch.no_grad():
        fit = procrustes(a, b, wt, scale=True, impl="reference")
    total = wt.sum(dim=1)  # (B*T,)
    wn = wt / total[:, None].clamp_min(1e-8)  # (B*T, J), sums to 1
    mapped = fit.s[:, None, None] * (a @ fit.R.transpose(1, 2)) + fit.t[:, None]
    centre = (wn[..., None] * b).sum(dim=1, keepdim=True)  # (B*T, 1, 3)
    # clamped before the root: a frame no joint of which is seen in both views has radius 0,
    # and the root's infinite gradient there would make every weight NaN
    radius = (wn * (b - centre).square().sum(dim=-1)).sum(dim=1).clamp_min(1e-12).sqrt()
    dist = ((mapped - b).square().sum(dim=-1) + 1e-12).sqrt()  # (B*T, J); finite gradient at 0
    err = (wn * dist).sum(dim=1) / radius  # (B*T,)
    seen = (total > 0).view(B, T)  # frames with a joint seen in both views
    err = (err.view(B, T) * seen).sum(dim=1) / seen.sum(dim=1).clamp_min(1)  # (B,)
    if pairs is None:
        return err.mean().to(Xa.dtype)
    pairs = pairs & seen.any(dim=1)  # a window with no such frame says nothing
    return (err * pairs).sum().to(Xa.dtype) / pairs.sum().clamp_min(1)
