"""Settings: one object, built from ``GEO_ENGINE_*`` variables and overridden by CLI flags.

Nothing else in geo-engine reads ``os.environ``. Every setting has a name, a default and a help
line (as datasette's ``SETTINGS``); the README lists them all (a test checks that it does).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any

from .errors import InvalidInput

__all__ = ["SETTINGS", "Setting", "Settings"]


@dataclass(frozen=True)
class Setting:
    name: str
    default: Any
    help: str

    @property
    def env(self) -> str:
        return f"GEO_ENGINE_{self.name.upper()}"


SETTINGS: tuple[Setting, ...] = (
    Setting("db", "geo-engine.db", "path of the SQLite database file (created if missing)"),
    Setting("database_url", "", "a PostgreSQL database to use instead of the SQLite file, "
            "postgresql://user:password@host:port/name (its schema is made and migrated on start)"),
    Setting("default_k", 1, "how many stores `nearest` returns when -k is not given"),
    Setting("default_accuracy_m", 50.0, "GPS accuracy, metres, taken for a ping that gives none"),
    Setting("min_offer_interval_s", 900.0, "engine-wide minimum seconds between two offers to one device"),
    Setting("max_speed_mps", 70.0, "faster than this (metres/second) between pings is impossible movement"),
    Setting("reload_check_s", 1.0, "how often (seconds) a process looks for stores, geofences or "
            "campaigns changed by another process on the same database"),
    Setting("synchronous", "full", "what a commit survives: full (a killed process and a power cut) or "
            "normal (a killed process; a power cut can lose the last commits, for faster commits)"),
    Setting("trust_client_clock", False, "take pings' timestamps as given (replays, simulations, "
            "demos, tests); off, a time over 60 s ahead of the server's is replaced by it "
            "(clock_ahead) and one over 10 minutes behind pushes nothing (late)"),
    Setting("require_device_token", "auto", "whether pings and consent changes sent with the "
            "publishable key need the device's X-Device-Token: true, false, or auto (as the "
            "database says: on for one made by this version, off for one that served phones "
            "before)"),
    Setting("max_body_bytes", 65_536, "the largest request body (bytes) a route takes, imports "
            "aside: a larger one is a 413 before it is parsed or its key checked"),
    Setting("max_import_bytes", 67_108_864, "the largest body (bytes) POST /v1/geofences/import takes"),
    Setting("max_features", 1_000_000, "the most features one GeoJSON import may hold"),
    Setting("max_ring_vertices", 10_000, "the most positions one polygon ring may have"),
    Setting("device_pings_per_s", 1.0, "pings a second one device may send with the publishable "
            "key, after a burst (0: no limit; per server process)"),
    Setting("device_ping_burst", 5, "pings one device may send at once before device_pings_per_s "
            "holds it back"),
    Setting("key_pings_per_s", 20_000.0, "pings a second all devices together may send with one "
            "publishable key (0: no limit; per server process)"),
    Setting("failed_key_checks_per_min", 30, "requests with a wrong or missing key one client "
            "address may make a minute; past it, everything it sends is a 429 (0: no limit)"),
    Setting("registrations_per_min", 60, "device registrations (POST /v1/devices) a minute from "
            "one client address (0: no limit)"),
    Setting("far_from_store_m", 500_000.0, "a scored customer farther than this (metres) from "
            "every store is flagged far_from_any_store"),
    Setting("visit_min_dwell_s", 120.0, "campaign results: seconds inside a store's geofence that make "
            "a visit"),
    Setting("results_window_days", 7, "campaign results: days after a push (or holdout) in which a "
            "visit counts, unless asked otherwise (1 to 30)"),
    Setting("basemap", "", "the console's base map: a tile URL template (https://.../{z}/{x}/{y}.png) "
            "or a local .pmtiles archive of raster tiles; empty: a plain graticule"),
    Setting("trip_expiry_s", 21_600.0, "trips: seconds after a trip starts in which the customer "
            "must arrive, or it expires"),
    Setting("webhook_retry_s", 259_200.0, "webhooks: seconds a delivery is tried again before it is "
            "dead-lettered (72 hours)"),
    Setting("webhook_backoff_s", 1.0, "webhooks: the first retry's delay in seconds (then doubled "
            "each time, with jitter, at most an hour)"),
    Setting("webhook_timeout_s", 10.0, "webhooks: seconds a receiver has to answer a delivery"),
    Setting("webhook_keep_days", 7.0, "webhooks: days events delivered (or dead-lettered) are kept "
            "for replays, then forgotten"),
    Setting("admin_key", "", "the admin API key (instead of one created on first start)"),
    Setting("publishable_key", "", "the publishable API key (instead of one created on first start)"),
)


_CHOICES = {"synchronous": ("full", "normal"), "require_device_token": ("auto", "true", "false")}
_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


def _parse(kind: type, raw: str) -> Any:
    """A setting's value from its variable's text (a bool is true/false, yes/no, on/off, 1/0)."""
    if kind is bool:
        word = raw.strip().lower()
        if word not in _TRUE + _FALSE:
            raise ValueError(raw)
        return word in _TRUE
    return kind(raw)


@dataclass(frozen=True)
class Settings:
    """geo-engine's settings; see :data:`SETTINGS` for each one's meaning and default."""

    @property
    def database(self) -> str:
        """Where the database is: ``database_url`` when set, else the SQLite file ``db``."""
        return self.database_url or self.db

    db: str = "geo-engine.db"
    database_url: str = ""
    default_k: int = 1
    default_accuracy_m: float = 50.0
    min_offer_interval_s: float = 900.0
    max_speed_mps: float = 70.0
    reload_check_s: float = 1.0
    synchronous: str = "full"
    trust_client_clock: bool = False
    require_device_token: str = "auto"
    max_body_bytes: int = 65_536
    max_import_bytes: int = 67_108_864
    max_features: int = 1_000_000
    max_ring_vertices: int = 10_000
    device_pings_per_s: float = 1.0
    device_ping_burst: int = 5
    key_pings_per_s: float = 20_000.0
    failed_key_checks_per_min: int = 30
    registrations_per_min: int = 60
    far_from_store_m: float = 500_000.0
    visit_min_dwell_s: float = 120.0
    results_window_days: int = 7
    basemap: str = ""
    trip_expiry_s: float = 21_600.0
    webhook_retry_s: float = 259_200.0
    webhook_backoff_s: float = 1.0
    webhook_timeout_s: float = 10.0
    webhook_keep_days: float = 7.0
    admin_key: str = field(default="", repr=False)
    publishable_key: str = field(default="", repr=False)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Return settings from ``GEO_ENGINE_*`` variables, then ``overrides`` (None skipped)."""
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        types = {f.name: type(f.default) for f in fields(cls)}
        for setting in SETTINGS:
            raw = environ.get(setting.env)
            if raw is None:
                continue
            try:
                values[setting.name] = _parse(types[setting.name], raw)
            except ValueError:
                raise InvalidInput(f"{setting.env}={raw!r} is not a valid "
                                   f"{types[setting.name].__name__}: {setting.help}") from None
        values.update({k: v for k, v in overrides.items() if v is not None})
        for name, allowed in _CHOICES.items():
            if name in values and values[name] not in allowed:
                setting = next(s for s in SETTINGS if s.name == name)
                raise InvalidInput(f"{setting.env}={values[name]!r} is not one of "
                                   f"{', '.join(allowed)}: {setting.help}")
        return replace(cls(), **values)
