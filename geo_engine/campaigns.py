"""Campaigns (SPEC 3.2): parse and validate them, and answer the questions the decision asks.

A campaign says which offer to push, to which geofences or stores (``targets``), on what trigger
(``enter``, ``exit``, ``dwell`` after ``dwell_s``, ``nearby`` within ``radius_m`` of a store),
when (``schedule`` in the store's own time zone), to whom (``audience``, ``holdout_pct``) and how
often (``caps``). Validation collects every problem, each naming its field.

It knows campaigns and time zones only: which geofences a campaign brings in is
:mod:`geo_engine.targeting`, whether it is pushed :mod:`geo_engine.decide`; it never reads a
database.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from .errors import InvalidCampaign
from .model import Confidence, Geofence, Store
from .text import NOT_TEXT, bad_text

__all__ = ["TRIGGERS", "Campaign", "in_weekly_hours", "local_day", "local_time", "parse_campaign",
           "parse_campaigns"]

TRIGGERS = ("enter", "exit", "dwell", "nearby")
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_TOP = {"id", "name", "enabled", "offer", "targets", "trigger", "schedule", "only_when_open",
        "priority", "min_confidence", "caps", "audience", "holdout_pct"}
_CAPS = ("per_device_per_day", "per_device_total", "cooldown_s", "budget_total")
_OFFER = ("title", "body", "url", "coupon_code")


@dataclass(frozen=True)
class Campaign:
    """A validated campaign; ``body`` is the object as stored and returned by the API."""

    id: str
    name: str
    enabled: bool
    offer: dict[str, str]
    geofence_ids: frozenset[str]
    store_ids: frozenset[str]
    tags: frozenset[str]
    trigger: str
    dwell_s: float | None
    radius_m: float | None
    starts_at: datetime | None
    ends_at: datetime | None
    days: frozenset[str] | None
    hours: tuple[tuple[int, int], ...]
    only_when_open: bool
    priority: int
    min_confidence: Confidence
    per_device_per_day: int | None
    per_device_total: int | None
    cooldown_s: float | None
    budget_total: int | None
    segments: frozenset[str]
    holdout_pct: float
    body: dict[str, Any]

    def targets_fence(self, fence: Geofence, store: Store | None) -> bool:
        """Whether the campaign targets this geofence: any non-empty dimension matches."""
        if fence.id in self.geofence_ids or fence.store_id in self.store_ids:
            return True
        if self.tags:
            tags = set(fence.tags) | (set(store.tags) if store else set())
            return bool(self.tags & tags)
        return False

    def targets_store(self, store: Store) -> bool:
        """Whether the campaign targets this store (for ``nearby``): by id or by its tags."""
        return store.id in self.store_ids or bool(self.tags & set(store.tags))

    def in_schedule(self, at: datetime, tz: str | None) -> bool:
        """Whether ``at`` falls in the schedule, days and hours read in the store's zone."""
        if self.starts_at and at < self.starts_at or self.ends_at and at > self.ends_at:
            return False
        weekly = self._weekly
        return weekly is None or in_weekly_hours(weekly, at, tz)

    @functools.cached_property
    def _weekly(self) -> dict[str, list[tuple[int, int]]] | None:
        """The schedule's days and hours as weekly spans (None: any time), made once."""
        if self.days is None and not self.hours:
            return None
        return {d: list(self.hours) or [(0, 1440)]
                for d in (self.days if self.days is not None else DAYS)}

    def in_holdout(self, device_id: str) -> bool:
        """Deterministic: the same device is always in (or out of) a campaign's holdout."""
        if self.holdout_pct <= 0:
            return False
        h = hashlib.sha256(f"{self.id}\0{device_id}".encode()).digest()
        return int.from_bytes(h[:8], "big") / 2**64 * 100 < self.holdout_pct


