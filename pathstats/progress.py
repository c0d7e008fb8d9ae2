"""Progress on stderr: a tqdm bar on a terminal, plain log lines anywhere else.

A bar redrawn with ``\\r`` is unreadable in a log file or a batch job's output, so
when stderr is not a terminal :func:`progress` writes a whole line now and then
(at the start, every :data:`LOG_INTERVAL_S` seconds, when the description changes,
and at the end) instead.
"""

from __future__ import annotations

import sys
import time
from typing import Any, Iterable, Iterator, TextIO

from tqdm import tqdm

__all__ = ["progress", "LOG_INTERVAL_S"]

#: Seconds between two lines of progress when stderr is not a terminal.
LOG_INTERVAL_S = 10.0


def _duration(seconds: float) -> str:
    return tqdm.format_interval(seconds)


class _LogProgress:
    """tqdm's interface (iteration, ``update``, ``set_postfix``, ``set_description``,
    ``close``, context manager), printing plain lines without ``\\r``."""

    def __init__(self, iterable: Iterable | None, total: float | None, desc: str | None, unit: str, leave: bool,
                 file: TextIO, delay: float = 0.0, initial: float = 0) -> None:
        self.iterable, self.total, self.desc, self.unit, self.leave = iterable, total, desc or "", unit, leave
        self.file, self.n, self.postfix, self.closed, self.delay = file, initial, "", False, delay
        self.initial = initial
        self.start_t = time.perf_counter()
        self.last_print_t, self.printed = self.start_t, False
        if delay <= 0:
            self._print()

    def _due(self) -> bool:
        now = time.perf_counter()
        if not self.printed:
            return now - self.start_t >= self.delay
        return now - self.last_print_t >= LOG_INTERVAL_S

    def _line(self) -> str:
        elapsed = time.perf_counter() - self.start_t
        head = f"{self.desc}: " if self.desc else ""
        n = f"{self.n:g}" if isinstance(self.n, float) else str(self.n)
        if self.total:
            done = f"{n}/{self.total:g} {self.unit} ({100 * self.n / self.total:.0f}%)"
            rate = (self.n - self.initial) / elapsed if elapsed > 0 else 0.0  # of this call's work only
            eta = f", eta {_duration((self.total - self.n) / rate)}" if 0 < rate and self.n < self.total else ""
        else:
            done, eta = f"{n} {self.unit}", ""
        postfix = f", {self.postfix}" if self.postfix else ""
        return f"{head}{done}, elapsed {_duration(elapsed)}{eta}{postfix}"

    def _print(self) -> None:
        self.last_print_t, self.printed, self.printed_n = time.perf_counter(), True, self.n
        try:
            print(self._line(), file=self.file, flush=True)
        except (OSError, ValueError):  # a closed or broken stderr must not stop the work
            pass

    def update(self, n: float = 1) -> None:
        """Record ``n`` more units done; print a line if the last is old enough."""
        self.n += n
        if self._due():
            self._print()

    def set_postfix(self, ordered_dict: dict | None = None, refresh: bool = True, **kwargs: Any) -> None:
        """Show ``key=value`` pairs after the counts (in the next line)."""
        items = {**(ordered_dict or {}), **kwargs}
        self.postfix = ", ".join(f"{k}={v}" for k, v in items.items())

    def set_description(self, desc: str | None = None, refresh: bool = True) -> None:
        """Change the description; print a line at once when it changes."""
        changed = (desc or "") != self.desc
        self.desc = desc or ""
        if changed and refresh and not self.closed and (self.printed or self._due()):
            self._print()

    def close(self) -> None:
        """Print the final line (if ``leave`` and past the ``delay``) once."""
        if not self.closed:
            self.closed = True
            if self.leave and (self._due() if not self.printed else self.printed_n != self.n):
                self._print()

    def __iter__(self) -> Iterator:
        try:
            for item in self.iterable:
                yield item
                self.update(1)
        finally:
            self.close()

    def __enter__(self) -> "_LogProgress":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def progress(iterable: Iterable | None = None, *, total: float | None = None, desc: str | None = None,
             unit: str = "it", leave: bool = True, disable: bool = False, delay: float = 0.0,
             file: TextIO | None = None, initial: float = 0):
    """A progress bar on stderr, or plain lines when stderr is not a terminal.

    Parameters
    ----------
    iterable : iterable, optional
        Wrapped and iterated over; otherwise call ``update(n)`` yourself.
    total : number, optional
        Expected units (default ``len(iterable)`` where defined).
    desc : str, optional
        What is running (e.g. ``"conv6 3x64x64"``); ``set_description`` changes it.
    unit : str
        Name of one unit, e.g. ``"init"`` or ``"layer"``.
    leave : bool, default True
        Keep the final state on screen (a final line in a log).
    disable : bool, default False
        Show nothing (the object still counts, for callers that always use it).
    delay : float, default 0
        Show nothing until this many seconds have passed (short tasks stay silent).
    file : text stream, optional
        Where to write (default: ``sys.stderr`` at the time of the call).
    initial : number, default 0
        Units already done before this call (a resumed run): the counts start there, out
        of ``total`` (the whole work), and the time left comes from this call's rate.

    Returns
    -------
    tqdm or a line logger with the same methods
        Supports iteration, ``update(n)``, ``set_postfix(...)``,
        ``set_description(...)``, ``close()`` and ``with``.

    Examples
    --------
    >>> import io
    >>> log = io.StringIO()
    >>> with progress(total=3, desc="fc 64", unit="init", file=log) as bar:
    ...     bar.update(3)
    >>> print(log.getvalue().strip().splitlines()[-1])  # doctest: +ELLIPSIS
    fc 64: 3/3 init (100%), elapsed 00:00...
    >>> "\\r" in log.getvalue()
    False
    >>> log = io.StringIO()
    >>> with progress(total=112, initial=99, desc="train", unit="step", file=log) as bar:  # resumed
    ...     bar.update(13)
    >>> print(log.getvalue().strip().splitlines()[0])  # doctest: +ELLIPSIS
    train: 99/112 step (88%), elapsed 00:00...
    """
    file = sys.stderr if file is None else file
    if total is None and iterable is not None and hasattr(iterable, "__len__"):
        total = len(iterable)
    interactive = not disable and hasattr(file, "isatty") and file.isatty()
    if disable or interactive:
        return tqdm(iterable, total=total, desc=desc, unit=unit, leave=leave, file=file, disable=disable,
                    dynamic_ncols=True, delay=delay, initial=initial)
    return _LogProgress(iterable, total, desc, unit, leave, file, delay, initial)
