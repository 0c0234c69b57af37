"""The HTTP API as an app drives it (FastAPI's TestClient; test_serve.py runs a real server)."""

from __future__ import annotations

import json
import re
import sqlite3

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from geo_engine import Engine, Settings
from geo_engine.apikeys import ensure_keys

from .conftest import DEMO

ADMIN = {"Authorization": "Bearer admin-key-for-tests"}
PUB = {"Authorization": "Bearer publishable-key-for-tests"}
FERRY = {"lat": 37.7955, "lon": -122.3937}


@pytest.fixture
def client(database):
    # device tokens are off here (the tests of them are below): these pings speak with the key
    engine = Engine(Settings(trust_client_clock=True, db=database,
                             admin_key="admin-key-for-tests", publishable_key="publishable-key-for-tests",
                             min_offer_interval_s=0, require_device_token="false",
                             device_pings_per_s=0))
    engine.import_files([DEMO])
    ensure_keys(engine.db.apikeys, engine.settings)
    with TestClient(create_app(engine)) as c:
        yield c
    engine.db.close()


def coffee(cid="coffee", **extra):
    return {"id": cid, "offer": {"title": "A cookie"}, "targets": {"tags": ["coffee"]},
            "trigger": {"type": "enter"}, **extra}


def test_health_needs_no_key(client):
    assert client.get("/health").json() == {"status": "ok", "stores": 32, "geofences": 33, "campaigns": 0}


@pytest.mark.parametrize(("method", "path"), [
    ("get", "/v1/geofences"), ("get", "/v1/campaigns"), ("delete", "/v1/devices/d1"),
    ("delete", "/v1/geofences/fc-ferry-hall"), ("get", "/v1/campaigns/x"),
])
def test_admin_routes_need_the_admin_key(client, method, path):
    assert getattr(client, method)(path).status_code == 401
    r = getattr(client, method)(path, headers=PUB)
    assert r.status_code == 403 and "needs the admin key" in r.json()["detail"]
    assert getattr(client, method)(path, headers={"Authorization": "Bearer wrong"}).status_code == 401


def test_publishable_key_reads_and_pings(client):
    assert client.get("/v1/stores/nearest", params={**FERRY, "k": 2}, headers=PUB).status_code == 200
    assert client.post("/v1/pings", json={"device_id": "d", **FERRY}, headers=PUB).status_code == 200


def test_a_device_walks_in_gets_its_offer_and_walks_out(client):
    client.put("/v1/campaigns/coffee", json=coffee(), headers=ADMIN)
    t = "2026-11-24T18:00:00Z"
    far = client.post("/v1/pings", json={"device_id": "d", "lat": 37.80, "lon": -122.40,
                                         "timestamp": t, "accuracy_m": 10}, headers=PUB).json()
    assert far["events"] == [] and far["offer"] is None
    inside = client.post("/v1/pings", json={"device_id": "d", **FERRY, "accuracy_m": 10,
                                            "timestamp": "2026-11-24T18:10:00Z"}, headers=PUB).json()
    assert inside["events"][0]["type"] == "enter"
    assert inside["offer"]["campaign_id"] == "coffee" and inside["offer"]["store_id"] == "fc-ferry"
    out = client.post("/v1/pings", json={"device_id": "d", "lat": 37.80, "lon": -122.40, "accuracy_m": 10,
                                         "timestamp": "2026-11-24T18:30:00Z"}, headers=PUB).json()
    assert out["events"] == [{"type": "exit", "geofence_id": "fc-ferry-hall", "store_id": "fc-ferry",
                              "duration_s": 1200.0}]
    metrics = client.get("/metrics").text
    assert 'geo_engine_offers_pushed_total{campaign_id="coffee"} 1.0' in metrics
    assert 'geo_engine_events_total{type="enter"} 1.0' in metrics
    assert "geo_engine_request_seconds_bucket" in metrics