@functools.lru_cache(maxsize=1024)
def local_time(at: datetime, tz: str | None) -> datetime:
    """The instant ``at`` on the wall clock of the IANA zone ``tz`` (UTC when None).

    Kept for the instants asked last: one ping asks it of the same store's zone for each
    schedule, opening hours and cap it checks.
    """
    return at.astimezone(ZoneInfo(tz or "UTC"))


def local_day(at: datetime, tz: str | None) -> str:
    """The date (``YYYY-MM-DD``) on the wall clock of zone ``tz`` at the instant ``at``: the day
    a per-day cap counts in, the store's."""
    return local_time(at, tz).date().isoformat()


def in_weekly_hours(weekly: dict[str, list], at: datetime, tz: str | None) -> bool:
    """Whether the instant ``at`` is inside weekly spans of local minutes.

    ``weekly`` maps a day (``mon``...) to ``[start, end]`` minutes after local midnight; a span
    whose end is not after its start runs past midnight into the next day. Local time is
    ``at`` in zone ``tz`` (UTC when None), so DST is handled by zoneinfo.
    """
    local = local_time(at, tz)
    minute = local.hour * 60 + local.minute
    weekday = local.weekday()
    today, yesterday = DAYS[weekday], DAYS[weekday - 1]
    for start, end in weekly.get(today, []):
        if (start <= minute < end) if end > start else minute >= start:
            return True
    # a span that started yesterday and runs past midnight
    return any(end <= start and minute < end for start, end in weekly.get(yesterday, []))


def _minutes(value: Any, field: str, problems: list[tuple[str, str]]) -> int | None:
    try:
        hh, mm = value.split(":")
        m = int(hh) * 60 + int(mm)
        if len(hh) == 2 and len(mm) == 2 and 0 <= int(mm) < 60 and 0 <= m <= 1440:
            return m
    except (AttributeError, ValueError):
        pass
    problems.append((field, f'{json.dumps(value)} is not a time "HH:MM" (00:00 to 24:00)'))
    return None


def _time(value: Any, field: str, problems: list[tuple[str, str]]) -> datetime | None:
    if value is None:
        return None
    try:
        at = datetime.fromisoformat(value)
        if at.tzinfo is not None:
            return at
    except (TypeError, ValueError):
        pass
    problems.append((field, f"must be an RFC 3339 time with a zone, like \"2026-11-01T00:00:00Z\"; "
                            f"got {json.dumps(value)}"))
    return None


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _strings(value: Any, field: str, problems: list[tuple[str, str]]) -> frozenset[str]:
    if value is None:
        return frozenset()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        problems.append((field, "must be a list of strings"))
        return frozenset()
    return frozenset(value)


