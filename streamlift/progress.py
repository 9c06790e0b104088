"""A dependency-free progress bar for long CLI work.

On a terminal it redraws one line; elsewhere (CI logs, pipes) it prints a line every
`log_every` seconds so that logs stay short but show the work is alive.
"""

from __future__ import annotations

import sys
import time
from typing import IO, Iterable, Iterator, TypeVar

T = TypeVar("T")


class Progress:
    def __init__(self, total: int | None, desc: str = "", unit: str = "it",
                 stream: IO[str] | None = None, enabled: bool = True, log_every: float = 10.0):
        self.total, self.desc, self.unit = total, desc, unit
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = enabled
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.log_every = log_every if not self.tty else 0.1
        self.n = 0
        self.postfix = ""
        self.start = time.perf_counter()
        self._last = 0.0

    def update(self, n: int = 1, postfix: str | None = None) -> None:
        self.n += n
        if postfix is not None:
            self.postfix = postfix
        now = time.perf_counter()
        if self.enabled and now - self._last >= self.log_every:
            self._last = now
            self._draw(final=False)

    def _line(self) -> str:
        el = time.perf_counter() - self.start
        rate = self.n / el if el > 0 else 0.0
        if self.total:
            frac = min(self.n / self.total, 1.0)
            bar = "#" * int(frac * 24)
            eta = (self.total - self.n) / rate if rate > 0 else 0.0
            s = (f"{self.desc} [{bar:<24}] {self.n}/{self.total} {self.unit} "
                 f"{el:5.1f}s<{eta:5.1f}s {rate:,.1f} {self.unit}/s")
        else:
            s = f"{self.desc} {self.n} {self.unit} {el:5.1f}s {rate:,.1f} {self.unit}/s"
        return s + (f" | {self.postfix}" if self.postfix else "")

    def _draw(self, final: bool) -> None:
        if self.tty:
            self.stream.write("\r" + self._line() + ("\n" if final else ""))
        else:
            self.stream.write(self._line() + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self.enabled:
            self._draw(final=True)

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def track(items: Iterable[T], total: int | None = None, desc: str = "", unit: str = "it",
          enabled: bool = True) -> Iterator[T]:
    """Iterate over items with a progress bar (total taken from len() when it has one)."""
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    with Progress(total, desc, unit, enabled=enabled) as bar:
        for x in items:
            yield x
            bar.update()
