"""One SQLite file: the connection, its settings, transactions, migrations and the checkpointer.

One file in WAL mode (readers never block the writer), foreign keys on, and every write in an
``atomic()`` block that commits whole or not at all (as sqlite-utils' ``atomic`` does). The
schema version lives in ``PRAGMA user_version``; :meth:`SQLite.migrate` applies the steps it is
given from there on, each in one transaction.

This module knows no table and no domain: the concept modules beside it (places, campaigns,
devices, API keys, geocodes) hold the SQL, and the engine the rules. A second backend
(PostgreSQL) is a sibling with the same four verbs: ``query``, ``atomic``, ``migrate``, ``close``.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ..errors import StorageError

__all__ = ["Busy", "SQLite", "storage_error"]

_BUSY_TIMEOUT_MS = 10_000  # how long a write waits for another process's, unless it asks not to


def storage_error(path: str, exc: sqlite3.Error, doing: str = "") -> StorageError:
    """A SQLite error as the one sentence an operator acts on: a full disk, a read-only file,
    or what SQLite said."""
    said = str(exc)
    if "full" in said:
        why = f"the disk holding the database {path} is full: free some space, then try again"
    elif "readonly" in said or "read-only" in said or "read only" in said:
        why = (f"the database {path} is read-only (the file's or its folder's permissions, or a "
               "read-only disk): geo-engine needs to write it and its -wal and -shm files")
    elif doing == OPENING:
        return StorageError(f"cannot open the database {path}: {said}")
    else:
        why = f"the database {path} failed: {said}"
    return StorageError(f"{doing}{': ' if doing else ''}{why}")


OPENING = "cannot open the database"


class Busy(Exception):
    """Another process holds the write lock and the caller asked not to wait
    (``begin(wait=False)``)."""


def _statements(script: str) -> Iterator[str]:
    """The statements of a script, one by one (a trigger's body holds semicolons of its own).

    ``executescript`` would commit first, and a migration must be one transaction.
    """
    pending = ""
    for piece in script.split(";"):
        pending += piece + ";"
        if sqlite3.complete_statement(pending):
            if pending.strip(" \n;"):
                yield pending
            pending = ""


class SQLite:
    """A SQLite database file, opened for one process's threads to share.

    Parameters
    ----------
    path : str or Path
        The file (its folder is made when missing); ``":memory:"`` for a private in-memory
        database (tests).
    synchronous : {"full", "normal"}
        ``full`` (the default): a commit is on disk before it returns, so it survives a killed
        process and a power cut. ``normal``: it is in the WAL file, which survives a killed
        process; a power cut can lose the last commits. Group commit (:mod:`geo_engine.commits`)
        is what makes ``full`` affordable: one sync serves every ping of a batch.
    """

    Error = sqlite3.Error
    dialect = "sqlite"

    def __init__(self, path: str | Path, synchronous: str = "full"):
        self.path = str(path)
        if synchronous not in ("full", "normal"):
            raise StorageError(f"synchronous must be full or normal, got {synchronous!r}")
        try:
            if self.path != ":memory:":
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            self._conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute(f"PRAGMA synchronous={synchronous.upper()}")
            self._conn.execute("PRAGMA foreign_keys=ON")
            self._conn.execute(f"PRAGMA busy_timeout={_BUSY_TIMEOUT_MS}")
            # the device rows and indexes a ping touches stay in memory: 64 MB of page cache,
            # and reads through a memory map rather than a read() call each
            self._conn.execute("PRAGMA cache_size=-65536")
            self._conn.execute("PRAGMA mmap_size=268435456")
        except sqlite3.Error as exc:
            raise storage_error(self.path, exc, OPENING) from None
        self._checkpointer: threading.Thread | None = None
        self._stop = threading.Event()
        self._lock = threading.RLock()

    def error(self, exc: BaseException, doing: str = "") -> StorageError:
        """A SQLite error as the one sentence an operator acts on (:func:`storage_error`)."""
        return storage_error(self.path, exc, doing)

    @staticmethod
    def retryable(exc: BaseException) -> bool:
        """Whether running the same work again can succeed: never needed here (one writer at a
        time, and a write waits for the lock rather than failing)."""
        return False

    @property
    def schema_version(self) -> int:
        return self.query("PRAGMA user_version")[0][0]

    @property
    def journal_mode(self) -> str:
        return self.query("PRAGMA journal_mode")[0][0]

    @property
    def checkpointing(self) -> bool:
        """Whether the checkpointer thread runs (:meth:`start_checkpointer` until :meth:`close`)."""
        return self._checkpointer is not None and self._checkpointer.is_alive()

    def migrate(self, migrations: list[str]) -> None:
        """Apply ``migrations[v:]`` to a file at schema version ``v``, each step in one transaction.

        Raises :class:`StorageError` for a file newer than the steps known, or one that refuses.
        """
        try:
            version = self.schema_version
            if version > len(migrations):
                raise StorageError(f"the database {self.path} has schema version {version}, newer "
                                   f"than this geo-engine knows ({len(migrations)}); upgrade "
                                   "geo-engine")
            for target in range(version + 1, len(migrations) + 1):
                with self.atomic() as conn:
                    for statement in _statements(migrations[target - 1]):
                        conn.execute(statement)
                    conn.execute(f"PRAGMA user_version = {target}")
        except sqlite3.Error as exc:
            raise storage_error(self.path, exc, OPENING) from None

    def query(self, sql: str, args: tuple | list = ()) -> list[tuple]:
        """Read outside a write transaction, whole, under the connection's lock.

        The connection is shared by threads: a read left running while another thread begins
        a write would make that BEGIN an upgrade of a stale snapshot once another process has
        written, which SQLite refuses at once ("database is locked") instead of waiting.
        """
        with self._lock:
            try:
                return self._conn.execute(sql, args).fetchall()
            except sqlite3.OperationalError as exc:
                raise storage_error(self.path, exc) from None

    def data_version(self) -> int:
        """A number that changes whenever another connection (another process, another Engine)
        has committed since the last call, and never for this connection's own commits
        (``PRAGMA data_version``: read from the shared WAL index, no table page). While it holds
        still, whatever this process last read is still what is stored."""
        with self._lock:
            return self._conn.execute("PRAGMA data_version").fetchone()[0]

    @contextmanager
    def atomic(self) -> Iterator[sqlite3.Connection]:
        """Run a block in one write transaction: committed whole, or rolled back on any error."""
        conn = self.begin()
        try:
            yield conn
        except sqlite3.OperationalError as exc:  # full, read-only, I/O: said as such
            self.rollback()
            raise storage_error(self.path, exc, "nothing was changed") from None
        except BaseException:
            self.rollback()
            raise
        else:
            try:
                self.commit()
            except sqlite3.Error as exc:
                raise storage_error(self.path, exc, "nothing was changed") from None

    def begin(self, wait: bool = True) -> sqlite3.Connection:
        """Open a write transaction (BEGIN IMMEDIATE) that this thread holds until :meth:`commit`
        or :meth:`rollback`: for a transaction that spans callbacks (group commit).

        With ``wait`` false, raise :class:`Busy` at once instead of waiting for another process
        that holds the write lock (an event loop must not sleep in SQLite's busy handler: every
        request it serves would wait too). This process's own threads hold the connection only
        briefly, and are waited for either way: polling for them would fight them for the GIL.
        """
        self._lock.acquire()
        try:
            if wait:
                try:
                    self._conn.execute("BEGIN IMMEDIATE")
                except sqlite3.OperationalError as exc:
                    raise storage_error(self.path, exc, "cannot write") from None
            else:
                self._conn.execute("PRAGMA busy_timeout=0")
                try:
                    self._conn.execute("BEGIN IMMEDIATE")
                except sqlite3.OperationalError as exc:
                    if "locked" in str(exc) or "busy" in str(exc):
                        raise Busy(str(exc)) from None
                    raise storage_error(self.path, exc, "cannot write") from None
                finally:
                    self._conn.execute(f"PRAGMA busy_timeout={_BUSY_TIMEOUT_MS}")
        except BaseException:
            self._lock.release()
            raise
        return self._conn

    def commit(self) -> None:
        """Commit the transaction :meth:`begin` opened; on failure it is rolled back, and the
        error raised."""
        try:
            self._conn.execute("COMMIT")
        except BaseException:
            if self._conn.in_transaction:
                self._conn.execute("ROLLBACK")
            raise
        finally:
            self._lock.release()

    def rollback(self) -> None:
        try:
            if self._conn.in_transaction:  # SQLite has rolled back already after some errors (full)
                self._conn.execute("ROLLBACK")
        finally:
            self._lock.release()

    def start_checkpointer(self, every_s: float = 0.2, restart_bytes: int = 64 << 20) -> None:
        """Copy the WAL into the database from a thread of its own, not in a ping's commit.

        SQLite checkpoints in whichever commit crosses 1,000 WAL pages, which made one commit in
        a few hundred take milliseconds (bench_ping's p99). A long-running process calls this;
        commits then only append. A far larger automatic limit stays as a safety net.

        Under steady writes a passive checkpoint never catches up with the last commit, and
        SQLite only starts the WAL file over when one has, so the file grew without bound in
        bench_ping. Past ``restart_bytes`` the thread therefore holds this process's writers
        back for one short RESTART checkpoint (the frames written since the last pass, and a
        sync); the next commit starts the file over. ``benchmarks/RESULTS.md`` has the
        measurements behind the threshold and the stall.
        """
        if self._checkpointer is not None or self.path == ":memory:":
            return
        self._conn.execute("PRAGMA wal_autocheckpoint=50000")
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA busy_timeout=10000")
        page = conn.execute("PRAGMA page_size").fetchone()[0]

        def run() -> None:
            try:
                while not self._stop.wait(every_s):
                    _, frames, _ = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                    if frames * page > restart_bytes:
                        with self._lock:  # no commit of ours in between: the WAL catches up
                            conn.execute("PRAGMA wal_checkpoint(RESTART)").fetchone()
            except sqlite3.Error:  # the safety net takes over; nothing is lost either way
                pass
            finally:
                conn.close()
        self._checkpointer = threading.Thread(target=run, name="wal-checkpoint", daemon=True)
        self._checkpointer.start()

    def leave_checkpoints(self) -> None:
        """A second connection of a process whose checkpointer runs (:meth:`start_checkpointer`
        on its first): its commits only append to the WAL, as the first one's do."""
        self._conn.execute("PRAGMA wal_autocheckpoint=50000")

    def close(self) -> None:
        self._stop.set()
        if self._checkpointer is not None:
            self._checkpointer.join()
        self._conn.close()
