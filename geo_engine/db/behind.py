"""Work a concept module does behind the pings: every few seconds, on a thread of its own.

The quiet pings' positions (:mod:`.devices`) and the daily counts of why campaigns were turned
down (:mod:`.tallies`) are both held in memory and written this way; a pass that fails is caught
up by the next one.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable

__all__ = ["Behind"]


class Behind:
    """Call ``work()`` every ``every_s`` seconds from a daemon thread named ``name`` (from
    :meth:`start` to :meth:`stop`), ignoring the ``errors`` a pass may raise."""

    def __init__(self, work: Callable[[], object], name: str, errors: tuple[type[BaseException], ...]):
        self._work, self._name, self._errors = work, name, errors
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    def start(self, every_s: float = 1.0) -> None:
        if self._thread is not None:
            return

        def run() -> None:
            while not self._stop.wait(every_s):
                with contextlib.suppress(*self._errors):
                    self._work()
        self._thread = threading.Thread(target=run, name=self._name, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread after the pass under way (the caller does the last pass itself)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
