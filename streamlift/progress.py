"""Progress bars for long work, on tqdm: redrawn in place on a terminal; in logs and pipes
(CI, nohup) a line every 10 s, so that a log stays short but shows the work is alive."""

from __future__ import annotations

import sys

from tqdm import tqdm


def bar(total: int | None, desc: str, unit: str, enabled: bool = True, initial: int = 0) -> tqdm:
    """A tqdm bar on stderr; a no-op when not `enabled`. Use it as a context manager."""
    tty = sys.stderr.isatty()
    return tqdm(total=total, desc=desc, unit=unit, initial=initial, disable=not enabled,
                file=sys.stderr, mininterval=0.1 if tty else 10.0, dynamic_ncols=tty,
                ascii=not tty)
