"""A week of simulated phones for the demo chain, so that a newcomer's console has a story.

``geo-engine serve --demo --seed-week`` (what ``make run`` runs) adds, to a demo database with
no events yet, the campaign ``latte-trial`` (two coffee shops, a 30 % holdout) and a week of
pings from simulated phones walking into those shops: the engine decides every ping as it
would a real one (who is pushed, who is held out). Then a phone comes back for a visit with a
probability that depends on its group and shop: at Union Square the offer works (45 % of the
pushed phones come back within days, 15 % of the held-out ones); at Civic Center it does not
(25 % of either). So the results page shows a lift at one store and none at the other.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from pyproj import Geod

from .model import Ping

__all__ = ["CAMPAIGN", "RATES", "seed_week"]

CAMPAIGN = {
    "id": "latte-trial", "name": "Latte trial: two for one",
    "offer": {"title": "Two lattes for one", "body": "Show this at the counter today.",
              "coupon_code": "LATTE2"},
    "targets": {"store_ids": ["fc-union", "fc-civic"]}, "trigger": {"type": "enter"},
    "priority": 30, "holdout_pct": 30, "caps": {"per_device_per_day": 1},
}
#: store -> (chance a pushed phone comes back, chance a held-out one does)
RATES = {"fc-union": (0.45, 0.15), "fc-civic": (0.25, 0.25)}
_SF = ZoneInfo("America/Los_Angeles")
_WGS84 = Geod(ellps="WGS84")


def seed_week(engine, now: datetime | None = None, phones: int = 700, seed: int = 2026) -> dict:
    """Put the campaign and simulate the week before ``now`` through ``engine.handle_ping``
    (its settings must take pings' timestamps as given); return what was done."""
    now = now or datetime.now(UTC)
    engine.put_campaign(CAMPAIGN["id"], CAMPAIGN)
    rng = random.Random(seed)
    stores = {sid: engine.refresh().places.store(sid) for sid in RATES}
    pings = pushed = held = back = 0
    for k in range(phones):
        device = f"demo-phone-{k:04d}"
        sid = "fc-union" if k % 2 == 0 else "fc-civic"
        store = stores[sid]
        here = (store.lat, store.lon)
        away = _move(here, rng.uniform(0, 360), rng.uniform(400, 900))
        t = _shop_time(now, rng, days_back=(2, 7))
        answers = [engine.handle_ping(Ping(device, *away, 15.0, t)),
                   engine.handle_ping(Ping(device, *_move(here, rng.uniform(0, 360), 10), 10.0,
                                           t + timedelta(minutes=6))),
                   engine.handle_ping(Ping(device, *away, 15.0, t + timedelta(minutes=7)))]
        pings += 3
        offer = answers[1].decision.chosen
        if offer is not None and offer.campaign.id == CAMPAIGN["id"]:
            group = 0
            pushed += 1
        elif any(c.campaign.id == CAMPAIGN["id"] for c in answers[1].decision.held_out):
            group = 1
            held += 1
        else:
            continue
        if rng.random() >= RATES[sid][group]:
            continue
        back += 1  # a visit on a later day, 10 to 40 minutes inside
        r = _shop_time(now, rng, days_back=(0, 1), after=t + timedelta(hours=20))
        stay = timedelta(minutes=rng.uniform(10, 40))
        for dt, where in ((timedelta(0), away), (timedelta(minutes=5), here),
                          (timedelta(minutes=5) + stay / 2, here), (timedelta(minutes=5) + stay, here),
                          (timedelta(minutes=8) + stay, away)):
            engine.handle_ping(Ping(device, *_move(where, rng.uniform(0, 360), 8), 10.0, r + dt))
            pings += 1
    return {"phones": phones, "pings": pings, "pushed": pushed, "held_out": held, "came_back": back}


def _move(point: tuple[float, float], azimuth: float, metres: float) -> tuple[float, float]:
    lon, lat, _ = _WGS84.fwd(point[1], point[0], azimuth, metres)
    return lat, lon


def _shop_time(now: datetime, rng: random.Random, days_back: tuple[int, int],
               after: datetime | None = None) -> datetime:
    """A time between 09:00 and 15:30 in San Francisco, some days before ``now`` (or the first
    such time a day or more after ``after``), never later than an hour before ``now``."""
    if after is None:
        day = (now.astimezone(_SF) - timedelta(days=rng.randint(*days_back))).date()
    else:
        day = (after.astimezone(_SF) + timedelta(days=rng.randint(0, 3))).date()
    local = datetime(day.year, day.month, day.day, 9, tzinfo=_SF) + timedelta(minutes=rng.uniform(0, 390))
    at = local.astimezone(UTC)
    if after is not None and at <= after:
        at = after + timedelta(hours=1)
    return min(at, now - timedelta(hours=1))
