"""What the commands share: value types, flags made from dataclass fields, library errors as a
flag's."""

from __future__ import annotations

import argparse
import ast
import math
from contextlib import contextmanager
from pathlib import Path

from streamlift.errors import UserError
from streamlift.sources import constant, dataclass_node, fields  # noqa: F401 (constant: for cli)

LIFTER, TRAIN = "streamlift.lifter.model:LifterConfig", "streamlift.train.lifter:TrainConfig"
PRIOR, PRIOR_TRAIN = "streamlift.prior.model:PriorConfig", "streamlift.train.prior:PriorTrainConfig"
SERVER = "streamlift.serve.config:ServerConfig"
RUN = "streamlift.lifter.options:RunOptions"


def _checked(cast, ok, want: str, name: str):
    def parse(s: str):
        v = cast(s)
        if not ok(v):
            raise argparse.ArgumentTypeError(f"must be {want}, got {s}")
        return v
    parse.__name__ = name  # argparse names it in "invalid positive_int value: 'x'"
    return parse


positive_int = _checked(int, lambda v: v >= 1, ">= 1", "positive_int")
non_negative = _checked(float, lambda v: 0 <= v < math.inf, ">= 0", "non_negative")
panel = _checked(int, lambda v: v >= 64, ">= 64 pixels to draw on", "panel")
count = _checked(int, lambda v: v >= 0, ">= 0", "count")
positive_float = _checked(float, lambda v: 0 < v < math.inf, "> 0", "positive_float")
probability = _checked(float, lambda v: 0 <= v < 1, "in [0, 1)", "probability")
share = _checked(float, lambda v: 0 <= v <= 1, "in [0, 1]", "share")


def ladder(s: str) -> tuple[int, ...]:
    try:
        sizes = tuple(sorted({int(x) for x in s.split(",") if x.strip()}))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {s!r}") from None
    if not sizes or sizes[0] < 1:
        raise argparse.ArgumentTypeError(f"batch sizes must be >= 1, got {s!r}")
    return sizes


TYPES = {"int": int, "float": float, "positive_int": positive_int, "non_negative": non_negative,
         "panel": panel,
         "positive_float": positive_float, "probability": probability, "share": share,
         "ladder": ladder,
         "count": count, "path": Path}


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Appends "(default: X)" only where it tells something: not for flags, not for a None
    default (the help says what happens then), not where the help already names its default."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if ("default" in text or action.default is None or action.default is False
                or action.default == argparse.SUPPRESS or not action.option_strings):
            return text
        return super()._get_help_string(action)


def add_config(p, where: str, names: str | None = None, only_given: bool = False,
               **changed) -> None:
    """A flag for each field in `names` (default: all) of dataclass `where`, dest the field's
    name; a False default makes a switch; `changed`: another help (a str) or metadata and
    default (a dict) for some. only_given: the default is None (a flag left out keeps
    --config's value) and the field's is in the help."""
    for name in names.split() if names else fields(where):
        default, meta = fields(where)[name]
        meta = {**meta, **({"help": changed[name]} if isinstance(changed.get(name), str)
                           else changed.get(name, {}))}
        default, text = meta.pop("default", default), meta["help"]
        opt = meta.get("flag", "--" + name.replace("_", "-"))
        if default is False:  # a switch; with only_given, None when left out
            p.add_argument(opt, dest=name, help=text, action="store_true",
                           default=None if only_given else False)
            continue
        if only_given:
            shown = " ".join(map(str, default)) if isinstance(default, tuple) else default
            text, default = f"{text} (default {shown})", None
        kw = {k: meta[k] for k in ("choices", "nargs", "metavar", "required", "action")
              if k in meta}
        kw.setdefault("metavar", None if "choices" in kw else opt[2:].upper().replace("-", "_"))
        p.add_argument(opt, dest=name, help=text, default=default,
                       type=TYPES.get(meta.get("type")), **kw)


def options(a: argparse.Namespace, where: str):
    """The dataclass "module:Class" made from the flags add_config made of its fields."""
    module, cls = where.split(":")
    values = {k: getattr(a, k) for k in fields(where)}
    return getattr(__import__(module, fromlist=[cls]), cls)(**values)


def given(a: argparse.Namespace, names: str) -> dict:
    """The config flags among `names` that the command line gave."""
    return {k: getattr(a, k) for k in names.split() if getattr(a, k) is not None}


def shared(p, *names: str, **changed) -> None:
    """The flags `names` many commands take (lifter.options.RunOptions), and those of
    `changed` with another help (a str) or metadata (a dict)."""
    add_config(p, RUN, " ".join((*names, *changed)), **changed)


def command(sub, name: str, func, help: str, doc: str = "", **kw) -> argparse.ArgumentParser:
    """A subcommand run by `func`; its --help describes it with func's docstring, or with that
    of the options dataclass "module:Class" `doc`."""
    p = sub.add_parser(name, help=help, formatter_class=HelpFormatter, **kw,
                       description=ast.get_docstring(dataclass_node(doc)) if doc else func.__doc__)
    p.set_defaults(func=func)
    return p


@contextmanager
def flag(name: str, hint: str = ""):
    """A library error (a ValueError) raised inside, reported as one of the flag `name`."""
    try:
        yield
    except ValueError as e:
        raise UserError(f"{name}: {e}{hint}") from None


def report(a: argparse.Namespace, text: str, results: dict) -> None:
    """Print a command's report, and write its results to --json when given."""
    from streamlift.paths import write_json

    print(text)
    if a.json is not None:
        write_json(a.json, results)


def device(name: str, threads: int | None = None):
    """The torch device of --device (after torch.set_num_threads(--threads), when given)."""
    from streamlift.device import pick_device

    with flag(f"--device {name}", " (use --device cpu)"):
        return pick_device(name, threads)


def load_model(weights, device, window: int | None = None, mode: str | None = None,
               backend: str = "torch"):
    """The lifter for a command (`streamlift.lifter.model.load_lifter`, run by --backend), and
    --window/--mode, when given, checked against the checkpoint."""
    from streamlift.lifter.model import load_lifter

    try:
        model, path = load_lifter(weights, device, backend)
    except UserError as e:
        raise UserError(f"{e}; pass --weights W.pt" if weights is None else str(e)) from None
    for flag_, want, have, what in (("--window", window, model.cfg.window, "-frame windows"),
                                    ("--mode", mode, model.cfg.mode, " windows")):
        if want is not None and want != have:
            raise UserError(f"{flag_} {want} does not match {path.name}, which was trained for "
                            f"{have}{what} (leave {flag_} out to use it)")
    return model, path
