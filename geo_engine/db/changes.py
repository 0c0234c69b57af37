"""Change counters: how each process on one database notices what another one changed.

Every write to stores or geofences bumps ``places``, every write to campaigns ``campaigns``, in
the same transaction as the change. A process compares the counters it built its snapshot from
with the database's and rebuilds what changed. SQL only.
"""

from __future__ import annotations

__all__ = ["bump", "generations", "generations_locked"]


def generations(db) -> dict[str, int]:
    """The change counters: ``places`` (stores, geofences), ``campaigns`` and ``keys`` (read
    in the caller's transaction when given its connection)."""
    sql = "SELECT key, value FROM meta"
    return dict(db.query(sql) if hasattr(db, "query") else db.execute(sql).fetchall())


def bump(tx, what: str) -> None:
    """Count a change of ``what`` (inside the transaction that makes it); on PostgreSQL also
    announce it to every instance listening (delivered when the transaction commits)."""
    tx.execute("UPDATE meta SET value = value + 1 WHERE key = ?", (what,))
    if getattr(tx, "dialect", "sqlite") == "postgresql":
        tx.execute("SELECT pg_notify('geo_engine_changes', ?)", (what,))


def generations_locked(tx) -> dict[str, int]:
    """The change counters read in a ping's transaction on PostgreSQL, each row share-locked
    until it commits: a change to places or campaigns committed by another instance meanwhile
    waits for this transaction, so no decision is made on what has since changed (SQLite's
    one writer at a time does the same)."""
    if tx.generations is None:  # once a transaction: the locks hold what was read
        tx.generations = dict(tx.execute("SELECT key, value FROM meta ORDER BY key FOR SHARE").fetchall())
    return tx.generations