def test_a_replayed_ping_is_byte_for_byte(client):
    client.put("/v1/campaigns/coffee", json=coffee(), headers=ADMIN)
    body = {"device_id": "d", **FERRY, "ping_id": "p-1"}
    first = client.post("/v1/pings", json=body, headers=PUB)
    again = client.post("/v1/pings", json=body, headers=PUB)
    assert again.content == first.content and first.json()["offer"] is not None
    moved = client.post("/v1/pings", json={**body, "lat": FERRY["lat"] + 0.01}, headers=PUB)
    assert moved.status_code == 409 and "ping_id 'p-1' already answered" in moved.json()["detail"]
    # the same through the route (a content type the short path leaves to it)
    routed = client.post("/v1/pings", content=json.dumps({**body, "lat": FERRY["lat"] + 0.01}),
                         headers={**PUB, "Content-Type": "application/ping+json"})
    assert routed.status_code == 409 and routed.json() == moved.json()


@pytest.mark.parametrize(("body", "field"), [
    ({"lat": 91, "lon": 0}, "lat"),
    ({"lat": 0, "lon": -181}, "lon"),
    ({"lat": "north", "lon": 0}, "lat"),
    ({"lat": 0}, "lon"),
    ({"lat": 0, "lon": 0, "accuracy_m": -3}, "accuracy_m"),
    ({"lat": 0, "lon": 0, "timestamp": "yesterday"}, "timestamp"),
    ({"lat": 0, "lon": 0, "timestamp": "2026-11-22T09:15:00"}, "timestamp"),
    ({"lat": 0, "lon": 0, "timestamp": 1796000000}, "timestamp"),  # not seconds since 1970
    ({"lat": 0, "lon": 0, "speed": 3}, "speed"),
    ({"lat": 0, "lon": 0, "segments": "vip"}, "segments"),
    ({"lat": 0, "lon": 0, "device_id": ""}, "device_id"),
    ({"lat": 0, "lon": 0, "device_id": "x" * 129}, "device_id"),
])
def test_malformed_pings_are_4xx_naming_the_field(client, body, field):
    r = client.post("/v1/pings", json={"device_id": "d", **body}, headers=PUB)
    assert r.status_code == 422
    assert field in [p["field"] for p in r.json()["problems"]], r.json()


def test_nan_and_a_non_printable_device_id_are_refused(client):
    r = client.post("/v1/pings", content=b'{"device_id": "d", "lat": NaN, "lon": 0}',
                    headers={**PUB, "Content-Type": "application/json"})
    assert r.status_code == 422
    r = client.post("/v1/pings", json={"device_id": "bad\u0007id", "lat": 0, "lon": 0}, headers=PUB)
    assert r.status_code == 422 and "printable" in r.json()["detail"]
    r = client.post("/v1/pings", content=b"{not json", headers={**PUB, "Content-Type": "application/json"})
    assert r.status_code == 422


@pytest.mark.parametrize("query", [
    {"lat": 95, "lon": 0}, {"lat": 0, "lon": "east"}, {"lat": 0}, {"lat": 0, "lon": 0, "k": 0},
    {"lat": "nan", "lon": 0},
])
def test_bad_query_parameters(client, query):
    r = client.get("/v1/stores/nearest", params=query, headers=PUB)
    assert r.status_code == 422 and r.json()["problems"][0]["field"].startswith("query.")


def test_error_shape_is_pinned(client):
    r = client.get("/v1/campaigns/nope", headers=ADMIN)
    assert r.status_code == 404 and r.json() == {"detail": "no campaign 'nope'"}
    r = client.put("/v1/campaigns/bad", json={"id": "bad", "trigger": {"type": "wander"}}, headers=ADMIN)
    assert r.status_code == 422
    fields = {p["field"] for p in r.json()["problems"]}
    assert fields == {"offer", "trigger.type"}  # the schema's checks (CampaignIn)
    # a campaign of the right shape whose fields disagree: the engine's checks, by field
    r = client.put("/v1/campaigns/bad", json={"id": "other", "offer": {"title": "x"},
                                              "trigger": {"type": "dwell"}}, headers=ADMIN)
    assert r.status_code == 422
    assert {p["field"] for p in r.json()["problems"]} == {"id", "trigger.dwell_s"}


