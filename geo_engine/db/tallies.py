"""Why offers were not sent, as daily counts: campaign, day, reason -> how many times.

Every ping that considers a campaign and turns it down says why (``Decision.rejected``). A row
a ping would be the biggest table by far and is never asked for one at a time, so the counts
are kept in memory and added to the ``rejections`` table (``n = n + ...``) every second from a
thread of their own, and when the database closes. Several processes and instances add to the
same rows. A killed process loses at most its last second of counts, never a push, an event
or a reply (those are written in the ping's transaction).

SQL and counting only: which reasons exist is :mod:`geo_engine.decide`'s.
"""

from __future__ import annotations

import contextlib
import threading
from collections import Counter

from ..errors import StorageError
from .behind import Behind

__all__ = ["Tallies"]


class Tallies:
    """The ``rejections`` table, and the counts not yet added to it."""

    def __init__(self, db):
        self._db = db
        self._pending: Counter[tuple[str, str, str]] = Counter()
        self._lock = threading.Lock()
        self._flusher = Behind(self.flush, "tallies-flush", (db.Error, StorageError))

    def add(self, day: str, rejected) -> None:
        """Count each ``(campaign_id, reason)`` of ``rejected`` (a decision's rejections) on
        ``day`` (``YYYY-MM-DD``, UTC)."""
        if not rejected:
            return
        with self._lock:
            for r in rejected:
                self._pending[r.campaign_id, day, str(r.reason)] += 1

    def flush(self) -> int:
        """Add the counts held here to the table, in one transaction; return how many rows it
        touched. Counts that fail to go stay held for the next flush."""
        with self._lock:
            pending, self._pending = self._pending, Counter()
        if not pending:
            return 0
        try:
            with self._db.atomic() as tx:
                tx.executemany(
                    "INSERT INTO rejections (campaign_id, day, reason, n) VALUES (?, ?, ?, ?) "
                    "ON CONFLICT (campaign_id, day, reason) DO UPDATE SET n = rejections.n + excluded.n",
                    [(c, d, r, n) for (c, d, r), n in sorted(pending.items())])
        except BaseException:
            with self._lock:
                self._pending.update(pending)
            raise
        return len(pending)

    def by_day(self, campaign_id: str, first_day: str, last_day: str) -> list[tuple[str, str, int]]:
        """``(day, reason, n)`` of a campaign from ``first_day`` to ``last_day`` inclusive, by day
        then reason (what this process holds included)."""
        self.flush()
        return self._db.query("SELECT day, reason, n FROM rejections WHERE campaign_id = ? AND "
                              "day >= ? AND day <= ? ORDER BY day, reason",
                              (campaign_id, first_day, last_day))

    def start_flusher(self, every_s: float = 1.0) -> None:
        """Add the counts from a thread of their own, every ``every_s`` seconds."""
        self._flusher.start(every_s)

    def close(self) -> None:
        """Stop the flusher, adding what is still held."""
        self._flusher.stop()
        with contextlib.suppress(self._db.Error, StorageError):
            self.flush()
