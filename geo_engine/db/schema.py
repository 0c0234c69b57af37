"""The schema: one migration a version, applied in order (``PRAGMA user_version`` says which).

SQL only. A later release appends a step; it never edits one that has shipped, so an older file
upgrades in place. The device-keyed tables (devices, events, pushes, replies) carry
``device_id`` first in every key, as a later distributed database would shard them.
"""

from __future__ import annotations

__all__ = ["MIGRATIONS", "PG_MIGRATIONS"]

# version 9, the same on both backends but for the counter's integer type
_RESULTS_STEP = """
    ALTER TABLE events ADD COLUMN campaign_id TEXT;
    CREATE INDEX events_store ON events(store_id, ts);
    CREATE INDEX events_campaign ON events(campaign_id, ts) WHERE campaign_id IS NOT NULL;
    CREATE INDEX pushes_campaign_ts ON pushes(campaign_id, ts);
    DROP INDEX pushes_campaign;
    CREATE TABLE rejections (
        campaign_id TEXT NOT NULL,
        day TEXT NOT NULL,
        reason TEXT NOT NULL,
        n {count} NOT NULL,
        PRIMARY KEY (campaign_id, day, reason)
    );
    """


# version 10, the same on both backends but for the identity columns: trips (SPEC 11; a device's
# open trip is also in its row, so the ping that moves it reads nothing more and writes under the
# row's version), and webhooks (SPEC 12): subscriptions, the outbox a ping's events are written to
# in its transaction, the deliveries made of it, and the lease that makes one delivery worker a
# database
_TRIPS_WEBHOOKS_STEP = """
    ALTER TABLE devices ADD COLUMN trip TEXT;
    ALTER TABLE events ADD COLUMN trip_id TEXT;
    CREATE TABLE trips (
        trip_id TEXT PRIMARY KEY,
        device_id TEXT NOT NULL,
        store_id TEXT NOT NULL,
        mode TEXT NOT NULL,
        approaching_s DOUBLE PRECISION NOT NULL,
        metadata TEXT NOT NULL DEFAULT '{{}}',
        status TEXT NOT NULL,
        created_ts DOUBLE PRECISION NOT NULL,
        updated_ts DOUBLE PRECISION NOT NULL,
        approaching_ts DOUBLE PRECISION,
        arrived_ts DOUBLE PRECISION,
        ended_ts DOUBLE PRECISION,
        arrived_elsewhere TEXT,
        distance_m DOUBLE PRECISION,
        eta_s DOUBLE PRECISION
    );
    CREATE INDEX trips_store ON trips(store_id, created_ts);
    CREATE INDEX trips_device ON trips(device_id);
    CREATE UNIQUE INDEX trips_one_open ON trips(device_id)
        WHERE status IN ('started', 'approaching', 'arrived');
    CREATE INDEX trips_open ON trips(created_ts) WHERE status IN ('started', 'approaching');
    CREATE TABLE webhooks (
        id TEXT PRIMARY KEY,
        url TEXT NOT NULL,
        events TEXT NOT NULL,
        enabled INTEGER NOT NULL DEFAULT 1,
        secret TEXT NOT NULL,
        created_ts DOUBLE PRECISION NOT NULL,
        updated_ts DOUBLE PRECISION NOT NULL
    );
    CREATE TABLE outbox (
        id {identity},
        webhook_id TEXT NOT NULL,
        event_id TEXT NOT NULL,
        device_id TEXT NOT NULL,
        type TEXT NOT NULL,
        ts DOUBLE PRECISION NOT NULL,
        payload TEXT NOT NULL,
        delivery_id BIGINT
    );
    CREATE INDEX outbox_waiting ON outbox(webhook_id, id) WHERE delivery_id IS NULL;
    CREATE INDEX outbox_delivery ON outbox(delivery_id);
    CREATE INDEX outbox_ts ON outbox(webhook_id, ts);
    CREATE TABLE deliveries (
        id {identity},
        webhook_id TEXT NOT NULL,
        msg_id TEXT NOT NULL,
        status TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        last_error TEXT,
        n INTEGER NOT NULL,
        oldest_ts DOUBLE PRECISION NOT NULL,
        created_ts DOUBLE PRECISION NOT NULL,
        next_ts DOUBLE PRECISION NOT NULL,
        done_ts DOUBLE PRECISION
    );
    CREATE INDEX deliveries_webhook ON deliveries(webhook_id, id);
    CREATE INDEX deliveries_open ON deliveries(webhook_id) WHERE status = 'pending';
    CREATE TABLE leases (name TEXT PRIMARY KEY, holder TEXT NOT NULL, until_ts DOUBLE PRECISION NOT NULL);
    INSERT INTO meta (key, value) VALUES ('webhooks', 0);
    """