def test_campaign_crud(client):
    assert client.put("/v1/campaigns/coffee", json=coffee(priority=3), headers=ADMIN).json()["priority"] == 3
    assert client.get("/v1/campaigns/coffee", headers=ADMIN).json()["id"] == "coffee"
    assert [c["id"] for c in client.get("/v1/campaigns", headers=ADMIN).json()["campaigns"]] == ["coffee"]
    assert client.delete("/v1/campaigns/coffee", headers=ADMIN).status_code == 200
    assert client.get("/v1/campaigns/coffee", headers=ADMIN).status_code == 404


def test_geofence_import_is_all_or_nothing_with_every_problem(client):
    bad = {"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {"id": "new-1", "store_id": "fc-ferry", "radius_m": 30},
         "geometry": {"type": "Point", "coordinates": [-122.39, 37.79]}},
        {"type": "Feature", "properties": {"id": "new-2", "store_id": "nowhere", "radius_m": 30},
         "geometry": {"type": "Point", "coordinates": [-122.39, 37.79]}},
        {"type": "Feature", "properties": {"id": "new-3", "store_id": "fc-ferry"},
         "geometry": {"type": "Point", "coordinates": [-122.39, 37.79]}}]}
    r = client.post("/v1/geofences/import", json=bad, headers=ADMIN)
    assert r.status_code == 422
    assert [(p["index"], p["id"]) for p in r.json()["problems"]] == [(2, "new-3"), (1, "new-2")]
    assert client.get("/health").json()["geofences"] == 33
    good = {"type": "FeatureCollection", "features": bad["features"][:1]}
    r = client.post("/v1/geofences/import", json=good, headers=ADMIN)
    assert r.json() == {"stores": 0, "geofences": 1}
    # the index follows at once: the new fence is found without a restart
    hit = client.get("/v1/locate", params={"lat": 37.79, "lon": -122.39}, headers=PUB).json()
    assert "new-1" in [g["geofence_id"] for g in hit["geofences"]]


def test_geofences_list_get_delete(client):
    listed = client.get("/v1/geofences", headers=ADMIN).json()
    assert listed["type"] == "FeatureCollection" and len(listed["features"]) == 33
    one = client.get("/v1/geofences/fc-ferry-hall", headers=ADMIN).json()
    assert one["geometry"]["type"] == "Polygon" and one["properties"]["store_id"] == "fc-ferry"
    assert client.delete("/v1/geofences/fc-ferry-hall", headers=ADMIN).status_code == 200
    assert client.get("/v1/geofences/fc-ferry-hall", headers=ADMIN).status_code == 404
    hit = client.get("/v1/locate", params=FERRY, headers=PUB).json()
    assert hit["geofences"] == []


def test_locate_matches_the_cli(client, tmp_path):
    import subprocess
    import sys

    api = client.get("/v1/locate", params={**FERRY, "accuracy_m": 15}, headers=PUB).json()
    db = client.app.state.engine.db.path
    cli = subprocess.run([sys.executable, "-m", "geo_engine", "locate", "--lat", "37.7955", "--lon",
                          "-122.3937", "--accuracy-m", "15", "--db", db, "--json"],
                         capture_output=True, text=True, check=True)
    assert json.loads(cli.stdout) == api


def test_within_and_nearby(client):
    within = client.get("/v1/stores/within", params={**FERRY, "radius_m": 1000}, headers=PUB).json()
    d = [s["distance_m"] for s in within["stores"]]
    assert d == sorted(d) and d[-1] <= 1000 and within["stores"][0]["store_id"] == "fc-ferry"
    near = client.get("/v1/geofences/nearby", params={**FERRY, "limit": 5}, headers=PUB).json()["geofences"]
    assert len(near) == 5 and near[0]["geofence_id"] == "fc-ferry-hall" and near[0]["distance_m"] == 0.0
    assert [g["distance_m"] for g in near] == sorted(g["distance_m"] for g in near)


def test_consent_and_forgetting(client):
    client.put("/v1/campaigns/coffee", json=coffee(), headers=ADMIN)
    r = client.put("/v1/devices/d/consent", json={"location_offers": False}, headers=PUB)
    assert r.status_code == 200
    a = client.post("/v1/pings", json={"device_id": "d", **FERRY}, headers=PUB).json()
    assert a["offer"] is None
    assert a["decision"]["rejected"] == [{"campaign_id": "coffee", "reason": "opted_out"}]
    assert client.delete("/v1/devices/d", headers=ADMIN).status_code == 200
    assert client.delete("/v1/devices/d", headers=ADMIN).status_code == 404
    assert client.put("/v1/devices/d/consent", json={"location_offers": "no"}, headers=PUB).status_code == 422


