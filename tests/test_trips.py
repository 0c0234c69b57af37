"""Trips (SPEC 11): the pure rules, and a phone driven to the store through the real server."""

from __future__ import annotations

import sqlite3
import statistics
import time
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from pyproj import Geod

from geo_engine import trips
from geo_engine.errors import Conflict, InvalidInput
from geo_engine.model import Trip, Visit
from geo_engine.trip_desk import wait_figures

from .test_serve import ADMIN, PUB, free_port, start

GEOD = Geod(ellps="WGS84")
FERRY = (37.79552, -122.39366)  # fc-ferry, inside fc-ferry-hall
EMBARCADERO = (37.7946, -122.399)  # fc-embarcadero, the centre of fc-embarcadero-door (70 m)


def _trip(**kw) -> Trip:
    return Trip(**{"trip_id": "t", "store_id": "s", "mode": "car", "approaching_s": 300.0,
                   "status": "started", "created_ts": 1000.0, **kw})


# --- the rules, on values ----------------------------------------------------------------------

def test_approaching_once_when_the_estimate_falls_under_the_threshold():
    t = _trip()
    far = trips.step(t, ts=1010, distance_m=300 * trips.SPEEDS_MPS["car"] + 1, visits={}, expiry_s=3600)
    assert far.status == "started" and far.events == ()
    near = trips.step(far.trip, ts=1020, distance_m=300 * trips.SPEEDS_MPS["car"] - 1, visits={},
                      expiry_s=3600)
    assert near.status == "approaching" and [e.type for e in near.events] == ["trip.approaching"]
    nearer = trips.step(near.trip, ts=1030, distance_m=10, visits={}, expiry_s=3600)
    assert nearer.status == "approaching" and nearer.events == ()


def test_the_phones_own_estimate_wins_over_the_distance():
    t = _trip(mode="foot")
    step = trips.step(t, ts=1010, distance_m=50_000, visits={}, expiry_s=3600, client_eta_s=120)
    assert step.eta_s == 120 and step.status == "approaching"
    slow = trips.step(t, ts=1010, distance_m=10, visits={}, expiry_s=3600, client_eta_s=900)
    assert slow.eta_s == 900 and slow.status == "started"


def test_arrival_is_a_visit_at_the_trips_store_and_a_stop_elsewhere_is_flagged_once():
    t = _trip()
    other = {"g2": Visit("g2", "other", 1005.0)}
    passing = trips.step(t, ts=1005 + trips.ELSEWHERE_AFTER_S - 1, distance_m=5000, visits=other,
                         expiry_s=3600)
    assert passing.events == () and passing.trip.elsewhere is None  # driving past
    away = trips.step(t, ts=1005 + trips.ELSEWHERE_AFTER_S, distance_m=5000, visits=other,
                      expiry_s=3600)
    assert [(e.type, e.store_id, e.geofence_id) for e in away.events] == \
        [("trip.arrived_elsewhere", "other", "g2")]
    assert away.trip.elsewhere == "other" and away.status == "started"
    again = trips.step(away.trip, ts=1100, distance_m=5000, visits=other, expiry_s=3600)
    assert again.events == ()
    here = trips.step(again.trip, ts=1130, distance_m=20, visits={"g1": Visit("g1", "s", 1130.0)},
                      expiry_s=3600)
    assert [e.type for e in here.events] == ["trip.arrived"]  # no approaching on the way in
    assert here.trip.status == "arrived" and here.trip.arrived_ts == 1130 and here.eta_s == 0


def test_a_trip_not_arrived_expires_and_an_arrived_one_does_not():
    t = _trip()
    late = trips.step(t, ts=1000 + 600, distance_m=5000, visits={}, expiry_s=600)
    assert late.trip is None and late.status == "expired"
    assert [e.type for e in late.events] == ["trip.expired"]
    arrived = _trip(status="arrived", arrived_ts=1100.0)
    waiting = trips.step(arrived, ts=1000 + 10_000, distance_m=5, visits={}, expiry_s=600)
    assert waiting.trip == arrived and waiting.events == ()


def test_ends_and_new_trips_are_checked():
    assert trips.end("arrived", "completed", "t", "s").type == "trip.completed"
    with pytest.raises(Conflict, match="completed already"):
        trips.end("completed", "canceled", "t", "s")
    with pytest.raises(InvalidInput, match="status must be one of"):
        trips.end("started", "arrived", "t", "s")
    with pytest.raises(InvalidInput, match="mode must be one of"):
        trips.check_new("t", "boat", 300)
    with pytest.raises(InvalidInput, match="approaching_s"):
        trips.check_new("t", "car", float("nan"))


