"""`streamlift adapt`: fine-tune a lifter to a user's domain from their 2D alone."""

from __future__ import annotations

import argparse
import sys

from streamlift.cli.common import add_config, command, device, options, shared

FILES, CONFIG = "streamlift.train.options:AdaptFiles", "streamlift.train.adapt:AdaptConfig"


def cmd_adapt(a: argparse.Namespace) -> int:
    from streamlift.train.options import adapt_to_file

    device("cpu", a.threads)
    print(adapt_to_file(options(a, FILES), options(a, CONFIG), not a.quiet,
                        log=lambda line: print(line, file=sys.stderr)))


def add_command(sub) -> None:
    """Register `streamlift adapt`."""
    c = command(sub, "adapt", cmd_adapt, "adapt a lifter to your 2D (no 3D needed)", FILES)
    add_config(c, FILES)
    add_config(c, CONFIG)
    shared(c, "threads", "quiet")
