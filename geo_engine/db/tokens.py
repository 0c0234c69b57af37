"""Device tokens in the database: each registered device's token, stored hashed.

SQL only; making and checking tokens, and when they are needed, is :mod:`geo_engine.tokens`.
"""

from __future__ import annotations

import time

from .changes import bump
from .sqlite import SQLite

__all__ = ["DeviceTokens"]


class DeviceTokens:
    """The ``device_tokens`` table, its change counter and the database's own
    ``require_device_token`` switch."""

    def __init__(self, db: SQLite):
        self._db = db

    def hash_of(self, device_id: str) -> str | None:
        """The stored hash of a device's token, or None when it has none."""
        rows = self._db.query("SELECT token_hash FROM device_tokens WHERE device_id = ?", (device_id,))
        return rows[0][0] if rows else None

    def register(self, device_id: str, token_hash: str, replace: bool) -> bool:
        """Store a device's token hash; return False, storing nothing, when it has one already
        and ``replace`` is false. A replaced token bumps the change counter (other processes
        forget the old one)."""
        with self._db.atomic() as tx:
            if replace:
                cur = tx.execute("INSERT INTO device_tokens (device_id, token_hash, created_ts) "
                                 "VALUES (?, ?, ?) ON CONFLICT(device_id) DO UPDATE SET "
                                 "token_hash = excluded.token_hash, created_ts = excluded.created_ts",
                                 (device_id, token_hash, time.time()))
                bump(tx, "tokens")
                return True
            cur = tx.execute("INSERT INTO device_tokens (device_id, token_hash, created_ts) "
                             "VALUES (?, ?, ?) ON CONFLICT(device_id) DO NOTHING",
                             (device_id, token_hash, time.time()))
            return cur.rowcount == 1

    def latest(self, limit: int) -> list[tuple[str, str]]:
        """(device id, token hash) of the ``limit`` devices registered last."""
        return self._db.query("SELECT device_id, token_hash FROM device_tokens "
                              "ORDER BY created_ts DESC LIMIT ?", (limit,))

    def generation(self) -> int:
        """The tokens' change counter (a token replaced or a device forgotten)."""
        return self._db.query("SELECT value FROM meta WHERE key = 'tokens'")[0][0]

    def required(self) -> bool:
        """Whether this database asks pings for device tokens (on when it was made empty by a
        geo-engine that knows them; off for one that served phones before)."""
        rows = self._db.query("SELECT value FROM meta WHERE key = 'require_device_token'")
        return bool(rows and rows[0][0])
