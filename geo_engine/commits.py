"""Group commit on the event loop: the pings that arrive together share one transaction.

A server handles each ping on its event loop, in memory but for its records. The first ping
that needs to write opens a transaction and asks the loop to commit it once the loop has run
what is ready now; every ping that writes before then joins it, each in a savepoint of its own
(one that fails is rolled back alone). Opening never sleeps on the loop while another process
holds the write lock: it tries again after a short sleep, other requests served meanwhile.

Each answer waits for the commit: an answer never leaves before its own records are durable,
and a failed commit fails every answer of its group. One commit, and with
``synchronous=full`` one sync, then serves many pings; while it syncs, the next pings gather in
the sockets and form the next group (PostgreSQL's group commit does the same across backends).

It knows transactions and futures only: what a ping writes is the engine's. Only the event
loop's thread may use it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

from .db.sqlite import Busy
from .errors import StorageError, WriteContention

__all__ = ["GroupCheck", "GroupCommit", "Unwritten"]


class Unwritten(Exception):  # noqa: N818 - a signal, not an error
    """Raised by a group's write that stopped before writing anything (the engine's "places or
    campaigns changed": follow and decide again): the group goes on without it."""


class GroupCommit:
    """Transactions shared by the writes of one turn of the event loop.

    Parameters
    ----------
    sql : SQLite or PostgreSQL
        The database; the group's transaction (SQLite: the write lock) is held from its BEGIN
        to its COMMIT.
    """

    def __init__(self, sql):
        self._sql = sql
        self._tx = None
        self._opening: asyncio.Task | None = None
        self._commit_scheduled = False
        # a savepoint a write where it is nearly free (SQLite, in-process); PostgreSQL's cost a
        # round trip each, and a failed write there takes its group down instead
        self._savepoints = getattr(sql, "dialect", "sqlite") != "postgresql"
        self._waiting: list[asyncio.Future] = []
        #: groups committed, and writes in them (for tests and benchmarks)
        self.groups = 0
        self.writes = 0

    async def write(self, work: Callable[[Any], Any]) -> Any:
        """Run ``work(tx)`` now, in the group's transaction; return its result once the group
        has committed (or raise what it raised; a failed commit raises StorageError)."""
        loop = asyncio.get_running_loop()
        if self._tx is None and self._opening is None:
            # the lock is free (one process, or the others' groups done): no waiting at all
            with contextlib.suppress(Busy):
                self._tx = self._sql.begin(wait=False)
        while self._tx is None:  # the pings that come while it opens join the same group
            if self._opening is None:
                self._opening = loop.create_task(self._open())
            await asyncio.shield(self._opening)
        if not self._commit_scheduled:  # after every ping already woken: they join first
            self._commit_scheduled = True
            loop.call_soon(self._commit)
        tx = self._tx
        if not tx.in_transaction:  # SQLite rolled the group back (a full disk): join nothing
            raise StorageError("the database rolled back the transaction this write was to join "
                               f"(see the error before it); nothing of it was kept ({self._sql.path})")
        result = self._in_savepoint(tx, work) if self._savepoints else self._in_group(tx, work)
        committed = loop.create_future()
        self._waiting.append(committed)
        await committed
        return result

    def _in_savepoint(self, tx, work: Callable[[Any], Any]) -> Any:
        """SQLite: each write in a savepoint of its own (in-process, so nearly free): one that
        fails is rolled back alone."""
        tx.execute("SAVEPOINT ping")
        try:
            result = work(tx)
        except BaseException as exc:
            if tx.in_transaction:  # after some errors (a full disk) SQLite has rolled back all
                tx.execute("ROLLBACK TO ping")
                tx.execute("RELEASE ping")
            if isinstance(exc, self._sql.Error):  # full, read-only: said as such
                raise self._sql.error(exc, "nothing of this write was kept") from None
            raise
        tx.execute("RELEASE ping")
        return result

    def _in_group(self, tx, work: Callable[[Any], Any]) -> Any:
        """PostgreSQL: no savepoint (two round trips a write). A write that fails having written
        nothing (:class:`Unwritten`, a lost race) leaves the group as it was; any other failure
        takes the group's transaction down, and every write that had joined it is told to run
        again (:class:`~geo_engine.errors.WriteContention`): nothing of any of them was kept."""
        try:
            return work(tx)
        except (Unwritten, WriteContention):
            raise
        except BaseException as exc:
            self._abandon()
            if isinstance(exc, self._sql.Error):  # contention, the server: said as such
                raise self._sql.error(exc, "nothing of this write was kept") from None
            raise

    def _abandon(self) -> None:
        """Roll the open group back; its writes so far are run again by their callers."""
        waiting, self._waiting, self._tx = self._waiting, [], None
        with contextlib.suppress(self._sql.Error):
            self._sql.rollback()
        again = WriteContention("another write of the same transaction failed, and nothing of "
                                "this one was kept; run it again")
        for done in waiting:
            if not done.done():
                done.set_exception(again)

    async def _open(self) -> None:
        """Begin the group's transaction without blocking the loop: while another process (or
        thread) holds the write lock, try again after a short sleep, quiet pings answered
        meanwhile."""
        delay = 0.0002
        try:
            while True:
                try:
                    self._tx = self._sql.begin(wait=False)
                    return
                except Busy:
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 0.005)
        finally:
            self._opening = None

    def _commit(self) -> None:
        waiting, self._waiting, tx, self._tx = self._waiting, [], self._tx, None
        self._commit_scheduled = False
        if tx is None:  # abandoned meanwhile (its writes are being run again)
            return
        try:
            self._sql.commit()
        except self._sql.Error as exc:
            error = self._sql.error(exc, f"the database refused to commit, and nothing of this "
                                    f"group of {len(waiting)} writes was kept")
            for done in waiting:
                if not done.done():
                    done.set_exception(error)
            return
        self.groups += 1
        self.writes += len(waiting)
        for done in waiting:
            if not done.done():  # a request cancelled meanwhile still had its write committed
                done.set_result(None)