MIGRATIONS: list[str] = [
    # version 1: stores and their geofences
    """
    CREATE TABLE stores (
        id TEXT PRIMARY KEY,
        lat REAL NOT NULL,
        lon REAL NOT NULL,
        name TEXT NOT NULL DEFAULT '',
        tags TEXT NOT NULL DEFAULT '[]',
        timezone TEXT,
        opening_hours TEXT,
        address TEXT NOT NULL DEFAULT '',
        metadata TEXT NOT NULL DEFAULT '{}',
        updated_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
    );
    CREATE TABLE geofences (
        id TEXT PRIMARY KEY,
        store_id TEXT NOT NULL REFERENCES stores(id),
        name TEXT NOT NULL DEFAULT '',
        lat REAL,
        lon REAL,
        radius_m REAL,
        geometry TEXT,
        tags TEXT NOT NULL DEFAULT '[]',
        enabled INTEGER NOT NULL DEFAULT 1,
        expires_at TEXT,
        metadata TEXT NOT NULL DEFAULT '{}',
        updated_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
        CHECK ((radius_m IS NULL) <> (geometry IS NULL))
    );
    CREATE INDEX geofences_store ON geofences(store_id);
    """,
    # version 2: campaigns, device state, the event and push log, replies, API keys
    """
    CREATE TABLE campaigns (
        id TEXT PRIMARY KEY,
        body TEXT NOT NULL,
        updated_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
    );
    CREATE TABLE devices (
        device_id TEXT PRIMARY KEY,
        last_ts REAL, last_lat REAL, last_lon REAL, last_accuracy_m REAL,
        last_offer_ts REAL,
        opted_out INTEGER NOT NULL DEFAULT 0
    );
    CREATE TABLE visits (
        device_id TEXT NOT NULL,
        geofence_id TEXT NOT NULL,
        store_id TEXT NOT NULL,
        entered_ts REAL NOT NULL,
        dwell_done INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (device_id, geofence_id)
    );
    CREATE TABLE events (
        id INTEGER PRIMARY KEY,
        device_id TEXT NOT NULL,
        ts REAL NOT NULL,
        type TEXT NOT NULL,
        geofence_id TEXT NOT NULL,
        store_id TEXT NOT NULL,
        confidence TEXT,
        duration_s REAL,
        ping_id TEXT
    );
    CREATE INDEX events_device ON events(device_id, ts);
    CREATE TABLE pushes (
        id INTEGER PRIMARY KEY,
        device_id TEXT NOT NULL,
        campaign_id TEXT NOT NULL,
        store_id TEXT NOT NULL,
        geofence_id TEXT,
        ts REAL NOT NULL,
        local_day TEXT NOT NULL,
        distance_m REAL,
        ping_id TEXT
    );
    CREATE INDEX pushes_device_campaign ON pushes(device_id, campaign_id, ts);
    CREATE TABLE campaign_spend (campaign_id TEXT PRIMARY KEY, pushes INTEGER NOT NULL);
    CREATE TABLE replies (
        device_id TEXT NOT NULL,
        ping_id TEXT NOT NULL,
        body BLOB NOT NULL,
        PRIMARY KEY (device_id, ping_id)
    );
    CREATE TABLE api_keys (
        id INTEGER PRIMARY KEY,
        kind TEXT NOT NULL CHECK (kind IN ('admin', 'publishable')),
        key_hash TEXT NOT NULL UNIQUE,
        prefix TEXT NOT NULL,
        created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
        revoked_at TEXT
    );
    """,
    # version 3: each address geocoded once per geocoder (lat NULL: the geocoder found nothing)
    """
    CREATE TABLE geocodes (
        geocoder TEXT NOT NULL,
        address TEXT NOT NULL,
        lat REAL,
        lon REAL,
        at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
        PRIMARY KEY (geocoder, address)
    );
    """,
    # version 4: a device's whole state in its one row, so a ping reads and writes one row (or,
    # with the state cached in the process, only writes it). ``version`` is a random number
    # drawn at every write: a worker whose cached copy is stale sees its conditional write
    # refused, re-reads and decides again. visits: geofence id -> [store id, entered ts,
    # dwell done]; history: campaign id -> [pushes, last push ts, {store's local day: pushes}]
    # (the push log stays the record; history is what the caps need of it). A trigger keeps
    # each campaign's spend with its push log (one statement a push fewer).
    """
    ALTER TABLE devices ADD COLUMN version INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE devices ADD COLUMN visits TEXT NOT NULL DEFAULT '{}';
    ALTER TABLE devices ADD COLUMN history TEXT NOT NULL DEFAULT '{}';
    UPDATE devices SET visits = coalesce((
        SELECT json_group_object(geofence_id, json_array(store_id, entered_ts, dwell_done))
        FROM visits v WHERE v.device_id = devices.device_id), '{}');
    UPDATE devices SET history = coalesce((
        SELECT json_group_object(campaign_id, json_array(total, last, json(days))) FROM (
            SELECT campaign_id, sum(n) AS total, max(last) AS last,
                   json_group_object(local_day, n) AS days FROM (
                SELECT campaign_id, local_day, count(*) AS n, max(ts) AS last FROM pushes p
                WHERE p.device_id = devices.device_id GROUP BY campaign_id, local_day)
            GROUP BY campaign_id)), '{}');
    DROP TABLE visits;
    CREATE TRIGGER pushes_spend AFTER INSERT ON pushes BEGIN
        INSERT INTO campaign_spend (campaign_id, pushes) VALUES (NEW.campaign_id, 1)
        ON CONFLICT(campaign_id) DO UPDATE SET pushes = pushes + 1;
    END;
    """,
    # version 5: change counters, so each worker process on one file notices what another one
    # changed: 'places' (stores and geofences: rebuild the indexes), 'campaigns'
    """
    CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
    INSERT INTO meta (key, value) VALUES ('places', 0), ('campaigns', 0);
    """,
    # version 6: a change counter for the API keys, so a server keeps the active keys' hashes in
    # memory and re-reads them only when a key was created, rotated or revoked
    """
    INSERT INTO meta (key, value) VALUES ('keys', 0);
    """,
    # version 7: what a phone may not forge. A reply remembers a digest of the ping it answered
    # (a ping_id reused with another body is refused); devices' tokens, stored hashed, with a
    # change counter; whether pings need one: on for a database made now (nothing in it yet),
    # off for one already serving phones that have none (an operator turns it on)
    """
    ALTER TABLE replies ADD COLUMN request TEXT;
    CREATE TABLE device_tokens (
        device_id TEXT PRIMARY KEY,
        token_hash TEXT NOT NULL,
        created_ts REAL NOT NULL
    );
    INSERT INTO meta (key, value) VALUES ('tokens', 0);
    INSERT INTO meta (key, value) SELECT 'require_device_token',
        NOT EXISTS (SELECT 1 FROM devices) AND NOT EXISTS (SELECT 1 FROM stores)
        AND NOT EXISTS (SELECT 1 FROM campaigns);
    """,
    # version 8: a campaign's spend is kept for campaigns with a budget only, by the ping that
    # pushes (in its transaction, on the row it read), and counted afresh from the push log when
    # a budget is set; no trigger on every push. On a server shared by many instances a trigger
    # made every push take its campaign's row lock in whatever order pushes came, and instances
    # waited on each other's transactions; a budget's row is now locked by the pings it decides.
    """
    DROP TRIGGER IF EXISTS pushes_spend;
    CREATE INDEX pushes_campaign ON pushes(campaign_id);
    """,
    # version 9: campaign results. A held_out event (the decision's "would have pushed this, but
    # the device is in the campaign's control group") names its campaign; visits are read by
    # store and time, a campaign's pushes and holdouts by campaign and time; the reasons
    # campaigns were turned down are kept as daily counts, not a row a ping
    _RESULTS_STEP.format(count="INTEGER"),
    # version 10: trips and webhooks
    _TRIPS_WEBHOOKS_STEP.format(identity="INTEGER PRIMARY KEY"),
]


