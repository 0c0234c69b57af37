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

On a database a network round trip away (PostgreSQL), :class:`ThreadedGroupCommit` does the
same from a thread of its own, so that the loop is never held by a round trip; and
:class:`GroupCheck` checks the quiet pings' device rows of a loop turn in one query.

It knows transactions and futures only: what a ping writes is the engine's. Only the event
loop's thread may use a :class:`GroupCommit`.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
from collections.abc import Callable
from typing import Any

from .db.sqlite import Busy
from .errors import StorageError, WriteContention

__all__ = ["GroupCheck", "GroupCommit", "ThreadedGroupCommit", "Unwritten"]


def _refused(sql, exc: BaseException, writes: int) -> StorageError:
    """A group's COMMIT refused, as the one sentence its writes' callers get (a
    :class:`WriteContention`, to run again, when a row changed under the group's lock)."""
    if isinstance(exc, WriteContention):
        return WriteContention(f"{exc}; nothing of this group of {writes} writes was kept")
    return sql.error(exc, f"the database refused to commit, and nothing of this group of {writes} "
                     "writes was kept")


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
        self._waiting: list[asyncio.Future] = []
        #: groups committed, and writes in them (for tests and benchmarks)
        self.groups = 0
        self.writes = 0

    async def write(self, work: Callable[[Any], Any], key=None) -> Any:
        """Run ``work(tx)`` now, in the group's transaction; return its result once the group
        has committed (or raise what it raised; a failed commit raises StorageError). (``key``
        is :class:`ThreadedGroupCommit`'s; SQLite's reads cost nothing to batch.)"""
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
        result = self._in_savepoint(tx, work)
        committed = loop.create_future()
        self._waiting.append(committed)
        await committed
        return result

    def _in_savepoint(self, tx, work: Callable[[Any], Any]) -> Any:
        """Each write in a savepoint of its own (in-process, so nearly free): one that fails is
        rolled back alone."""
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
        waiting, self._waiting, self._tx = self._waiting, [], None
        self._commit_scheduled = False
        try:
            self._sql.commit()
        except self._sql.Error as exc:
            error = _refused(self._sql, exc, len(waiting))
            for done in waiting:
                if not done.done():
                    done.set_exception(error)
            return
        self.groups += 1
        self.writes += len(waiting)
        for done in waiting:
            if not done.done():  # a request cancelled meanwhile still had its write committed
                done.set_result(None)


#: writer threads, each with a connection and a group transaction of its own: while one waits on
#: the server (a round trip, a commit's flush), another runs the next writes
WRITERS = 3


class ThreadedGroupCommit:
    """Group commit for a database a network round trip away (PostgreSQL): the writes run on threads of
    their own (:data:`WRITERS`), so the event loop goes on parsing requests and answering quiet
    pings while a write waits on the server.

    Each thread takes every write queued at that moment into one transaction (a group) and
    commits it; whatever arrives while a commit is on its way to disk forms the next group, on
    whichever thread is free. Each answer waits for its group's commit. Before the group's writes
    run, ``prepare(tx, keys)`` may read and lock what they will need in one statement (the
    engine: the devices' rows), each write having said its key. There is no savepoint a write
    (two round trips each): a write that fails having written nothing (:class:`Unwritten`, a
    lost race) leaves the group as it was; any other failure rolls the group back, every write
    that had joined it is told to run again (:class:`~geo_engine.errors.WriteContention`), and
    the writes not yet run form a new group.

    Parameters
    ----------
    sql : PostgreSQL
        The database (``begin``, ``commit``, ``rollback`` on the calling thread's connection).
    prepare : callable, optional
        ``prepare(tx, keys)``: run first in each group's transaction with the keys its writes
        gave (in arrival order, repeats kept).
    """

    def __init__(self, sql, writers: int = WRITERS,
                 prepare: Callable[[Any, list], None] | None = None):
        self._sql = sql
        self._writers = writers
        self._prepare = prepare
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        #: groups committed, and writes in them (for tests and benchmarks)
        self.groups = 0
        self.writes = 0

    async def write(self, work: Callable[[Any], Any], key=None) -> Any:
        """Run ``work(tx)`` on a writer thread, in its group's transaction (``key``: what
        ``prepare`` readies for it); return its result once the group has committed (or raise
        what it raised)."""
        loop = asyncio.get_running_loop()
        ran, committed = loop.create_future(), loop.create_future()
        with self._lock:
            while len(self._threads) < self._writers:
                thread = threading.Thread(target=self._run, name="group-commit", daemon=True)
                thread.start()
                self._threads.append(thread)
        self._queue.put((work, key, loop, ran, committed))
        result = await ran  # raises what the work raised
        await committed
        return result

    @staticmethod
    def _settle(loop, future: asyncio.Future, result=None, error: BaseException | None = None) -> None:
        def settle() -> None:
            if future.done():  # the request went away meanwhile
                return
            if error is not None:
                future.set_exception(error)
            else:
                future.set_result(result)
        loop.call_soon_threadsafe(settle)

    def _run(self) -> None:
        """The writer thread: one group after another, for the life of the process."""
        while True:
            items = [self._queue.get()]  # waits for the first write of a group
            while True:  # and takes every other one queued now
                try:
                    items.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            while items:
                items = self._group(items)

    def _group(self, items: list) -> list:
        """Run ``items`` in one transaction and commit it; return those not run (a write failed
        and took the transaction down), for a group of their own."""
        try:
            tx = self._sql.begin()
            try:
                if self._prepare is not None:
                    self._prepare(tx, [key for _, key, *_ in items if key is not None])
            except BaseException:
                self._sql.rollback()
                raise
        except BaseException as exc:
            error = self._sql.error(exc, "nothing of this write was kept") \
                if isinstance(exc, self._sql.Error) else exc
            for _, _, loop, ran, _ in items:
                self._settle(loop, ran, error=error)
            return []
        joined = []
        for k, (work, _, loop, ran, committed) in enumerate(items):
            held = tx.held
            try:
                result = work(tx)
            except (Unwritten, WriteContention) as exc:
                if tx.held == held:  # nothing written: the group goes on
                    self._settle(loop, ran, error=exc)
                    continue
                failed: BaseException = exc
            except BaseException as exc:
                failed = exc
            else:
                joined.append((loop, committed))
                self._settle(loop, ran, result)
                continue
            # the transaction is down: the writes that joined it run again, the rest regroup
            with contextlib.suppress(self._sql.Error):
                self._sql.rollback()
            again = WriteContention("another write of the same transaction failed, and "
                                    "nothing of this one was kept; run it again")
            for lp, done in joined:
                self._settle(lp, done, error=again)
            error = self._sql.error(failed, "nothing of this write was kept") \
                if isinstance(failed, self._sql.Error) else failed
            self._settle(loop, ran, error=error)
            return items[k + 1:]
        try:
            self._sql.commit()
        except (self._sql.Error, WriteContention) as exc:
            error = _refused(self._sql, exc, len(joined))
            for lp, done in joined:
                self._settle(lp, done, error=error)
            return []
        self.groups += 1
        self.writes += len(joined)
        for lp, done in joined:
            self._settle(lp, done)
        return []


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
