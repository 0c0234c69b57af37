"""The offer decision: which campaigns a ping triggers, why each is turned down, the one offer.

Pure: the candidates, the device's push history and the campaigns' spend come in as values, a
:class:`~geo_engine.model.Decision` goes out. Nothing here reads a database or an index.

Every campaign a ping triggers is *considered*; each one not chosen gets exactly one reason in
``Decision.rejected`` (SPEC section 6), checked in this order, so the answer explains itself:

``opted_out``, ``suspicious_movement``, ``not_in_audience``, ``low_confidence``,
``outside_schedule``, ``store_closed``, ``budget_exhausted``, ``frequency_cap``, ``cooldown``;
then among the survivors the highest ``priority`` wins (then the nearest store, then the
campaign id), the rest are ``lower_priority``, and the winner itself is ``device_interval`` when
the device had any offer within the engine-wide interval.

``holdout`` is decided last, exactly where a push would have been: a winner whose holdout group
holds the device is turned down with ``holdout`` and listed in ``Decision.held_out`` (the control
group of the campaign's results: it would have been pushed this, at this moment), and the next
survivor wins as though that campaign did not exist for the device. A campaign that would not
have been pushed anyway (a cap, a lower priority, the device interval) says that reason instead,
and the device is in no campaign's control group for it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime

from .campaigns import in_weekly_hours, local_day
from .model import Candidate, Counts, Decision, Reason, Rejection, Store

__all__ = ["counts_for", "decide", "store_open"]


def store_open(store: Store, at: datetime) -> bool:
    """Whether the store is open at ``at`` by its weekly hours (absent hours: always open)."""
    if store.opening_hours is None:
        return True
    return in_weekly_hours(store.weekly_hours, at, store.timezone)


def counts_for(c: Candidate, at: datetime, history: Mapping[str, list],
               spend: Mapping[str, int]) -> Counts:
    """A device's pushes of a candidate's campaign (that day in the store's zone, ever, the
    last) from its ``history``, and the campaign's spend from ``spend``."""
    camp = c.campaign
    used = spend.get(camp.id, 0) if camp.budget_total is not None else 0
    h = history.get(camp.id)
    if h is None:
        return Counts(0, 0, None, used)
    return Counts(h[2].get(local_day(at, c.store.timezone), 0), h[0], h[1], used)


def decide(candidates: Iterable[Candidate], *, device_id: str, segments: frozenset[str],
           at: datetime, ts: float, opted_out: bool, suspicious: bool,
           interval_blocked: bool, history: Mapping[str, list], spend: Mapping[str, int],
           per_device: bool = True) -> Decision:
    """Return the decision for one ping (see the module docstring for the order of reasons).

    ``history`` is the device's (campaign id -> [pushes, last push ts, {local day: pushes}]),
    ``spend`` the pushes so far of each budgeted candidate campaign (absent: none). A campaign
    triggered at several geofences is considered once, at its best place: highest confidence,
    then nearest store, then geofence id. With ``per_device`` false (batch scoring of places,
    not devices) audiences and holdouts are not applied.
    """
    best: dict[str, Candidate] = {}
    for c in candidates:
        key = (-c.confidence.rank, c.distance_m, c.geofence_id or "")
        have = best.get(c.campaign.id)
        if have is None or key < (-have.confidence.rank, have.distance_m, have.geofence_id or ""):
            best[c.campaign.id] = c
    rejected: list[Rejection] = []
    survivors: list[Candidate] = []
    for cid in sorted(best):
        c = best[cid]
        reason = _reason(c, device_id, segments, at, ts, opted_out, suspicious, history, spend,
                         per_device)
        if reason is None:
            survivors.append(c)
        else:
            rejected.append(Rejection(cid, reason))
    survivors.sort(key=lambda c: (-c.campaign.priority, c.distance_m, c.campaign.id))
    held_out: list[Candidate] = []
    if per_device and not interval_blocked:  # (blocked: nothing would have been pushed at all)
        while survivors and survivors[0].campaign.in_holdout(device_id):
            held_out.append(survivors.pop(0))
            rejected.append(Rejection(held_out[-1].campaign.id, Reason.HOLDOUT))
    chosen = survivors[0] if survivors else None
    rejected += [Rejection(c.campaign.id, Reason.LOWER_PRIORITY) for c in survivors[1:]]
    if chosen is not None and interval_blocked:
        rejected.append(Rejection(chosen.campaign.id, Reason.DEVICE_INTERVAL))
        chosen = None
    return Decision(len(best), rejected, chosen, tuple(held_out))


def _reason(c: Candidate, device_id: str, segments: frozenset[str], at: datetime, ts: float,
            opted_out: bool, suspicious: bool, history: Mapping[str, list],
            spend: Mapping[str, int], per_device: bool) -> Reason | None:
    camp = c.campaign
    if opted_out:
        return Reason.OPTED_OUT
    if suspicious:
        return Reason.SUSPICIOUS_MOVEMENT
    if per_device and camp.segments and not camp.segments & segments:
        return Reason.NOT_IN_AUDIENCE
    if c.confidence.rank < camp.min_confidence.rank:
        return Reason.LOW_CONFIDENCE
    if not camp.in_schedule(at, c.store.timezone):
        return Reason.OUTSIDE_SCHEDULE
    if camp.only_when_open and not store_open(c.store, at):
        return Reason.STORE_CLOSED
    n = counts_for(c, at, history, spend)
    if camp.budget_total is not None and n.budget_used >= camp.budget_total:
        return Reason.BUDGET_EXHAUSTED
    if camp.per_device_per_day is not None and n.today >= camp.per_device_per_day or \
            camp.per_device_total is not None and n.total >= camp.per_device_total:
        return Reason.FREQUENCY_CAP
    if camp.cooldown_s is not None and n.last_ts is not None and ts - n.last_ts < camp.cooldown_s:
        return Reason.COOLDOWN
    return None