def test_openapi_lists_every_endpoint(client):
    paths = client.get("/openapi.json").json()["paths"]
    assert set(paths) >= {"/health", "/metrics", "/v1/geofences/import", "/v1/geofences",
                          "/v1/geofences/{geofence_id}", "/v1/stores/nearest", "/v1/stores/within",
                          "/v1/geofences/nearby", "/v1/locate", "/v1/campaigns",
                          "/v1/campaigns/{campaign_id}", "/v1/pings", "/v1/devices/{device_id}/consent",
                          "/v1/devices/{device_id}"}


def test_rotating_a_key_retires_the_old_one(client, tmp_path):
    import subprocess
    import sys

    db = client.app.state.engine.db.path
    r = subprocess.run([sys.executable, "-m", "geo_engine", "keys", "--db", db, "--rotate", "publishable"],
                       capture_output=True, text=True, check=True)
    new = r.stdout.strip().rsplit(" ", 1)[-1]
    assert new.startswith("ge_pub_")
    # the new key works at once; the server keeps keys in memory, so the old one stops working
    # once it next looks at the keys' change counter (within reload_check_s, 1 s here)
    ok = client.get("/v1/stores/nearest", params=FERRY, headers={"Authorization": f"Bearer {new}"})
    assert ok.status_code == 200
    import time

    deadline = time.monotonic() + 5
    while client.get("/v1/stores/nearest", params=FERRY, headers=PUB).status_code != 401:
        assert time.monotonic() < deadline, "the rotated-out key still works after 5 s"
        time.sleep(0.1)
    listed = subprocess.run([sys.executable, "-m", "geo_engine", "keys", "--db", db],
                            capture_output=True, text=True, check=True).stdout
    assert [line.split()[0] for line in listed.splitlines()] == ["admin", "publishable"]
    assert new[:8] in listed and new not in listed  # only a prefix is ever shown again


def test_first_start_creates_both_keys_once(tmp_path):
    from geo_engine import Database

    db = Database(tmp_path / "k.db")
    created = ensure_keys(db.apikeys, Settings(db=str(tmp_path / "k.db")))
    assert set(created) == {"admin", "publishable"}
    assert ensure_keys(db.apikeys, Settings(db=str(tmp_path / "k.db"))) == {}  # printed once only
    from geo_engine.apikeys import key_kind

    assert key_kind(db.apikeys, created["admin"]) == "admin" and key_kind(db.apikeys, "guess") is None


def _twin(tmp_path, name):
    engine = Engine(Settings(trust_client_clock=True, db=str(tmp_path / f"{name}.db"),
                             admin_key="admin-key-for-tests", publishable_key="publishable-key-for-tests",
                             min_offer_interval_s=0, require_device_token="false",
                             device_pings_per_s=0))
    engine.import_files([DEMO])
    ensure_keys(engine.db.apikeys, engine.settings)
    engine.put_campaign("coffee", coffee())
    engine.put_campaign("near", coffee("near", trigger={"type": "nearby", "radius_m": 300},
                                       caps={"per_device_per_day": 1}))
    return engine


