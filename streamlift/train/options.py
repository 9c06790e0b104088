"""The files and switches of `streamlift train` beside its LifterConfig and TrainConfig (its
flags are made from these fields, streamlift.cli.common.add_config); nothing heavy is imported
here."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

# the losses and their default weights (streamlift.train.lifter)
DEFAULT_WEIGHTS = {
    "reprojection": 1.0,
    "canonicalisation": 1.0,
    "smoothness": 1.0,
    "bone_constancy": 0.5,
    "bone_symmetry": 0.5,
    "bone_proportions": 1.0,
    "depth_extent": 0.05,
    "deformation": 0.01,
}


@dataclass
class TrainFiles:
    """Unsupervised training of the NRSfMFormer: reprojection, Procrustean canonicalisation,
    temporal smoothness, bone symmetry/constancy (and the diffusion prior when given). kp3d in
    --val is used only to report error. Writes a checkpoint after every epoch; --resume
    continues one."""
    data: list[Path] = field(default=None, metadata={
        "type": "path", "nargs": "+", "required": True,
        "help": "training views .npz file(s) (2D is all it reads)"})
    val: Path | None = field(default=None, metadata={
        "type": "path",
        "help": "validation views .npz with kp3d: N-MPJPE/PA-MPJPE reported each epoch"})
    out: Path = field(default=None, metadata={
        "type": "path", "required": True, "help": "checkpoint to write (and resume)"})
    config: Path | None = field(default=None, metadata={
        "type": "path", "help": "JSON with optional 'model' and 'train' objects (LifterConfig "
        "and TrainConfig fields); flags given on the command line override it"})


@dataclass
class TrainSwitches:
    weight: list[str] | None = field(default=None, metadata={
        "action": "append", "metavar": "NAME=W", "help": "loss weight override, repeatable; "
        "names: " + ", ".join(DEFAULT_WEIGHTS) + " (e.g. canonicalisation=0 for the ablation)"})
    prior: Path | None = field(default=None, metadata={
        "type": "path",
        "help": "diffusion prior checkpoint for the prior loss (default: the shipped one)"})
    no_prior: bool = field(default=False, metadata={
        "help": "train without the diffusion prior loss"})
    init: Path | None = field(default=None, metadata={
        "type": "path", "metavar": "W.pt", "help": "fine-tune: start from this lifter's weights "
        "(and its model shape) with a new optimizer, schedule and epoch count; the settings are "
        "this command's"})
    no_intrinsics: bool = field(default=False, metadata={
        "help": "ignore the views' camera matrices: train on the 2D as it is, as if every "
        "subject stood on the optical axis (by default a view with intrinsics is seen through a "
        "virtual camera looking at the subject)"})
    no_perspective: bool = field(default=False, metadata={
        "help": "reproject under weak perspective even where a view has intrinsics (by default "
        "the reprojection loss goes through the view's focal length)"})
    resume: bool = field(default=False, metadata={"help": "continue the run saved in --out"})


def train_configs(config: Path | None, model: dict, train: dict, s: TrainSwitches):
    """LifterConfig and TrainConfig: the JSON file `config`'s 'model' and 'train' objects,
    overridden by the settings given (`model`, `train` and the switches `s`, "NAME=W" loss
    weights among them). A UserError names the setting that is wrong."""
    from streamlift.errors import UserError
    from streamlift.paths import DEFAULT_PRIOR
    from streamlift.train.lifter import loss_weights, make_configs, read_configs

    try:
        model_kw, train_kw = read_configs(config)
    except ValueError as e:
        raise UserError(f"config {config}: {e}") from None
    model_kw.update(model)
    train_kw.update(train)
    lo, hi = train.get("prior_t_range", (0, 1))
    if not 0 <= lo <= hi <= 1:
        raise UserError(f"prior t range {lo} {hi}: need 0 <= LO <= HI <= 1 (fractions of the "
                        f"prior's diffusion schedule)")
    if s.init is not None and s.resume:
        raise UserError("a fine-tune (init: a new run from given weights) cannot also resume "
                        "(continue the run saved in out): use one of them")
    if s.init is not None and model:
        raise UserError(f"a fine-tune takes the model shape from {s.init}; leave out the "
                        f"model settings " + ", ".join(model))
    try:
        train_kw["weights"] = loss_weights(train_kw.get("weights", {}), s.weight or ())
    except ValueError as e:
        raise UserError(f"loss weight {e}") from None
    train_kw.update({k: False for k in ("intrinsics", "perspective") if getattr(s, "no_" + k)})
    if s.no_prior:
        if s.prior is not None or {"prior_weight", "prior_t_range"} & set(train):
            raise UserError("training without the prior (no_prior) contradicts a prior "
                            "checkpoint, prior weight or prior t range")
        train_kw.update(prior=None, prior_weight=0.0)
    else:
        train_kw["prior"] = str(s.prior or train_kw.get("prior") or DEFAULT_PRIOR)
        if not Path(train_kw["prior"]).is_file():
            raise UserError(f"prior checkpoint not found: {train_kw['prior']} (or train "
                            f"without the prior)")
    return make_configs(model_kw, train_kw)


def train_to_file(f: TrainFiles, s: TrainSwitches, model_cfg, train_cfg, device,
                  progress: bool = True) -> str:
    """streamlift.train.lifter.train on the files `f` with these configs; the report."""
    from streamlift.train.lifter import train

    Path(f.out).parent.mkdir(parents=True, exist_ok=True)
    last = train([str(p) for p in f.data], f.val and str(f.val), str(f.out), model_cfg,
                 train_cfg, device, s.resume, progress=progress, init=s.init and str(s.init))
    return f"saved {f.out} after epoch {last.get('epoch')}"


@dataclass
class AdaptFiles:
    """Adapt a lifter to your people, cameras and detector from your 2D alone: fine-tune it
    on your views with the unsupervised losses and the prior, an anchor on the body's
    orientation, and a guard - the last part of each view is held out, its reprojection and
    prior losses are checked as it goes, the best weights are kept and the starting ones come
    back if nothing beat them. kp3d in the views is never read. A few minutes of CPU."""
    data: list[Path] = field(default=None, metadata={
        "type": "path", "nargs": "+", "required": True,
        "help": "your views .npz file(s) (2D; docs/views-format.md; `serve --record-2d` writes "
        "one from live streams)"})
    weights: Path | None = field(default=None, metadata={
        "type": "path", "metavar": "W.pt",
        "help": "the windowed lifter to start from (default: the shipped windowed one, "
        "streamlift/assets/lifter.pt; adapt trains windowed lifters)"})
    out: Path = field(default=None, metadata={
        "type": "path", "required": True, "help": "adapted lifter checkpoint to write"})
    prior: Path | None = field(default=None, metadata={
        "type": "path", "help": "diffusion prior checkpoint (default: the shipped one)"})
    no_prior: bool = field(default=False, metadata={"help": "adapt without the prior loss"})
    weight: list[str] | None = field(default=None, metadata={
        "action": "append", "metavar": "NAME=W", "help": "loss weight override, repeatable; "
        "names: " + ", ".join(DEFAULT_WEIGHTS) + " (adapt's defaults: "
        "streamlift.train.adapt.ADAPT_WEIGHTS; e.g. bone_constancy=0)"})


def adapt_to_file(f: AdaptFiles, cfg, progress: bool = True, log=print) -> str:
    """streamlift.train.adapt.adapt on the files `f`; the report line."""
    from streamlift.errors import UserError
    from streamlift.paths import DEFAULT_PRIOR, WINDOWED_WEIGHTS
    from streamlift.train.adapt import adapt

    if f.weight:
        from streamlift.train.lifter import loss_weights

        try:
            given = loss_weights({}, f.weight)  # checks the names and the numbers
        except ValueError as e:
            raise UserError(f"loss weight {e}") from None
        cfg.weights = {**cfg.weights, **{n: given[n] for n in (i.partition("=")[0] for i in f.weight)}}
    prior = None if f.no_prior else str(f.prior or DEFAULT_PRIOR)
    if prior is not None and not Path(prior).is_file():
        raise UserError(f"prior checkpoint not found: {prior} (or adapt with --no-prior)")
    r = adapt([str(p) for p in f.data], str(f.weights or WINDOWED_WEIGHTS), str(f.out), cfg,
              prior, progress, log)
    kept = ("the starting weights (nothing beat them on the held-out 2D)"
            if r["checks"] and r["chosen_step"] == 0 else f"the weights of step {r['chosen_step']}")
    return f"wrote {f.out}: {kept}, {r['seconds']:.0f} s"
