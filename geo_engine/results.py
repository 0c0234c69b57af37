"""Did the offer bring them in? A campaign's results from the event and push logs (SPEC 9).

Pure: the logs' rows come in (:class:`~geo_engine.db.logs.Logs` reads them), figures go out.

- A **visit** to a store: the device inside one of its geofences (an ``enter``: medium
  confidence or better) for at least ``min_dwell_s``, until its ``exit`` or, while it has not
  left, its last ping; with the store open (by its hours, when it has them) at the entry and
  ``min_dwell_s`` later. Overlapping stays at one store (two of its geofences) are one visit.
- **Exposed**: the devices pushed the campaign's offer in ``[from, to)``, each from its first
  push; **control**: those held out at the moment a push would have been (a ``held_out``
  event), each from its first. A device found in both (the holdout share changed meanwhile) is
  in neither, and counted apart.
- A device **converts** when a visit to the offer's store (and, apart, to any store the
  campaign targets) begins after that moment and at most ``window_days`` later.
- Rates with Wilson intervals, the lift with Newcombe's interval (:mod:`geo_engine.stats`);
  fewer than :data:`MIN_DEVICES` devices in either group: ``insufficient_data``.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from .stats import newcombe, wilson

__all__ = ["MIN_DEVICES", "Moment", "Visit", "conversions", "group_figures", "lift", "moments",
           "visits"]

MIN_DEVICES = 30  # in each group, for a verdict


@dataclass(frozen=True)
class Visit:
    device_id: str
    store_id: str
    entered_ts: float
    ended_ts: float


@dataclass(frozen=True)
class Moment:
    """A device's first push (exposed) or first holdout (control) of the campaign."""

    device_id: str
    ts: float
    store_id: str

    @property
    def day(self) -> str:
        return datetime.fromtimestamp(self.ts, UTC).date().isoformat()


def moments(rows: Iterable[tuple[str, float, str]]) -> dict[str, Moment]:
    """Each device's first ``(device_id, ts, store_id)`` row (rows oldest first)."""
    out: dict[str, Moment] = {}
    for device_id, ts, store_id in rows:
        if device_id not in out:
            out[device_id] = Moment(device_id, ts, store_id)
    return out


def visits(rows: Iterable[tuple[str, float, str, str, str]], last_seen: dict[str, float],
           min_dwell_s: float, is_open: Callable[[str, float], bool]) -> dict[str, list[Visit]]:
    """Each device's visits, by entry time, from its enter and exit rows (``(device_id, ts,
    type, geofence_id, store_id)``, by device then time); ``last_seen`` ends the stays not yet
    left; ``is_open(store_id, ts)`` says whether a store is open then."""
    stays: dict[str, list[tuple[str, float, float]]] = defaultdict(list)
    open_at: dict[tuple[str, str], tuple[float, str]] = {}  # (device, geofence) -> entry, store
    for device_id, ts, kind, geofence_id, store_id in rows:
        key = (device_id, geofence_id)
        if kind == "enter":
            if key not in open_at:
                open_at[key] = (ts, store_id)
        elif key in open_at:
            entered, store = open_at.pop(key)
            stays[device_id].append((store, entered, ts))
    for (device_id, _), (entered, store) in open_at.items():
        last = last_seen.get(device_id)
        if last is not None and last >= entered:
            stays[device_id].append((store, entered, last))
    out: dict[str, list[Visit]] = {}
    for device_id, found in stays.items():
        merged: list[Visit] = []
        by_store: dict[str, list[tuple[float, float]]] = defaultdict(list)
        for store, entered, ended in found:
            by_store[store].append((entered, ended))
        for store, spans in by_store.items():
            spans.sort()
            start, end = spans[0]
            for a, b in spans[1:]:
                if a <= end:  # overlapping stays at one store: one visit
                    end = max(end, b)
                else:
                    merged.append(Visit(device_id, store, start, end))
                    start, end = a, b
            merged.append(Visit(device_id, store, start, end))
        kept = [v for v in merged if v.ended_ts - v.entered_ts >= min_dwell_s
                and is_open(v.store_id, v.entered_ts) and is_open(v.store_id, v.entered_ts + min_dwell_s)]
        if kept:
            out[device_id] = sorted(kept, key=lambda v: (v.entered_ts, v.store_id))
    return out


@dataclass(frozen=True)
class Conversion:
    """What became of one device after its moment."""

    moment: Moment
    offer_store: float | None  # seconds from the moment to its first visit to the offer's store
    any_store: bool  # a visit to any store the campaign targets in the window
    offer_visits: int  # its visits to the offer's store in the window


def conversions(found: dict[str, Moment], device_visits: dict[str, list[Visit]], window_s: float,
                targets: set[str] | None) -> list[Conversion]:
    """Each device's conversion (``targets``: the campaign's stores; None: every store)."""
    out = []
    for m in found.values():
        first = None
        any_store = False
        n = 0
        for v in device_visits.get(m.device_id, ()):
            if not m.ts < v.entered_ts <= m.ts + window_s:
                continue
            if targets is None or v.store_id in targets:
                any_store = True
            if v.store_id == m.store_id:
                n += 1
                if first is None:
                    first = v.entered_ts - m.ts
        out.append(Conversion(m, first, any_store, n))
    return out


def _rate(x: int, n: int) -> dict:
    if n == 0:
        return {"devices": 0, "converted": 0, "rate": None, "interval": None}
    lo, hi = wilson(x, n)
    return {"devices": n, "converted": x, "rate": x / n, "interval": [lo, hi]}


def lift(x1: int, n1: int, x0: int, n0: int) -> dict:
    """Exposed (``x1`` of ``n1``) against control (``x0`` of ``n0``): the absolute lift with
    Newcombe's interval, the relative lift, and the verdict."""
    if n1 < MIN_DEVICES or n0 < MIN_DEVICES:
        out: dict = {"verdict": "insufficient_data", "absolute": None, "interval": None,
                     "relative": None}
        if n1 and n0:
            d, lo, hi = newcombe(x1, n1, x0, n0)
            out.update(absolute=d, interval=[lo, hi], relative=d / (x0 / n0) if x0 else None)
        return out
    d, lo, hi = newcombe(x1, n1, x0, n0)
    verdict = "lift" if lo > 0 else "negative_lift" if hi < 0 else "no_detectable_lift"
    return {"verdict": verdict, "absolute": d, "interval": [lo, hi],
            "relative": d / (x0 / n0) if x0 else None}


def group_figures(exposed: list[Conversion], control: list[Conversion]) -> dict:
    """The figures of one slice (all, a store, a day): each group's rate to the offer's store
    and to any targeted store, the lifts, visits and the median time to a visit."""
    n1, n0 = len(exposed), len(control)
    x1 = sum(c.offer_store is not None for c in exposed)
    x0 = sum(c.offer_store is not None for c in control)
    a1 = sum(c.any_store for c in exposed)
    a0 = sum(c.any_store for c in control)
    times = [c.offer_store for c in exposed if c.offer_store is not None]
    return {
        "exposed": {**_rate(x1, n1), "any_store": _rate(a1, n1)},
        "control": {**_rate(x0, n0), "any_store": _rate(a0, n0)},
        "lift": lift(x1, n1, x0, n0),
        "lift_any_store": lift(a1, n1, a0, n0),
        "visits": sum(c.offer_visits for c in exposed),
        "median_push_to_visit_s": statistics.median(times) if times else None,
    }
