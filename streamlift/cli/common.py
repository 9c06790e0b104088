"""argparse value types shared by every subcommand: a bad value is a one-line usage error."""

from __future__ import annotations

import argparse
import math

from streamlift.errors import UserError


def positive_int(s: str) -> int:
    v = int(s)
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {v}")
    return v


def non_negative(s: str) -> float:
    v = float(s)
    if not 0 <= v < math.inf:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {s}")
    return v


def positive_float(s: str) -> float:
    v = float(s)
    if not 0 < v < math.inf:
        raise argparse.ArgumentTypeError(f"must be > 0, got {s}")
    return v


def probability(s: str) -> float:
    v = float(s)
    if not 0 <= v < 1:
        raise argparse.ArgumentTypeError(f"must be in [0, 1), got {s}")
    return v


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Appends "(default: X)" only where it tells something: not for flags, not for a None
    default (the help says what happens then), not where the help already names its default."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if ("default" in text or action.default is None or action.default is False
                or action.default == argparse.SUPPRESS or not action.option_strings):
            return text
        return super()._get_help_string(action)


def load_model(weights, device, window: int | None = None, mode: str | None = None):
    """The lifter for a command: `streamlift.lifter.load_lifter`, and --window/--mode, when
    given, checked against the checkpoint."""
    from streamlift.lifter.model import load_lifter

    try:
        model, path = load_lifter(weights, device)
    except UserError as e:
        raise UserError(f"{e}; pass --weights W.pt" if weights is None else str(e)) from None
    given = (("--window", window, model.cfg.window, f"{model.cfg.window}-frame windows"),
             ("--mode", mode, model.cfg.mode, f"{model.cfg.mode} windows"))
    for flag, want, have, what in given:
        if want is not None and want != have:
            raise UserError(f"{flag} {want} does not match {path.name}, which was trained for "
                            f"{what} (leave {flag} out to use it)")
    return model, path