class GroupCheck:
    """The read twin of :class:`GroupCommit`: the device rows' versions that the quiet pings of
    one loop turn rely on, checked in one query.

    A quiet ping is decided on this process's copy of its device's state. On SQLite, whether
    another connection has committed is one shared-memory read; on PostgreSQL another instance
    may have written the row, and only the database knows. Each quiet ping's check waits for
    the end of the loop turn, when ``read_versions(device ids)`` answers all of them at once.

    Parameters
    ----------
    read_versions : callable
        device ids -> {device id: stored version}; a device with no row is absent.
    """

    def __init__(self, read_versions: Callable[[list[str]], dict[str, int]]):
        self._read = read_versions
        self._pending: dict[str, list[tuple[int | None, asyncio.Future]]] = {}
        #: queries run, and checks answered by them (for tests and benchmarks)
        self.queries = 0
        self.checks = 0

    async def current(self, device_id: str, version: int | None) -> bool:
        """Whether the device's stored row is still at ``version`` (answered with the others of
        this loop turn)."""
        loop = asyncio.get_running_loop()
        done = loop.create_future()
        if not self._pending:
            loop.call_soon(self._run)
        self._pending.setdefault(device_id, []).append((version, done))
        return await done

    def _run(self) -> None:
        pending, self._pending = self._pending, {}
        try:
            stored = self._read(list(pending))
        except BaseException as exc:  # every waiting ping fails as the query did
            for waits in pending.values():
                for _, done in waits:
                    if not done.done():
                        done.set_exception(exc)
            return
        self.queries += 1
        for device_id, waits in pending.items():
            for version, done in waits:
                self.checks += 1
                if not done.done():
                    done.set_result(stored.get(device_id) == version)