def test_wait_figures_by_day():
    day = datetime(2026, 11, 24, tzinfo=UTC).timestamp()
    waits = [(day + 100, day + 100 + w) for w in (30, 90, 60, 600, 45)] + [(day + 86_500, day + 86_520)]
    got = wait_figures(waits)
    assert [g["day"] for g in got] == ["2026-11-24", "2026-11-25"]
    first = got[0]
    assert first["completed"] == 5 and first["median_s"] == statistics.median([30, 90, 60, 600, 45])
    assert first["mean_s"] == pytest.approx(statistics.fmean([30, 90, 60, 600, 45]))
    assert first["max_s"] == 600 and first["p90_s"] == 600  # nearest rank: the 5th of 5
    assert got[1]["completed"] == 1 and got[1]["median_s"] == 20


# --- through the real server --------------------------------------------------------------------

@pytest.fixture
def server(tmp_path):
    procs = []

    def run(env_extra=None):
        port = free_port()
        procs.append(start(tmp_path / "trips.db", port, env_extra=env_extra))
        return f"http://127.0.0.1:{port}"
    run.db = tmp_path / "trips.db"
    yield run
    for p in procs:
        p.kill()
        p.wait()


def _road(start_lat: float, start_lon: float, end: tuple[float, float], step_m: float):
    """Points every ``step_m`` metres along the geodesic from a start to ``end`` (inclusive)."""
    az, _, dist = GEOD.inv(start_lon, start_lat, end[1], end[0])
    n = int(dist // step_m)
    pts = [GEOD.fwd(start_lon, start_lat, az, k * step_m)[:2] for k in range(n + 1)]
    return [(lat, lon) for lon, lat in pts] + [end]


def _ping(url, device, lat, lon, at, **extra):
    r = httpx.post(f"{url}/v1/pings", headers=PUB, json={
        "device_id": device, "lat": lat, "lon": lon, "accuracy_m": 10,
        "timestamp": at.isoformat().replace("+00:00", "Z"), **extra})
    assert r.status_code == 200, r.text
    return r.json()


def test_a_car_driven_to_the_store_approaches_once_arrives_and_is_completed_with_its_wait(server):
    url = server()
    r = httpx.post(f"{url}/v1/trips", headers=PUB, json={
        "trip_id": "order-1", "device_id": "car-1", "store_id": "fc-ferry", "mode": "car",
        "approaching_s": 120, "metadata": {"order": "1042", "name": "Ada"}})
    assert r.status_code == 201, r.text
    assert r.json()["status"] == "started"
    again = httpx.post(f"{url}/v1/trips", headers=PUB, json={
        "trip_id": "order-2", "device_id": "car-1", "store_id": "fc-ferry"})
    assert again.status_code == 409 and "open trip already" in again.json()["detail"]

    # 3 km due south of the store, up the waterfront at 10 m/s, a ping every 20 s
    south = GEOD.fwd(FERRY[1], FERRY[0], 180, 3000)
    road = _road(south[1], south[0], FERRY, 200)
    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=20 * len(road) + 60)
    statuses, answers = [], []
    for k, (lat, lon) in enumerate(road):
        a = _ping(url, "car-1", lat, lon, t0 + timedelta(seconds=20 * k))
        answers.append((lat, lon, t0 + timedelta(seconds=20 * k), a))
        statuses.append(a["trip"]["status"])
        d = GEOD.inv(lon, lat, FERRY[1], FERRY[0])[2]
        assert a["trip"]["distance_m"] == pytest.approx(d, abs=0.1)
        if a["trip"]["status"] != "arrived":
            assert a["trip"]["eta_s"] == pytest.approx(d / trips.SPEEDS_MPS["car"], abs=0.1)
    # approaching from the first ping whose estimate is within 120 s, and only then
    first_near = next(k for k, (lat, lon, _, _) in enumerate(answers)
                      if GEOD.inv(lon, lat, FERRY[1], FERRY[0])[2] / trips.SPEEDS_MPS["car"] <= 120)
    assert statuses[:first_near] == ["started"] * first_near
    assert statuses[first_near] == "approaching"
    assert statuses[-1] == "arrived"
    arrived_at = answers[-1][2]
    # a few more pings in the car park change nothing
    for k in range(3):
        a = _ping(url, "car-1", FERRY[0], FERRY[1], arrived_at + timedelta(seconds=10 * (k + 1)))
        assert a["trip"]["status"] == "arrived"

    board = httpx.get(f"{url}/v1/stores/fc-ferry/trips", headers=ADMIN).json()
    [waiting] = [t for t in board["trips"] if t["trip_id"] == "order-1"]
    assert waiting["status"] == "arrived" and waiting["metadata"] == {"order": "1042", "name": "Ada"}
    assert waiting["arrived_at"] == arrived_at.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    assert waiting["wait_time_s"] >= (datetime.now(UTC) - arrived_at).total_seconds() - 5

    assert httpx.patch(f"{url}/v1/trips/order-1", headers=PUB,
                       json={"status": "completed"}).status_code == 403  # the store's, not the phone's
    before = time.time()
    done = httpx.patch(f"{url}/v1/trips/order-1", headers=ADMIN, json={"status": "completed"})
    after = time.time()
    assert done.status_code == 200, done.text
    trip = done.json()
    assert trip["status"] == "completed"
    ended = datetime.fromisoformat(trip["ended_at"]).timestamp()
    assert before - 0.01 <= ended <= after + 0.01
    assert trip["wait_time_s"] == pytest.approx(ended - arrived_at.timestamp(), abs=0.002)
    assert httpx.patch(f"{url}/v1/trips/order-1", headers=ADMIN,
                       json={"status": "canceled"}).status_code == 409

    # each change in the event log once, in order, naming the trip
    with sqlite3.connect(f"file:{server.db}?mode=ro", uri=True) as conn:
        logged = conn.execute("SELECT type, trip_id, store_id FROM events WHERE device_id = 'car-1' "
                              "AND type LIKE 'trip.%' ORDER BY id").fetchall()
    assert logged == [(f"trip.{s}", "order-1", "fc-ferry")
                      for s in ("started", "approaching", "arrived", "completed")]
    a = _ping(url, "car-1", FERRY[0], FERRY[1], arrived_at + timedelta(seconds=60))
    assert a["trip"] is None  # the device has no open trip now
    figures = httpx.get(f"{url}/v1/stores/fc-ferry/trips", headers=ADMIN).json()["wait_time_s"]
    today = datetime.fromtimestamp(ended, UTC).date().isoformat()
    assert [(f["day"], f["completed"]) for f in figures] == [(today, 1)]
    assert figures[0]["median_s"] == pytest.approx(trip["wait_time_s"], abs=0.002)


