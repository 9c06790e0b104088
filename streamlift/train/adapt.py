"""`streamlift adapt`: fine-tune a lifter to a user's domain from their 2D alone.

Naive fine-tuning (`train --init` on the new 2D) makes a lifter worse: the unsupervised losses
cannot see the body's rotation towards or away from the camera well (the 2D barely changes
with it), so with no 3D to hold it the rotation drifts while the shape improves. `adapt` keeps
what the starting lifter got right and lets the rest move:
- an **orientation anchor**: the rotation that best aligns the adapted pose to the starting
  lifter's pose of the same frame is pushed to the identity (the skew part of their
  cross-covariance, as the canonicalisation loss does for the shapes); the shape itself may
  change, so PA-MPJPE can improve without N-MPJPE paying for drift;
- with several synchronised cameras (`--multiview`), instead of the anchor, **multi-view
  consistency**: the views of one frame must lift to one shape (`streamlift.train.multiview`),
  which corrects the rotation and depth the anchor would only hold;
- **held-out windows of the user's 2D** (the last part of each view): their reprojection and
  prior losses are measured every few steps with fixed noise, the best weights are kept, the
  run stops when they stop improving, and the starting weights come back if nothing beat them.
Before any of it, a detector's short left/right limb swaps in the user's 2D are exchanged back
(`streamlift.data.unswap`; `--keep-swaps` leaves them): adapting on them turned the bodies.
No 3D is read: a views file's kp3d, if any, is ignored.
"""

from __future__ import annotations

import copy
import time
import zlib
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch

from streamlift import checkpoint
from streamlift.data.unswap import unswap
from streamlift.data.views import View, load_views
from streamlift.errors import UserError
from streamlift.lifter.model import FORMAT, LifterConfig, NRSfMFormer, require_windowed, save_checkpoint
from streamlift.progress import bar as progress_bar
from streamlift.train.lifter import loss_terms
from streamlift.train.loop import Optimiser
from streamlift.train.multiview import Partners, consistency, sequence_of
from streamlift.train.sampler import WindowSampler, draw_batch, roll_2d, roll_3d

# the unsupervised losses of the shipped lifter's fine-tunes (docs/training.md) but
# `bone_proportions`, which holds the training bodies' proportions: a user's people (and their
# detector's joint placement) differ, and on HDM05 adapting with it was worse
# (docs/generalisation.md)
ADAPT_WEIGHTS = {"reprojection": 1.0, "canonicalisation": 1.0, "smoothness": 1.0,
                 "bone_constancy": 0.5, "bone_symmetry": 0.5, "bone_proportions": 0.0,
                 "deformation": 0.01}