def parse_campaign(obj: Any, campaign_id: str | None = None) -> Campaign:
    """Return a validated Campaign, or raise InvalidCampaign listing every problem by field.

    ``campaign_id`` (from a URL) must agree with the object's ``id`` when both are given.
    Problems come in the order of the fields (SPEC 3.2), each section checked by one helper.
    """
    problems: list[tuple[str, str]] = []
    if not isinstance(obj, dict):
        raise InvalidCampaign("a campaign must be a JSON object")
    where = bad_text(obj)
    if where is not None:  # nothing else is worth checking: it could be neither stored nor sent
        exc = InvalidCampaign(f"campaign {where} {NOT_TEXT}")
        exc.problems = [{"field": where, "message": NOT_TEXT}]  # type: ignore[attr-defined]
        raise exc
    for key in obj:
        if key not in _TOP:
            problems.append((key or '""', f"is not a campaign field; use {', '.join(sorted(_TOP))}"))
    cid = obj.get("id", campaign_id)
    if campaign_id is not None and cid != campaign_id:
        problems.append(("id", f"{json.dumps(cid)} differs from the id in the URL {campaign_id!r}"))
    if not isinstance(cid, str) or not cid.strip():
        problems.append(("id", "is required: a non-empty string"))
        cid = ""
    name = obj.get("name", "")
    if not isinstance(name, str):
        problems.append(("name", "must be a string"))
    enabled = obj.get("enabled", True)
    if not isinstance(enabled, bool):
        problems.append(("enabled", "must be true or false"))
    offer = _offer(obj.get("offer"), problems)
    fence_ids, store_ids, tags = _targets(obj.get("targets") or {}, problems)
    kind, dwell_s, radius_m = _trigger(obj.get("trigger") or {}, problems)
    starts, ends, days, hours = _schedule(obj.get("schedule") or {}, problems)
    only_open = obj.get("only_when_open", False)
    if not isinstance(only_open, bool):
        problems.append(("only_when_open", "must be true or false"))
    priority = obj.get("priority", 0)
    if not isinstance(priority, int) or isinstance(priority, bool):
        problems.append(("priority", "must be a whole number (higher wins)"))
        priority = 0
    conf = obj.get("min_confidence", "medium")
    if conf not in ("low", "medium", "high"):
        problems.append(("min_confidence", 'must be "low", "medium" or "high"'))
        conf = "medium"
    caps = _caps(obj.get("caps") or {}, problems)
    audience = obj.get("audience") or {}
    segments = _strings(audience.get("segments") if isinstance(audience, dict) else None,
                        "audience.segments", problems)
    holdout = obj.get("holdout_pct", 0)
    if not _number(holdout) or not 0 <= holdout <= 100:
        problems.append(("holdout_pct", "must be a percentage from 0 to 100"))
        holdout = 0
    if problems:
        exc = InvalidCampaign("campaign " + (repr(cid) if cid else "without an id") + ": " +
                              "; ".join(f"{f} {m}" for f, m in problems))
        exc.problems = [{"field": f, "message": m} for f, m in problems]  # type: ignore[attr-defined]
        raise exc
    body = dict(obj)
    body["id"] = cid
    return Campaign(
        id=cid, name=name, enabled=enabled, offer=offer, geofence_ids=fence_ids,
        store_ids=store_ids, tags=tags, trigger=kind, dwell_s=dwell_s, radius_m=radius_m,
        starts_at=starts, ends_at=ends, days=days, hours=hours, only_when_open=only_open,
        priority=priority, min_confidence=Confidence(conf),
        per_device_per_day=_int(caps["per_device_per_day"]),
        per_device_total=_int(caps["per_device_total"]),
        cooldown_s=caps["cooldown_s"], budget_total=_int(caps["budget_total"]),
        segments=segments, holdout_pct=float(holdout), body=body)


def _offer(offer: Any, problems: list[tuple[str, str]]) -> dict[str, str]:
    if not isinstance(offer, dict) or not isinstance(offer.get("title"), str) or not offer["title"]:
        problems.append(("offer.title", "is required: the text the phone shows"))
        offer = offer if isinstance(offer, dict) else {}
    for key, value in offer.items():
        if key not in _OFFER:
            problems.append((f"offer.{key}", f"is not an offer field; use {', '.join(_OFFER)}"))
        elif not isinstance(value, str):
            problems.append((f"offer.{key}", "must be a string"))
    return dict(offer)


def _targets(targets: Any, problems: list[tuple[str, str]]) -> tuple[frozenset[str], ...]:
    if not isinstance(targets, dict):
        problems.append(("targets", "must be an object of geofence_ids, store_ids and tags"))
        targets = {}
    for key in targets:
        if key not in ("geofence_ids", "store_ids", "tags"):
            problems.append((f"targets.{key}", "is not a target; use geofence_ids, store_ids, tags"))
    return tuple(_strings(targets.get(k), f"targets.{k}", problems)
                 for k in ("geofence_ids", "store_ids", "tags"))


