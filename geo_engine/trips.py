"""Trips (SPEC 11): a customer on the way to pick up an order, as pure rules.

A trip goes ``started`` -> ``approaching`` (the estimated arrival within the trip's
``approaching_s``) -> ``arrived`` (the device opened a visit at a geofence of the trip's store)
-> ``completed`` or ``canceled`` (the store says so), or ``expired`` (no arrival within the
expiry). A stop at another store of the chain on the way (a visit there open for
:data:`ELSEWHERE_AFTER_S`: driving past is no arrival) flags the trip ``arrived_elsewhere`` (the
trip goes on: the customer may still come). Every change is an event
``trip.<status>`` (and ``trip.arrived_elsewhere``).

:func:`step` takes a trip and what one ping says (its time, the distance to the store, the
visits open after it) and returns the trip after it, its events and what the ping's answer
shows. :func:`end` is a store's (or the expiry's) end of a trip. Values in, values out: no
database, no index (the engine measures the distance and opens the visits).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from .errors import Conflict, InvalidInput
from .model import Trip, Visit

__all__ = ["ELSEWHERE_AFTER_S", "ENDED", "MODES", "ON_THE_WAY", "SPEEDS_MPS", "TripEvent", "TripStep",
           "check_new", "end", "eta_s", "step"]

#: a mode's speed for the estimate when the phone sends none: a town's traffic, a city bike,
#: a walk (metres a second, over the straight geodesic line)
SPEEDS_MPS = {"car": 8.3, "bike": 4.2, "foot": 1.4}
MODES = tuple(SPEEDS_MPS)
ON_THE_WAY = ("started", "approaching")  # (then arrived; a trip ended is no device's)
ELSEWHERE_AFTER_S = 60.0  # in another store's geofence this long: a stop there, not a drive past
ENDED = ("completed", "canceled", "expired")


@dataclass(frozen=True)
class TripEvent:
    """A change of a trip: ``type`` is ``trip.started``, ``trip.approaching``, ... ;
    ``geofence_id`` the geofence arrived at (arrived, arrived_elsewhere), ``store_id`` the
    store of that geofence (else the trip's)."""

    type: str
    trip_id: str
    store_id: str
    geofence_id: str = ""


@dataclass(frozen=True)
class TripStep:
    """A trip after one ping: ``trip`` (None when it ended), ``events``, ``status`` (its status
    now, an ended one's too), ``distance_m`` and ``eta_s`` (what the answer and the store's
    board show)."""

    trip: Trip | None
    events: tuple[TripEvent, ...]
    status: str
    distance_m: float
    eta_s: float

    def as_dict(self, trip: Trip) -> dict:
        """The ping answer's ``trip`` object."""
        return {"trip_id": trip.trip_id, "store_id": trip.store_id, "status": self.status,
                "distance_m": round(self.distance_m, 1), "eta_s": round(self.eta_s, 1),
                "arrived_elsewhere": (self.trip or trip).elsewhere}


def check_new(trip_id: str, mode: str, approaching_s: float) -> None:
    """Raise :class:`InvalidInput` naming what is wrong with a new trip's fields."""
    if not isinstance(trip_id, str) or not 1 <= len(trip_id) <= 128:
        raise InvalidInput("trip_id must be 1 to 128 characters")
    if mode not in SPEEDS_MPS:
        raise InvalidInput(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    if not (isinstance(approaching_s, int | float) and math.isfinite(approaching_s)
            and 0 < approaching_s <= 86_400):
        raise InvalidInput(f"approaching_s must be seconds from 1 to 86400, got {approaching_s!r}")


def eta_s(distance_m: float, mode: str, client_eta_s: float | None = None) -> float:
    """The estimated seconds to the store: the phone's own estimate when it sent one, else the
    geodesic distance over the mode's speed."""
    if client_eta_s is not None:
        return max(0.0, client_eta_s)
    return distance_m / SPEEDS_MPS[mode]


def step(trip: Trip, *, ts: float, distance_m: float, visits: dict[str, Visit],
         expiry_s: float, client_eta_s: float | None = None) -> TripStep:
    """What one ping at ``ts`` (``distance_m`` from the trip's store, ``visits`` open after it)
    does to a trip."""
    if trip.status != "arrived" and ts - trip.created_ts >= expiry_s:
        return TripStep(None, (TripEvent("trip.expired", trip.trip_id, trip.store_id),),
                        "expired", distance_m, eta_s(distance_m, trip.mode, client_eta_s))
    if trip.status == "arrived":
        return TripStep(trip, (), "arrived", distance_m, 0.0)
    events: list[TripEvent] = []
    here = sorted(fid for fid, v in visits.items() if v.store_id == trip.store_id)
    if here:
        events.append(TripEvent("trip.arrived", trip.trip_id, trip.store_id, here[0]))
        after = replace(trip, status="arrived", arrived_ts=ts)
        return TripStep(after, tuple(events), "arrived", distance_m, 0.0)
    after = trip
    elsewhere = sorted((v.store_id, fid) for fid, v in visits.items()
                       if ts - v.entered_ts >= ELSEWHERE_AFTER_S)
    if elsewhere and elsewhere[0][0] != trip.elsewhere:
        store, fid = elsewhere[0]
        events.append(TripEvent("trip.arrived_elsewhere", trip.trip_id, store, fid))
        after = replace(after, elsewhere=store)
    eta = eta_s(distance_m, trip.mode, client_eta_s)
    if after.status == "started" and eta <= trip.approaching_s:
        events.append(TripEvent("trip.approaching", trip.trip_id, trip.store_id))
        after = replace(after, status="approaching")
    return TripStep(after, tuple(events), after.status, distance_m, eta)


def end(trip_status: str, new_status: str, trip_id: str, store_id: str) -> TripEvent:
    """A store's end of a trip (``completed`` or ``canceled``), or the expiry's (``expired``):
    its event; :class:`InvalidInput` for a status a trip cannot be put in, :class:`Conflict`
    for a trip that has ended already."""
    if new_status not in ENDED:
        raise InvalidInput(f"status must be one of {', '.join(ENDED)}, got {new_status!r}")
    if trip_status in ENDED:
        raise Conflict(f"trip {trip_id!r} is {trip_status} already")
    return TripEvent(f"trip.{new_status}", trip_id, store_id)
