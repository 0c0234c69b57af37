"""A campaign's results (SPEC 9): the logs read for one campaign and period, the figures made.

``GET /v1/campaigns/{id}/results`` and ``geo-engine results`` both call :func:`campaign_results`
(through :meth:`Engine.results <geo_engine.engine.Engine.results>`), so they give the same
figures. The reads are indexed ranges (:mod:`geo_engine.db.logs`): a campaign's pushes and
holdouts in the period, then the enters and exits at the stores that matter in the period and
the windows after it, then the last pings of the devices still inside. The figures are
:mod:`geo_engine.results`'; every answer states the values it used.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime, timedelta

from .campaigns import Campaign
from .decide import store_open
from .errors import InvalidInput
from .results import Moment, conversions, group_figures, moments, visits
from .snapshot import Snapshot

__all__ = ["BY", "campaign_results", "checked_query", "targeted_stores"]

BY = ("store", "day")


def checked_query(start: datetime | None, end: datetime | None, window_days: int | None,
                  by: str | None, default_window: int) -> tuple[datetime, datetime, int]:
    """The period and window a results query asked for, with the defaults (the 30 days to now,
    ``default_window``); :class:`InvalidInput` naming every field that is wrong."""
    end = end or datetime.now(UTC).replace(microsecond=0)
    start = start or end - timedelta(days=30)
    window = default_window if window_days is None else window_days
    problems = []
    if start >= end:
        problems.append({"field": "from", "message": "the period's start must come before its end"})
    if not isinstance(window, int) or not 1 <= window <= 30:
        problems.append({"field": "window_days", "message": "a whole number of days from 1 to 30"})
    if by is not None and by not in BY:
        problems.append({"field": "by", "message": f"one of {', '.join(BY)}"})
    if problems:
        error = InvalidInput("; ".join(f"{p['field']}: {p['message']}" for p in problems))
        error.problems = problems
        raise error
    return start, end, window


def targeted_stores(snap: Snapshot, campaign: Campaign) -> set[str]:
    """The stores a campaign targets: by id or tag (``nearby``), or one of their geofences."""
    places = snap.places
    pos, _ = snap.targeting.stores_targeted_by(campaign)
    out = {str(places.stores.ids[p]) for p in pos}
    for fence in places.geofences:
        if fence.store_id not in out and campaign.targets_fence(fence, places.find_store(fence.store_id)):
            out.add(fence.store_id)
    return out


def campaign_results(db, snap: Snapshot, campaign: Campaign, start: datetime, end: datetime,
                     window_days: int, min_dwell_s: float, by: str | None = None,
                     now: datetime | None = None) -> dict:
    """The results of ``campaign`` for the moments (pushes, holdouts) in ``[start, end)``."""
    now = now or datetime.now(UTC)
    t0, t1 = start.timestamp(), end.timestamp()
    window_s = window_days * 86400.0
    pushes = db.logs.pushes(campaign.id, t0, t1)
    exposed = moments(pushes)
    control = moments(db.logs.holdouts(campaign.id, t0, t1))
    both = exposed.keys() & control.keys()
    for device_id in both:
        del exposed[device_id], control[device_id]
    targets = targeted_stores(snap, campaign)
    stores = targets | {m.store_id for m in exposed.values()} | {m.store_id for m in control.values()}
    devices = exposed.keys() | control.keys()
    # the windows end by t1 + window; a stay begun then may end up to a day after (else its
    # device's last ping ends it)
    rows = [r for r in db.logs.visits_at(stores, t0, t1 + window_s + 86400.0) if r[0] in devices]
    last_seen = db.logs.last_seen({r[0] for r in rows})

    def is_open(store_id: str, ts: float) -> bool:
        store = snap.places.find_store(store_id)
        return store is None or store_open(store, datetime.fromtimestamp(ts, UTC))
    found = visits(rows, last_seen, min_dwell_s, is_open)
    exp = conversions(exposed, found, window_s, targets)
    ctl = conversions(control, found, window_s, targets)
    out = {
        "campaign_id": campaign.id,
        "from": _iso(start), "to": _iso(end), "window_days": window_days,
        "visit_min_dwell_s": min_dwell_s, "days": "UTC", "confidence": 0.95,
        "pushes": len(pushes), "unique_devices": len({r[0] for r in pushes}),
        "in_both_groups": len(both),
        "windows_open": sum(1 for m in (*exposed.values(), *control.values())
                            if m.ts + window_s > now.timestamp()),
        **group_figures(exp, ctl),
    }
    if by is not None:
        key = (lambda m: m.store_id) if by == "store" else (lambda m: m.day)
        out[f"by_{by}"] = _slices(exp, ctl, pushes, key, by)
    first, last = start.date().isoformat(), (end - timedelta(microseconds=1)).date().isoformat()
    days: dict[str, dict[str, int]] = defaultdict(dict)
    for day, reason, n in db.tallies.by_day(campaign.id, first, last):
        days[day][reason] = n
    out["rejections_by_day"] = [{"day": d, "reasons": days[d]} for d in sorted(days)]
    return out


def _slices(exp, ctl, pushes, key, by: str) -> list[dict]:
    """The figures of each store or day (of the moments: the offer's store, the UTC day)."""
    groups: dict[str, tuple[list, list]] = defaultdict(lambda: ([], []))
    for c in exp:
        groups[key(c.moment)][0].append(c)
    for c in ctl:
        groups[key(c.moment)][1].append(c)
    counted: dict[str, int] = defaultdict(int)
    for device_id, ts, store_id in pushes:
        counted[key(Moment(device_id, ts, store_id))] += 1
    return [{by: k, "pushes": counted.get(k, 0), **group_figures(*groups[k])} for k in sorted(groups)]


def _iso(at: datetime) -> str:
    return at.astimezone(UTC).isoformat().replace("+00:00", "Z")