def test_the_short_ping_path_answers_as_the_route_does(tmp_path):
    """A plainly right ping is answered in front of FastAPI's routing (api/ping_path.py); the
    same pings sent as application/ping+json go through the route. Both give the same bytes, the
    same statuses and the same metrics; the short path's requests are logged under the route."""
    walk = [(37.80, -122.40, "18:00"), (37.7955, -122.3937, "18:10"), (37.7956, -122.3936, "18:12"),
            (37.7957, -122.3935, "18:20"), (37.80, -122.40, "18:40"), (37.7955, -122.3937, "19:00")]
    bodies = [{"device_id": "d", "lat": la, "lon": lo, "accuracy_m": 10,
               "timestamp": f"2026-11-24T{hm}:00Z", "ping_id": f"p{k}"}
              for k, (la, lo, hm) in enumerate(walk)]
    bodies.append(bodies[2])  # a replay
    bad = [({"device_id": "", "lat": 1, "lon": 2}, PUB), ({"device_id": "d", "lat": 91, "lon": 2}, PUB),
           ({"device_id": "d", "lat": 1, "lon": 2}, {}),
           ({"device_id": "d", "lat": 1, "lon": 2}, {"Authorization": "Bearer nope"}),
           ({"device_id": "d", "lat": "1", "lon": 2, "extra": True}, PUB)]
    answers = {}
    for name, content_type in [("short", {"Content-Type": "application/json"}),
                               ("route", {"Content-Type": "application/ping+json"})]:
        with TestClient(create_app(_twin(tmp_path, name))) as c:
            got = [c.post("/v1/pings", content=json.dumps(b), headers={**PUB, **content_type})
                   for b in bodies]
            got += [c.post("/v1/pings", content=json.dumps(b), headers={**h, **content_type})
                    for b, h in bad]
            metrics = c.get("/metrics").text
            answers[name] = ([(r.status_code, r.content, r.headers["content-type"]) for r in got],
                             sorted(line for line in metrics.splitlines()
                                    if line.startswith(("geo_engine_pings", "geo_engine_offers",
                                                        "geo_engine_events", "geo_engine_requests_total"))
                                    and "_created" not in line))
    assert answers["short"] == answers["route"]
    statuses = [s for s, _, _ in answers["short"][0]]
    assert statuses == [200] * 7 + [422, 422, 401, 401, 422]
    pushed = [json.loads(b)["offer"] for s, b, _ in answers["short"][0][:7]]
    assert [o and o["campaign_id"] for o in pushed] == [None, "coffee", "near", None, None, "coffee", "near"]
    assert 'route="/v1/pings",status="200"} 7.0' in "\n".join(answers["short"][1])


@pytest.fixture
def guarded(database):
    """A new database: device tokens are on (SPEC 6.1), as for every database made now."""
    engine = Engine(Settings(trust_client_clock=True, db=database,
                             admin_key="admin-key-for-tests", publishable_key="publishable-key-for-tests",
                             min_offer_interval_s=0, device_pings_per_s=0))
    assert engine.tokens_required
    engine.import_files([DEMO])
    ensure_keys(engine.db.apikeys, engine.settings)
    engine.put_campaign("coffee", coffee())
    with TestClient(create_app(engine)) as c:
        yield c
    engine.db.close()


def register(client, device_id, headers=PUB):
    r = client.post("/v1/devices", json={"device_id": device_id}, headers=headers)
    return r


@pytest.mark.parametrize("content_type", ["application/json", "application/ping+json"])
def test_a_publishable_key_alone_cannot_speak_for_a_registered_phone(guarded, content_type):
    """Attacks: with only the publishable key, mute a phone, read its coupon by replaying its
    ping_id, or opt it back in. Each needs the phone's token now (both ping paths)."""
    r = register(guarded, "victim")
    assert r.status_code == 201 and r.json()["device_id"] == "victim"
    token = {"X-Device-Token": r.json()["device_token"]}

    def post(body, headers):
        return guarded.post("/v1/pings", content=json.dumps(body),
                            headers={**headers, "Content-Type": content_type})

    body = {"device_id": "victim", **FERRY, "ping_id": "p-1", "timestamp": "2026-11-24T18:00:00Z"}
    mine = post(body, {**PUB, **token})
    assert mine.status_code == 200 and mine.json()["offer"]["coupon_code"] is None
    assert mine.json()["offer"]["campaign_id"] == "coffee"
    for headers in (PUB, {**PUB, "X-Device-Token": "dt_guess"},
                    {**PUB, "X-Device-Token": register(guarded, "attacker").json()["device_token"]}):
        stolen = post(body, headers)  # the replay of its ping_id
        assert stolen.status_code == 401 and "X-Device-Token" in stolen.json()["detail"]
        mute = post({"device_id": "victim", **FERRY, "timestamp": "9999-12-29T00:00:00Z"}, headers)
        assert mute.status_code == 401
    # opting out needs no token; opting back in does
    assert guarded.put("/v1/devices/victim/consent", json={"location_offers": False},
                       headers=PUB).status_code == 200
    back = guarded.put("/v1/devices/victim/consent", json={"location_offers": True}, headers=PUB)
    assert back.status_code == 401
    assert guarded.put("/v1/devices/victim/consent", json={"location_offers": True},
                       headers={**PUB, **token}).status_code == 200
    # the app's own replay still gets its first answer, byte for byte
    assert post(body, {**PUB, **token}).content == mine.content


