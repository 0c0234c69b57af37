"""The database: one connection and one object per concept, each holding its own SQL.

::

    Database
    ├── sql        SQLite or PostgreSQL: connections, atomic(), migrate() (knows no table)
    ├── places     stores and geofences
    ├── campaigns  campaign objects as sent
    ├── devices    device rows (versioned, cached), events, pushes, spend, replies
    ├── trips      trips to stores (SPEC 11): their whole records
    ├── webhooks   subscriptions, the outbox, deliveries, the delivery worker's lease
    ├── tallies    why campaigns were turned down, counted by day
    ├── logs       the event and push logs read for campaign results
    ├── apikeys    API key hashes
    ├── tokens     device token hashes
    └── geocodes   addresses already geocoded

Writes that span concepts (a geofence deleted and the visits open in it closed) run in one
``atomic()`` block, each concept's statement taking the transaction. The rules live above this
package; the PostgreSQL backend (:mod:`.postgres`) is a sibling of :mod:`.sqlite` that the same
concept classes run on.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .apikeys import ApiKeys
from .campaigns import Campaigns
from .changes import generations, generations_locked
from .devices import Devices
from .geocodes import Geocodes
from .logs import Logs
from .places import Places
from .schema import MIGRATIONS, PG_MIGRATIONS
from .sqlite import SQLite
from .tallies import Tallies
from .tokens import DeviceTokens
from .trips import Trips
from .webhooks import Webhooks


def is_postgres_url(text: str) -> bool:
    """Whether a database location is a PostgreSQL URL (else it is a SQLite file)."""
    return text.startswith(("postgresql://", "postgres://"))

__all__ = ["MIGRATIONS", "PG_MIGRATIONS", "Database", "is_postgres_url"]


class Database:
    """A geo-engine database file (created and migrated on open).

    Parameters
    ----------
    path : str or Path
        The SQLite file (``":memory:"`` for a private in-memory database, in tests), or a
        ``postgresql://`` URL (:mod:`.postgres`).
    synchronous : {"full", "normal"}
        What a commit survives (see :class:`~.sqlite.SQLite`).
    """

    def __init__(self, path: str | Path, synchronous: str = "full"):
        if is_postgres_url(str(path)):
            from .postgres import PostgreSQL

            self.sql = PostgreSQL(str(path), synchronous)
            self.sql.migrate(PG_MIGRATIONS)
        else:
            self.sql = SQLite(path, synchronous)
            self.sql.migrate(MIGRATIONS)
        self._listening = None
        self._stop_listening = threading.Event()
        self.closed = False
        self.places = Places(self.sql)
        self.campaigns = Campaigns(self.sql)
        self.devices = Devices(self.sql)
        self.tallies = Tallies(self.sql)
        self.trips = Trips(self.sql)
        self.webhooks = Webhooks(self.sql)
        self.logs = Logs(self.sql)
        self.apikeys = ApiKeys(self.sql)
        self.tokens = DeviceTokens(self.sql)
        self.geocodes = Geocodes(self.sql)

    @property
    def path(self) -> str:
        return self.sql.path

    @contextmanager
    def atomic(self) -> Iterator[sqlite3.Connection]:
        """One write transaction across concepts: committed whole, or rolled back on any error."""
        with self.sql.atomic() as tx:
            yield tx

    def generations(self, tx: sqlite3.Connection | None = None) -> dict[str, int]:
        """The change counters (``places``, ``campaigns``, ``keys``), for following other
        processes; read in ``tx`` when given (on PostgreSQL share-locked until it commits)."""
        if tx is not None and self.sql.dialect == "postgresql":
            return generations_locked(tx)
        return generations(self.sql if tx is None else tx)

    def data_version(self) -> int:
        """Changes whenever another connection has committed (:meth:`SQLite.data_version`)."""
        return self.sql.data_version()

    def start_checkpointer(self) -> None:
        self.sql.start_checkpointer()

    def follow(self, on_change) -> bool:
        """Have ``on_change(what)`` called as soon as another instance commits a change of
        places, campaigns, keys or tokens (PostgreSQL's LISTEN/NOTIFY); False where there is no
        such signal (SQLite: the counters are polled, :meth:`generations`)."""
        if self.sql.dialect != "postgresql" or self._listening is not None:
            return self._listening is not None
        self._listening = self.sql.listen(on_change, self._stop_listening)
        return True

    @property
    def followed(self) -> bool:
        """Whether other instances' changes come announced (:meth:`follow` is on)."""
        return self._listening is not None

    def close(self) -> None:
        self.closed = True  # (threads working on it behind, such as webhook delivery, stop)
        self._stop_listening.set()
        self.devices.close()  # quiet pings' positions written before the connection goes
        self.tallies.close()  # and the counts held
        self.sql.close()