def test_a_trip_that_arrives_at_another_store_is_flagged_and_stays_open(server):
    url = server()
    assert httpx.post(f"{url}/v1/trips", headers=ADMIN, json={
        "trip_id": "wrong-1", "device_id": "car-2", "store_id": "fc-ferry",
        "mode": "foot"}).status_code == 201
    t0 = datetime.now(UTC) - timedelta(minutes=10)
    west = GEOD.fwd(EMBARCADERO[1], EMBARCADERO[0], 270, 800)
    a = _ping(url, "car-2", west[1], west[0], t0)
    assert a["trip"]["status"] == "started" and a["trip"]["arrived_elsewhere"] is None
    a = _ping(url, "car-2", EMBARCADERO[0], EMBARCADERO[1], t0 + timedelta(minutes=8))
    assert [e["type"] for e in a["events"]] == ["enter"]
    assert a["trip"]["arrived_elsewhere"] is None  # just come in: it may be passing
    a = _ping(url, "car-2", EMBARCADERO[0], EMBARCADERO[1], t0 + timedelta(minutes=9))
    assert a["trip"]["arrived_elsewhere"] == "fc-embarcadero"
    assert a["trip"]["status"] in ("started", "approaching")
    trip = httpx.get(f"{url}/v1/trips/wrong-1", headers=ADMIN).json()
    assert trip["arrived_elsewhere"] == "fc-embarcadero" and trip["arrived_at"] is None
    assert trip["status"] == a["trip"]["status"]


def test_a_trip_that_never_arrives_expires_with_no_ping(server):
    url = server({"GEO_ENGINE_TRIP_EXPIRY_S": "2"})
    assert httpx.post(f"{url}/v1/trips", headers=ADMIN, json={
        "trip_id": "lost-1", "device_id": "car-3", "store_id": "fc-ferry"}).status_code == 201
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        trip = httpx.get(f"{url}/v1/trips/lost-1", headers=ADMIN).json()
        if trip["status"] != "started":
            break
        time.sleep(0.3)
    assert trip["status"] == "expired"
    age = datetime.fromisoformat(trip["ended_at"]) - datetime.fromisoformat(trip["created_at"])
    assert age.total_seconds() >= 2
    a = _ping(url, "car-3", *FERRY, datetime.now(UTC))
    assert a["trip"] is None and [e["type"] for e in a["events"]] == ["enter"]  # no late arrival
    # and the device may start a new one
    assert httpx.post(f"{url}/v1/trips", headers=ADMIN, json={
        "trip_id": "lost-2", "device_id": "car-3", "store_id": "fc-ferry"}).status_code == 201