def test_registering_a_phone_twice_and_the_admin_key(guarded):
    first = register(guarded, "d1").json()["device_token"]
    again = register(guarded, "d1")
    assert again.status_code == 409 and "registered already" in again.json()["detail"]
    # the admin key speaks for any device: pings with no token, and registers again (a new token)
    assert guarded.post("/v1/pings", json={"device_id": "d1", **FERRY}, headers=ADMIN).status_code == 200
    renewed = register(guarded, "d1", ADMIN)
    assert renewed.status_code == 201 and renewed.json()["device_token"] != first
    old = guarded.post("/v1/pings", json={"device_id": "d1", **FERRY},
                       headers={**PUB, "X-Device-Token": first})
    assert old.status_code == 401
    new = guarded.post("/v1/pings", json={"device_id": "d1", **FERRY},
                       headers={**PUB, "X-Device-Token": renewed.json()["device_token"]})
    assert new.status_code == 200
    # forgetting a device forgets its token: the device may be registered afresh
    assert guarded.delete("/v1/devices/d1", headers=ADMIN).status_code == 200
    gone = guarded.post("/v1/pings", json={"device_id": "d1", **FERRY},
                        headers={**PUB, "X-Device-Token": renewed.json()["device_token"]})
    assert gone.status_code == 401
    assert register(guarded, "d1").status_code == 201
    bad = register(guarded, "")
    assert bad.status_code == 422 and bad.json()["problems"][0]["field"] == "device_id"


def test_a_token_replaced_through_another_process_stops_working_here(tmp_path):
    from geo_engine.tokens import token_hash

    here = Engine(Settings(db=str(tmp_path / "t.db"), reload_check_s=0.0))
    token = here.register_device("d")
    assert here.tokens.matches("d", token) and not here.tokens.matches("d", "dt_other")
    there = Engine(Settings(db=str(tmp_path / "t.db")))
    renewed = there.register_device("d", replace=True)
    assert not here.tokens.matches("d", token) and here.tokens.matches("d", renewed)
    assert there.db.tokens.hash_of("d") == token_hash(renewed)  # stored hashed, never in clear
    with sqlite3.connect(tmp_path / "t.db") as conn:
        assert renewed not in str(conn.execute("SELECT * FROM device_tokens").fetchall())
    there.db.close()


def test_the_openapi_document_tells_the_truth(client):
    doc = client.get("/openapi.json").json()
    assert doc["components"]["securitySchemes"]["HTTPBearer"] == {
        "type": "http", "scheme": "bearer", "description": doc["components"]["securitySchemes"]
        ["HTTPBearer"]["description"]}
    error = {"$ref": "#/components/schemas/ErrorOut"}
    bodies = {}
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            responses = op["responses"]
            for status in ("413", "429", "503"):  # any request may be refused before it is read
                assert responses[status]["content"]["application/json"]["schema"] == error, (path, status)
            if path.startswith("/v1/"):
                assert responses["401"]["content"]["application/json"]["schema"] == error
                assert responses["422"]["content"]["application/json"]["schema"] == error
                assert op["security"] == [{"HTTPBearer": []}], (method, path)
            assert "Retry-After" in responses["429"]["headers"]
            shown = any("example" in c for r in responses.values() for c in r.get("content", {}).values())
            assert shown, f"{method} {path} has no example"
            if "requestBody" in op:
                bodies[(method, path)] = op["requestBody"]["content"]["application/json"]["schema"]
    assert bodies[("post", "/v1/geofences/import")] == {"$ref": "#/components/schemas/FeatureCollectionIn"}
    assert bodies[("put", "/v1/campaigns/{campaign_id}")] == {"$ref": "#/components/schemas/CampaignIn"}
    assert all("$ref" in b for b in bodies.values())  # no "any object"
    assert "409" in doc["paths"]["/v1/pings"]["post"]["responses"]
    assert "404" in doc["paths"]["/v1/stores/{store_id}"]["delete"]["responses"]


