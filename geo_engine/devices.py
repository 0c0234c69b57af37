"""Device state and geofence events: (what the device was inside, this fix) -> enter/exit/dwell.

As Tile38's fences compare a device's previous and current position, :func:`transition` compares
the visits a device has open with the geofences a new fix is in (SPEC section 6):

* **enter** when the reported point is inside (confidence medium or high) a geofence the device
  has no visit open in; a device's first ping counts.
* **exit** when the point is farther outside than the hysteresis margin ``max(25 m,
  accuracy_m)``, so GPS jitter on a boundary does not flap; it carries the visit's duration.
* **dwell** once per visit, when the visit has lasted the shortest ``dwell_s`` that a dwell
  campaign on that geofence asks for (the engine passes those thresholds in).
* A fix with accuracy worse than 1,000 m causes neither an enter nor an exit.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from .model import Confidence

__all__ = ["EventType", "DeviceState", "Event", "Visit", "transition",
           "POOR_ACCURACY_M", "MIN_MARGIN_M"]

POOR_ACCURACY_M = 1000.0
MIN_MARGIN_M = 25.0


class EventType(enum.StrEnum):
    ENTER = "enter"
    EXIT = "exit"
    DWELL = "dwell"


@dataclass
class Visit:
    """An open visit: the device entered ``geofence_id`` at ``entered_ts`` (epoch seconds)."""

    geofence_id: str
    store_id: str
    entered_ts: float
    dwell_done: bool = False


@dataclass
class DeviceState:
    """What the engine remembers of a device (read from and written to the database)."""

    device_id: str
    last_ts: float | None = None
    last_lat: float | None = None
    last_lon: float | None = None
    last_accuracy_m: float | None = None
    last_offer_ts: float | None = None
    opted_out: bool = False
    visits: dict[str, Visit] = field(default_factory=dict)
    #: the row's version as read (None: no row yet); see ``Database.save_device``
    version: int | None = None
    #: campaign id -> [pushes, last push ts, {store's local day: pushes}], for the caps
    history: dict[str, list] = field(default_factory=dict)


@dataclass(frozen=True)
class Event:
    """A geofence event of one ping."""

    type: EventType
    geofence_id: str
    store_id: str
    confidence: Confidence | None = None
    duration_s: float | None = None

    def as_dict(self) -> dict:
        out = {"type": str(self.type), "geofence_id": self.geofence_id, "store_id": self.store_id}
        if self.confidence is not None:
            out["confidence"] = str(self.confidence)
        if self.duration_s is not None:
            out["duration_s"] = round(self.duration_s, 3)
        return out


def transition(visits: Mapping[str, Visit], hits: Mapping[str, tuple[str, Confidence]],
               ts: float, accuracy_m: float, distance_to: Callable[[str], float],
               dwell_after_s: Mapping[str, float]) -> tuple[list[Event], dict[str, Visit]]:
    """Return this fix's events and the visits open after it.

    Parameters
    ----------
    visits : the visits open before the fix, by geofence id
    hits : geofences the fix is in or touches: id -> (store id, confidence)
    ts : the fix's time, epoch seconds
    accuracy_m : the fix's GPS accuracy radius, metres
    distance_to : geodesic metres from the fix to a geofence (inf for one no longer active)
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
            if distance_to(fid) > margin:
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