@dataclass
class AdaptConfig:
    """Settings of `streamlift adapt`, chosen for a few minutes of CPU."""
    # `metadata`: the command-line flag of a field (streamlift.cli.common.add_config)
    steps: int = field(default=400, metadata={"type": "positive_int",
                                              "help": "most optimizer steps"})
    batch: int = field(default=32, metadata={"type": "positive_int", "help": "windows per step"})
    lr: float = field(default=5e-5, metadata={"type": "positive_float",
                                              "help": "peak learning rate"})
    # None: 1, or 0 with --multiview (__post_init__)
    anchor: float | None = field(default=None, metadata={
        "type": "non_negative", "help": "weight of the orientation anchor to the starting "
        "lifter (0: none, a naive fine-tune; default 1, or 0 with --multiview, whose "
        "consistency corrects the rotation the anchor would hold)"})
    prior_weight: float = field(default=2.0, metadata={
        "type": "non_negative", "help": "weight of the diffusion prior loss"})
    prior_t_range: tuple = field(default=(0.05, 0.4), metadata={
        "type": "float", "nargs": 2, "metavar": ("LO", "HI"),
        "help": "diffusion steps the prior loss noises at, fractions of its schedule"})
    held_out: float = field(default=0.2, metadata={
        "type": "probability", "help": "share of each view's frames (its last ones) held out "
        "to judge the adaptation by its reprojection and prior losses (0: no guard)"})
    check_every: int = field(default=25, metadata={
        "type": "positive_int", "help": "steps between checks on the held-out windows"})
    patience: int = field(default=4, metadata={
        "type": "positive_int", "help": "stop after this many checks without improvement"})
    check_windows: int = field(default=512, metadata={
        "type": "positive_int", "help": "held-out windows per check"})
    reprojection_tol: float = field(default=0.02, metadata={
        "type": "non_negative", "help": "how much worse than at the start (a fraction) the "
        "held-out reprojection may get in weights that are kept"})
    seed: int = field(default=0, metadata={"type": "int", "help": "random seed"})
    weights: dict = field(default_factory=lambda: dict(ADAPT_WEIGHTS))
    # what train.sampler.draw_batch reads: mirrored windows, 2D noise, targets uniform over
    # frames, perspective reprojection
    noise_px: float = field(default=1.0, metadata={
        "type": "non_negative", "help": "each window's 2D gets i.i.d. noise of std ~ U(0, this) "
        "px; 1 px for a user's 2D, which is already a detector's; `train` draws up to 3 px, "
        "which adapting on exact (synthetic) 2D needs to stay robust to noise"})
    detector: bool = field(default=False, metadata={
        "help": "noise the 2D with the detector model (per-joint noise, swaps, missed joints, "
        "confidences) instead of i.i.d. noise"})
    roll_deg: float = field(default=0.0, metadata={
        "type": "non_negative", "help": "turn a share (--roll-prob) of the windows' 2D by a "
        "camera roll of U(-this, this) degrees (bodies lying down, tilted cameras); the "
        "orientation anchor then holds each pose to the starting lifter's estimate from the "
        "2D unturned, turned by the same roll (0: only the user's own rolls)"})
    roll_prob: float = field(default=0.5, metadata={
        "type": "share", "help": "share of the windows that get a --roll-deg roll"})
    keep_swaps: bool = field(default=False, metadata={
        "help": "leave the 2D's left/right limb swaps as they are; by default a detector's "
        "short swaps of a leg or an arm are found and exchanged back first "
        "(streamlift.data.unswap): adapting on them turned the lifted bodies"})
    multiview: float = field(default=0.0, metadata={
        "type": "non_negative", "help": "weight of the multi-view consistency loss: views of "
        "one sequence filmed at once by several cameras (one views file, names SEQUENCE.camK, "
        "as many frames) must lift to one shape (streamlift.train.multiview); half of each "
        "batch is such pairs (0: off; 2D of a single camera needs it off)"})
    flip_prob: float = 0.5
    balance: str = "frames"
    perspective: bool = True
    warmup_steps: int = 20

    def __post_init__(self):
        # the anchor holds the starting lifter's rotation, which synchronised views correct:
        # with both on HDM05, the guard kept the starting weights (docs/generalisation.md §3)
        if self.anchor is None:
            self.anchor = 0.0 if self.multiview > 0 else 1.0


def orientation_anchor(X: torch.Tensor, X0: torch.Tensor) -> torch.Tensor:
    """How far poses X (B, T, J, 3) are turned from poses X0 of the same frames: the skew part
    of H = sum_j x_j x0_j^T (root-relative, scale-normalised), zero exactly when the rotation
    that best aligns X to X0 (the polar factor of H) is the identity."""
    x = X - X[..., :1, :]
    x0 = X0 - X0[..., :1, :]
    H = x.transpose(-1, -2) @ x0  # (B, T, 3, 3)
    norm = (x.square().sum(dim=(-1, -2)) * x0.square().sum(dim=(-1, -2))).sqrt()
    skew = (H - H.transpose(-1, -2)) / norm.clamp_min(1e-6)[..., None, None]
    return skew.square().sum(dim=(-1, -2)).mean()


def split_views(views: dict[str, View], held_out: float, min_frames: int,
                by_sequence: bool = False) -> tuple[dict[str, View], dict[str, View]]:
    """The user's 2D split into views to adapt on and held-out views to judge by, about
    `held_out` of the frames: a long view gives its last frames, a view too short to split
    goes whole to one side (chosen by its name, so the split is the same every run; with
    `by_sequence` by its sequence's name, so that synchronised views stay on one side and stay
    pairs); when none is chosen, the first by that order is held out. kp3d is dropped: adapt
    never reads 3D."""
    fit, judge = {}, {}
    side_key = (lambda n: sequence_of(n) or n) if by_sequence else (lambda n: n)  # noqa: E731
    for name, v in sorted(views.items()):
        n = v.frames
        cut = n - int(round(held_out * n))
        part = lambda a, b: View(v.kp2d[a:b], None, v.fps, v.image_size,  # noqa: E731
                                 v.intrinsics, v.extrinsics)
        if held_out <= 0:
            fit[name] = part(0, n)
        elif cut >= min_frames and n - cut >= min_frames:
            fit[name], judge[name] = part(0, cut), part(cut, n)
        elif zlib.crc32(side_key(name).encode()) % 1000 < 1000 * held_out:
            judge[name] = part(0, n)
        else:
            fit[name] = part(0, n)
    if not fit and judge:  # one short view: adapt on it, nothing to judge by
        fit, judge = judge, {}
    keys = sorted({side_key(k) for k in fit}, key=lambda k: zlib.crc32(k.encode()))
    if held_out > 0 and not judge and len(keys) > 1:  # few short views the hash spared: the
        judge = {k: v for k, v in fit.items() if side_key(k) == keys[0]}  # lowest one judges
        fit = {k: v for k, v in fit.items() if side_key(k) != keys[0]}
    return fit, judge


