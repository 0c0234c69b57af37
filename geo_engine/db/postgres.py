"""A PostgreSQL database: a connection pool, transactions, migrations, with SQLite's verbs.

Chosen by ``GEO_ENGINE_DATABASE_URL=postgresql://...``. The concept modules beside it (places,
campaigns, devices, API keys, tokens, geocodes) run on it unchanged: they write their SQL with
``?`` placeholders and run it through ``query``, ``atomic`` or a transaction from ``begin``,
and this module hands it to psycopg 3 with ``%s`` ones. Connections come from a
``psycopg_pool`` pool; each runs with a short ``lock_timeout``, so a write that would wait long on
another instance's row fails fast (:meth:`retryable`) and the caller runs the work again instead
of holding its event loop.

The schema version lives in the ``schema_version`` table; :meth:`migrate` applies the steps
from there on, each in one transaction, under an advisory lock (instances that start together
migrate once).

This module knows no table and no domain, as :mod:`.sqlite`.
"""

from __future__ import annotations

import functools
import itertools
import threading
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import errors as pg_errors
from psycopg.pq import TransactionStatus
from psycopg_pool import ConnectionPool, PoolTimeout

from ..errors import StorageError, WriteContention

__all__ = ["PostgreSQL", "Tx"]

_MIGRATE_LOCK = 7_460_310_001  # pg_advisory_xact_lock key: one instance migrates at a time
#: how long a ping's write waits for a row another instance holds before it is run again (the
#: event loop waits meanwhile); other writes (imports, campaigns) wait up to LOCK_WAIT_MS
LOCK_TIMEOUT_MS = 200
LOCK_WAIT_MS = 10_000
#: the channel every change counter's bump is announced on (:meth:`PostgreSQL.listen`)
CHANNEL = "geo_engine_changes"
# errors after which running the same work again can succeed: a deadlock, a serialization
# failure, a lock not granted within the timeout
_RETRYABLE = (pg_errors.DeadlockDetected, pg_errors.SerializationFailure,
              pg_errors.LockNotAvailable)


@functools.lru_cache(maxsize=1024)
def _sql(text: str) -> str:
    """SQLite's ``?`` placeholders as psycopg's ``%s`` (a literal ``%`` doubled)."""
    return text.replace("%", "%%").replace("?", "%s")


