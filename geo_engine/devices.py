"""Device state and geofence events: (the device's state, this fix) -> flags, events, next state.

Pure: plain values in, plain values out; no database, no index. The engine looks up what these
functions need (the geofences the fix is in, the distances to the ones the device may be
leaving) and passes it in.

As Tile38's fences compare a device's previous and current position, :func:`transition` compares
the visits a device has open with the geofences a new fix is in (SPEC section 6):

* **enter** when the reported point is inside (confidence medium or high) a geofence the device
  has no visit open in; a device's first ping counts.
* **exit** when the point is farther outside than the hysteresis margin ``max(25 m,
  accuracy_m)``, so GPS jitter on a boundary does not flap; it carries the visit's duration.
* **dwell** once per visit, when the visit has lasted the shortest ``dwell_s`` that a dwell
  campaign on that geofence asks for (the engine passes those thresholds in).
* A fix with accuracy worse than 1,000 m causes neither an enter nor an exit.

:func:`movement_flags` says what is odd about the fix itself (``out_of_order``,
``low_accuracy``, ``suspicious_movement``); :func:`next_state` is the state written back.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime, timedelta

from .geodesy import distance_m
from .model import Confidence, DeviceState, Event, EventType, Visit

__all__ = ["CLOCK_AHEAD_S", "LATE_S", "MIN_MARGIN_M", "POOR_ACCURACY_M", "add_push", "clock",
           "leaving", "movement_flags", "next_state", "settled", "transition"]

POOR_ACCURACY_M = 1000.0
MIN_MARGIN_M = 25.0
CLOCK_AHEAD_S = 60.0  # a phone's time further ahead of the server's is replaced by it
LATE_S = 600.0  # a ping older than this (by the server's clock) is late: it pushes nothing


def clock(sent: datetime | None, now: datetime, trusted: bool) -> tuple[datetime, list[str]]:
    """The time a ping is taken at, and what the clock rule noticed (SPEC 6).

    The phone's clock is not trusted: a ``sent`` time more than :data:`CLOCK_AHEAD_S` ahead of
    ``now`` is replaced by ``now`` (``clock_ahead``), so it never moves a device's state into
    the future; one more than :data:`LATE_S` behind is kept but ``late`` (its events count,
    it pushes nothing). Absent, it is ``now``. With ``trusted`` (replays, simulations, tests)
    ``sent`` is taken as given.
    """
    if sent is None:
        return now, []
    if trusted:
        return sent, []
    ahead = (sent - now).total_seconds()
    if ahead > CLOCK_AHEAD_S:
        return now, ["clock_ahead"]
    if ahead < -LATE_S:
        return sent, ["late"]
    return sent, []


def movement_flags(state: DeviceState, lat: float, lon: float, ts: float, accuracy_m: float,
                   max_speed_mps: float) -> list[str]:
    """What is odd about this fix, in the answer's order: ``out_of_order`` (older than the
    device's last), ``low_accuracy`` (worse than 1,000 m), ``suspicious_movement`` (faster than
    ``max_speed_mps`` from the last fix, beyond both accuracy circles; never with out of order).
    """
    flags = []
    out_of_order = state.last_ts is not None and ts < state.last_ts
    if out_of_order:
        flags.append("out_of_order")
    if accuracy_m > POOR_ACCURACY_M:
        flags.append("low_accuracy")
    if not out_of_order and state.last_ts is not None and state.last_lat is not None:
        moved = distance_m(state.last_lat, state.last_lon, lat, lon)
        slack = accuracy_m + (state.last_accuracy_m or 0.0)
        if max(0.0, moved - slack) > max_speed_mps * max(ts - state.last_ts, 1e-3):
            flags.append("suspicious_movement")
    return flags


def leaving(visits: Mapping[str, Visit], hits: Mapping[str, tuple[str, Confidence]],
            accuracy_m: float) -> list[str]:
    """The geofences of open visits that this fix may be leaving: those :func:`transition`
    needs the distance to (the fix is not surely in them, and its accuracy allows an exit)."""
    if accuracy_m > POOR_ACCURACY_M:
        return []
    return [fid for fid in visits if (hit := hits.get(fid)) is None or hit[1] is Confidence.LOW]


def transition(visits: Mapping[str, Visit], hits: Mapping[str, tuple[str, Confidence]],
               ts: float, accuracy_m: float, distance_to: Mapping[str, float],
               dwell_after_s: Mapping[str, float]) -> tuple[list[Event], dict[str, Visit]]:
    """Return this fix's events and the visits open after it.

    Parameters
    ----------
    visits : the visits open before the fix, by geofence id
    hits : geofences the fix is in or touches: id -> (store id, confidence)
    ts : the fix's time, epoch seconds
    accuracy_m : the fix's GPS accuracy radius, metres
    distance_to : geodesic metres from the fix to each geofence :func:`leaving` names (inf for
        one no longer active)
    dwell_after_s : geofence id -> the shortest dwell_s asked of it by a dwell campaign
    """
    events: list[Event] = []
    after = {fid: Visit(v.geofence_id, v.store_id, v.entered_ts, v.dwell_done)
             for fid, v in visits.items()}
    if accuracy_m <= POOR_ACCURACY_M:
        margin = max(MIN_MARGIN_M, accuracy_m)
        for fid, visit in sorted(visits.items()):
            hit = hits.get(fid)
            if hit is not None and hit[1] is not Confidence.LOW:
                continue
            if distance_to[fid] > margin:
                events.append(Event(EventType.EXIT, fid, visit.store_id,
                                    duration_s=max(0.0, ts - visit.entered_ts)))
                del after[fid]
        for fid, (store_id, conf) in sorted(hits.items()):
            if conf is not Confidence.LOW and fid not in after:
                after[fid] = Visit(fid, store_id, ts)
                events.append(Event(EventType.ENTER, fid, store_id, conf))
    for fid, visit in sorted(after.items()):
        need = dwell_after_s.get(fid)
        if need is not None and not visit.dwell_done and ts - visit.entered_ts >= need:
            visit.dwell_done = True
            conf = hits[fid][1] if fid in hits else None
            events.append(Event(EventType.DWELL, fid, visit.store_id, conf,
                                duration_s=ts - visit.entered_ts))
    return events, after


def settled(visits: Mapping[str, Visit], hits: Mapping[str, tuple[str, Confidence]], ts: float,
            accuracy_m: float, dwell_after_s: Mapping[str, float]) -> bool:
    """Whether :func:`transition` surely finds no event for this fix, from the values at hand
    and no distance: every open visit surely still in (a hit above low confidence), every sure
    hit already open, no dwell threshold crossed. False means "run the rules", not that
    something happens. A quiet ping's short cut (most of a fleet's pings)."""
    if accuracy_m > POOR_ACCURACY_M:
        return False
    for fid, (_, conf) in hits.items():
        if conf is not Confidence.LOW and fid not in visits:
            return False
    for fid, visit in visits.items():
        hit = hits.get(fid)
        if hit is None or hit[1] is Confidence.LOW:
            return False
        need = dwell_after_s.get(fid)
        if need is not None and not visit.dwell_done and ts - visit.entered_ts >= need:
            return False
    return True


def add_push(history: Mapping[str, list], campaign_id: str, ts: float, day: str) -> dict[str, list]:
    """``history`` with one more push of a campaign; days older than any cap can ask dropped."""
    pushed = date.fromisoformat(day)
    oldest = (max(pushed, date.min + timedelta(days=2)) - timedelta(days=2)).isoformat()
    total, _, days = history.get(campaign_id, (0, None, {}))
    days = {d: n for d, n in days.items() if d >= oldest}
    days[day] = days.get(day, 0) + 1
    return {**history, campaign_id: [total + 1, ts, days]}


KEEP = object()  # next_state's trip: as it was


def next_state(state: DeviceState, version: int, *, moved_to: tuple[float, float, float, float]
               | None = None, visits: dict[str, Visit] | None = None,
               pushed: tuple[str, float, str] | None = None, trip=KEEP) -> DeviceState:
    """The state to write back after a ping, with its new row ``version``.

    ``moved_to`` is the fix ``(ts, lat, lon, accuracy_m)`` when it counts (not out of order,
    not suspicious), with the ``visits`` open after it; ``pushed`` is ``(campaign id, ts,
    store's local day)`` when an offer went out; ``trip`` the device's trip after the ping
    (None: it ended). Without any, only the version changes: the write then proves the state
    was current.
    """
    after = DeviceState(state.device_id, state.last_ts, state.last_lat, state.last_lon,
                        state.last_accuracy_m, state.last_offer_ts, state.opted_out,
                        state.visits, version, state.history,
                        state.trip if trip is KEEP else trip)
    if moved_to is not None:
        after.last_ts, after.last_lat, after.last_lon, after.last_accuracy_m = moved_to
        after.visits = visits if visits is not None else state.visits
    if pushed is not None:
        campaign_id, ts, day = pushed
        after.history = add_push(state.history, campaign_id, ts, day)
        after.last_offer_ts = ts
    return after