def _trigger(trigger: Any, problems: list[tuple[str, str]]) -> tuple[Any, Any, Any]:
    kind = trigger.get("type") if isinstance(trigger, dict) else None
    dwell_s = radius_m = None
    if kind not in TRIGGERS:
        problems.append(("trigger.type", f"must be one of {', '.join(TRIGGERS)}; got {json.dumps(kind)}"))
    elif kind == "dwell":
        dwell_s = trigger.get("dwell_s")
        if not _number(dwell_s) or dwell_s <= 0:
            problems.append(("trigger.dwell_s", "a dwell trigger needs dwell_s, seconds inside (> 0)"))
    elif kind == "nearby":
        radius_m = trigger.get("radius_m")
        if not _number(radius_m) or not 1 <= radius_m <= 50_000:
            problems.append(("trigger.radius_m", "a nearby trigger needs radius_m, metres (1 to 50,000)"))
    return kind, dwell_s, radius_m


def _schedule(schedule: Any, problems: list[tuple[str, str]]) -> tuple[Any, Any, Any, tuple]:
    if not isinstance(schedule, dict):
        problems.append(("schedule", "must be an object"))
        schedule = {}
    starts = _time(schedule.get("starts_at"), "schedule.starts_at", problems)
    ends = _time(schedule.get("ends_at"), "schedule.ends_at", problems)
    if starts and ends and ends <= starts:
        problems.append(("schedule.ends_at", "must be after starts_at"))
    days = schedule.get("days")
    if days is not None:
        if not isinstance(days, list) or any(d not in DAYS for d in days):
            problems.append(("schedule.days", f"must be a list of {', '.join(DAYS)}"))
            days = None
        else:
            days = frozenset(days)
    hours = []
    spans = schedule.get("hours") or []
    if not isinstance(spans, list):
        problems.append(("schedule.hours", 'must be a list of ["HH:MM", "HH:MM"] pairs'))
        spans = []
    for k, span in enumerate(spans):
        if not (isinstance(span, list) and len(span) == 2):
            problems.append((f"schedule.hours[{k}]", 'must be a ["HH:MM", "HH:MM"] pair'))
            continue
        a = _minutes(span[0], f"schedule.hours[{k}]", problems)
        b = _minutes(span[1], f"schedule.hours[{k}]", problems)
        if a is not None and b is not None:
            hours.append((a, b))
    return starts, ends, days, tuple(hours)


def _caps(caps: Any, problems: list[tuple[str, str]]) -> dict[str, Any]:
    if not isinstance(caps, dict):
        problems.append(("caps", "must be an object"))
        caps = {}
    values: dict[str, Any] = {}
    for key in caps:
        if key not in _CAPS:
            problems.append((f"caps.{key}", f"is not a cap; use {', '.join(_CAPS)}"))
    for key in _CAPS:
        value = caps.get(key)
        if value is not None and (not _number(value) or value < 0 or
                                  key != "cooldown_s" and not float(value).is_integer()):
            what = "a number of seconds >= 0" if key == "cooldown_s" else "a whole number >= 0"
            problems.append((f"caps.{key}", f"must be {what}, got {json.dumps(value)}"))
            value = None
        values[key] = value
    return values


def _int(value: Any) -> int | None:
    return None if value is None else int(value)


def parse_campaigns(text: str, source: str = "") -> list[Campaign]:
    """Return the campaigns of a JSON file (a list of campaign objects, or one)."""
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidCampaign(f"{source or 'input'}: malformed JSON at line {exc.lineno}, column "
                              f"{exc.colno}: {exc.msg}") from None
    items = doc if isinstance(doc, list) else [doc]
    out, problems = [], []
    for k, item in enumerate(items):
        try:
            out.append(parse_campaign(item))
        except InvalidCampaign as exc:
            problems.append(f"{source or 'input'}, campaign {k}: {exc}")
    seen: set[str] = set()
    for c in out:
        if c.id in seen:
            problems.append(f"{source or 'input'}: duplicate campaign id {c.id!r}")
        seen.add(c.id)
    if problems:
        raise InvalidCampaign("; ".join(problems))
    return out