def _losses(model, w, focal, prior, cfg: AdaptConfig, gen=None, roll=None) -> tuple[dict, object]:
    o = model(w[..., :2], w[..., 2])
    return loss_terms(o, focal, cfg.weights, prior, cfg.prior_t_range, gen, roll), o


def _weighted(terms: dict, cfg: AdaptConfig) -> torch.Tensor:
    extra = {"prior": cfg.prior_weight, "anchor": cfg.anchor, "multiview": cfg.multiview}
    return sum(cfg.weights.get(k, extra.get(k)) * v for k, v in terms.items())


def _pairs(partners: Partners, targets: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Target frames (n,) -> (2n,): them, then the same frames in another synchronised view."""
    return torch.cat([targets, partners.of(targets, gen)])


def _multiview(o, w: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """The consistency of a batch laid out by `_pairs`: window i against window n + i."""
    n = len(targets) // 2
    conf = w[:n, ..., 2] * w[n:, ..., 2]  # (n, T, J): a joint missed in either counts 0
    return consistency(o.X[:n], o.X[n:], conf, pairs=targets[n:] != targets[:n])


@torch.no_grad()
def _judge(model, sampler: WindowSampler, targets, prior, cfg: AdaptConfig,
           partners: Partners | None = None) -> dict:
    """Held-out reprojection and prior losses (and with `partners` the multi-view
    consistency), with the same prior noise and partners at every check."""
    model.eval()
    gen = torch.Generator().manual_seed(cfg.seed + 99)
    sums, n = {"reprojection": 0.0, "prior": 0.0}, 0
    if partners is not None:
        sums["multiview"] = 0.0
    for i in range(0, len(targets), 128):
        t = targets[i:i + 128]
        if partners is not None:
            t = _pairs(partners, t, gen)
        w = sampler.windows(t)
        terms, o = _losses(model, w, sampler.focal[t], prior, cfg, gen)
        if partners is not None:
            terms["multiview"] = _multiview(o, w, t)
        for k in sums:
            if k in terms:
                sums[k] += float(terms[k]) * len(t)
        n += len(t)
    model.train()
    return {k: v / n for k, v in sums.items()}


def better(r: dict, best: dict, start: dict, cfg: AdaptConfig) -> bool:
    """Is check `r` better than `best`? Its held-out reprojection may not exceed the start's
    by more than `cfg.reprojection_tol` (a prior that pulls poses away from what the 2D
    shows is not a gain), and its reprojection + prior_weight x prior (+ multiview x the
    multi-view consistency) must be lower."""
    if r["reprojection"] > start["reprojection"] * (1 + cfg.reprojection_tol):
        return False
    score = lambda c: (c["reprojection"] + cfg.prior_weight * c["prior"]  # noqa: E731
                       + cfg.multiview * c.get("multiview", 0.0))
    return score(r) < score(best)


@dataclass
class _Run:
    """What the adaptation loop works on."""
    model: NRSfMFormer
    teacher: NRSfMFormer
    sampler: WindowSampler
    judge: WindowSampler | None
    targets: torch.Tensor | None
    prior: object
    partners: Partners | None = None  # synchronised views to adapt on (--multiview)
    judge_partners: Partners | None = None


def unswap_views(views: dict[str, View], log) -> dict[str, View]:
    """The views with their left/right limb swaps exchanged back (`streamlift.data.unswap`)."""
    out, n, frames = {}, 0, 0
    for name, v in views.items():
        kp2d, k = unswap(v.kp2d)
        out[name] = replace(v, kp2d=kp2d)
        n, frames = n + k, frames + v.frames
    log(f"adapt: exchanged back {n:,} left/right limb swaps in the 2D (a leg or an arm in a "
        f"frame: {n / max(2 * frames, 1):.2%} of them; --keep-swaps leaves them)")
    return out


def _prepare(data: list[str], ck: dict, cfg: AdaptConfig, prior_path: str | None, log) -> _Run:
    """The model from checkpoint `ck`, a frozen copy of it, and the user's 2D split into the
    frames to adapt on and the held-out ones."""
    model_cfg = LifterConfig(**ck["config"])
    model = NRSfMFormer(model_cfg)
    model.load_state_dict(ck["state_dict"])
    teacher = copy.deepcopy(model).eval().requires_grad_(False)
    views = {}
    for p in data:
        views.update({f"{p}:{k}": v for k, v in load_views(p).items()})
    if not cfg.keep_swaps:
        views = unswap_views(views, log)
    fit, held = split_views(views, cfg.held_out, model_cfg.window, by_sequence=cfg.multiview > 0)
    if cfg.held_out > 0 and not held:
        raise UserError(f"no view is long enough to hold out {cfg.held_out:.0%} of it and keep "
                        f"{model_cfg.window} frames on each side; pass --held-out 0 (no guard)")
    prior = None
    if prior_path and cfg.prior_weight > 0:
        from streamlift.prior.model import load_prior
        prior = load_prior(prior_path, torch.device("cpu"))
    run = _Run(model, teacher, WindowSampler(fit, model_cfg.window, model_cfg.mode), None, None,
               prior)
    if held:
        run.judge = WindowSampler(held, model_cfg.window, model_cfg.mode)
        g = torch.Generator().manual_seed(cfg.seed + 1)
        run.targets = torch.randperm(len(run.judge), generator=g)[:cfg.check_windows]
    log(f"adapt: {len(fit)} views / {len(run.sampler):,} frames to adapt on, " +
        (f"{len(held)} held-out parts / {len(run.judge):,} frames to judge by" if held
         else "no held-out guard"))
    _prepare_multiview(run, fit, held, cfg, log)
    return run


def _prepare_multiview(run: _Run, fit: dict, held: dict, cfg: AdaptConfig, log) -> None:
    """The synchronised views of the fit and held-out parts (split at the same frame, as
    views of one length are), or a hint that they are there to use."""
    partners = Partners(list(fit), [v.frames for v in fit.values()])
    if cfg.multiview <= 0:
        if partners.sequences:
            log(f"adapt: {partners.paired_views} views are synchronised views of "
                f"{partners.sequences} sequences; --multiview 1 would use that")
        return
    if not partners.sequences:
        raise UserError("--multiview needs views of one sequence filmed at once by several "
                        "cameras: names SEQUENCE.camK in one views file, as many frames each; "
                        "none found (pass --multiview 0 for 2D of single cameras)")
    if partners.mismatched:
        log(f"adapt: {len(partners.mismatched)} views have another length than their "
            f"sequence's first view and are not paired (e.g. {partners.mismatched[0]!r})")
    run.partners = partners
    if held:
        judge = Partners(list(held), [v.frames for v in held.values()])
        run.judge_partners = judge if judge.sequences else None
    log(f"adapt: multi-view consistency on {partners.paired_views} views of "
        f"{partners.sequences} sequences ({cfg.multiview:g} x; orientation anchor "
        f"{cfg.anchor:g})")
    if cfg.anchor > 0:
        log("adapt: warning: the orientation anchor holds the starting lifter's rotation, "
            "which the views' consistency corrects; on HDM05 the two together kept the "
            "starting weights (without --anchor, --multiview turns it off)")


def _draw(run: _Run, cfg: AdaptConfig, gen: torch.Generator):
    """A batch of the user's windows (mirrored, rolled, lightly noised) and their target
    frames; with synchronised views, half the batch and then the same frames in other views,
    each pair mirrored together (`_pairs`)."""
    targets = flip = None
    if run.partners is not None:
        half = max(cfg.batch // 2, 1)
        targets = _pairs(run.partners, run.sampler.draw(half, gen, cfg.balance), gen)
        flip = (torch.rand(half, generator=gen) < cfg.flip_prob).repeat(2)
    w, focal, roll = draw_batch(run.sampler, cfg, gen, targets, flip)
    return w, focal, roll, targets


def _step(run: _Run, opt: Optimiser, cfg: AdaptConfig, gen: torch.Generator) -> None:
    """One optimizer step on a batch of the user's windows (`_draw`)."""
    w, focal, roll, targets = _draw(run, cfg, gen)
    terms, o = _losses(run.model, w, focal, run.prior, cfg, roll=roll)
    if run.partners is not None:
        terms["multiview"] = _multiview(o, w, targets)
    if cfg.anchor > 0:
        with torch.no_grad():
            if roll is None:
                X0 = run.teacher(w[..., :2], w[..., 2]).X
            else:  # the starting lifter knows upright 2D best: lift it unturned, then turn
                u = roll_2d(w, -roll)
                X0 = roll_3d(run.teacher(u[..., :2], u[..., 2]).X, roll)
        terms["anchor"] = orientation_anchor(o.X, X0)
    opt.update(_weighted(terms, cfg))


def _loop(run: _Run, cfg: AdaptConfig, progress: bool, log) -> tuple[list | None, int]:
    """The steps, the held-out checks and the early stop; leaves the best weights in
    run.model. Returns the checks and the step whose weights were kept (0: the start)."""
    opt = Optimiser(run.model, cfg.lr, 1e-4, cfg.warmup_steps, cfg.steps)
    gen = torch.Generator().manual_seed(cfg.seed)
    checks = None if run.judge is None else [
        {"step": 0, **_judge(run.model, run.judge, run.targets, run.prior, cfg,
                                  run.judge_partners)}]
    best_state, chosen, since = copy.deepcopy(run.model.state_dict()), 0, 0
    with progress_bar(cfg.steps, "adapt", "step", progress) as b:
        for step in range(1, cfg.steps + 1):
            _step(run, opt, cfg, gen)
            b.update(1)
            if checks is None:
                chosen = step
            elif step % cfg.check_every == 0 or step == cfg.steps:
                r = {"step": step, **_judge(run.model, run.judge, run.targets, run.prior, cfg,
                                  run.judge_partners)}
                best = next(c for c in checks if c["step"] == chosen)
                checks.append(r)
                b.set_postfix_str(f"held-out reprojection {r['reprojection']:.4f} prior "
                                  f"{r['prior']:.4f}" + (f" multiview {r['multiview']:.4f}"
                                  if "multiview" in r else ""), refresh=False)
                if better(r, best, checks[0], cfg):
                    chosen, since, best_state = step, 0, copy.deepcopy(run.model.state_dict())
                elif (since := since + 1) >= cfg.patience:
                    log(f"adapt: no better for {since} checks; stopping at step {step}")
                    break
    if checks is not None:
        run.model.load_state_dict(best_state)
    return checks, chosen


def adapt(data: list[str], weights: str, out: str, cfg: AdaptConfig, prior_path: str | None,
          progress: bool = True, log=print) -> dict:
    """Adapt the lifter at `weights` to the 2D of the views files `data`; write `out`.

    Returns the run's record: the checks, the chosen step (0: the starting weights were kept)
    and the seconds taken.
    """
    torch.manual_seed(cfg.seed)
    t0 = time.perf_counter()
    ck = checkpoint.read(weights, FORMAT, "lifter")
    require_windowed(ck, weights, "adapt")
    run = _prepare(data, ck, cfg, prior_path, log)
    checks, chosen = _loop(run, cfg, progress, log)
    if checks is not None:
        first, kept = checks[0], next(c for c in checks if c["step"] == chosen)
        log("adapt: the starting weights were best on the held-out 2D; they are kept"
            if chosen == 0 else
            f"adapt: kept step {chosen}: held-out reprojection {first['reprojection']:.4f} -> "
            f"{kept['reprojection']:.4f}, prior {first['prior']:.4f} -> {kept['prior']:.4f}" +
            (f", multiview {first['multiview']:.4f} -> {kept['multiview']:.4f}"
             if "multiview" in first else ""))
    record = {"config": checkpoint.plain(asdict(cfg)), "checks": checks, "chosen_step": chosen,
              "seconds": round(time.perf_counter() - t0, 1), "init": str(weights),
              "init_digest": checkpoint.file_digest(weights), "prior": prior_path,
              "data": [str(p) for p in data],
              "data_digest": [checkpoint.file_digest(p) for p in data]}
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    save_checkpoint(out, run.model, meta={**ck.get("meta", {}), "adapt": record})
    return record
