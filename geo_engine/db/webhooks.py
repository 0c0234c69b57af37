"""Webhooks in the database (SPEC 12): subscriptions, the outbox, deliveries, the worker's lease.

A ping's webhook events go into ``outbox`` in the ping's own transaction (one row an event and
subscription), so a crash never loses one. The delivery worker takes up to a batch of a
subscription's waiting rows, oldest first, into a ``deliveries`` row (in one transaction,
before anything is posted: a retry after a crash posts the same events under the same message
id), posts it until it is acknowledged or dead, and only then takes the next: a device's events
reach each receiver in the order they happened. One worker a database holds the ``leases`` row.

SQL only: what is posted and when is :mod:`geo_engine.webhooks` and :mod:`geo_engine.delivery`.
"""

from __future__ import annotations

import orjson

from ..webhooks import Outgoing, Subscription
from .changes import bump
from .devices import write_later

__all__ = ["Webhooks"]

DELIVERY_COLUMNS = "id, msg_id, status, attempts, last_error, n, oldest_ts, created_ts, next_ts, done_ts"


class Webhooks:
    """The ``webhooks``, ``outbox``, ``deliveries`` and ``leases`` tables."""

    def __init__(self, db):
        self._db = db

    # --- subscriptions -------------------------------------------------------------------------

    def put(self, webhook_id: str, url: str, events: tuple[str, ...], enabled: bool, secret: str,
            ts: float) -> bool:
        """Create or change a subscription; True when it was created (``secret`` is kept then,
        and only then)."""
        with self._db.atomic() as tx:
            created = tx.execute(
                "INSERT INTO webhooks (id, url, events, enabled, secret, created_ts, updated_ts) "
                "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING",
                (webhook_id, url, orjson.dumps(events).decode(), int(enabled), secret, ts, ts)
            ).rowcount == 1
            if not created:
                tx.execute("UPDATE webhooks SET url = ?, events = ?, enabled = ?, updated_ts = ? "
                           "WHERE id = ?", (url, orjson.dumps(events).decode(), int(enabled), ts,
                                            webhook_id))
            bump(tx, "webhooks")
        return created

    def delete(self, webhook_id: str) -> bool:
        """Delete a subscription with its outbox and deliveries; False when there was none."""
        with self._db.atomic() as tx:
            found = tx.execute("DELETE FROM webhooks WHERE id = ?", (webhook_id,)).rowcount == 1
            tx.execute("DELETE FROM outbox WHERE webhook_id = ?", (webhook_id,))
            tx.execute("DELETE FROM deliveries WHERE webhook_id = ?", (webhook_id,))
            bump(tx, "webhooks")
        return found

    def all(self) -> list[Subscription]:
        """Every subscription, ordered by id."""
        return [Subscription(i, url, tuple(orjson.loads(ev)), bool(on)) for i, url, ev, on in
                self._db.query("SELECT id, url, events, enabled FROM webhooks ORDER BY id")]

    def secret(self, webhook_id: str) -> str | None:
        rows = self._db.query("SELECT secret FROM webhooks WHERE id = ?", (webhook_id,))
        return rows[0][0] if rows else None

    # --- the outbox ----------------------------------------------------------------------------

    @staticmethod
    def enqueue(tx, rows: list[tuple[str, Outgoing]]) -> None:
        """Put ``(webhook id, event)`` pairs in the outbox, in the caller's transaction (a ping's:
        held with its other writes on PostgreSQL)."""
        if rows:
            write_later(tx, "INSERT INTO outbox (webhook_id, event_id, device_id, type, ts, "
                        "payload) VALUES (?, ?, ?, ?, ?, ?)",
                        [(w, e.event_id, e.device_id, e.type, e.ts, e.payload) for w, e in rows])

    def replay(self, webhook_id: str, t0: float, t1: float) -> int:
        """Put every event the subscription was sent (or is waiting for) with ``t0 <= ts < t1``
        in its outbox again, under the same event ids; return how many."""
        with self._db.atomic() as tx:
            return tx.execute(
                "INSERT INTO outbox (webhook_id, event_id, device_id, type, ts, payload) "
                "SELECT webhook_id, event_id, device_id, type, ts, payload FROM outbox WHERE id IN "
                "(SELECT min(id) FROM outbox WHERE webhook_id = ? AND ts >= ? AND ts < ? "
                "GROUP BY event_id) ORDER BY id", (webhook_id, t0, t1)).rowcount

    # --- deliveries ----------------------------------------------------------------------------

    def open_delivery(self, webhook_id: str) -> tuple | None:
        """The subscription's delivery not yet acknowledged nor dead (at most one): its
        ``(id, msg_id, attempts, created_ts, next_ts)``, or None."""
        rows = self._db.query("SELECT id, msg_id, attempts, created_ts, next_ts FROM deliveries "
                              "WHERE webhook_id = ? AND status = 'pending' ORDER BY id LIMIT 1",
                              (webhook_id,))
        return rows[0] if rows else None

    def waiting(self, webhook_id: str) -> bool:
        """Whether any event waits for the subscription's next delivery."""
        return bool(self._db.query("SELECT 1 FROM outbox WHERE webhook_id = ? AND delivery_id IS "
                                   "NULL LIMIT 1", (webhook_id,)))

    def take_batch(self, webhook_id: str, limit: int, msg_id: str, now: float) -> tuple | None:
        """Make the subscription's next delivery of up to ``limit`` waiting events (oldest
        first); return it as :meth:`open_delivery` does, or None when none wait."""
        with self._db.atomic() as tx:
            return self._take(tx, webhook_id, limit, msg_id, now)

    @staticmethod
    def _take(tx, webhook_id: str, limit: int, msg_id: str, now: float) -> tuple | None:
        rows = tx.execute("SELECT id, ts FROM outbox WHERE webhook_id = ? AND delivery_id IS "
                          "NULL ORDER BY id LIMIT ?", (webhook_id, limit)).fetchall()
        if not rows:
            return None
        delivery_id = tx.execute(
            "INSERT INTO deliveries (webhook_id, msg_id, status, n, oldest_ts, created_ts, "
            "next_ts) VALUES (?, ?, 'pending', ?, ?, ?, ?) RETURNING id",
            (webhook_id, msg_id, len(rows), min(ts for _, ts in rows), now, now)).fetchone()[0]
        # one statement: the waiting rows up to the batch's last id are the batch's
        tx.execute("UPDATE outbox SET delivery_id = ? WHERE webhook_id = ? AND delivery_id IS NULL "
                   "AND id <= ?", (delivery_id, webhook_id, rows[-1][0]))
        return delivery_id, msg_id, 0, now, now

    def payloads(self, delivery_id: int) -> list[str]:
        """A delivery's events' payloads, in order."""
        return [p for (p,) in self._db.query(
            "SELECT payload FROM outbox WHERE delivery_id = ? ORDER BY id", (delivery_id,))]

    def acknowledged(self, delivery_id: int, attempts: int, now: float,
                     then: tuple[str, int, str] | None = None) -> None:
        """A delivery was acknowledged (its last error, if a try before failed, is kept); with
        ``then`` (webhook id, limit, message id) the subscription's next delivery is made in
        the same transaction (:meth:`take_batch`)."""
        with self._db.atomic() as tx:
            tx.execute("UPDATE deliveries SET status = 'delivered', attempts = ?, done_ts = ? "
                       "WHERE id = ?", (attempts, now, delivery_id))
            if then is not None:
                self._take(tx, *then, now)

    def failed(self, delivery_id: int, attempts: int, error: str, next_ts: float | None,
               now: float) -> None:
        """A try failed: try again at ``next_ts``, or (None) give up: the delivery is dead."""
        with self._db.atomic() as tx:
            if next_ts is None:
                tx.execute("UPDATE deliveries SET status = 'failed', attempts = ?, last_error = ?, "
                           "done_ts = ? WHERE id = ?", (attempts, error[:500], now, delivery_id))
            else:
                tx.execute("UPDATE deliveries SET attempts = ?, last_error = ?, next_ts = ? "
                           "WHERE id = ?", (attempts, error[:500], next_ts, delivery_id))

    def deliveries(self, webhook_id: str, limit: int = 100, status: str | None = None) -> list[dict]:
        """The subscription's deliveries, newest first."""
        sql = f"SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE webhook_id = ?"
        args: tuple = (webhook_id,)
        if status is not None:
            sql += " AND status = ?"
            args += (status,)
        rows = self._db.query(sql + " ORDER BY id DESC LIMIT ?", (*args, limit))
        return [dict(zip(DELIVERY_COLUMNS.split(", "), r, strict=True)) for r in rows]

    def figures(self) -> dict:
        """For /metrics: events delivered and dead-lettered, events waiting, and the time of the
        oldest event not yet acknowledged (None when none waits)."""
        delivered, failed = self._db.query(
            "SELECT COALESCE(SUM(CASE WHEN status = 'delivered' THEN n END), 0), "
            "COALESCE(SUM(CASE WHEN status = 'failed' THEN n END), 0) FROM deliveries")[0]
        waiting, oldest = self._db.query(
            "SELECT count(*), min(ts) FROM outbox WHERE delivery_id IS NULL")[0]
        pending = self._db.query("SELECT COALESCE(SUM(n), 0), min(oldest_ts) FROM deliveries "
                                 "WHERE status = 'pending'")[0]
        olds = [t for t in (oldest, pending[1]) if t is not None]
        return {"delivered": int(delivered), "failed": int(failed),
                "waiting": int(waiting) + int(pending[0]), "oldest_ts": min(olds) if olds else None}

    def prune(self, before_ts: float) -> int:
        """Forget deliveries done (acknowledged or dead) before ``before_ts`` and their events;
        return how many events went. Waiting events and open deliveries are kept, however old."""
        with self._db.atomic() as tx:
            n = tx.execute("DELETE FROM outbox WHERE delivery_id IN (SELECT id FROM deliveries "
                           "WHERE status <> 'pending' AND done_ts < ?)", (before_ts,)).rowcount
            tx.execute("DELETE FROM deliveries WHERE status <> 'pending' AND done_ts < ?", (before_ts,))
        return n

    # --- the worker's lease --------------------------------------------------------------------

    def lease(self, name: str, holder: str, now: float, hold_s: float) -> bool:
        """Take or keep the lease ``name`` for ``hold_s`` seconds: True when ``holder`` has it
        (it had it, or the last holder's ran out)."""
        with self._db.atomic() as tx:
            tx.execute("INSERT INTO leases (name, holder, until_ts) VALUES (?, ?, ?) "
                       "ON CONFLICT (name) DO NOTHING", (name, holder, now + hold_s))
            return tx.execute("UPDATE leases SET holder = ?, until_ts = ? WHERE name = ? AND "
                              "(holder = ? OR until_ts < ?)",
                              (holder, now + hold_s, name, holder, now)).rowcount == 1

    def release(self, name: str, holder: str) -> None:
        with self._db.atomic() as tx:
            tx.execute("DELETE FROM leases WHERE name = ? AND holder = ?", (name, holder))
