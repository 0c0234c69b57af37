"""The Engine: a facade over the database and the snapshot that pings, queries and admin share.

``geo-engine nearest --json`` and ``GET /v1/stores/nearest`` both call :meth:`Engine.nearest`,
``locate`` both call :meth:`Engine.locate`, and a ping is :meth:`Engine.handle_ping` from any
surface, so the surfaces cannot drift. Every method returns values (:mod:`geo_engine.model`);
the edges serialize them.

What a ping reads is ``engine.snapshot``, replaced whole (one assignment) when places or
campaigns change here or in another process on the same database; see
:mod:`geo_engine.snapshot`. The steps of a ping are :mod:`geo_engine.ping_flow`'s
(``engine.pings``); trips are :mod:`geo_engine.trip_desk`'s (``engine.trips``), webhook
subscriptions :mod:`geo_engine.webhook_desk`'s (``engine.webhooks``), and the webhook delivery
worker :mod:`geo_engine.delivery`'s (``engine.delivery``).

It holds no SQL (``db/``), no geometry (``spatial/``) and no rule (``devices``, ``decide``):
it keeps the snapshot current and hands each verb to the module that does it.
"""

from __future__ import annotations

import gc
import threading
import time
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

from .campaign_results import campaign_results, checked_query
from .campaigns import Campaign, parse_campaign, parse_campaigns
from .config import Settings
from .db import Database
from .delivery import Deliverer
from .errors import Conflict, InvalidInput, NotFound, ValidationFailed
from .geodesy import check_lat_lon
from .io.places import (
    Dataset,
    FileLimits,
    check_references,
    derive_timezones,
    export_collection,
    geofence_feature,
    load_files,
    parse_geojson,
)
from .model import (
    Location,
    NearbyFence,
    Ping,
    PingAnswer,
    Store,
    StoreHit,
)
from .ping_flow import PingFlow
from .snapshot import FOLLOWED, Places, Snapshot
from .tokens import TokenCache, new_token, token_hash
from .trip_desk import TripDesk
from .webhook_desk import WebhookDesk

__all__ = ["Engine"]


