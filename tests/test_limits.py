"""What an attacker with only the publishable key (or none) can no longer do (issue 12):
bodies too large, requests too many, text that is not text, and a full disk, each answered
with a 4xx or a 503 that says what and where, counted in /metrics and logged."""

from __future__ import annotations

import json
import logging
import math

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from geo_engine import Engine, Settings
from geo_engine.apikeys import ensure_keys

from .conftest import DEMO

ADMIN = {"Authorization": "Bearer adm-limits"}
PUB = {"Authorization": "Bearer pub-limits"}
FERRY = {"lat": 37.7955, "lon": -122.3937}


def served(tmp_path, **settings):
    """The demo chain served by an app with these settings (the demo loaded without them)."""
    first = Engine(Settings(db=str(tmp_path / "limits.db")))
    first.import_files([DEMO])
    first.db.close()
    engine = Engine(Settings(db=str(tmp_path / "limits.db"), admin_key="adm-limits",
                             publishable_key="pub-limits", require_device_token="false",
                             trust_client_clock=True, **settings))
    ensure_keys(engine.db.apikeys, engine.settings)
    return engine, TestClient(create_app(engine))


def test_a_body_too_large_is_a_413_before_its_key_is_checked(tmp_path):
    """Attack: a 216 MB body was read and parsed before the 401."""
    _, client = served(tmp_path, max_body_bytes=1000)
    with client:
        big = json.dumps({"device_id": "d", **FERRY, "segments": ["x" * 2000]})
        for headers in ({}, PUB):  # no key at all, or the right one: the same 413
            r = client.post("/v1/pings", content=big, headers={**headers,
                                                                "Content-Type": "application/json"})
            assert r.status_code == 413 and "1,000 bytes" in r.json()["detail"]

        def chunks():  # no Content-Length: counted while it streams
            for _ in range(10):
                yield b"x" * 500
        r = client.post("/v1/pings", content=chunks(), headers=PUB)
        assert r.status_code == 413
        small = client.post("/v1/pings", json={"device_id": "d", **FERRY}, headers=PUB)
        assert small.status_code == 200
        metrics = client.get("/metrics").text
        assert 'geo_engine_requests_total{method="POST",route="unmatched",status="413"} 3.0' in metrics


def test_an_import_has_its_own_larger_limit(tmp_path):
    _, client = served(tmp_path, max_body_bytes=200, max_import_bytes=100_000)
    with client:
        fc = {"type": "FeatureCollection", "features": [
            {"type": "Feature", "properties": {"kind": "store", "id": f"s{k}", "name": "n" * 50},
             "geometry": {"type": "Point", "coordinates": [k * 0.01, 1.0]}} for k in range(20)]}
        assert client.post("/v1/geofences/import", json=fc, headers=ADMIN).status_code == 200
        fc["features"] *= 100
        assert client.post("/v1/geofences/import", json=fc, headers=ADMIN).status_code == 413


def test_a_polygon_or_a_file_past_its_limit_is_a_422(tmp_path):
    """Attack: a 1M-vertex polygon was accepted (41 MB, 11.8 s)."""
    engine, client = served(tmp_path, max_ring_vertices=100, max_features=50)
    ring = [[-122.39 + 0.001 * math.cos(k / 50), 37.79 + 0.001 * math.sin(k / 50)] for k in range(314)]
    ring.append(ring[0])
    fence = {"type": "Feature", "properties": {"id": "g-big", "store_id": "fc-ferry"},
             "geometry": {"type": "Polygon", "coordinates": [ring]}}
    with client:
        r = client.post("/v1/geofences/import", json={"type": "FeatureCollection", "features": [fence]},
                        headers=ADMIN)
        assert r.status_code == 422
        assert "a ring of its Polygon has 315 vertices; at most 100" in r.json()["problems"][0]["message"]
        many = [{"type": "Feature", "properties": {"kind": "store", "id": f"s{k}"},
                 "geometry": {"type": "Point", "coordinates": [0.001 * k, 1.0]}} for k in range(51)]
        r = client.post("/v1/geofences/import", json={"type": "FeatureCollection", "features": many},
                        headers=ADMIN)
        assert r.status_code == 422 and "51 features; at most 50" in r.json()["detail"]
    assert engine.counts()["stores"] == 32  # the demo chain, nothing added


