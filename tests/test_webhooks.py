"""Webhooks (SPEC 12): the pure part on values, and deliveries that lose nothing through a
receiver that fails, a receiver that is down and a server killed with SIGKILL."""

from __future__ import annotations

import json
import random
import signal
import sqlite3
import threading
import time
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from standardwebhooks import Webhook

from geo_engine.errors import InvalidInput
from geo_engine.model import Event, EventType
from geo_engine.webhooks import backoff_s, batch_body, check_subscription, matches, outgoing

from .test_serve import ADMIN, AWAY, FERRY, PUB, T0, free_port, start

# --- on values ---------------------------------------------------------------------------------


def test_patterns_take_their_types():
    assert matches(["trip.*"], "trip.arrived") and not matches(["trip.*"], "offer.pushed")
    assert matches(["geofence.entered"], "geofence.entered")
    assert not matches(["geofence.entered"], "geofence.exited")
    assert matches(["*"], "offer.pushed")


@pytest.mark.parametrize(("body", "says"), [
    ({"url": "ftp://x.example/h"}, "http:// or https://"),
    ({"url": "http://"}, "with a host"),
    ({"url": "http://x:99999999/"}, "with a host"),
    ({"url": "http://x/", "events": []}, "non-empty list"),
    ({"url": "http://x/", "events": ["geofence.entred"]}, "unknown event type 'geofence.entred'"),
    ({"url": "http://x/", "enabled": "yes"}, "enabled must be true or false"),
    ({"url": "http://x/", "secret": "mine"}, "unknown field 'secret'"),
    ([], "a JSON object"),
])
def test_a_bad_subscription_names_its_field(body, says):
    with pytest.raises(InvalidInput, match=says):
        check_subscription(body)


def test_private_addresses_are_allowed():
    assert check_subscription({"url": "http://10.0.0.7:8080/hook"})[0] == "http://10.0.0.7:8080/hook"


def test_backoff_doubles_with_jitter_from_about_a_second_and_is_capped():
    rng = random.Random(7)
    for attempts in range(1, 30):
        d = backoff_s(attempts, 1.0, 3600.0, rng)
        base = min(3600.0, 2.0 ** (attempts - 1))
        assert 0.5 * base <= d <= 1.5 * base
    firsts = [backoff_s(1, rng=rng) for _ in range(200)]
    assert min(firsts) >= 0.5 and max(firsts) <= 1.5 and len(set(firsts)) > 100  # jittered


def test_a_batch_is_json_with_each_event_and_its_stable_id():
    evs = outgoing("d1", 1_790_000_000.0, [Event(EventType.ENTER, "g", "s"), Event(EventType.EXIT, "g", "s")])
    body = json.loads(batch_body([e.payload for e in evs], 1_790_000_001.0))
    assert [e["type"] for e in body["data"]["events"]] == ["geofence.entered", "geofence.exited"]
    assert [e["id"] for e in body["data"]["events"]] == [e.event_id for e in evs]
    assert len({e.event_id for e in evs}) == 2 and body["type"] == "events"


# --- through the real server -----------------------------------------------------------------


