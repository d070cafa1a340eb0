"""Progress of long loops: a tqdm bar for an interactive user, and phase lines in the log.

A workflow rule runs the CLI with its output in a log file (``gan2shape -q --log FILE ...``): a
bar there is noise, and nothing reaches the terminal. So every :class:`Progress` also logs plain
lines on the ``gan2shape.progress`` logger: one when the phase starts, one at most every
``interval`` seconds while it runs (only when no bar is shown), and one when it ends, e.g.::

    stage 1 step 1: 400 iter
    stage 1 step 1: 130/400 iter (32%), 1m00s, about 2m05s left
    stage 1 step 1: done, 400 iter in 3m07s

The CLI's ``--log`` sends these lines (and warnings) to the terminal too (:func:`terminal_handler`),
so that the main job shows which rule is where while the details go to the rule's log.

A training loop also stops cleanly on SIGTERM/SIGINT: :class:`StopRequest` records the signal so that
the loop writes its checkpoint before it exits.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Iterable, Iterator
from typing import Any, TextIO, TypeVar

from tqdm.auto import tqdm

__all__ = ["LOGGER", "Progress", "StopRequest", "track", "format_seconds", "terminal_handler"]

LOGGER = "gan2shape.progress"
log = logging.getLogger(LOGGER)
T = TypeVar("T")


def format_seconds(seconds: float) -> str:
    """12.3 -> '12s', 65 -> '1m05s', 3725 -> '1h02m'."""
    if seconds != seconds:  # NaN: no estimate yet
        return "?"
    s = int(round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


class Progress:
    """A phase of ``total`` units: a tqdm bar when ``bar``, and phase lines in the log (module doc).

    Use as a context manager (or call :meth:`close`); :meth:`update` and :meth:`set_postfix` are
    tqdm's. ``initial``: units done before (a resumed run); ``interval``: seconds between the log
    lines while the phase runs.
    """

    def __init__(
        self,
        total: float,
        desc: str,
        unit: str = "it",
        bar: bool = True,
        initial: float = 0,
        interval: float = 60.0,
        **tqdm_kwargs: Any,
    ):
        self.total, self.desc, self.unit, self.interval = total, desc, unit, interval
        self.n: float = initial
        self._initial = initial
        self._bar = tqdm(total=total, initial=initial, desc=desc, unit=unit, disable=not bar, **tqdm_kwargs)
        self._quiet = not bar
        self._start = self._last = time.perf_counter()
        self._closed = False
        log.info("%s: %s %s%s", desc, _amount(total), unit, f" (from {_amount(initial)})" if initial else "")

    def update(self, n: float = 1) -> None:
        self.n += n
        self._bar.update(n)
        now = time.perf_counter()
        if self._quiet and now - self._last >= self.interval and self.n < self.total:
            self._last = now
            elapsed = now - self._start
            done = self.n - self._initial
            left = elapsed * (self.total - self.n) / done if done > 0 else float("nan")
            log.info(
                "%s: %s/%s %s (%d%%), %s, about %s left",
                self.desc,
                _amount(self.n),
                _amount(self.total),
                self.unit,
                int(100 * self.n / self.total) if self.total else 100,
                format_seconds(elapsed),
                format_seconds(left),
            )

    def set_postfix(self, *args: Any, **kwargs: Any) -> None:
        self._bar.set_postfix(*args, **kwargs)

    def close(self, done: bool = True) -> None:
        """End the phase; ``done`` False (an exception) ends it without the 'done' line."""
        if self._closed:
            return
        self._closed = True
        self._bar.close()
        if done:
            log.info(
                "%s: done, %s %s in %s",
                self.desc,
                _amount(self.n - self._initial),
                self.unit,
                format_seconds(time.perf_counter() - self._start),
            )

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close(done=exc_type is None)


def track(
    iterable: Iterable[T], desc: str, total: float | None = None, unit: str = "it", bar: bool = True, **kwargs: Any
) -> Iterator[T]:
    """Iterate ``iterable`` as one phase of :class:`Progress` (``total`` defaults to its len)."""
    if total is None:
        total = len(iterable)  # type: ignore[arg-type]
    with Progress(total, desc, unit=unit, bar=bar, **kwargs) as p:
        for item in iterable:
            yield item
            p.update(1)


def _amount(x: float) -> str:
    return f"{x:g}" if isinstance(x, float) and not x.is_integer() else f"{int(x)}"


class _TerminalFilter(logging.Filter):
    """Phase lines and warnings/errors: what a user watching the main job needs."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.name.startswith(LOGGER) or record.levelno >= logging.WARNING


def terminal_handler(stream: TextIO, prefix: str) -> logging.Handler:
    """A handler writing phase lines and warnings to ``stream`` as ``<prefix>: <message>``."""
    handler = logging.StreamHandler(stream)
    handler.addFilter(_TerminalFilter())
    handler.setFormatter(logging.Formatter(f"{prefix}: %(message)s"))
    handler.setLevel(logging.INFO)
    return handler


class StopRequest:
    """Records SIGTERM/SIGINT (in the main thread) so a training loop can checkpoint before it exits.

    Use as a context manager around the loop and test ``signum`` (None until a signal came) after
    each step; the previous handlers come back on exit.
    """

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> "StopRequest":
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        self.signum = signum

    def __exit__(self, *exc: Any) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
