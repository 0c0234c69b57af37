"""Campaigns in the database: each stored as the JSON object its owner sent, by id.

SQL only; what a campaign means is :mod:`geo_engine.campaigns`.
"""

from __future__ import annotations

import json

from .changes import bump
from .sqlite import SQLite

__all__ = ["Campaigns"]


class Campaigns:
    """The ``campaigns`` table."""

    def __init__(self, db: SQLite):
        self._db = db

    def bodies(self) -> list[dict]:
        """Every campaign object as stored, ordered by id."""
        return [json.loads(r[0]) for r in self._db.query("SELECT body FROM campaigns ORDER BY id")]

    def put(self, campaign_id: str, body: dict, budgeted: bool = False) -> None:
        self.put_many([(campaign_id, body)], {campaign_id} if budgeted else frozenset())

    def put_many(self, items: list[tuple[str, dict]], budgeted: set[str] | frozenset = frozenset()
                 ) -> None:
        """Create or replace campaigns, all in one transaction. Each of ``budgeted`` (those
        with a total budget) gets its spend counted from the push log, in the same transaction:
        from then on the pings that push it keep the count (:meth:`Devices.record_push`)."""
        with self._db.atomic() as tx:
            bump(tx, "campaigns")  # first: a ping deciding on the old campaigns is waited for
            tx.executemany("INSERT INTO campaigns (id, body) VALUES (?, ?) ON CONFLICT(id) DO "
                           "UPDATE SET body=excluded.body, updated_at=excluded.updated_at",
                           [(cid, json.dumps(body)) for cid, body in items])
            for cid in sorted(budgeted):
                tx.execute("INSERT INTO campaign_spend (campaign_id, pushes) VALUES "
                           "(?, (SELECT count(*) FROM pushes WHERE campaign_id = ?)) "
                           "ON CONFLICT (campaign_id) DO UPDATE SET pushes = excluded.pushes",
                           (cid, cid))

    def delete(self, campaign_id: str) -> bool:
        """Delete a campaign; return whether it existed."""
        with self._db.atomic() as tx:
            bump(tx, "campaigns")
            return tx.execute("DELETE FROM campaigns WHERE id = ?", (campaign_id,)).rowcount > 0
