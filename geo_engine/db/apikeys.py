"""API keys in the database, stored as hashes with a short prefix to tell them apart.

SQL only; making and checking keys is :mod:`geo_engine.apikeys`.
"""

from __future__ import annotations

from datetime import UTC, datetime

from .changes import bump
from .sqlite import SQLite

__all__ = ["ApiKeys"]


class ApiKeys:
    """The ``api_keys`` table."""

    def __init__(self, db: SQLite):
        self._db = db

    def active(self) -> list[tuple[str, str, str]]:
        """Active keys: (kind, prefix, created_at)."""
        return self._db.query("SELECT kind, prefix, created_at FROM api_keys WHERE revoked_at "
                              "IS NULL ORDER BY id")

    def kind_of(self, key_hash: str) -> str | None:
        """The kind of the active key with this hash, or None."""
        rows = self._db.query("SELECT kind FROM api_keys WHERE key_hash = ? AND revoked_at IS "
                              "NULL", (key_hash,))
        return rows[0][0] if rows else None

    def active_hashes(self) -> dict[str, str]:
        """Every active key's hash -> its kind."""
        return dict(self._db.query("SELECT key_hash, kind FROM api_keys WHERE revoked_at IS NULL"))

    def generation(self) -> int:
        """The keys' change counter (bumped by every :meth:`replace`)."""
        return self._db.query("SELECT value FROM meta WHERE key = 'keys'")[0][0]

    def replace(self, kind: str, key_hash: str, prefix: str) -> None:
        """Revoke the active keys of a kind and store a new one."""
        with self._db.atomic() as tx:
            bump(tx, "keys")
            now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
            tx.execute("UPDATE api_keys SET revoked_at = ? WHERE kind = ? AND revoked_at IS NULL "
                       "AND key_hash != ?", (now, kind, key_hash))
            tx.execute("INSERT INTO api_keys (kind, key_hash, prefix) VALUES (?, ?, ?) "
                       "ON CONFLICT (key_hash) DO NOTHING", (kind, key_hash, prefix))