def test_the_docs_pages_need_no_network(client):
    for page in ("/docs", "/redoc"):
        html = client.get(page).text
        scripts = re.findall(r'(?:src|href)="([^"]+)"', html)
        assert scripts and all(s.startswith("/") for s in scripts), scripts  # nothing from a CDN
        for s in scripts:
            assert client.get(s).status_code == 200, s
    assert "cdn.jsdelivr" not in client.get("/docs").text


def test_stores_are_listed_by_page_and_deleted_with_their_geofences(client):
    first = client.get("/v1/stores", params={"limit": 20}, headers=ADMIN).json()
    assert len(first["stores"]) == 20 and first["next"] == first["stores"][-1]["id"]
    rest = client.get("/v1/stores", params={"limit": 20, "after": first["next"]}, headers=ADMIN).json()
    ids = [f["id"] for f in first["stores"] + rest["stores"]]
    assert len(ids) == 32 and ids == sorted(ids) and rest["next"] is None
    assert client.get("/v1/stores", headers=PUB).status_code == 403
    client.put("/v1/campaigns/coffee", json=coffee(), headers=ADMIN)
    inside = client.post("/v1/pings", json={"device_id": "d", **FERRY}, headers=PUB).json()
    assert inside["events"][0]["store_id"] == "fc-ferry"
    gone = client.delete("/v1/stores/fc-ferry", headers=ADMIN)
    assert gone.status_code == 200 and gone.json() == {"deleted": "fc-ferry", "geofences": ["fc-ferry-hall"]}
    assert client.delete("/v1/stores/fc-ferry", headers=ADMIN).status_code == 404
    assert client.get("/v1/geofences/fc-ferry-hall", headers=ADMIN).status_code == 404
    after = client.post("/v1/pings", json={"device_id": "d", **FERRY}, headers=PUB).json()
    assert after["events"] == [] and after["nearest_store"]["store_id"] != "fc-ferry"
    assert client.get("/health").json()["stores"] == 31


def test_export_round_trips_a_chain_with_its_styles(client, tmp_path):
    styled = {"type": "FeatureCollection", "features": [
        {"type": "Feature", "id": 7, "properties": {"kind": "store", "name": "Pier 39",
                                                    "opening_hours": {"mon": [["09:00", "21:00"]]},
                                                    "marker-color": "#ff0000", "fid": 7},
         "geometry": {"type": "Point", "coordinates": [-122.4098, 37.8087]}},
        {"type": "Feature", "properties": {"id": "pier-fence", "store_id": "7", "stroke": "#555555",
                                           "fill": "#ff0000", "fill-opacity": 0.3, "tags": ["pier"],
                                           "metadata": {"name": "kept under metadata", "floor": 1}},
         "geometry": {"type": "Polygon", "coordinates": [[[-122.411, 37.808], [-122.408, 37.808],
                                                          [-122.408, 37.810], [-122.411, 37.808]]]}}]}
    assert client.post("/v1/geofences/import", json=styled, headers=ADMIN).status_code == 200
    exported = client.get("/v1/export", headers=ADMIN).json()
    pier = next(f for f in exported["features"] if f["id"] == "7")
    assert pier["properties"]["marker-color"] == "#ff0000" and "metadata" not in pier["properties"]
    fence = next(f for f in exported["features"] if f["id"] == "pier-fence")
    assert fence["properties"]["stroke"] == "#555555" and fence["properties"]["fill-opacity"] == 0.3
    assert fence["properties"]["metadata"] == {"name": "kept under metadata"}  # a property's name
    # into an empty database, unchanged
    other = Engine(Settings(db=str(tmp_path / "empty.db"), admin_key="admin-key-for-tests",
                            publishable_key="publishable-key-for-tests"))
    ensure_keys(other.db.apikeys, other.settings)
    with TestClient(create_app(other)) as empty:
        assert empty.post("/v1/geofences/import", json=exported, headers=ADMIN).status_code == 200
        assert empty.get("/v1/export", headers=ADMIN).json() == exported