_NOW = "to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')"

#: The same schema for PostgreSQL, step for step (version ``k`` here is version ``k`` above):
#: PostgreSQL's types (BIGINT for the random row versions, DOUBLE PRECISION, BYTEA), identity
#: columns, the spend trigger as a function, and every table keyed by device carrying
#: ``device_id`` in its primary key (events and pushes: ``(device_id, id)``), as Citus needs to
#: distribute them by device (docs/scaling.md). Steps that converted rows an older SQLite file
#: held have nothing to convert here: a PostgreSQL database starts at this release.
_PG_STEPS: list[str] = [
    f"""
    CREATE TABLE stores (
        id TEXT PRIMARY KEY,
        lat DOUBLE PRECISION NOT NULL,
        lon DOUBLE PRECISION NOT NULL,
        name TEXT NOT NULL DEFAULT '',
        tags TEXT NOT NULL DEFAULT '[]',
        timezone TEXT,
        opening_hours TEXT,
        address TEXT NOT NULL DEFAULT '',
        metadata TEXT NOT NULL DEFAULT '{{}}',
        updated_at TEXT NOT NULL DEFAULT {_NOW}
    );
    CREATE TABLE geofences (
        id TEXT PRIMARY KEY,
        store_id TEXT NOT NULL REFERENCES stores(id),
        name TEXT NOT NULL DEFAULT '',
        lat DOUBLE PRECISION,
        lon DOUBLE PRECISION,
        radius_m DOUBLE PRECISION,
        geometry TEXT,
        tags TEXT NOT NULL DEFAULT '[]',
        enabled INTEGER NOT NULL DEFAULT 1,
        expires_at TEXT,
        metadata TEXT NOT NULL DEFAULT '{{}}',
        updated_at TEXT NOT NULL DEFAULT {_NOW},
        CHECK ((radius_m IS NULL) <> (geometry IS NULL))
    );
    CREATE INDEX geofences_store ON geofences(store_id);
    """,
    f"""
    CREATE TABLE campaigns (
        id TEXT PRIMARY KEY,
        body TEXT NOT NULL,
        updated_at TEXT NOT NULL DEFAULT {_NOW}
    );
    CREATE TABLE devices (
        device_id TEXT PRIMARY KEY,
        last_ts DOUBLE PRECISION, last_lat DOUBLE PRECISION, last_lon DOUBLE PRECISION,
        last_accuracy_m DOUBLE PRECISION,
        last_offer_ts DOUBLE PRECISION,
        opted_out INTEGER NOT NULL DEFAULT 0
    );
    CREATE TABLE events (
        id BIGINT GENERATED BY DEFAULT AS IDENTITY,
        device_id TEXT NOT NULL,
        ts DOUBLE PRECISION NOT NULL,
        type TEXT NOT NULL,
        geofence_id TEXT NOT NULL,
        store_id TEXT NOT NULL,
        confidence TEXT,
        duration_s DOUBLE PRECISION,
        ping_id TEXT,
        PRIMARY KEY (device_id, id)
    );
    CREATE INDEX events_device ON events(device_id, ts);
    CREATE TABLE pushes (
        id BIGINT GENERATED BY DEFAULT AS IDENTITY,
        device_id TEXT NOT NULL,
        campaign_id TEXT NOT NULL,
        store_id TEXT NOT NULL,
        geofence_id TEXT,
        ts DOUBLE PRECISION NOT NULL,
        local_day TEXT NOT NULL,
        distance_m DOUBLE PRECISION,
        ping_id TEXT,
        PRIMARY KEY (device_id, id)
    );
    CREATE INDEX pushes_device_campaign ON pushes(device_id, campaign_id, ts);
    CREATE TABLE campaign_spend (campaign_id TEXT PRIMARY KEY, pushes BIGINT NOT NULL);
    CREATE TABLE replies (
        device_id TEXT NOT NULL,
        ping_id TEXT NOT NULL,
        body BYTEA NOT NULL,
        PRIMARY KEY (device_id, ping_id)
    );
    CREATE TABLE api_keys (
        id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
        kind TEXT NOT NULL CHECK (kind IN ('admin', 'publishable')),
        key_hash TEXT NOT NULL UNIQUE,
        prefix TEXT NOT NULL,
        created_at TEXT NOT NULL DEFAULT {_NOW},
        revoked_at TEXT
    );
    """,
    f"""
    CREATE TABLE geocodes (
        geocoder TEXT NOT NULL,
        address TEXT NOT NULL,
        lat DOUBLE PRECISION,
        lon DOUBLE PRECISION,
        at TEXT NOT NULL DEFAULT {_NOW},
        PRIMARY KEY (geocoder, address)
    );
    """,
    """
    ALTER TABLE devices ADD COLUMN version BIGINT NOT NULL DEFAULT 0;
    ALTER TABLE devices ADD COLUMN visits TEXT NOT NULL DEFAULT '{}';
    ALTER TABLE devices ADD COLUMN history TEXT NOT NULL DEFAULT '{}';
    CREATE FUNCTION pushes_spend() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        INSERT INTO campaign_spend (campaign_id, pushes) VALUES (NEW.campaign_id, 1)
        ON CONFLICT (campaign_id) DO UPDATE SET pushes = campaign_spend.pushes + 1;
        RETURN NEW;
    END $$;
    CREATE TRIGGER pushes_spend AFTER INSERT ON pushes FOR EACH ROW EXECUTE FUNCTION pushes_spend();
    """,
    """
    CREATE TABLE meta (key TEXT PRIMARY KEY, value BIGINT NOT NULL);
    INSERT INTO meta (key, value) VALUES ('places', 0), ('campaigns', 0);
    """,
    """
    INSERT INTO meta (key, value) VALUES ('keys', 0);
    """,
    """
    ALTER TABLE replies ADD COLUMN request TEXT;
    CREATE TABLE device_tokens (
        device_id TEXT PRIMARY KEY,
        token_hash TEXT NOT NULL,
        created_ts DOUBLE PRECISION NOT NULL
    );
    INSERT INTO meta (key, value) VALUES ('tokens', 0);
    INSERT INTO meta (key, value) SELECT 'require_device_token',
        (NOT EXISTS (SELECT 1 FROM devices) AND NOT EXISTS (SELECT 1 FROM stores)
         AND NOT EXISTS (SELECT 1 FROM campaigns))::int;
    """,
    """
    DROP TRIGGER IF EXISTS pushes_spend ON pushes;
    DROP FUNCTION IF EXISTS pushes_spend();
    CREATE INDEX pushes_campaign ON pushes(campaign_id);
    """,
    _RESULTS_STEP.format(count="BIGINT"),
    _TRIPS_WEBHOOKS_STEP.format(identity="BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY"),
]

# every text compares and sorts by code point, as in SQLite and Python, whatever the database's
# locale: stores are sorted by id, and pages of ids go by "id > ?"
PG_MIGRATIONS: list[str] = [step.replace(" TEXT", ' TEXT COLLATE "C"') for step in _PG_STEPS]
