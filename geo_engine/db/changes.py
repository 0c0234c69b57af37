"""Change counters: how each process on one database notices what another one changed.

Every write to stores or geofences bumps ``places``, every write to campaigns ``campaigns``, in
the same transaction as the change. A process compares the counters it built its snapshot from
with the database's and rebuilds what changed. SQL only.
"""

from __future__ import annotations

__all__ = ["bump", "generations"]


def generations(db) -> dict[str, int]:
    """The change counters: ``places`` (stores, geofences), ``campaigns`` and ``keys`` (read
    in the caller's transaction when given its connection)."""
    sql = "SELECT key, value FROM meta"
    return dict(db.query(sql) if hasattr(db, "query") else db.execute(sql).fetchall())


def bump(tx, what: str) -> None:
    """Count a change of ``what`` (inside the transaction that makes it)."""
    tx.execute("UPDATE meta SET value = value + 1 WHERE key = ?", (what,))
