"""One way to catch SIGINT and SIGTERM for the length of a ``with`` block (the trainer's and the
experiment grid's stop requests): subclasses say what a signal does in :meth:`SignalCatcher._handle`."""

from __future__ import annotations

import signal
import threading

__all__ = ["SignalCatcher", "CAUGHT_SIGNALS"]

CAUGHT_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class SignalCatcher:
    """Installs :meth:`_handle` for SIGINT and SIGTERM on entry (main thread only: Python delivers
    signals there) and restores the previous handlers on exit."""

    def __init__(self) -> None:
        self._previous: dict = {}

    def _handle(self, signum, frame) -> None:  # pragma: no cover - subclasses define it
        raise NotImplementedError

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for signum in CAUGHT_SIGNALS:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous = {}
