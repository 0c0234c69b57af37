"""The outbox and the trips on both backends, through the engine: a ping's webhook events are
written in its own transaction (a server's group commit included), in order per device, and
one delivery worker works a database at a time."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from standardwebhooks import Webhook

from geo_engine import Engine, Settings
from geo_engine.delivery import Deliverer
from geo_engine.model import Ping

from .conftest import DEMO
from .test_serve import free_port
from .test_webhooks import Receiver

FERRY = (37.79552, -122.39366)
AWAY = (37.8050, -122.4100)
T0 = datetime(2026, 11, 24, 8, 0, tzinfo=UTC)
_TYPES = {"enter": "geofence.entered", "exit": "geofence.exited", "dwell": "geofence.dwelled"}


@pytest.fixture
def engine(database):
    e = Engine(Settings(db=database, trust_client_clock=True, min_offer_interval_s=0))
    e.import_files([DEMO])
    e.put_campaigns(json.dumps({"id": "hello", "offer": {"title": "hi"}, "targets": {
        "store_ids": ["fc-ferry"]}, "trigger": {"type": "enter"}, "priority": 5}))
    yield e
    e.db.close()


def _outbox(engine) -> list[tuple]:
    return engine.db.sql.query("SELECT webhook_id, device_id, type, payload FROM outbox ORDER BY id")


def test_a_pings_events_go_to_each_subscription_that_wants_them_in_its_transaction(engine):
    engine.webhooks.put("all", {"url": "http://127.0.0.1:9/all"})
    engine.webhooks.put("trips", {"url": "http://127.0.0.1:9/trips", "events": ["trip.*"]})
    engine.webhooks.put("off", {"url": "http://127.0.0.1:9/off", "enabled": False})
    engine.trips.start("t1", "d1", "fc-ferry", "foot", 600, {"order": "1042", "name": "Ada"})

    async def walk(device: str):
        answers = []
        for i in range(4):
            for (lat, lon), minutes in ((AWAY, 0), (FERRY, 10)):
                at = T0 + timedelta(minutes=20 * i + minutes)
                answers.append(await engine.handle_ping_async(Ping(device, lat, lon, 10.0, at)))
        return answers

    async def fleet():  # a server's path: the group commit (PostgreSQL: on writer threads)
        return await asyncio.gather(*(walk(f"d{k}") for k in range(1, 6)))
    by_device = dict(zip([f"d{k}" for k in range(1, 6)], asyncio.run(fleet()), strict=True))
    rows = _outbox(engine)
    assert {w for w, *_ in rows} == {"all", "trips"}  # a disabled one gets nothing
    for device, answers in by_device.items():
        promised = [_TYPES[e.type] for a in answers for e in a.events]
        got = [t for w, d, t, _ in rows if w == "all" and d == device and t.startswith("geofence.")]
        assert got == promised
        offers = [t for w, d, t, _ in rows if w == "all" and d == device and t == "offer.pushed"]
        assert len(offers) == sum(a.decision.chosen is not None for a in answers)
    # d1's trip: started before, arrived at its first visit, in both subscriptions, in order
    trip = [t for w, d, t, _ in rows if w == "trips" and d == "d1"]
    assert trip == ["trip.started", "trip.arrived"]
    assert [t for w, d, t, _ in rows if w == "all" and t.startswith("trip.")] == trip
    arrived = [json.loads(p) for w, d, t, p in rows if w == "trips" and t == "trip.arrived"][0]["data"]
    assert arrived["metadata"] == {"order": "1042", "name": "Ada"}  # what the store needs
    assert (arrived["status"], arrived["geofence_id"], arrived["at_store_id"]) == \
        ("arrived", "fc-ferry-hall", "fc-ferry")
    assert arrived["arrived_at"] is not None and arrived["device_id"] == "d1"
    assert by_device["d1"][1].body and json.loads(by_device["d1"][1].body)["trip"]["status"] == "arrived"
    done = engine.trips.end("t1", "completed")
    assert done["status"] == "completed" and done["wait_time_s"] is not None
    assert [t for w, d, t, _ in _outbox(engine) if w == "trips"][-1] == "trip.completed"
    assert engine.handle_ping(Ping("d1", *FERRY, 10.0, T0 + timedelta(hours=5))).body.endswith(
        b'"trip":null}')


def test_one_worker_a_database_posts_and_another_takes_over_when_it_stops(engine):
    server = Receiver(free_port(), fail_first=0)
    server.start()
    try:
        made, _ = engine.webhooks.put("crm", {"url": f"http://127.0.0.1:{server.port}/"})
        for k in range(150):  # more than a batch
            engine.handle_ping(Ping(f"p{k}", *FERRY, 10.0, T0))
        subs = lambda: engine.refresh().webhooks  # noqa: E731
        first, second = Deliverer(engine.db, subs), Deliverer(engine.db, subs, lease_retry_s=0)
        with httpx.Client(timeout=5) as client:
            assert first.pass_once(client)  # it takes the lease and posts a batch
            assert not second.pass_once(client)  # the lease is held: it does nothing
            first.stop()  # lets the lease go
            while second.pass_once(client):
                pass
        got = [(headers, body) for headers, body, _ in server.got]
        events = [e for _, body in got for e in json.loads(body)["data"]["events"]]
        assert len(got) == 3 and [len(json.loads(b)["data"]["events"]) for _, b in got] == [100, 100, 100]
        assert len({e["id"] for e in events}) == 300  # 150 enters and 150 offers, each once
        for headers, body in got:
            Webhook(made["secret"]).verify(body, {k.lower(): v for k, v in headers.items()})
        assert engine.webhooks.figures()["delivered"] == 300
        assert engine.webhooks.figures()["waiting"] == 0
        # a replay sends an hour's events again under the same ids
        assert engine.webhooks.replay("crm", T0 - timedelta(hours=1), T0 + timedelta(hours=1)) == 300
        with httpx.Client(timeout=5) as client:
            while second.pass_once(client):
                pass
        again = [e["id"] for _, body, _ in server.got[3:] for e in json.loads(body)["data"]["events"]]
        assert again == [e["id"] for e in events]
    finally:
        server.stop()


def test_a_delivery_never_acknowledged_is_dead_lettered_and_the_next_one_goes(engine):
    server = Receiver(free_port(), fail_first=10**9)  # 500 until told otherwise
    server.start()
    try:
        engine.webhooks.put("crm", {"url": f"http://127.0.0.1:{server.port}/",
                                    "events": ["geofence.entered"]})
        for k in range(120):
            engine.handle_ping(Ping(f"q{k}", *FERRY, 10.0, T0))
        worker = Deliverer(engine.db, lambda: engine.refresh().webhooks, retry_for_s=0.3,
                           backoff_base_s=0.05)
        with httpx.Client(timeout=5) as client:
            assert worker.pass_once(client)  # tried: 500
            [first] = engine.webhooks.deliveries("crm")
            assert (first["status"], first["attempts"], first["last_error"], first["events"]) == \
                ("pending", 1, "HTTP 500", 100)
            deadline = time.monotonic() + 10
            while engine.webhooks.deliveries("crm", status="failed") == [] and time.monotonic() < deadline:
                worker.pass_once(client)
                time.sleep(0.02)
            [dead] = engine.webhooks.deliveries("crm", status="failed")
            assert dead["attempts"] >= 2 and dead["last_error"] == "HTTP 500"
            server.fail_left = 0  # the receiver mends: the next delivery (the other 20) goes
            while worker.pass_once(client):
                pass
        assert engine.webhooks.figures()["failed"] == 100
        assert engine.webhooks.figures()["delivered"] == 20
        assert engine.webhooks.figures()["waiting"] == 0
    finally:
        server.stop()


def test_done_deliveries_are_forgotten_after_the_keep_time_and_waiting_ones_never(engine):
    engine.webhooks.put("crm", {"url": "http://127.0.0.1:9/", "events": ["geofence.entered"]})
    for k in range(30):
        engine.handle_ping(Ping(f"r{k}", *FERRY, 10.0, T0))
    hooks = engine.db.webhooks
    done = hooks.take_batch("crm", 20, "msg_a", 1000.0)
    hooks.acknowledged(done[0], 1, 1000.0)
    waiting = hooks.take_batch("crm", 5, "msg_b", 1000.0)  # open, never acknowledged
    assert hooks.prune(999.0) == 0  # nothing done before then
    assert hooks.prune(1001.0) == 20
    assert engine.webhooks.deliveries("crm") == [d for d in engine.webhooks.deliveries("crm")
                                                 if d["webhook_message_id"] == "msg_b"]
    assert len(hooks.payloads(waiting[0])) == 5
    assert engine.webhooks.figures()["waiting"] == 10  # 5 in the open delivery, 5 not yet taken


def test_two_trips_started_at_once_for_one_device_leave_one_open(engine):
    from concurrent.futures import ThreadPoolExecutor

    from geo_engine.errors import Conflict

    def start(k: int):
        try:
            return engine.trips.start(f"race-{k}", "racer", "fc-ferry")["trip_id"]
        except Conflict:
            return None
    with ThreadPoolExecutor(8) as pool:
        started = [t for t in pool.map(start, range(8)) if t is not None]
    assert len(started) == 1
    opened = engine.db.sql.query("SELECT trip_id FROM trips WHERE device_id = 'racer' AND status = 'started'")
    assert [t for (t,) in opened] == started
    answer = json.loads(engine.handle_ping(Ping("racer", *AWAY, 10.0, T0)).body)
    assert answer["trip"]["trip_id"] == started[0]
