"""The offer decision: which campaigns a ping triggers, why each is turned down, the one offer.

Every campaign a ping triggers is *considered*; each one not chosen gets exactly one reason in
``Decision.rejected`` (SPEC section 6), checked in this order, so the answer explains itself:

``opted_out``, ``suspicious_movement``, ``not_in_audience``, ``holdout``, ``low_confidence``,
``outside_schedule``, ``store_closed``, ``budget_exhausted``, ``frequency_cap``, ``cooldown``;
then among the survivors the highest ``priority`` wins (then the nearest store, then the
campaign id), the rest are ``lower_priority``, and the winner itself is ``device_interval`` when
the device had any offer within the engine-wide interval.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime

from .campaigns import Campaign, in_weekly_hours
from .model import Confidence, Store

__all__ = ["Candidate", "Decision", "Reason", "Rejection", "decide", "store_open"]


class Reason(enum.StrEnum):
    OUTSIDE_SCHEDULE = "outside_schedule"
    STORE_CLOSED = "store_closed"
    FREQUENCY_CAP = "frequency_cap"
    COOLDOWN = "cooldown"
    BUDGET_EXHAUSTED = "budget_exhausted"
    LOW_CONFIDENCE = "low_confidence"
    NOT_IN_AUDIENCE = "not_in_audience"
    HOLDOUT = "holdout"
    OPTED_OUT = "opted_out"
    SUSPICIOUS_MOVEMENT = "suspicious_movement"
    DEVICE_INTERVAL = "device_interval"
    LOWER_PRIORITY = "lower_priority"


@dataclass(frozen=True)
class Candidate:
    """A campaign a ping triggered, at a store (and geofence, unless ``nearby``)."""

    campaign: Campaign
    store: Store
    geofence_id: str | None
    distance_m: float
    confidence: Confidence


@dataclass(frozen=True)
class Rejection:
    campaign_id: str
    reason: Reason

    def as_dict(self) -> dict:
        return {"campaign_id": self.campaign_id, "reason": str(self.reason)}


@dataclass(frozen=True)
class Decision:
    """What was considered, what was turned down and why, and the offer (or None)."""

    considered: int
    rejected: list[Rejection]
    chosen: Candidate | None

    def as_dict(self) -> dict:
        return {"considered": self.considered, "rejected": [r.as_dict() for r in self.rejected]}

    def offer_dict(self) -> dict | None:
        if self.chosen is None:
            return None
        c = self.chosen
        return {"campaign_id": c.campaign.id, **{k: c.campaign.offer.get(k) for k in
                                                 ("title", "body", "url", "coupon_code")},
                "store_id": c.store.id, "geofence_id": c.geofence_id,
                "distance_m": round(c.distance_m, 3)}


@dataclass(frozen=True)
class Counts:
    """A device's history with one campaign, and the campaign's spend."""

    today: int  # pushes of this campaign to this device on the store's local day
    total: int  # pushes of this campaign to this device ever
    last_ts: float | None  # the last push of this campaign to this device
    budget_used: int  # pushes of this campaign to anyone


def store_open(store: Store, at: datetime) -> bool:
    """Whether the store is open at ``at`` by its weekly hours (absent hours: always open)."""
    if store.opening_hours is None:
        return True
    return in_weekly_hours(store.weekly_hours, at, store.timezone)


def decide(candidates: Iterable[Candidate], *, device_id: str, segments: frozenset[str],
           at: datetime, ts: float, opted_out: bool, suspicious: bool,
           interval_blocked: bool, counts: Callable[[Candidate], Counts],
           per_device: bool = True) -> Decision:
    """Return the decision for one ping (see the module docstring for the order of reasons).

    A campaign triggered at several geofences is considered once, at its best place: highest
    confidence, then nearest store, then geofence id. With ``per_device`` false (batch scoring
    of places, not devices) audiences and holdouts are not applied.
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
        reason = _reason(c, device_id, segments, at, ts, opted_out, suspicious, counts, per_device)
        if reason is None:
            survivors.append(c)
        else:
            rejected.append(Rejection(cid, reason))
    survivors.sort(key=lambda c: (-c.campaign.priority, c.distance_m, c.campaign.id))
    chosen = survivors[0] if survivors else None
    rejected += [Rejection(c.campaign.id, Reason.LOWER_PRIORITY) for c in survivors[1:]]
    if chosen is not None and interval_blocked:
        rejected.append(Rejection(chosen.campaign.id, Reason.DEVICE_INTERVAL))
        chosen = None
    return Decision(len(best), rejected, chosen)


def _reason(c: Candidate, device_id: str, segments: frozenset[str], at: datetime, ts: float,
            opted_out: bool, suspicious: bool, counts: Callable[[Candidate], Counts],
            per_device: bool) -> Reason | None:
    camp = c.campaign
    if opted_out:
        return Reason.OPTED_OUT
    if suspicious:
        return Reason.SUSPICIOUS_MOVEMENT
    if per_device and camp.segments and not camp.segments & segments:
        return Reason.NOT_IN_AUDIENCE
    if per_device and camp.in_holdout(device_id):
        return Reason.HOLDOUT
    if c.confidence.rank < camp.min_confidence.rank:
        return Reason.LOW_CONFIDENCE
    if not camp.in_schedule(at, c.store.timezone):
        return Reason.OUTSIDE_SCHEDULE
    if camp.only_when_open and not store_open(c.store, at):
        return Reason.STORE_CLOSED
    n = counts(c)
    if camp.budget_total is not None and n.budget_used >= camp.budget_total:
        return Reason.BUDGET_EXHAUSTED
    if camp.per_device_per_day is not None and n.today >= camp.per_device_per_day or \
            camp.per_device_total is not None and n.total >= camp.per_device_total:
        return Reason.FREQUENCY_CAP
    if camp.cooldown_s is not None and n.last_ts is not None and ts - n.last_ts < camp.cooldown_s:
        return Reason.COOLDOWN
    return None
