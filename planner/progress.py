"""Progress of long steps (training the testbed, a sweep, the demo's stages), on stderr.

On a terminal a step shows a tqdm bar, as before. Off a terminal (a log file, CI, `nohup`), where a
bar writes nothing useful, it writes a line at most every `EVERY_S` seconds: steps done of the
total, elapsed time and the time left at the rate so far; and a last line when it ends. A step
without a total (a stage made of several loops) says how long it has run. A background thread
writes these lines, so a step that makes no progress for a while still shows that it is alive:
a reader of the log can tell work from a hang. While steps are nested, only the innermost writes.

The planner itself never uses this module; it is a leaf shared by `models`, `profiling` and the
CLI, with no dependency beyond the standard library (tqdm is imported only on a terminal).
"""

from __future__ import annotations

import contextlib
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, TextIO

EVERY_S = 30.0

_lock = threading.Lock()
_active: list[object] = []  # open steps of this process (or a hush), innermost last


def is_terminal(stream: TextIO | None = None) -> bool:
    """Whether `stream` (default stderr) is a terminal, where bars draw in place."""
    s = sys.stderr if stream is None else stream
    try:
        return bool(s.isatty())
    except (AttributeError, ValueError):  # a closed or replaced stream
        return False


def duration(seconds: float) -> str:
    """A short human duration: `45 s`, `5.3 min`, `1.2 h`."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def say(text: str, stream: TextIO | None = None) -> None:
    """One line on stderr (or `stream`), flushed: a stage's start line."""
    s = sys.stderr if stream is None else stream
    with _lock:
        s.write(text + "\n")
        s.flush()


class Progress:
    """A step of `total` units (None: unknown), reported off a terminal as lines (see module).

    `update(n)` counts units done; `set_postfix(**kw)` adds figures (a loss) to the next line;
    `close()` writes the last line. Use it as a context manager so that the reporting thread
    stops on an error too (no last line is written then).
    """

    def __init__(
        self,
        desc: str,
        total: int | None = None,
        *,
        initial: int = 0,
        unit: str = "steps",
        stream: TextIO | None = None,
        every_s: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.desc = desc
        self.total = total
        self.n = initial
        self._initial = initial
        self.unit = unit
        self._stream = sys.stderr if stream is None else stream
        self._every_s = EVERY_S if every_s is None else every_s
        self._clock = clock
        self._t0 = clock()
        self._postfix = ""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._tick, name=f"progress {desc}", daemon=True)
        with _lock:
            _active.append(self)
        self._thread.start()

    def update(self, n: int = 1) -> None:
        self.n += n

    def set_postfix(self, refresh: bool = False, **figures: Any) -> None:
        self._postfix = ", ".join(f"{k} {v}" for k, v in figures.items())

    def status(self) -> str:
        """The line this step writes now."""
        elapsed = self._clock() - self._t0
        parts = [f"{duration(elapsed)} elapsed"]
        if self.total is not None:
            done = f"{self.n:,}/{self.total:,} {self.unit}"
            if self.total:
                done += f" ({100 * self.n / self.total:.0f}%)"
            parts.insert(0, done)
            rate = (self.n - self._initial) / elapsed if elapsed > 0 else 0.0
            if rate > 0 and self.n < self.total:
                parts.append(f"~{duration((self.total - self.n) / rate)} left")
        if self._postfix:
            parts.append(self._postfix)
        return f"[{self.desc}] " + ", ".join(parts)

    def close(self) -> None:
        if self._stop.is_set():
            return
        self._finish()
        elapsed = duration(self._clock() - self._t0)
        if self.total is None:
            say(f"[{self.desc}] done in {elapsed}", self._stream)
        elif self.n >= self.total:
            say(f"[{self.desc}] done: {self.n:,} {self.unit} in {elapsed}", self._stream)
        else:  # closed early (an error, an interrupted run)
            stopped = f"stopped at {self.n:,}/{self.total:,} {self.unit} after {elapsed}"
            say(f"[{self.desc}] {stopped}", self._stream)

    def _finish(self) -> None:
        self._stop.set()
        with _lock:
            if self in _active:
                _active.remove(self)

    def _tick(self) -> None:
        while not self._stop.wait(self._every_s):
            with _lock:
                innermost = bool(_active) and _active[-1] is self
            if innermost:
                say(self.status(), self._stream)

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, exc_type: object, *_: object) -> None:
        if exc_type is None:
            self.close()
        else:
            self._finish()


@contextlib.contextmanager
def hush() -> Iterator[None]:
    """While another process writes the progress (a child process training a model), the steps
    open here write nothing: the log shows one line per interval, not two."""
    marker = object()
    with _lock:
        _active.append(marker)
    try:
        yield
    finally:
        with _lock:
            _active.remove(marker)


class _Silent:
    """What a step reports with progress off, or a stage on a terminal (its loops draw bars)."""

    n = 0

    def update(self, n: int = 1) -> None:
        pass

    def set_postfix(self, refresh: bool = False, **figures: Any) -> None:
        pass

    def close(self) -> None:
        pass

    def __enter__(self) -> _Silent:
        return self

    def __exit__(self, *_: object) -> None:
        pass


def progress(
    desc: str,
    total: int | None = None,
    *,
    initial: int = 0,
    unit: str = "steps",
    enabled: bool = True,
    **bar: Any,
) -> Any:
    """The reporter of one step: a tqdm bar on a terminal (for a step with a total; `bar` holds
    extra tqdm arguments), lines off a terminal, nothing when not `enabled`. Every kind has
    `update`, `set_postfix`, `close` and works as a context manager."""
    if not enabled:
        return _Silent()
    if is_terminal():
        if total is None:
            return _Silent()
        from tqdm.auto import tqdm

        return tqdm(
            total=total,
            initial=initial,
            desc=desc,
            unit=unit,
            file=sys.stderr,
            dynamic_ncols=True,
            **bar,
        )
    return Progress(desc, total, initial=initial, unit=unit)