class Receiver:
    """An HTTP receiver on loopback that answers 500 to its first ``fail_first`` posts (keeping
    what they carried), 200 after; it can be stopped and started again on its port."""

    def __init__(self, port: int, fail_first: int):
        self.port, self.fail_left = port, fail_first
        self.got: list[tuple[dict, bytes, int]] = []
        self.lock = threading.Lock()
        self.server: ThreadingHTTPServer | None = None

    def start(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - the http.server name
                body = self.rfile.read(int(self.headers["content-length"]))
                with receiver.lock:
                    status = 500 if receiver.fail_left > 0 else 200
                    receiver.fail_left -= status == 500
                    receiver.got.append(({k.lower(): v for k, v in self.headers.items()}, body, status))
                self.send_response(status)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def events(self) -> list[dict]:
        with self.lock:
            return [e for _, body, _ in self.got for e in json.loads(body)["data"]["events"]]


_TYPES = {"enter": "geofence.entered", "exit": "geofence.exited", "dwell": "geofence.dwelled"}


def _expected(answer: dict) -> list[str]:
    """The webhook events an answered ping promises, in order."""
    return [_TYPES[e["type"]] for e in answer["events"]] + (["offer.pushed"] if answer["offer"] else [])


def test_every_event_arrives_signed_in_order_through_failures_a_dead_receiver_and_sigkill(tmp_path):
    db = tmp_path / "hooks.db"
    receiver = Receiver(free_port(), fail_first=3)
    receiver.start()
    env = {"GEO_ENGINE_WEBHOOK_BACKOFF_S": "0.2"}
    port = free_port()
    proc = start(db, port, env_extra=env)
    url = f"http://127.0.0.1:{port}"
    made = httpx.put(f"{url}/v1/webhooks/crm", headers=ADMIN,
                     json={"url": f"http://127.0.0.1:{receiver.port}/in", "events": ["*"]})
    assert made.status_code == 201, made.text
    secret = made.json()["secret"]
    assert "secret" not in httpx.get(f"{url}/v1/webhooks/crm", headers=ADMIN).json()

    answered: dict[str, list[str]] = {f"d{k}": [] for k in range(6)}
    cut: set[str] = set()  # devices whose last ping went unanswered (the kill)

    def walk(base: str, device: str, rounds: range, stop: threading.Event | None = None) -> None:
        with httpx.Client(base_url=base, headers=PUB, timeout=5) as c:
            for i in rounds:
                for (lat, lon), minutes in ((AWAY, 0), (FERRY, 10)):
                    if stop is not None and stop.is_set():
                        return
                    at = T0 + timedelta(minutes=20 * i + minutes)
                    try:
                        r = c.post("/v1/pings", json={"device_id": device, "lat": lat, "lon": lon,
                                                      "accuracy_m": 10, "timestamp": at.isoformat()})
                    except httpx.HTTPError:
                        cut.add(device)
                        return
                    assert r.status_code == 200, r.text
                    answered[device].extend(_expected(r.json()))

    def walkers(base, rounds, stop=None):
        threads = [threading.Thread(target=walk, args=(base, d, rounds, stop)) for d in answered]
        for t in threads:
            t.start()
        return threads

    for t in walkers(url, range(0, 5)):  # the receiver fails its first three posts meanwhile
        t.join()
    deadline = time.monotonic() + 30
    while receiver.fail_left > 0 and time.monotonic() < deadline:
        time.sleep(0.1)
    receiver.stop()  # down: connections refused

    stop = threading.Event()
    threads = walkers(url, range(5, 40), stop)
    deadline = time.monotonic() + 30
    while sum(map(len, answered.values())) < 150 and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)  # mid-stream, with the receiver down
    proc.wait()
    stop.set()
    for t in threads:
        t.join()

    receiver.start()  # back on the same port
    port = free_port()
    proc = start(db, port, env_extra=env)
    url = f"http://127.0.0.1:{port}"
    try:
        for t in walkers(url, range(40, 43)):
            t.join()
        with sqlite3.connect(db) as conn:  # the logs: the truth every delivery must match
            logged = {d: [_TYPES[t] for (t,) in conn.execute(
                "SELECT type FROM events WHERE device_id = ? AND type IN ('enter', 'exit', 'dwell') "
                "ORDER BY id", (d,))] for d in answered}
            pushes = {d: conn.execute("SELECT count(*) FROM pushes WHERE device_id = ?",
                                      (d,)).fetchone()[0] for d in answered}
        total = sum(map(len, logged.values())) + sum(pushes.values())
        deadline = time.monotonic() + 90
        while len({e["id"] for e in receiver.events()}) < total and time.monotonic() < deadline:
            time.sleep(0.2)
        metrics = httpx.get(f"{url}/metrics").text
        deliveries = httpx.get(f"{url}/v1/webhooks/crm/deliveries", headers=ADMIN).json()["deliveries"]
        # a replay of the first hour of the walks sends those events again, under their ids
        first_hour = {e["id"] for e in receiver.events() if e["timestamp"] < "2026-11-24T09:00"}
        before = len(receiver.events())
        r = httpx.post(f"{url}/v1/webhooks/crm/replay", headers=ADMIN,
                       params={"from": "2026-11-24T08:00:00Z", "to": "2026-11-24T09:00:00Z"})
        assert r.status_code == 200 and r.json()["queued"] == len(first_hour) > 0
        deadline = time.monotonic() + 30
        while len(receiver.events()) < before + len(first_hour) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert {e["id"] for e in receiver.events()[before:]} == first_hour
    finally:
        proc.kill()
        proc.wait()
        receiver.stop()

    # every post is signed in the Standard Webhooks format, over exactly the bytes sent
    check = Webhook(secret)
    for headers, body, _ in receiver.got:
        check.verify(body, {k: headers[k] for k in ("webhook-id", "webhook-timestamp", "webhook-signature")})
    with pytest.raises(Exception, match="[Ss]ignature"):
        headers, body, _ = receiver.got[-1]
        check.verify(body.replace(b"geofence", b"geofencf", 1), headers)

    # duplicates carry the same id (and the same event); a retried batch its same message id
    first: dict[str, dict] = {}
    for e in receiver.events():
        assert first.setdefault(e["id"], e) == e
    failed = [(h, b) for h, b, status in receiver.got if status != 200]
    assert len(failed) == 3
    for h, b in failed:
        ids = [e["id"] for e in json.loads(b)["data"]["events"]]
        resent = [(h2, b2) for h2, b2, s2 in receiver.got if s2 == 200 and
                  [e["id"] for e in json.loads(b2)["data"]["events"]] == ids]
        assert resent and resent[0][0]["webhook-id"] == h["webhook-id"]

    # no event lost, none invented, each device's in the order they happened
    for device in answered:
        got = [e for e in first.values() if e["device_id"] == device]
        got_geo = [e["type"] for e in got if e["type"] != "offer.pushed"]
        assert got_geo == logged[device], device
        assert sum(e["type"] == "offer.pushed" for e in got) == pushes[device]
        times = [e["timestamp"] for e in got]
        assert times == sorted(times), device
        types = [e["type"] for e in got]
        it = iter(types)
        assert all(t in it for t in answered[device]), f"{device}: an answered event is missing"
        if device not in cut:
            assert types == answered[device], device
    assert total > 150 and cut  # the run did what it says: many events, a kill mid-stream

    # /metrics and the deliveries list say so
    figures = {line.split()[0]: float(line.split()[1]) for line in metrics.splitlines()
               if line.startswith("geo_engine_webhook")}
    assert figures["geo_engine_webhook_events_delivered_total"] >= total
    assert figures["geo_engine_webhook_events_failed_total"] == 0
    assert figures["geo_engine_webhook_events_waiting"] == 0
    assert figures["geo_engine_webhook_lag_seconds"] == 0
    assert all(d["status"] == "delivered" for d in deliveries)
    assert max(d["attempts"] for d in deliveries) >= 2
    assert all(d["events"] <= 100 for d in deliveries)
