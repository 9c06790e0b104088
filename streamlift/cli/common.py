"""What the commands share: value types, the help formatter, flags made from config dataclass
fields, the flags many commands take, and library errors reported as errors of a flag."""

from __future__ import annotations

import argparse
import ast
import functools
import math
from contextlib import contextmanager
from pathlib import Path

import streamlift
from streamlift.errors import UserError

LIFTER, TRAIN = "streamlift.lifter.model:LifterConfig", "streamlift.train.lifter:TrainConfig"
PRIOR, PRIOR_TRAIN = "streamlift.prior.model:PriorConfig", "streamlift.train.prior:PriorTrainConfig"
SERVER = "streamlift.serve.config:ServerConfig"


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
count = _checked(int, lambda v: v >= 0, ">= 0", "count")
positive_float = _checked(float, lambda v: 0 < v < math.inf, "> 0", "positive_float")
probability = _checked(float, lambda v: 0 <= v < 1, "in [0, 1)", "probability")


def ladder(s: str) -> tuple[int, ...]:
    try:
        sizes = tuple(sorted({int(x) for x in s.split(",") if x.strip()}))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {s!r}") from None
    if not sizes or sizes[0] < 1:
        raise argparse.ArgumentTypeError(f"batch sizes must be >= 1, got {s!r}")
    return sizes


TYPES = {"int": int, "float": float, "positive_int": positive_int, "non_negative": non_negative,
         "positive_float": positive_float, "probability": probability, "ladder": ladder}


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Appends "(default: X)" only where it tells something: not for flags, not for a None
    default (the help says what happens then), not where the help already names its default."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if ("default" in text or action.default is None or action.default is False
                or action.default == argparse.SUPPRESS or not action.option_strings):
            return text
        return super()._get_help_string(action)


# ------------------------------------------ config fields, read from source: no torch imported
@functools.cache
def _source(module: str) -> ast.Module:
    path = Path(streamlift.__file__).parent.joinpath(*module.split(".")[1:])
    return ast.parse((path / "__init__.py" if path.is_dir() else path.with_suffix(".py"))
                     .read_text())


def _value(node: ast.expr, module: str):
    """An expression of a module's source, with the module-level constants it names."""
    names = {n.id: constant(f"{module}:{n.id}") for n in ast.walk(node) if isinstance(n, ast.Name)}
    return eval(compile(ast.Expression(node), module, "eval"), {"__builtins__": {}}, names)


def constant(where: str):
    """The value of a module-level constant "module:NAME" (followed through imports)."""
    module, name = where.split(":")
    for st in _source(module).body:
        if isinstance(st, ast.Assign) and name in [getattr(t, "id", "") for t in st.targets]:
            return _value(st.value, module)
        for a in st.names if isinstance(st, ast.ImportFrom) else ():
            if (a.asname or a.name) == name:
                return constant(f"{st.module}:{a.name}")
    raise LookupError(f"{name} is not a constant of {module}")


@functools.cache
def fields(where: str) -> dict[str, tuple[object, dict]]:
    """name -> (default, metadata) of the fields of dataclass "module:Class" that have metadata."""
    module, cls = where.split(":")
    body = next(n for n in _source(module).body if getattr(n, "name", "") == cls).body
    calls = [(n.target.id, {k.arg: k.value for k in n.value.keywords}) for n in body
             if isinstance(n, ast.AnnAssign) and isinstance(n.value, ast.Call)]
    return {name: (_value(kw["default"], module), _value(kw["metadata"], module))
            for name, kw in calls if "metadata" in kw}


def add_config(p, where: str, names: str, only_given: bool = False, **helps: str) -> None:
    """A flag for each field in `names` of dataclass `where`, dest the field's name. only_given:
    the default is None (a flag left out keeps --config's value) and the field's is in the help."""
    for name in names.split():
        default, meta = fields(where)[name]
        text = helps.get(name, meta["help"])
        if only_given:
            shown = " ".join(map(str, default)) if isinstance(default, tuple) else default
            text, default = f"{text} (default {shown})", None
        opt = meta.get("flag", "--" + name.replace("_", "-"))
        kw = {k: meta[k] for k in ("choices", "nargs", "metavar") if k in meta}
        kw.setdefault("metavar", None if "choices" in kw else opt[2:].upper().replace("-", "_"))
        p.add_argument(opt, dest=name, help=text, default=default,
                       type=TYPES.get(meta.get("type")), **kw)


def given(a: argparse.Namespace, names: str) -> dict:
    """The config flags among `names` that the command line gave."""
    return {k: getattr(a, k) for k in names.split() if getattr(a, k) is not None}


# --------------------------------------------------------------------- flags many commands take
SHARED = {
    "device": dict(default="auto", choices=["auto", "cpu", "cuda"],
                   help="where to run; auto picks CUDA when there is one"),
    "threads": dict(type=positive_int, default=None,
                    help="torch CPU threads (default: torch's choice; 1 is best when the cores "
                         "are shared)"),
    "quiet": dict(action="store_true", help="no progress bar"),
    "json": dict(type=Path, default=None, help="also write the results here (JSON)"),
    "weights": dict(type=Path, default=None, metavar="W.pt",
                    help="lifter checkpoint (default: the trained lifter shipped in the package, "
                         "streamlift/assets/lifter.pt)"),
    "mode": dict(default=None, help="check that the checkpoint was trained for this mode"),
}


def shared(p, *names: str, **changed) -> None:
    """The SHARED flags `names`, and those of `changed` with another help (a str) or keywords."""
    for name in (*names, *changed):
        kw = dict(SHARED[name], **({"help": changed[name]} if isinstance(changed.get(name), str)
                                   else changed.get(name, {})))
        if name == "mode":
            kw["choices"] = fields(LIFTER)["mode"][1]["choices"]
        p.add_argument("--" + name, **kw)


def command(sub, name: str, func, help: str, **kw) -> argparse.ArgumentParser:
    """A subcommand run by `func`; its --help describes it with func's docstring."""
    p = sub.add_parser(name, help=help, description=func.__doc__, formatter_class=HelpFormatter,
                       **kw)
    p.set_defaults(func=func)
    return p


# ------------------------------------------------------------------- library errors, as flags'
@contextmanager
def flag(name: str, hint: str = ""):
    """A library error (a ValueError) raised inside, reported as one of the flag `name`."""
    try:
        yield
    except ValueError as e:
        raise UserError(f"{name}: {e}{hint}") from None


def device(name: str, threads: int | None = None):
    """The torch device of --device (after torch.set_num_threads(--threads), when given)."""
    from streamlift.device import pick_device

    if threads:
        import torch
        torch.set_num_threads(threads)
    with flag(f"--device {name}", " (use --device cpu)"):
        return pick_device(name)


def load_model(weights, device, window: int | None = None, mode: str | None = None):
    """The lifter for a command: `streamlift.lifter.load_lifter`, and --window/--mode, when
    given, checked against the checkpoint."""
    from streamlift.lifter.model import load_lifter

    try:
        model, path = load_lifter(weights, device)
    except UserError as e:
        raise UserError(f"{e}; pass --weights W.pt" if weights is None else str(e)) from None
    for flag_, want, have, what in (("--window", window, model.cfg.window, "-frame windows"),
                                    ("--mode", mode, model.cfg.mode, " windows")):
        if want is not None and want != have:
            raise UserError(f"{flag_} {want} does not match {path.name}, which was trained for "
                            f"{have}{what} (leave {flag_} out to use it)")
    return model, path