def _shown(url: str) -> str:
    """The URL without its password, for messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
    return urlunsplit(parts._replace(netloc=netloc))


class Tx:
    """A transaction's connection with the verbs the concept modules use on SQLite's:
    ``execute`` and ``executemany`` (``?`` placeholders) returning a cursor, ``in_transaction``;
    and :meth:`later`, for the writes whose result no one reads.

    Each statement sent on its own costs this process tens of microseconds of psycopg's Python
    and a round trip; a hundred sent by one ``executemany`` cost about what two do. So a write
    given to :meth:`later` waits, with the others of the same text, until the transaction
    commits or the next statement that reads is sent (:meth:`flush`): what a transaction reads
    is what it would have read had each write gone at once.
    """

    __slots__ = ("conn", "generations", "memo", "_later", "_opening")
    dialect = "postgresql"

    def __init__(self, conn: psycopg.Connection, opening: tuple[str, ...] = ()):
        self.conn = conn
        # statements that open the transaction, sent with its first (one round trip, not two)
        self._opening = opening
        #: the change counters as this transaction read them, share-locked: they cannot change
        #: before it ends, so the pings of a group read them once
        self.generations: dict[str, int] | None = None
        #: what the concept modules keep about this transaction (rows it holds locked)
        self.memo: dict = {}
        # statement text -> [rows, whether each row must change exactly one row]
        self._later: dict[str, list] = {}

    def execute(self, sql: str, args=(), fresh_plan: bool = False) -> psycopg.Cursor:
        """Run one statement (the writes :meth:`later` holds first). ``fresh_plan``: planned for
        these arguments every time, never from a prepared statement's generic plan (which, made
        while a growing table was nearly empty, goes on scanning it whole)."""
        with self._sending():
            if fresh_plan:
                return self.conn.execute(_sql(sql), tuple(args), prepare=False)
            # with no arguments the text goes as it is (several statements in one round trip)
            return self.conn.execute(_sql(sql), tuple(args)) if args else self.conn.execute(sql)

    @contextmanager
    def _sending(self) -> Iterator[None]:
        """Around a statement that reads: the writes held go first, and the statements that open
        the transaction go in one pipeline with it."""
        if self._later:
            self.flush()
        if not self._opening:
            yield
            return
        with self.conn.pipeline():
            self._open()
            yield

    @property
    def opened(self) -> bool:
        """Whether the transaction has begun on the server (the first statement has gone)."""
        return not self._opening

    def _open(self) -> None:
        """Queue the statements that open the transaction (inside a pipeline)."""
        for text in self._opening:
            self.conn.execute(text)
        self._opening = ()

    def executemany(self, sql: str, rows) -> psycopg.Cursor:
        cur = self.conn.cursor()
        with self._sending():
            cur.executemany(_sql(sql), list(rows))
        return cur

    def later(self, sql: str, args, one_row: bool = False) -> None:
        """Send this write with the others of its text at the next :meth:`flush`. With
        ``one_row``, each must change exactly one row (a row this transaction holds locked):
        when one does not, the flush raises :class:`WriteContention` and the caller runs the
        whole transaction again."""
        entry = self._later.get(sql)
        if entry is None:
            entry = self._later[sql] = [[], one_row]
        entry[0].append(tuple(args))

    @property
    def held(self) -> int:
        """How many writes :meth:`later` holds."""
        return sum(len(rows) for rows, _ in self._later.values())

    def flush(self) -> None:
        """Send the writes held by :meth:`later`, one ``executemany`` a text, in the order the
        texts first came."""
        if not self._later:  # (nothing to send: no round trip)
            return
        later, self._later = self._later, {}
        sent = []
        with self.conn.pipeline():  # one round trip for them all (an executemany alone is one
            # each, and costs more than a plain execute for a row or two)
            self._open()
            for sql, (rows, one_row) in later.items():
                cur = self.conn.cursor()
                cur.executemany(_sql(sql), rows)
                sent.append((cur, len(rows), one_row))
        for cur, n, one_row in sent:
            if one_row and cur.rowcount != n:
                raise WriteContention(f"{n - cur.rowcount} of {n} rows changed under this "
                                      "transaction's lock; run it again")

    @property
    def in_transaction(self) -> bool:
        """Whether the transaction is open (or about to be, with its first statement)."""
        return bool(self._opening) or self.conn.info.transaction_status != TransactionStatus.IDLE


class PostgreSQL:
    """A PostgreSQL database, shared by this process's threads through a pool of connections.

    Parameters
    ----------
    url : str
        ``postgresql://user:password@host:port/database`` (libpq's URL).
    synchronous : {"full", "normal"}
        ``full``: a commit is on the server's disk before it returns (``synchronous_commit``
        on). ``normal``: it returns once written, before the flush (off): a crash of the
        server can lose the last commits, never half of one.
    pool_size : int
        Connections at most (the event loop's group commit holds one while its group is open).
    """

    Error = psycopg.Error
    dialect = "postgresql"
    #: every instance not yet closed (a test run closes what each test left open)
    opened: weakref.WeakSet[PostgreSQL] = weakref.WeakSet()

    def __init__(self, url: str, synchronous: str = "full", pool_size: int = 8):
        if synchronous not in ("full", "normal"):
            raise StorageError(f"synchronous must be full or normal, got {synchronous!r}")
        self.url = url
        self.path = _shown(url)
        commit = "on" if synchronous == "full" else "off"

        def configure(conn: psycopg.Connection) -> None:
            conn.execute(f"SET synchronous_commit = {commit}")
            conn.execute(f"SET lock_timeout = {LOCK_WAIT_MS}")
            conn.execute("SET TIME ZONE 'UTC'")
        try:
            self._pool = ConnectionPool(url, min_size=1, max_size=pool_size, open=True, timeout=30,
                                        kwargs={"autocommit": True}, configure=configure,
                                        name="geo-engine")
            self._pool.wait(timeout=15)
        except (psycopg.Error, OSError) as exc:
            raise StorageError(f"cannot open the database {self.path}: {exc}") from None
        except PoolTimeout:
            self._pool.close()
            raise StorageError(f"cannot open the database {self.path}: no connection within 15 s "
                               "(is the server running, and the URL right?)") from None
        self._held = threading.local()  # begin() .. commit(): the connection a thread holds
        self._versions = itertools.count(1)
        PostgreSQL.opened.add(self)

    # --- what SQLite's module offers ------------------------------------------------------------

    def error(self, exc: BaseException, doing: str = "") -> StorageError:
        """A database error as the one sentence an operator acts on (a
        :class:`WriteContention` when running the work again can succeed)."""
        said = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if self.retryable(exc):
            return WriteContention(f"{doing}{': ' if doing else ''}the database {self.path} could not "
                                   f"take the write now ({said}); try again")
        if isinstance(exc, pg_errors.DiskFull):
            why = f"the disk holding the database {self.path} is full: free some space, then try again"
        elif isinstance(exc, pg_errors.ReadOnlySqlTransaction):
            why = f"the database {self.path} is read-only (a standby, or default_transaction_read_only)"
        elif isinstance(exc, psycopg.OperationalError):
            why = f"the database {self.path} cannot be reached: {said}"
        else:
            why = f"the database {self.path} failed: {said}"
        return StorageError(f"{doing}{': ' if doing else ''}{why}")

    @staticmethod
    def retryable(exc: BaseException) -> bool:
        """Whether running the same work again, in a new transaction, can succeed."""
        return isinstance(exc, _RETRYABLE)

    @property
    def schema_version(self) -> int:
        rows = self.query("SELECT to_regclass('schema_version') IS NOT NULL")
        if not rows[0][0]:
            return 0
        return self.query("SELECT coalesce(max(version), 0) FROM schema_version")[0][0]

    def migrate(self, migrations: list[str]) -> None:
        """Apply ``migrations[v:]`` to a database at schema version ``v``, each step in one
        transaction, one instance at a time."""
        try:
            with self._pool.connection() as conn:
                with conn.transaction():
                    conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATE_LOCK,))
                    conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
                version = conn.execute("SELECT coalesce(max(version), 0) FROM schema_version").fetchone()[0]
                if version > len(migrations):
                    raise StorageError(f"the database {self.path} has schema version {version}, newer "
                                       f"than this geo-engine knows ({len(migrations)}); upgrade "
                                       "geo-engine")
                for target in range(version + 1, len(migrations) + 1):
                    with conn.transaction():
                        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATE_LOCK,))
                        now = conn.execute("SELECT coalesce(max(version), 0) FROM schema_version"
                                           ).fetchone()[0]
                        if now >= target:  # another instance applied it meanwhile
                            continue
                        conn.execute(migrations[target - 1])
                        conn.execute("INSERT INTO schema_version (version) VALUES (%s)", (target,))
        except psycopg.Error as exc:
            raise self.error(exc, "cannot open the database") from None

    def query(self, sql: str, args: tuple | list = ()) -> list[tuple]:
        """Read, whole, on a connection of the pool (its own snapshot)."""
        try:
            with self._pool.connection() as conn:
                return conn.execute(_sql(sql), tuple(args)).fetchall()
        except psycopg.Error as exc:
            raise self.error(exc) from None

    def data_version(self) -> int:
        """SQLite's ``data_version`` says whether another connection committed, from shared
        memory; another instance's commit here leaves no such trace. So this changes at every
        call: whoever relies on it reads the row again (a quiet ping checks its device's row)."""
        return next(self._versions)

    @contextmanager
    def atomic(self) -> Iterator[Tx]:
        """Run a block in one transaction: committed whole, or rolled back on any error. As
        with SQLite, what the server could not do (reach, disk, contention) is a StorageError;
        a statement it refuses (a constraint) is raised as psycopg raised it, for the caller."""
        try:
            with self._pool.connection() as conn, conn.transaction():
                tx = Tx(conn)
                yield tx
                tx.flush()
        except psycopg.OperationalError as exc:
            raise self.error(exc, "nothing was changed") from None

    def begin(self, wait: bool = True) -> Tx:
        """Open a transaction that this thread holds until :meth:`commit` or :meth:`rollback`
        (for the group commit). PostgreSQL has no database-wide write lock: it never waits."""
        conn = self._pool.getconn()
        # sent with the transaction's first statement
        self._held.tx = tx = Tx(conn, ("BEGIN", f"SET LOCAL lock_timeout = {LOCK_TIMEOUT_MS}"))
        return tx

    def commit(self) -> None:
        """Commit the transaction this thread holds (its writes held by :meth:`Tx.later` first)."""
        tx = self._held.tx
        self._held.tx = None
        conn = tx.conn
        try:
            tx.flush()
            if tx.opened:  # (a transaction that sent nothing never began)
                conn.execute("COMMIT")
        except BaseException:
            if conn.info.transaction_status != TransactionStatus.IDLE:
                conn.execute("ROLLBACK")
            raise
        finally:
            self._pool.putconn(conn)

    def rollback(self) -> None:
        conn = self._held.tx.conn
        self._held.tx = None
        try:
            if conn.info.transaction_status != TransactionStatus.IDLE:
                conn.execute("ROLLBACK")
        finally:
            self._pool.putconn(conn)

    def listen(self, on_change, stop: threading.Event) -> threading.Thread:
        """Call ``on_change(what)`` from a thread of its own whenever any instance commits a
        change counter's bump (``places``, ``campaigns``, ``keys``, ``tokens``), until ``stop``.

        A connection of its own LISTENs; a lost connection is opened again, and ``on_change(None)``
        says that changes may have been missed meanwhile."""
        def run() -> None:
            while not stop.is_set():
                try:
                    with psycopg.connect(self.url, autocommit=True) as conn:
                        conn.execute(f"LISTEN {CHANNEL}")
                        on_change(None)  # anything committed before the LISTEN
                        while not stop.is_set():
                            for note in conn.notifies(timeout=0.5, stop_after=64):
                                on_change(note.payload)
                except psycopg.Error:
                    stop.wait(1.0)
        thread = threading.Thread(target=run, name="pg-listen", daemon=True)
        thread.start()
        return thread

    def start_checkpointer(self) -> None:
        """Nothing to do: the server checkpoints its own WAL."""

    @property
    def checkpointing(self) -> bool:
        return False

    def close(self) -> None:
        PostgreSQL.opened.discard(self)
        self._pool.close()
