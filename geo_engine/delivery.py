"""The webhook delivery worker (SPEC 12): the outbox posted, signed, retried, in order.

Every serving process runs one :class:`Deliverer` thread; only the one holding the database's
``webhooks`` lease works (a lease of :data:`LEASE_S` seconds, renewed while it runs: when its
process dies another takes over once it runs out), so a fleet of instances on one database
posts each batch from one place. For each enabled subscription it takes the open delivery (made
before any post, so a retry after a crash sends the same events under the same ``webhook-id``)
or makes the next from the waiting events, and posts it: any 2xx acknowledges; anything else
(an error status, a refused connection, a timeout) is tried again after
:func:`~geo_engine.webhooks.backoff_s`, until the delivery is ``retry_for_s`` old (72 hours by
default), when it is dead-lettered and the next goes. The next batch of a subscription waits for
the one before it: each receiver gets a device's events in the order they happened.

Bodies are signed in the Standard Webhooks format with the ``standardwebhooks`` library
(``webhook-id``, ``webhook-timestamp``, ``webhook-signature``: HMAC-SHA256 over
``id.timestamp.body``). The thread never touches a ping: pings only add outbox rows.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import httpx
from standardwebhooks import Webhook

from .db.sqlite import SQLite
from .db.webhooks import Webhooks
from .webhooks import MAX_BATCH, Subscription, backoff_s, batch_body

__all__ = ["LEASE_S", "Deliverer"]

log = logging.getLogger("geo_engine.webhooks")

LEASE_S = 10.0  # a worker's hold on the database's deliveries, renewed a third of the way in
LINGER_S = 0.05  # after a post, the wait for more events to join the next batch
_LEASE = "webhooks"
PRUNE_EVERY_S = 3600.0  # how often the worker forgets deliveries older than keep_s


def _msg_id() -> str:
    """A delivery's ``webhook-id``: the same on every try of it."""
    return "msg_" + secrets.token_hex(12)