class Engine:
    """Stores, geofences and campaigns in a database, and a snapshot that follows every change.

    Parameters
    ----------
    settings : Settings, optional
        Defaults to :meth:`Settings.from_env`.
    database : Database, optional
        Defaults to the file ``settings.db``.
    """

    def __init__(self, settings: Settings | None = None, database: Database | None = None):
        #: when a list, handle_ping appends (index, state, rules, record, commit) seconds per ping
        self.stage_times: list[tuple[float, float, float, float, float]] | None = None
        self.settings = settings or Settings.from_env()
        self.db = database or Database(self.settings.database, self.settings.synchronous)
        self._serving = False  # start_serving: build what pings query in every new snapshot
        self._rebuilding = threading.Lock()  # held only to swap a built snapshot in
        #: devices' token hashes in memory (SPEC 6.1), for the API's checks
        self.tokens = TokenCache(self.db.tokens, check_s=self.settings.reload_check_s)
        self._tokens_required: bool | None = None
        #: the webhook delivery worker (started with the server; one at a time a database works)
        st = self.settings
        self.delivery = Deliverer(self.db, lambda: self.refresh().webhooks, st.webhook_retry_s,
                                  st.webhook_backoff_s, st.webhook_timeout_s,
                                  keep_s=st.webhook_keep_days * 86_400.0)
        self.pings = PingFlow(self)  # the ping path (snapshot, state, rules, record, answer)
        self.trips = TripDesk(self)  # trips started, ended, listed, expired (SPEC 11)
        self.webhooks = WebhookDesk(self)  # subscriptions, deliveries, replays (SPEC 12)
        self.snapshot: Snapshot
        self.reload()

    def start_serving(self) -> int:
        """Ready a long-running server (``serve``; bench_ping does the same): the grids pings
        query (in this snapshot and every later one), a checkpointer thread, the recent
        devices' rows in memory, and everything loaded so far moved out of the cyclic garbage
        collector's sight (``gc.freeze``: with many devices in memory a full collection stalls
        pings). Return how many devices were read."""
        self._serving = True
        self.snapshot.prepare()
        self.db.start_checkpointer()
        self.db.follow(self._changed_elsewhere)  # PostgreSQL: told at once, not polled
        self.db.devices.start_flusher()  # quiet pings' positions, written behind (handle_ping)
        self.db.tallies.start_flusher()  # the reasons campaigns were turned down, counted behind
        self.delivery.start()  # webhooks: the outbox posted (by whichever process holds the lease)
        self.trips.start_sweeper()  # trips that never arrived, expired
        n = self.db.devices.warm()
        self.tokens.warm()  # and their tokens: a first ping of each reads nothing
        gc.collect()
        gc.freeze()
        return n

    @property
    def serving(self) -> bool:
        """Whether :meth:`start_serving` readied this engine for a long-running server."""
        return self._serving

    @property
    def path(self) -> str:
        """Where the database is (a file path)."""
        return self.db.path

    # --- the snapshot --------------------------------------------------------------------------

    def reload(self) -> None:
        """Rebuild the snapshot from the database (places and campaigns), then swap it in."""
        seen = self.db.generations()  # read first: a change made meanwhile shows next time
        self._checked = time.monotonic()
        places = Places.load(self.db.places)
        self._swap(Snapshot.build(places, self._read_campaigns(), seen, self._serving,
                                  self.db.webhooks.all()))

    def reload_campaigns(self) -> None:
        """Rebuild the snapshot's campaigns over the same places, then swap it in."""
        current = self.snapshot
        now = self.db.generations()
        seen = {**current.generations, "campaigns": now["campaigns"], "webhooks": now["webhooks"]}
        self._swap(Snapshot.build(current.places, self._read_campaigns(), seen, self._serving,
                                  self.db.webhooks.all()))

    def _swap(self, built: Snapshot) -> None:
        """Put a snapshot in force unless one read later already is (builds run concurrently:
        an import's thread and a ping's, each reading the database without a lock of the
        engine's, so that a ping holding a transaction never waits for a build that waits
        for it)."""
        with self._rebuilding:
            current = getattr(self, "snapshot", None)
            if current is None:
                self.snapshot = built
                return
            have, new = current.generations, built.generations
            if all(new[k] >= have[k] for k in FOLLOWED):
                self.snapshot = built
                return
            newer_campaigns = new["campaigns"] > have["campaigns"] or \
                new["webhooks"] > have["webhooks"]
        if newer_campaigns:  # newer campaigns over older places: over the places in force
            self.reload_campaigns()

    def _read_campaigns(self) -> list[Campaign]:
        return [parse_campaign(body) for body in self.db.campaigns.bodies()]

    def _changed_elsewhere(self, what: str | None) -> None:
        """Another instance committed a change (``what``; None: maybe some were missed): the
        next ping follows it at once instead of at the next poll. (From the listener's thread:
        it only marks the time checked as long ago.)"""
        self._checked = float("-inf")

    def refresh(self) -> Snapshot:
        """The current snapshot, after following changes another process made on the same
        database (looked for at most every ``reload_check_s``; a ping's decision checks
        again, in its transaction)."""
        now = time.monotonic()
        if now - self._checked >= self.settings.reload_check_s:
            self._checked = now
            self.follow(self.db.generations())
        return self.snapshot

    def follow(self, seen: dict[str, int]) -> bool:
        """Rebuild what the change counters ``seen`` say changed; return whether anything did."""
        have = self.snapshot.generations
        if seen["places"] != have["places"]:
            self.reload()
        elif seen["campaigns"] != have["campaigns"] or seen["webhooks"] != have["webhooks"]:
            self.reload_campaigns()
        else:
            return False
        return True

    # --- files ---------------------------------------------------------------------------------

    def validate(self, paths: Sequence[str | Path]) -> Dataset:
        """Return what the files hold, or raise ValidationFailed listing every problem.

        Stores already in the database count as known to the files' geofences.
        """
        return load_files(paths, known_store_ids=self.db.places.store_ids(),
                          limits=self.file_limits)

    def import_files(self, paths: Sequence[str | Path]) -> tuple[dict[str, int], Dataset]:
        """Validate the files, then load them in one transaction (all or nothing); reindex."""
        data = self.validate(paths)
        return self._import(data), data

    def import_geojson(self, text: str, source: str = "request") -> dict[str, int]:
        """Validate a FeatureCollection and load it, all or nothing (the HTTP import)."""
        data, problems = parse_geojson(text, source, self.file_limits)
        problems += check_references(data, self.db.places.store_ids())
        if problems:
            raise ValidationFailed(problems)
        return self._import(data)

    @property
    def file_limits(self) -> FileLimits:
        return FileLimits(self.settings.max_features, self.settings.max_ring_vertices)

    def _import(self, data: Dataset) -> dict[str, int]:
        derive_timezones(data)
        counts = self.db.places.import_dataset(data.stores, data.geofences)
        self.reload()
        return counts

    # --- queries -------------------------------------------------------------------------------

    def counts(self) -> dict[str, int]:
        """How many stores, geofences and campaigns the database holds."""
        return {**self.db.places.counts(), "campaigns": len(self.refresh().campaigns)}

    def nearest(self, lat: float, lon: float, k: int | None = None,
                radius_m: float | None = None) -> list[StoreHit]:
        """Return the ``k`` nearest stores, or with ``radius_m`` every store within it.

        Nearest first, ties by store id; distances are WGS84 geodesic metres.
        """
        places = self.refresh().places
        lat, lon = check_lat_lon(lat, lon)
        if radius_m is not None:
            if not radius_m >= 0:
                raise InvalidInput(f"radius_m must be a number of metres >= 0, got {radius_m}")
            return places.within(lat, lon, radius_m)
        k = self.settings.default_k if k is None else k
        if k < 1:
            raise InvalidInput(f"k must be at least 1, got {k}")
        return places.nearest(lat, lon, k)

    def locate(self, lat: float, lon: float, accuracy_m: float = 0.0,
               at: datetime | None = None) -> Location:
        """Return the geofences a fix is in or touches (with confidence) and the nearest store.

        Touches no device state. Geofences are ordered by confidence, highest first, then id.
        """
        places = self.refresh().places
        lat, lon = check_lat_lon(lat, lon)
        if not accuracy_m >= 0:
            raise InvalidInput(f"accuracy_m must be a number of metres >= 0, got {accuracy_m}")
        return places.locate(lat, lon, accuracy_m, at)

    def nearby_geofences(self, lat: float, lon: float, limit: int = 20) -> list[NearbyFence]:
        """The ``limit`` geofences nearest by distance to their boundary (0 inside), as circles.

        Each is the geofence's enclosing circle (``lat``, ``lon``, ``radius_m``): what a phone
        hands to iOS or Android region monitoring. Nearest first, ties by id.
        """
        places = self.refresh().places
        lat, lon = check_lat_lon(lat, lon)
        if not 1 <= limit <= 1000:
            raise InvalidInput(f"limit must be from 1 to 1000, got {limit}")
        return places.nearby_fences(lat, lon, limit)

    def geofence_feature(self, geofence_id: str) -> dict:
        """One geofence as a GeoJSON Feature (properties as they would be imported)."""
        fence = self.refresh().places.geofence(geofence_id)
        if fence is None:
            raise NotFound(f"no geofence {geofence_id!r}")
        return geofence_feature(fence)

    def geofence_collection(self) -> dict:
        """Every geofence as one GeoJSON FeatureCollection, ordered by id."""
        fences = self.refresh().places.geofences
        return {"type": "FeatureCollection", "features": [geofence_feature(f) for f in fences]}

    # --- campaigns, geofences, devices ---------------------------------------------------------

    def campaigns(self) -> list[Campaign]:
        """Every campaign, enabled or not, ordered by id."""
        return self.refresh().campaigns

    def campaign(self, campaign_id: str) -> Campaign:
        for c in self.refresh().campaigns:
            if c.id == campaign_id:
                return c
        raise NotFound(f"no campaign {campaign_id!r}")

    def results(self, campaign_id: str, start: datetime | None = None, end: datetime | None = None,
                window_days: int | None = None, by: str | None = None) -> dict:
        """A campaign's results (SPEC 9; :mod:`geo_engine.campaign_results`) for the pushes and
        holdouts in ``[start, end)``: by default the 30 days to now, with the settings' window."""
        campaign = self.campaign(campaign_id)
        start, end, window = checked_query(start, end, window_days, by, self.settings.results_window_days)
        return campaign_results(self.db, self.refresh(), campaign, start, end, window,
                                self.settings.visit_min_dwell_s, by)

    def put_campaign(self, campaign_id: str, body: dict) -> Campaign:
        """Validate and store a campaign (create or replace); it applies from the next ping."""
        campaign = parse_campaign(body, campaign_id)
        self.db.campaigns.put(campaign.id, campaign.body, campaign.budget_total is not None)
        self.reload_campaigns()
        return campaign

    def put_campaigns(self, text: str, source: str = "") -> list[Campaign]:
        """Validate every campaign of a JSON file (one object or a list), then store them all
        in one transaction: all or nothing."""
        campaigns = parse_campaigns(text, source)
        self.db.campaigns.put_many([(c.id, c.body) for c in campaigns],
                                   {c.id for c in campaigns if c.budget_total is not None})
        self.reload_campaigns()
        return campaigns

    def delete_campaign(self, campaign_id: str) -> None:
        if not self.db.campaigns.delete(campaign_id):
            raise NotFound(f"no campaign {campaign_id!r}")
        self.reload_campaigns()

    def campaign_spend(self) -> dict[str, int]:
        """Pushes so far of every campaign that has any (its budget's spend)."""
        return self.db.devices.all_spend()

    def delete_geofence(self, geofence_id: str) -> None:
        """Delete a geofence; the visits open in it close without an exit (it is gone)."""
        with self.db.atomic() as tx:
            self.db.devices.drop_visits_in(tx, geofence_id)
            found = self.db.places.delete_geofence(tx, geofence_id)
        if not found:
            raise NotFound(f"no geofence {geofence_id!r}")
        self.reload()

    def store_page(self, limit: int = 100, after: str | None = None) -> list[Store]:
        """Up to ``limit`` stores ordered by id, after the id ``after`` (paging)."""
        return self.db.places.store_page(limit, after)

    def delete_store(self, store_id: str) -> list[str]:
        """Delete a store with its geofences (their open visits close without an exit); return
        the geofence ids deleted with it."""
        with self.db.atomic() as tx:
            fences = self.db.places.fence_ids_of(tx, store_id)
            for fid in fences:
                self.db.devices.drop_visits_in(tx, fid)
            found = self.db.places.delete_store(tx, store_id)
        if not found:
            raise NotFound(f"no store {store_id!r}")
        self.reload()
        return fences

    def export(self) -> dict:
        """Every store and geofence as one FeatureCollection that ``import`` takes back into an
        empty database unchanged (style properties at the top level, as they came in)."""
        return export_collection(self.db.places.stores(), self.refresh().places.geofences)

    def set_consent(self, device_id: str, location_offers: bool) -> None:
        Ping(device_id, 0.0, 0.0)  # the same device id rules as a ping
        self.db.devices.set_consent(device_id, location_offers)

    def forget_device(self, device_id: str) -> None:
        if not self.db.devices.forget(device_id):
            raise NotFound(f"no device {device_id!r}")
        self.tokens.forget(device_id)

    # --- device tokens (SPEC 6.1) --------------------------------------------------------------

    @property
    def tokens_required(self) -> bool:
        """Whether pings and opt-ins sent with the publishable key need the device's token (the
        setting, or when it is ``auto`` the database's own switch, read once)."""
        if self._tokens_required is None:
            setting = self.settings.require_device_token
            self._tokens_required = self.db.tokens.required() if setting == "auto" else \
                setting == "true"
        return self._tokens_required

    def register_device(self, device_id: str, replace: bool = False) -> str:
        """Register a device and return its new token (shown once: only its hash is kept).

        A device that has a token already is a :class:`Conflict`, unless ``replace`` (the admin
        key's right), which gives it a new one and makes the old one stop working.
        """
        Ping(device_id, 0.0, 0.0)  # the same device id rules as a ping
        token = new_token()
        if not self.db.tokens.register(device_id, token_hash(token), replace):
            raise Conflict(f"device {device_id!r} is registered already; its token is with the "
                           "app that registered it (the admin key may register it again, which "
                           "replaces the token)")
        self.tokens.forget(device_id)
        return token

    # --- the ping (:mod:`geo_engine.ping_flow`) ------------------------------------------------

    def handle_ping(self, ping: Ping) -> PingAnswer:
        """Return the answer to a ping, after recording its events, its trip's moves, its
        webhook events and any push, in one transaction (:meth:`PingFlow.handle`)."""
        return self.pings.handle(ping)

    async def handle_ping_async(self, ping: Ping) -> PingAnswer:
        """:meth:`handle_ping` for a server's event loop: the same answer, the write in the
        loop's group commit (:mod:`geo_engine.commits`), answered once that has committed."""
        return await self.pings.handle_async(ping)