def test_a_device_past_its_rate_gets_429s_with_retry_after_and_the_admin_key_none(tmp_path):
    """Attack: made-up device ids and no rate limit of any kind."""
    _, client = served(tmp_path, device_pings_per_s=1.0, device_ping_burst=3)
    with client:
        codes = [client.post("/v1/pings", json={"device_id": "d", **FERRY}, headers=PUB).status_code
                 for _ in range(5)]
        assert codes == [200, 200, 200, 429, 429]
        r = client.post("/v1/pings", json={"device_id": "d", **FERRY}, headers=PUB)
        assert r.status_code == 429 and 1 <= int(r.headers["Retry-After"]) <= 3
        assert "too many pings from device 'd'" in r.json()["detail"]
        # the same through the route (a content type the short path leaves to it)
        routed = client.post("/v1/pings", content=json.dumps({"device_id": "d", **FERRY}),
                             headers={**PUB, "Content-Type": "application/ping+json"})
        assert routed.status_code == 429 and "Retry-After" in routed.headers
        assert client.post("/v1/pings", json={"device_id": "e", **FERRY}, headers=PUB).status_code == 200
        assert all(client.post("/v1/pings", json={"device_id": "d", **FERRY}, headers=ADMIN).status_code
                   == 200 for _ in range(5))


def test_a_publishable_key_past_its_rate_gets_429s(tmp_path):
    _, client = served(tmp_path, device_pings_per_s=0, key_pings_per_s=4)
    with client:
        codes = [client.post("/v1/pings", json={"device_id": f"d{k}", **FERRY}, headers=PUB).status_code
                 for k in range(6)]
        assert codes[:4] == [200] * 4 and codes[-1] == 429


def test_key_guessing_is_cut_off_per_address(tmp_path):
    """Attack: 300 wrong-key guesses answered in 1.3 s."""
    _, client = served(tmp_path, failed_key_checks_per_min=5)
    with client:
        codes = [client.get("/v1/campaigns", headers={"Authorization": f"Bearer guess-{k}"}).status_code
                 for k in range(8)]
        assert codes[:5] == [401] * 5 and set(codes[5:]) == {429}
        r = client.get("/v1/campaigns", headers=ADMIN)  # even the right key, from that address
        assert r.status_code == 429 and int(r.headers["Retry-After"]) >= 1
        assert "wrong or missing key" in r.json()["detail"]


def test_registrations_are_limited_per_address(tmp_path):
    engine, client = served(tmp_path, registrations_per_min=3)
    with client:
        codes = [client.post("/v1/devices", json={"device_id": f"p{k}"}, headers=PUB).status_code
                 for k in range(5)]
        assert codes == [201, 201, 201, 429, 429]
        assert client.post("/v1/devices", json={"device_id": "p9"}, headers=ADMIN).status_code == 201


@pytest.mark.parametrize(("path", "body", "field"), [
    ("/v1/pings", b'{"device_id": "d", "lat": 1, "lon": 2, "ping_id": "\xff\xfe"}', "ping_id"),
    ("/v1/pings", b'{"device_id": "d", "lat": 1, "lon": 2, "segments": ["ok", "\xc3"]}', "segments.1"),
    ("/v1/campaigns/c", b'{"id": "c", "offer": {"title": "caf\xe9"}}', "offer.title"),
    ("/v1/pings", b'{"device_id": "d\xff", "lat": 1}', "device_id"),
])
def test_bytes_that_are_not_utf8_are_a_422_naming_the_field(tmp_path, path, body, field):
    _, client = served(tmp_path)
    with client:
        send = client.put if path.startswith("/v1/campaigns") else client.post
        r = send(path, content=body, headers={**ADMIN, "Content-Type": "application/json"})
        assert r.status_code == 422
        assert r.json()["problems"][0]["field"] == field and "UTF-8" in r.json()["detail"]