class Deliverer:
    """The delivery worker of one process (working only while it holds the lease).

    Parameters
    ----------
    db : Database
        Its ``webhooks`` tables.
    subscriptions : callable
        The enabled subscriptions as this process knows them (the engine's snapshot): with
        none, the worker does not even take the lease.
    retry_for_s : float
        How long a delivery is tried before it is dead-lettered.
    backoff_base_s : float
        The first retry's delay (then doubled each time, with jitter).
    timeout_s : float
        A post's time limit.
    every_s : float
        How often it looks for waiting events when nothing woke it.
    keep_s : float
        How long events delivered (or dead-lettered) are kept for replays: pruned once an hour.
    lease_retry_s : float
        While another process holds the lease, how often this one tries to take it.
    """

    def __init__(self, db, subscriptions: Callable[[], Sequence[Subscription]],
                 retry_for_s: float = 259_200.0, backoff_base_s: float = 1.0,
                 timeout_s: float = 10.0, every_s: float = 1.0, keep_s: float = 7 * 86_400.0,
                 lease_retry_s: float = LEASE_S / 3):
        self._db, self._subscriptions = db, subscriptions
        self._hooks = db.webhooks  # (a server's own connection to a SQLite file: start())
        self._own = None
        self.keep_s, self.lease_retry_s = keep_s, lease_retry_s
        self._pruned_at = float("-inf")
        self._renew_at = float("-inf")  # when to renew (or try to take) the lease next
        self._holding = False
        self.retry_for_s, self.backoff_base_s = retry_for_s, backoff_base_s
        self.timeout_s, self.every_s = timeout_s, every_s
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Run in a thread of its own; on a SQLite file, with a connection of its own, so the
        pings' connection is never held by a delivery's reads and writes (its commits need not
        be synced: a delivery lost in a power cut is only posted again, as at least once
        allows)."""
        if self._thread is not None:
            return
        sql = self._db.sql
        if sql.dialect == "sqlite" and sql.path != ":memory:":
            self._own = SQLite(sql.path, "normal")
            self._own.leave_checkpoints()  # to the server's checkpointer, not to its commits
            self._hooks = Webhooks(self._own)
        self._thread = threading.Thread(target=self._run, name="webhook-delivery", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        """Something was written to the outbox here: look now rather than at the next pass."""
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=self.timeout_s + 5)
            self._thread = None
        with contextlib.suppress(Exception):  # else the lease runs out by itself
            self._hooks.release(_LEASE, self.holder)
        self._holding, self._renew_at = False, float("-inf")
        if self._own is not None:
            self._own.close()
            self._own, self._hooks = None, self._db.webhooks

    def _run(self) -> None:
        with httpx.Client(timeout=self.timeout_s, follow_redirects=False) as client, \
                ThreadPoolExecutor(max_workers=8, thread_name_prefix="webhook-post") as pool:
            while not self._stop.is_set() and not self._db.closed:
                worked = False
                try:
                    worked = self.pass_once(client, pool)
                except Exception:  # noqa: BLE001 - a database hiccup: the next pass tries again
                    if self._db.closed:
                        return
                    log.exception("webhook delivery pass failed")
                if worked:  # a moment for the next events to gather into one batch
                    self._stop.wait(LINGER_S)
                else:
                    self._wake.wait(self.every_s)
                    self._wake.clear()

    def pass_once(self, client: httpx.Client, pool: ThreadPoolExecutor | None = None) -> bool:
        """One pass: keep the lease, then one delivery try for each enabled subscription that
        has one due; return whether anything was posted."""
        if not self._subscriptions():
            return False
        now = time.time()
        if now >= self._renew_at:  # a write a few seconds, not one a pass
            if not self._hooks.lease(_LEASE, self.holder, now, LEASE_S):
                self._renew_at = now + self.lease_retry_s  # another holds it: look again later
                self._holding = False
                return False
            self._holding, self._renew_at = True, now + LEASE_S / 3
        if not self._holding:
            return False
        if now - self._pruned_at >= PRUNE_EVERY_S:
            self._pruned_at = now
            self._hooks.prune(now - self.keep_s)
        subs = [s for s in self._hooks.all() if s.enabled]  # as they are now
        if pool is None or len(subs) == 1:
            return any([self._deliver(client, s) for s in subs])
        return any(pool.map(lambda s: self._deliver(client, s), subs))

    def _deliver(self, client: httpx.Client, sub: Subscription) -> bool:
        """The subscription's next try, if one is due; return whether a post was made."""
        hooks = self._hooks
        now = time.time()
        open_ = hooks.open_delivery(sub.id)
        if open_ is None:
            if not hooks.waiting(sub.id):  # (a read: no write transaction for nothing)
                return False
            open_ = hooks.take_batch(sub.id, MAX_BATCH, _msg_id(), now)
            if open_ is None:
                return False
        delivery_id, msg_id, attempts, created_ts, next_ts = open_
        if next_ts > now:
            return False
        secret = hooks.secret(sub.id)
        if secret is None:  # deleted meanwhile
            return False
        body = batch_body(hooks.payloads(delivery_id), now)
        at = datetime.fromtimestamp(int(now), UTC)
        headers = {"content-type": "application/json", "user-agent": "geo-engine-webhooks",
                   "webhook-id": msg_id, "webhook-timestamp": str(int(now)),
                   "webhook-signature": Webhook(secret).sign(msg_id, at, body)}
        attempts += 1
        try:
            status = client.post(sub.url, content=body.encode(), headers=headers).status_code
            error = None if 200 <= status < 300 else f"HTTP {status}"
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        done = time.time()
        if error is None:  # and the next batch made in the same transaction
            hooks.acknowledged(delivery_id, attempts, done, (sub.id, MAX_BATCH, _msg_id()))
            return True
        retry = None if done - created_ts >= self.retry_for_s else \
            done + backoff_s(attempts, self.backoff_base_s)
        if retry is None:
            log.warning("webhook %s: delivery %s dead after %d tries: %s", sub.id, msg_id,
                        attempts, error)
        hooks.failed(delivery_id, attempts, error, retry, done)
        return True
