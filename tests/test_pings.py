"""The offer decision as named scenarios (SPEC section 6), driven through Engine.handle_ping."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta, timezone

import orjson
import pytest

from geo_engine import Database, Engine, InvalidInput, Settings
from geo_engine.model import Ping

from .conftest import WGS84

SF = (37.7793, -122.4193)  # the store; its geofence is a 100 m circle
FIJI = (-16.5, 179.9995)  # a store whose 200 m circle crosses the antimeridian
T0 = datetime(2026, 11, 24, 18, 0, tzinfo=UTC)  # Tuesday 10:00 in San Francisco


def feature(props, lon, lat):
    return {"type": "Feature", "properties": props, "geometry": {"type": "Point", "coordinates": [lon, lat]}}


@pytest.fixture
def engine(tmp_path, database):
    path = tmp_path / "world.geojson"
    week = {d: [["09:00", "21:00"]] for d in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")}
    path.write_text(json.dumps({"type": "FeatureCollection", "features": [
        feature({"kind": "store", "id": "s-sf", "tags": ["coffee"], "opening_hours": week}, SF[1], SF[0]),
        feature({"id": "g-sf", "store_id": "s-sf", "radius_m": 100}, SF[1], SF[0]),
        feature({"kind": "store", "id": "s-fiji", "tags": ["coffee"]}, FIJI[1], FIJI[0]),
        feature({"id": "g-fiji", "store_id": "s-fiji", "radius_m": 200}, FIJI[1], FIJI[0]),
    ]}))
    e = Engine(Settings(trust_client_clock=True, db=database, min_offer_interval_s=0))
    e.import_files([path])
    yield e
    e.db.close()


def campaign(cid="c1", trigger=None, **extra):
    return {"id": cid, "offer": {"title": f"offer {cid}"}, "targets": {"store_ids": ["s-sf"]},
            "trigger": trigger or {"type": "enter"}, **extra}


def at(metres_east: float, origin=SF):
    lon, lat, _ = WGS84.fwd(origin[1], origin[0], 90.0, metres_east)
    return lat, lon


def ping(engine, device, where, t, accuracy_m=10.0, **kw):
    return orjson.loads(engine.handle_ping(Ping(device, where[0], where[1], accuracy_m, t, **kw)).body)


def types(answer):
    return [e["type"] for e in answer["events"]]


def reasons(answer):
    return {r["campaign_id"]: r["reason"] for r in answer["decision"]["rejected"]}


def visit(engine, device, t, **kw):
    """Walk in: a ping far away, then one at the store. Returns the second answer."""
    ping(engine, device, at(2000), t - timedelta(minutes=10))
    return ping(engine, device, SF, t, **kw)


def test_walking_in_and_out(engine):
    engine.put_campaign("c1", campaign())
    a = ping(engine, "d", at(600), T0)
    assert types(a) == [] and a["offer"] is None
    a = ping(engine, "d", at(40), T0 + timedelta(minutes=9))
    assert a["events"] == [{"type": "enter", "geofence_id": "g-sf", "store_id": "s-sf", "confidence": "high"}]
    assert a["offer"]["campaign_id"] == "c1" and a["offer"]["store_id"] == "s-sf"
    assert a["offer"]["distance_m"] == pytest.approx(40.0, abs=0.01)
    assert a["decision"] == {"considered": 1, "rejected": []}
    a = ping(engine, "d", at(200), T0 + timedelta(minutes=21))
    assert a["events"] == [{"type": "exit", "geofence_id": "g-sf", "store_id": "s-sf", "duration_s": 720.0}]
    assert [p[1] for p in engine.db.devices.pushes("d")] == ["c1"]
    assert [e[0] for e in engine.db.devices.events("d")] == ["enter", "exit"]


def test_first_ping_inside_is_an_enter(engine):
    assert types(ping(engine, "d", SF, T0)) == ["enter"]


def test_gps_jitter_on_the_boundary_does_not_flap(engine):
    seen = []
    for k, metres in enumerate([90, 112, 97, 118, 104, 95, 120]):  # the edge is at 100 m
        seen += types(ping(engine, "d", at(metres), T0 + timedelta(seconds=30 * k)))
    assert seen == ["enter"]
    # farther out than the margin max(25 m, accuracy): a real exit
    assert types(ping(engine, "d", at(130), T0 + timedelta(minutes=5))) == ["exit"]
    # and a device must exit before it can enter again
    assert types(ping(engine, "d", SF, T0 + timedelta(minutes=6))) == ["enter"]


def test_poor_accuracy_never_enters_or_exits(engine):
    a = ping(engine, "d", SF, T0, accuracy_m=1500)
    assert types(a) == [] and a["flags"] == ["low_accuracy"]
    ping(engine, "d", SF, T0 + timedelta(minutes=1))
    assert types(ping(engine, "d", at(3000), T0 + timedelta(minutes=3), accuracy_m=2000)) == []


def test_dwell_once_per_visit(engine):
    engine.put_campaign("stay", campaign("stay", {"type": "dwell", "dwell_s": 300}))
    a = ping(engine, "d", SF, T0)
    assert types(a) == ["enter"] and a["offer"] is None
    assert types(ping(engine, "d", at(20), T0 + timedelta(seconds=200))) == []
    a = ping(engine, "d", at(10), T0 + timedelta(seconds=320))
    assert types(a) == ["dwell"] and a["offer"]["campaign_id"] == "stay"
    assert types(ping(engine, "d", at(5), T0 + timedelta(seconds=900))) == []


def test_schedule_crossing_midnight(engine):
    # Saturday 22:00 to 02:00 in the store's zone (America/Los_Angeles, PST in late November)
    engine.put_campaign("late", campaign("late", schedule={"days": ["sat"], "hours": [["22:00", "02:00"]]}))
    sat_2330 = datetime(2026, 11, 29, 7, 30, tzinfo=UTC)  # Sat 23:30 PST
    cases = [(sat_2330, None), (sat_2330 + timedelta(hours=2), None),  # Sun 01:30: Saturday's span
             (sat_2330 + timedelta(hours=3), "outside_schedule"),  # Sun 02:30
             (sat_2330 - timedelta(days=1), "outside_schedule")]  # Fri 23:30
    for k, (t, reason) in enumerate(cases):
        a = visit(engine, f"d{k}", t)
        assert (a["offer"] is None) == (reason is not None), (t, a)
        assert reasons(a).get("late") == reason


def test_schedule_follows_daylight_saving_in_the_stores_zone(engine):
    engine.put_campaign("am", campaign("am", schedule={"hours": [["09:00", "10:00"]]}))
    # 09:30 local on both sides of the 2026-11-01 change: 16:30 UTC in PDT, 17:30 UTC in PST
    pdt, pst = datetime(2026, 10, 30, 16, 30, tzinfo=UTC), datetime(2026, 11, 2, 17, 30, tzinfo=UTC)
    for k, t in enumerate([pdt, pst]):
        assert visit(engine, f"in{k}", t)["offer"]["campaign_id"] == "am"
    # 16:30 UTC after the change is 08:30 PST: outside
    early = datetime(2026, 11, 2, 16, 30, tzinfo=UTC)
    assert reasons(visit(engine, "out", early))["am"] == "outside_schedule"


def test_a_closed_store_gets_no_offer(engine):
    engine.put_campaign("c1", campaign(only_when_open=True))
    late = datetime(2026, 11, 25, 6, 30, tzinfo=UTC)  # Tue 22:30 in San Francisco: closed
    assert reasons(visit(engine, "d1", late)) == {"c1": "store_closed"}
    assert visit(engine, "d2", T0)["offer"]["campaign_id"] == "c1"


def walk_in_again(engine, device, t):
    ping(engine, device, at(500), t - timedelta(minutes=1))
    return ping(engine, device, SF, t)


def test_per_device_per_day_cap(engine):
    engine.put_campaign("c1", campaign(caps={"per_device_per_day": 1}))
    assert visit(engine, "d", T0)["offer"] is not None
    assert reasons(walk_in_again(engine, "d", T0 + timedelta(hours=2))) == {"c1": "frequency_cap"}
    assert walk_in_again(engine, "d", T0 + timedelta(days=1))["offer"] is not None


def test_per_device_total_cap(engine):
    engine.put_campaign("c1", campaign(caps={"per_device_total": 2}))
    got = [walk_in_again(engine, "d", T0 + timedelta(days=k))["offer"] is not None for k in range(4)]
    assert got == [True, True, False, False]


def test_cooldown(engine):
    engine.put_campaign("c1", campaign(caps={"cooldown_s": 3600}))
    assert visit(engine, "d", T0)["offer"] is not None
    assert reasons(walk_in_again(engine, "d", T0 + timedelta(minutes=30))) == {"c1": "cooldown"}
    assert walk_in_again(engine, "d", T0 + timedelta(minutes=62))["offer"] is not None


def test_budget_runs_out(engine):
    engine.put_campaign("c1", campaign(caps={"budget_total": 2}))
    offers = [visit(engine, f"d{k}", T0)["offer"] is not None for k in range(4)]
    assert offers == [True, True, False, False]
    assert reasons(visit(engine, "d9", T0)) == {"c1": "budget_exhausted"}


def test_holdout_is_deterministic_by_device(engine):
    engine.put_campaign("c1", campaign(holdout_pct=50))
    first = {f"d{k}": reasons(visit(engine, f"d{k}", T0)).get("c1") for k in range(40)}
    held = [d for d, r in first.items() if r == "holdout"]
    assert 8 <= len(held) <= 32  # about half
    assert set(first.values()) <= {None, "holdout"}
    for d in held[:3]:
        assert reasons(walk_in_again(engine, d, T0 + timedelta(days=1))) == {"c1": "holdout"}


def test_consent(engine):
    engine.put_campaign("c1", campaign())
    engine.set_consent("d", False)
    assert reasons(visit(engine, "d", T0)) == {"c1": "opted_out"}
    engine.set_consent("d", True)
    assert walk_in_again(engine, "d", T0 + timedelta(hours=1))["offer"] is not None


def test_a_replayed_ping_id_gets_the_same_answer_and_pushes_nothing(engine):
    engine.put_campaign("c1", campaign())
    first = engine.handle_ping(Ping("d", SF[0], SF[1], 10, T0, ping_id="p-1")).body
    again = engine.handle_ping(Ping("d", SF[0], SF[1], 10, T0, ping_id="p-1")).body
    assert again == first and orjson.loads(first)["offer"] is not None
    assert len(engine.db.devices.pushes("d")) == 1
    assert len(engine.db.devices.events("d")) == 1


def test_a_ping_id_reused_with_another_body_is_a_conflict(engine):
    """Attack: reusing a ping_id with another body silently returned the first answer."""
    from geo_engine import Conflict

    engine.put_campaign("c1", campaign())
    first = engine.handle_ping(Ping("d", SF[0], SF[1], 10, T0, ping_id="p-1")).body
    for other in [Ping("d", SF[0] + 0.001, SF[1], 10, T0, ping_id="p-1"),
                  Ping("d", SF[0], SF[1], 11, T0, ping_id="p-1"),
                  Ping("d", SF[0], SF[1], 10, T0 + timedelta(seconds=1), ping_id="p-1"),
                  Ping("d", SF[0], SF[1], 10, T0, ping_id="p-1", segments=("vip",))]:
        with pytest.raises(Conflict, match="ping_id 'p-1' already answered another ping"):
            engine.handle_ping(other)
    # the same time written in another zone is the same ping; another device may use the id
    same = T0.astimezone(timezone(timedelta(hours=-8)))
    assert engine.handle_ping(Ping("d", SF[0], SF[1], 10, same, ping_id="p-1")).body == first
    engine.handle_ping(Ping("e", SF[0], SF[1], 10, T0, ping_id="p-1"))
    assert len(engine.db.devices.pushes("d")) == 1 and len(engine.db.devices.pushes("e")) == 1


def test_an_out_of_order_ping_changes_nothing(engine):
    engine.put_campaign("c1", campaign())
    ping(engine, "d", at(500), T0)
    a = ping(engine, "d", SF, T0 - timedelta(minutes=5))
    assert a["flags"] == ["out_of_order"] and types(a) == [] and a["offer"] is None
    assert engine.db.devices.events("d") == [] and engine.db.devices.pushes("d") == []
    assert types(ping(engine, "d", SF, T0 + timedelta(minutes=5))) == ["enter"]


def test_a_teleport_is_flagged_and_pushes_nothing(engine):
    engine.put_campaign("c1", campaign())
    ping(engine, "d", (40.7128, -74.0060), T0)  # New York
    a = ping(engine, "d", SF, T0 + timedelta(minutes=2))  # San Francisco two minutes later
    assert a["flags"] == ["suspicious_movement"]
    assert a["offer"] is None and reasons(a) == {"c1": "suspicious_movement"}
    assert engine.db.devices.pushes("d") == [] and [e[0] for e in engine.db.devices.events("d")] == []


def test_a_store_across_the_antimeridian(engine):
    engine.put_campaign("fiji", campaign("fiji", targets={"store_ids": ["s-fiji"]}))
    west = (FIJI[0], -179.9995)  # 107 m from the store, on the other side of ±180
    a = ping(engine, "d", west, T0)
    assert types(a) == ["enter"] and a["offer"]["campaign_id"] == "fiji"
    assert a["nearest_store"]["store_id"] == "s-fiji"
    across = WGS84.inv(FIJI[1], FIJI[0], -179.9995, FIJI[0])[2]
    assert across == pytest.approx(107, abs=1)
    assert a["nearest_store"]["distance_m"] == pytest.approx(across, abs=1e-3)


def test_ranking_and_lower_priority(engine):
    engine.put_campaign("b", campaign("b", priority=5))
    engine.put_campaign("a", campaign("a", priority=5))
    engine.put_campaign("z", campaign("z", priority=9))
    a = visit(engine, "d", T0)
    assert a["offer"]["campaign_id"] == "z"
    assert reasons(a) == {"a": "lower_priority", "b": "lower_priority"}
    engine.delete_campaign("z")
    assert visit(engine, "e", T0)["offer"]["campaign_id"] == "a"  # equal priority: by id


def test_the_engine_wide_interval_between_offers(tmp_path, engine):
    engine.settings = Settings(trust_client_clock=True, db=engine.settings.db, min_offer_interval_s=900)
    engine.put_campaign("c1", campaign(caps={}))
    assert visit(engine, "d", T0)["offer"] is not None
    assert reasons(walk_in_again(engine, "d", T0 + timedelta(minutes=5))) == {"c1": "device_interval"}


def test_confidence_and_audience_filters(engine):
    engine.put_campaign("sure", campaign("sure", min_confidence="high"))
    engine.put_campaign("vip", campaign("vip", audience={"segments": ["loyalty"]}))
    a = ping(engine, "d", at(80), T0, accuracy_m=40)  # inside, but the 40 m circle is not
    assert a["events"][0]["confidence"] == "medium"
    assert reasons(a) == {"sure": "low_confidence", "vip": "not_in_audience"}
    b = ping(engine, "e", SF, T0, segments=("loyalty",))
    # both qualify now; equal priority and distance: the campaign id decides
    assert b["offer"]["campaign_id"] == "sure" and reasons(b) == {"vip": "lower_priority"}


def test_nearby_campaign_needs_no_geofence(engine):
    engine.put_campaign("near", campaign("near", {"type": "nearby", "radius_m": 500}))
    assert ping(engine, "d", at(450), T0)["offer"]["campaign_id"] == "near"
    assert ping(engine, "e", at(650), T0)["decision"]["considered"] == 0


def test_disabled_campaign_is_not_considered(engine):
    engine.put_campaign("c1", campaign(enabled=False))
    assert visit(engine, "d", T0)["decision"] == {"considered": 0, "rejected": []}


def test_two_pings_at_once_never_both_take_the_last_slot(engine):
    engine.put_campaign("c1", campaign(caps={"budget_total": 1}))
    barrier = threading.Barrier(8)

    def go(k):
        barrier.wait()
        engine.handle_ping(Ping(f"d{k}", SF[0], SF[1], 10, T0))
    threads = [threading.Thread(target=go, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(engine.db.devices.pushes()) == 1


def test_forgetting_a_device(engine):
    engine.put_campaign("c1", campaign())
    visit(engine, "d", T0)
    engine.forget_device("d")
    assert engine.db.devices.pushes("d") == [] and engine.db.devices.events("d") == []
    assert types(ping(engine, "d", SF, T0 + timedelta(hours=1))) == ["enter"]


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"device_id": ""}, "device_id must be 1 to 128 printable characters"),
    ({"device_id": "x" * 129}, "device_id must be 1 to 128"),
    ({"device_id": "bad\nid"}, "printable"),
    ({"lat": 91.0}, r"lat 91.0 is outside \[-90, 90\]"),
    ({"accuracy_m": -1.0}, "accuracy_m must be a number of metres >= 0"),
    ({"timestamp": datetime(2026, 1, 1)}, "timestamp must carry a time zone"),
])
def test_bad_pings_are_refused(kwargs, match):
    base = {"device_id": "d", "lat": 1.0, "lon": 1.0}
    with pytest.raises(InvalidInput, match=match):
        Ping(**{**base, **kwargs})


# --- two worker processes on one database: each keeps device state cached in memory ----------

@pytest.fixture
def twin(engine):
    """A second Engine on the same database file, as a second worker process would have."""
    other = Engine(engine.settings)
    yield other
    other.db.close()


def test_a_worker_with_a_stale_device_copy_rereads_it(engine, twin):
    engine.put_campaign("c1", campaign(caps={"per_device_total": 1}))
    twin.reload_campaigns()
    assert visit(engine, "d", T0)["offer"] is not None  # engine caches: inside g-sf, one push
    assert types(ping(twin, "d", at(300), T0 + timedelta(minutes=5))) == ["exit"]
    # engine's copy still says "inside": were it trusted, walking in would be no event at all
    a = ping(engine, "d", SF, T0 + timedelta(minutes=10))
    assert types(a) == ["enter"] and reasons(a) == {"c1": "frequency_cap"}
    assert len(engine.db.devices.pushes("d")) == 1


def test_caps_hold_across_workers(engine, twin):
    engine.put_campaign("c1", campaign(caps={"per_device_per_day": 1, "cooldown_s": 60}))
    twin.reload_campaigns()
    workers = [engine, twin]
    offers = []
    for k in range(6):  # walk in and out, pings alternating between the two workers
        t = T0 + timedelta(minutes=10 * k)
        ping(workers[k % 2], "d", at(500), t)
        offers.append(ping(workers[(k + 1) % 2], "d", SF, t + timedelta(minutes=5))["offer"] is not None)
    assert offers == [True, False, False, False, False, False]
    assert len(engine.db.devices.pushes("d")) == 1


def test_consent_and_forgetting_reach_every_worker(engine, twin):
    engine.put_campaign("c1", campaign())
    twin.reload_campaigns()
    ping(engine, "d", at(500), T0)  # engine now has "d" cached
    twin.set_consent("d", False)
    assert reasons(ping(engine, "d", SF, T0 + timedelta(minutes=5))) == {"c1": "opted_out"}
    twin.forget_device("d")
    # engine's copy says inside and opted out; the device is new again: enter, offer
    a = ping(engine, "d", SF, T0 + timedelta(minutes=10))
    assert types(a) == ["enter"] and a["offer"]["campaign_id"] == "c1"


def test_device_state_survives_a_restart(engine):
    import gc

    engine.put_campaign("c1", campaign(caps={"per_device_per_day": 1}))
    visit(engine, "d", T0)
    visit(engine, "e", T0)
    again = Engine(engine.settings)  # a restarted process: nothing cached
    try:
        assert again.start_serving() == 2  # as serve does at start: both devices read back
        assert gc.get_freeze_count() > 0
        assert types(ping(again, "d", SF, T0 + timedelta(minutes=5))) == []  # still inside
        assert reasons(walk_in_again(again, "d", T0 + timedelta(hours=1))) == {"c1": "frequency_cap"}
    finally:
        gc.unfreeze()
        again.db.close()


def test_changes_made_by_another_worker_reach_this_one(engine, twin):
    import dataclasses

    engine.settings = dataclasses.replace(engine.settings, reload_check_s=0.0)  # look every time
    twin.put_campaign("c1", campaign())
    assert visit(engine, "d", T0)["offer"]["campaign_id"] == "c1"
    twin.delete_campaign("c1")
    assert visit(engine, "e", T0)["decision"]["considered"] == 0
    far = at(5000)
    assert engine.locate(*far).geofences == []
    twin.import_geojson(json.dumps({"type": "FeatureCollection", "features": [
        feature({"id": "g-new", "store_id": "s-sf", "radius_m": 300}, far[1], far[0])]}))
    assert [g.geofence_id for g in engine.locate(*far).geofences] == ["g-new"]


def test_without_a_change_nothing_is_rebuilt(engine):
    import dataclasses

    engine.settings = dataclasses.replace(engine.settings, reload_check_s=0.0)
    snapshot = engine.snapshot
    ping(engine, "d", SF, T0)
    engine.locate(*SF)
    assert engine.snapshot is snapshot


def test_a_nearby_offer_names_the_nearest_targeted_store_in_reach(tmp_path):
    origin = (48.8566, 2.3522)

    def spot(bearing, metres):
        lon, lat, _ = WGS84.fwd(origin[1], origin[0], bearing, metres)
        return lat, lon
    places = {"s-east": (spot(90, 300), ["books"]), "s-north": (spot(0, 200), ["books"]),
              "s-close": (spot(200, 50), ["coffee"]), "s-far": (spot(45, 900), ["books"])}
    path = tmp_path / "paris.geojson"
    path.write_text(json.dumps({"type": "FeatureCollection", "features": [
        feature({"kind": "store", "id": sid, "tags": tags}, lon, lat)
        for sid, ((lat, lon), tags) in places.items()]}))
    e = Engine(Settings(trust_client_clock=True, db=str(tmp_path / "geo.db"), min_offer_interval_s=0))
    e.import_files([path])
    e.put_campaign("books", {"id": "books", "offer": {"title": "read"}, "targets": {"tags": ["books"]},
                             "trigger": {"type": "nearby", "radius_m": 400}, "min_confidence": "high"})
    a = ping(e, "d", origin, T0, accuracy_m=20)
    want = min((WGS84.inv(origin[1], origin[0], lon, lat)[2], sid)
               for sid, ((lat, lon), tags) in places.items() if "books" in tags)
    assert a["offer"]["store_id"] == want[1] == "s-north"
    assert a["offer"]["distance_m"] == pytest.approx(want[0], abs=1e-3)
    assert a["nearest_store"]["store_id"] == "s-close"
    # 200 m away with a 250 m accuracy circle: in reach, but not surely (min_confidence high)
    assert reasons(ping(e, "e", origin, T0, accuracy_m=250)) == {"books": "low_confidence"}
    # beyond the radius of every targeted store: not considered at all
    assert ping(e, "f", spot(180, 500), T0)["decision"]["considered"] == 0


def _stored_last_ts(engine, device):
    other = Database(engine.settings.database)  # another connection: what is committed
    try:
        return other.sql.query("SELECT last_ts FROM devices WHERE device_id = ?", (device,))[0][0]
    finally:
        other.close()


def test_a_servers_quiet_ping_writes_nothing_until_written_behind(engine):
    """Serving, a ping with no event and no offer is decided on the kept state with no write
    transaction; its position is written behind (Devices.flush) and never lost by a write."""
    engine.start_serving()
    engine.put_campaign("c1", campaign())
    ping(engine, "d", at(2000), T0)  # first sight of the device: the write path
    first = T0.timestamp()
    assert _stored_last_ts(engine, "d") == first
    a = ping(engine, "d", at(1900), T0 + timedelta(minutes=1))  # quiet
    assert a["events"] == [] and a["offer"] is None
    assert _stored_last_ts(engine, "d") == first  # nothing written yet
    assert engine.db.devices.flush() == 1
    assert _stored_last_ts(engine, "d") == first + 60
    # an eventful ping after quiet ones writes the whole state, kept position included
    ping(engine, "d", at(1800), T0 + timedelta(minutes=2))
    a = ping(engine, "d", SF, T0 + timedelta(minutes=12))
    assert [e["type"] for e in a["events"]] == ["enter"] and a["offer"]["campaign_id"] == "c1"
    assert _stored_last_ts(engine, "d") == first + 12 * 60
    assert [p[1] for p in engine.db.devices.pushes("d")] == ["c1"]


def test_a_quiet_ping_on_a_copy_another_process_made_stale_takes_the_write_path(engine, tmp_path):
    engine.start_serving()
    ping(engine, "d", at(40), T0)  # enters g-sf, through this process: the copy says inside
    a = ping(engine, "d", at(35), T0 + timedelta(minutes=1))  # quiet: the copy found current
    assert a["events"] == [] and a["offer"] is None
    # another worker
    other = Engine(Settings(trust_client_clock=True, db=engine.path, min_offer_interval_s=0))
    b = ping(other, "d", at(600), T0 + timedelta(minutes=5))
    assert [e["type"] for e in b["events"]] == ["exit"]
    # by this process's stale copy the device is still inside, so a ping inside would be quiet;
    # the row's version gives it away, and the ping enters again, as the stored state says
    a = ping(engine, "d", at(30), T0 + timedelta(minutes=10))
    assert [e["type"] for e in a["events"]] == ["enter"]
    assert [e[0] for e in engine.db.devices.events("d")] == ["enter", "exit", "enter"]
    other.db.close()


@pytest.mark.parametrize("database", ["sqlite"], indirect=True)  # SQLite's PRAGMA data_version
def test_quiet_pings_read_no_table_while_no_other_connection_commits(engine):
    """A quiet ping asks SQLite one thing, whether another connection has committed
    (PRAGMA data_version); its device row and the change counters are read again only once
    that has moved."""
    engine.start_serving()
    engine.put_campaign("c1", campaign())
    ping(engine, "d", at(2000), T0)
    ping(engine, "d", at(1950), T0 + timedelta(minutes=1))  # quiet: checks the row once
    statements: list[str] = []
    engine.db.sql._conn.set_trace_callback(statements.append)
    for minute in range(2, 6):
        a = ping(engine, "d", at(1900 + minute), T0 + timedelta(minutes=minute))
        assert a["events"] == [] and a["offer"] is None
    assert statements == ["PRAGMA data_version"] * 4
    # a ping that writes (it enters, and is offered c1), then a quiet one: the row it wrote and
    # committed is known current, so the quiet one reads nothing either
    assert types(ping(engine, "d", SF, T0 + timedelta(minutes=6)))[0] == "enter"
    statements.clear()
    a = ping(engine, "d", at(10), T0 + timedelta(minutes=6, seconds=30))
    assert a["events"] == [] and a["offer"] is None
    assert statements == ["PRAGMA data_version"]
    # another process commits: the next quiet ping reads
    other = Engine(Settings(trust_client_clock=True, db=engine.path))
    other.set_consent("someone-else", True)
    statements.clear()
    ping(engine, "d", at(15), T0 + timedelta(minutes=7))
    engine.db.sql._conn.set_trace_callback(None)
    assert statements[0] == "PRAGMA data_version"
    assert any("FROM meta" in s for s in statements)
    assert any("SELECT version FROM devices" in s for s in statements)
    other.db.close()


@pytest.mark.parametrize("serving", [False, True])
def test_a_change_made_by_another_process_is_in_force_at_the_next_decision(engine, serving):
    """Two processes on one file (SPEC 8): a campaign deleted, or its budget lowered, through
    one is never pushed by the other after the change, however soon it pings (the change
    counters are read in the ping's own transaction, not only once a second)."""
    if serving:
        engine.start_serving()
    engine.put_campaign("c1", campaign(caps={"budget_total": 100}))
    other = Engine(Settings(trust_client_clock=True, db=engine.path, min_offer_interval_s=0))
    assert ping(engine, "a", SF, T0)["offer"]["campaign_id"] == "c1"  # spend 1
    other.put_campaign("c1", campaign(caps={"budget_total": 1}))  # lowered to what is spent
    a = ping(engine, "b", SF, T0)
    assert a["offer"] is None and reasons(a) == {"c1": "budget_exhausted"}
    other.delete_campaign("c1")
    other.put_campaign("c2", campaign("c2"))
    a = ping(engine, "c", SF, T0)
    assert a["offer"]["campaign_id"] == "c2" and "c1" not in reasons(a)
    assert [p[1] for p in engine.db.devices.pushes()] == ["c1", "c2"]
    other.db.close()


def test_a_servers_quiet_short_cut_answers_as_the_rules_do(engine, tmp_path):
    """Serving, a ping the index and the kept state show to be settled (no event, no campaign in
    reach, nothing odd) skips the rules; an engine that is not serving runs them for every ping.
    Random walks in and out of the geofence, dwelling and passing the nearby radius, get the same
    bytes from both."""
    import random

    twin = Engine(Settings(trust_client_clock=True, db=str(tmp_path / "twin.db"), min_offer_interval_s=0))
    twin.import_files([tmp_path / "world.geojson"])
    engine.start_serving()
    for e in (engine, twin):
        e.put_campaign("c1", campaign("c1", caps={"per_device_per_day": 3}))
        e.put_campaign("c2", campaign("c2", {"type": "dwell", "dwell_s": 600}))
        e.put_campaign("c3", campaign("c3", {"type": "nearby", "radius_m": 400},
                                      caps={"per_device_per_day": 2}))
        e.put_campaign("c4", campaign("c4", {"type": "exit"}))
    rng = random.Random(5)
    clock = dict.fromkeys("abcd", T0)
    quiet = 0
    for _ in range(400):
        d = rng.choice("abcd")
        clock[d] += timedelta(seconds=rng.choice([30, 120, 300, 900]))
        where = at(rng.choice([0, 20, 60, 90, 150, 350, 500, 1500, 3000]) + rng.uniform(-5, 5))
        accuracy = rng.choice([5.0, 20.0, 80.0, 1500.0])
        a = engine.handle_ping(Ping(d, where[0], where[1], accuracy, clock[d])).body
        b = twin.handle_ping(Ping(d, where[0], where[1], accuracy, clock[d])).body
        assert a == b
        quiet += b'"events":[],"offer":null,"decision":{"considered":0' in a
    assert quiet > 50
    twin.db.close()