@pytest.mark.parametrize("bad", [b"\\ud800", b"\\u0000"])
def test_a_lone_surrogate_or_a_nul_is_a_422_and_nothing_is_half_saved(tmp_path, bad):
    """Attack: a \\ud800 in a campaign title answered 500 but saved the campaign, after which
    the campaign list and every matching ping answered 500; the same in a store id or name. A
    \\u0000 is refused the same way (PostgreSQL's text cannot hold it)."""
    engine, client = served(tmp_path)
    with client:
        campaign = (b'{"id": "c", "offer": {"title": "' + bad + b'"}, "targets": {"tags": ["coffee"]}, '
                    b'"trigger": {"type": "enter"}}')
        r = client.put("/v1/campaigns/c", content=campaign,
                       headers={**ADMIN, "Content-Type": "application/json"})
        assert r.status_code == 422 and [p["field"] for p in r.json()["problems"]] == ["offer.title"]
        assert client.get("/v1/campaigns", headers=ADMIN).json() == {"campaigns": []}
        store = (b'{"type": "FeatureCollection", "features": [{"type": "Feature", "properties": '
                 b'{"kind": "store", "id": "s' + bad + b'", "name": "x"}, "geometry": {"type": "Point", '
                 b'"coordinates": [1, 2]}}]}')
        r = client.post("/v1/geofences/import", content=store,
                        headers={**ADMIN, "Content-Type": "application/json"})
        assert r.status_code == 422 and "properties.id is not text that can be stored" in r.json()["detail"]
        ping = b'{"device_id": "d", "lat": 37.7955, "lon": -122.3937, "ping_id": "' + bad + b'"}'
        r = client.post("/v1/pings", content=ping, headers={**PUB, "Content-Type": "application/json"})
        assert r.status_code == 422 and r.json()["problems"][0]["field"] == "ping_id"
        assert client.get("/v1/campaigns", headers=ADMIN).status_code == 200
    assert engine.counts() == {"stores": 32, "geofences": 33, "campaigns": 0}


def test_a_full_disk_is_a_503_that_says_so_counted_and_logged(tmp_path, caplog):
    """Attack: a full disk gave plain 500s that appeared neither in /metrics nor in the log.
    SQLite's own limit on the file's pages makes the disk full for real."""
    engine, client = served(tmp_path, min_offer_interval_s=0)
    engine.put_campaign("coffee", {"id": "coffee", "offer": {"title": "A cookie"},
                                   "targets": {"tags": ["coffee"]}, "trigger": {"type": "enter"}})
    with client, caplog.at_level(logging.INFO, logger="geo_engine.access"):
        pages = engine.db.sql.query("PRAGMA page_count")[0][0]
        engine.db.sql.query(f"PRAGMA max_page_count = {pages}")
        filler = {"id": "big", "offer": {"title": "x" * 60_000}, "targets": {"tags": ["coffee"]},
                  "trigger": {"type": "enter"}}
        r = client.put("/v1/campaigns/big", json=filler, headers={**ADMIN})
        assert r.status_code in (413, 503)
        answers = []
        for k in range(40):  # pings that push write rows until the file can grow no more
            answers.append(client.post("/v1/pings", json={"device_id": f"d{k}", **FERRY,
                                                          "ping_id": "p" * 100}, headers=PUB))
            if answers[-1].status_code != 200:
                break
        full = answers[-1]
        assert full.status_code == 503, full.text
        assert "is full: free some space" in full.json()["detail"]
        metrics = client.get("/metrics").text
        assert 'route="/v1/pings",status="503"} 1.0' in metrics
    logged = [json.loads(r.message) for r in caplog.records if r.name == "geo_engine.access"]
    assert any(line["status"] == 503 and line["route"] == "/v1/pings" for line in logged)


def test_storage_errors_say_full_or_read_only(tmp_path):
    import sqlite3

    from geo_engine.db.sqlite import storage_error

    path = tmp_path / "ro.db"
    sqlite3.connect(path).execute("CREATE TABLE t (x)").connection.close()
    ro = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    with pytest.raises(sqlite3.OperationalError) as caught:
        ro.execute("INSERT INTO t VALUES (1)")
    message = str(storage_error(str(path), caught.value, "cannot write"))
    assert message.startswith(f"cannot write: the database {path} is read-only")
