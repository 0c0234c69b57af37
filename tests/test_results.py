"""Campaign results (SPEC 9): the figures against a simulated population whose true visit rates
are known, computed independently here (statsmodels' intervals); held_out events where a push
would have been; the daily reasons; the same answer from the engine, the API and the CLI."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from statsmodels.stats.proportion import confint_proportions_2indep, proportion_confint

from geo_engine import Engine, Settings
from geo_engine.apikeys import ensure_keys
from geo_engine.campaigns import parse_campaign
from geo_engine.db.devices import new_version
from geo_engine.model import DeviceState, Event, EventType
from geo_engine.stats import newcombe, wilson

from .test_pings import (
    SF,
    T0,
    at,
    campaign,
    engine,  # noqa: F401 - a fixture
    ping,
    reasons,
)

ADMIN_KEY = "admin-key-for-results"
START = datetime(2026, 11, 1, tzinfo=UTC)
END = datetime(2026, 11, 15, tzinfo=UTC)
DAY = 86400.0


@settings(max_examples=300, deadline=None)
@given(st.integers(1, 3000).flatmap(lambda n: st.tuples(st.integers(0, n), st.just(n))),
       st.integers(1, 3000).flatmap(lambda n: st.tuples(st.integers(0, n), st.just(n))))
def test_wilson_and_newcombe_equal_an_independent_implementation(a, b):
    (x1, n1), (x0, n0) = a, b
    assert wilson(x1, n1) == pytest.approx(proportion_confint(x1, n1, method="wilson"), abs=1e-12)
    d, lo, hi = newcombe(x1, n1, x0, n0)
    assert d == pytest.approx(x1 / n1 - x0 / n0, abs=1e-12)
    want = confint_proportions_2indep(x1, n1, x0, n0, method="newcomb", compare="diff")
    assert (lo, hi) == pytest.approx(want, abs=1e-9)


class Population:
    """A simulated campaign: devices pushed or held out at one of two stores, each visiting
    with a known probability, plus visits that must not count (too short, before the moment,
    after the window, a store the campaign does not target). It writes the logs as the engine
    does, and keeps the truth."""

    def __init__(self, e: Engine, cid: str, rates: dict[str, tuple[float, float]], n: int,
                 seed: int, window_days: int = 7):
        self.engine, self.cid, self.window = e, cid, window_days * DAY
        camp = parse_campaign({**campaign(cid), "targets": {"store_ids": ["s-a", "s-b"]},
                               "holdout_pct": 30})
        rng = random.Random(seed)
        self.truth: dict[str, dict] = {}  # device -> group, store, day, converted (offer / any)
        self.pushes = 0
        db = e.db
        with db.atomic() as tx:
            for k in range(n):
                device = f"{cid}-{k}"
                store = rng.choice(["s-a", "s-b"])
                control = camp.in_holdout(device)
                t = START.timestamp() + rng.uniform(0, (END - START).total_seconds())
                cand = _Cand(cid, store)
                if control:
                    db.devices.record_holdouts(tx, device, t, [cand], None)
                    # a later one: not a second moment
                    db.devices.record_holdouts(tx, device, t + 3600, [cand], None)
                else:
                    for extra in range(rng.choice([1, 1, 2])):  # some devices pushed twice
                        db.devices.record_push(tx, device, cid, store, f"g-{store}", t + extra * 7200,
                                               "2026-11-01", 5.0, None)
                        self.pushes += 1
                p = rates[store][1 if control else 0]
                visited = rng.random() < p
                events = []
                if visited:  # a visit in the window: 3 to 60 minutes inside
                    start = t + rng.uniform(600, self.window - 600)
                    events.append((start, "enter", store))
                    events.append((start + rng.uniform(180, 3600), "exit", store))
                # never counted: a 60 s stay, a visit before the moment, one after the window
                noise = rng.random()
                if noise < 0.2:
                    s = t + rng.uniform(600, self.window - 600)
                    events += [(s, "enter", store), (s + 60, "exit", store)]
                elif noise < 0.4:
                    s = t - rng.uniform(600, 3 * DAY)
                    events += [(s, "enter", store), (s + 900, "exit", store)]
                elif noise < 0.5:
                    s = t + self.window + rng.uniform(60, DAY)
                    events += [(s, "enter", store), (s + 900, "exit", store)]
                other = "s-c" if rng.random() < 0.1 else None  # an untargeted store: counts nowhere
                if other:
                    s = t + rng.uniform(600, self.window - 600)
                    events += [(s, "enter", other), (s + 900, "exit", other)]
                # the other targeted store: counts for "any store" only
                other_targeted = rng.random() < 0.15
                if other_targeted:
                    o = "s-b" if store == "s-a" else "s-a"
                    s = t + rng.uniform(600, self.window - 600)
                    events += [(s, "enter", o), (s + 900, "exit", o)]
                for ts, kind, where in sorted(events):
                    db.devices.record_events(tx, device, ts,
                                             [Event(EventType(kind), f"g-{where}", where)], None)
                self.truth[device] = {"control": control, "store": store,
                                      "day": datetime.fromtimestamp(t, UTC).date().isoformat(),
                                      "offer": visited, "any": visited or other_targeted}
        # a device still inside: entered, no exit, last seen 10 minutes later (a visit)
        device = f"{cid}-inside"
        t = START.timestamp() + DAY
        cand = _Cand(cid, "s-a")
        control = camp.in_holdout(device)
        with db.atomic() as tx:
            if control:
                db.devices.record_holdouts(tx, device, t, [cand], None)
            else:
                db.devices.record_push(tx, device, cid, "s-a", "g-s-a", t, "2026-11-02", 5.0, None)
                self.pushes += 1
            db.devices.record_events(tx, device, t + 3600, [Event(EventType.ENTER, "g-s-a", "s-a")], None)
            inside = DeviceState(device, last_ts=t + 3600 + 600, version=new_version())
            assert db.devices.save(tx, inside, None)
        self.truth[device] = {"control": control, "store": "s-a",
                              "day": datetime.fromtimestamp(t, UTC).date().isoformat(),
                              "offer": True, "any": True}

    def expected(self, devices=None) -> dict:
        """Counts from the truth, and statsmodels' intervals."""
        rows = [v for d, v in self.truth.items() if devices is None or d in devices]
        out = {}
        for name, control in (("exposed", False), ("control", True)):
            group = [v for v in rows if v["control"] == control]
            x, n = sum(v["offer"] for v in group), len(group)
            out[name] = (x, n, sum(v["any"] for v in group))
        return out


class _Cand:
    """The parts of a decision's candidate that a held_out event records."""

    def __init__(self, cid, store):
        self.campaign = type("C", (), {"id": cid})()
        self.store = type("S", (), {"id": store})()
        self.geofence_id = f"g-{store}"


@pytest.fixture
def stores_engine(tmp_path, database):
    feats = []
    for sid, east in (("s-a", 0), ("s-b", 3000), ("s-c", 6000)):
        lat, lon = at(east)
        feats.append({"type": "Feature", "properties": {"kind": "store", "id": sid},
                      "geometry": {"type": "Point", "coordinates": [lon, lat]}})
        feats.append({"type": "Feature", "properties": {"id": f"g-{sid}", "store_id": sid, "radius_m": 100},
                      "geometry": {"type": "Point", "coordinates": [lon, lat]}})
    path = tmp_path / "stores.geojson"
    path.write_text(json.dumps({"type": "FeatureCollection", "features": feats}))
    e = Engine(Settings(db=database, trust_client_clock=True, admin_key=ADMIN_KEY,
                        publishable_key="publishable-key"))
    e.import_files([path])
    ensure_keys(e.db.apikeys, e.settings)
    yield e
    e.db.close()


def _check(figures, exp):
    x1, n1, a1 = exp["exposed"]
    x0, n0, a0 = exp["control"]
    e, c = figures["exposed"], figures["control"]
    assert (e["converted"], e["devices"], c["converted"], c["devices"]) == (x1, n1, x0, n0)
    assert (e["any_store"]["converted"], c["any_store"]["converted"]) == (a1, a0)
    assert e["interval"] == pytest.approx(proportion_confint(x1, n1, method="wilson"), abs=1e-12)
    assert c["interval"] == pytest.approx(proportion_confint(x0, n0, method="wilson"), abs=1e-12)
    lift = figures["lift"]
    if n1 >= 30 and n0 >= 30:
        want = confint_proportions_2indep(x1, n1, x0, n0, method="newcomb", compare="diff")
        assert lift["absolute"] == pytest.approx(x1 / n1 - x0 / n0, abs=1e-12)
        assert lift["interval"] == pytest.approx(want, abs=1e-9)
        assert lift["relative"] == (pytest.approx((x1 / n1 - x0 / n0) / (x0 / n0)) if x0 else None)
    else:
        assert lift["verdict"] == "insufficient_data"


def test_results_equal_the_simulated_truth_and_a_campaign_with_no_effect_holds_zero(stores_engine):
    e = stores_engine
    # works at s-a (35 % against 15 %), does nothing at s-b (20 % both)
    e.put_campaign("c", {**campaign("c"), "targets": {"store_ids": ["s-a", "s-b"]}, "holdout_pct": 30})
    pop = Population(e, "c", {"s-a": (0.35, 0.15), "s-b": (0.20, 0.20)}, n=1400, seed=5)
    out = e.results("c", START, END, by="store")
    _check(out, pop.expected())
    assert out["pushes"] == pop.pushes and out["unique_devices"] == pop.expected()["exposed"][1]
    assert (out["window_days"], out["visit_min_dwell_s"], out["days"]) == (7, 120.0, "UTC")
    by_store = {s["store"]: s for s in out["by_store"]}
    for store in ("s-a", "s-b"):
        _check(by_store[store], pop.expected({d for d, v in pop.truth.items() if v["store"] == store}))
    assert by_store["s-a"]["lift"]["verdict"] == "lift"
    lo, hi = by_store["s-b"]["lift"]["interval"]
    assert lo < 0 < hi and by_store["s-b"]["lift"]["verdict"] == "no_detectable_lift"
    by_day = {s["day"]: s for s in e.results("c", START, END, by="day")["by_day"]}
    for day, figures in by_day.items():
        _check(figures, pop.expected({d for d, v in pop.truth.items() if v["day"] == day}))
    # a campaign whose exposed and control devices visit alike: the interval holds zero
    e.put_campaign("null", {**campaign("null"), "targets": {"store_ids": ["s-a", "s-b"]},
                            "holdout_pct": 30})
    null = Population(e, "null", {"s-a": (0.25, 0.25), "s-b": (0.25, 0.25)}, n=1400, seed=11)
    out = e.results("null", START, END)
    _check(out, null.expected())
    lo, hi = out["lift"]["interval"]
    assert lo < 0 < hi and out["lift"]["verdict"] == "no_detectable_lift"


def test_a_narrower_window_and_period_change_the_answer_as_the_truth_says(stores_engine):
    e = stores_engine
    e.put_campaign("c", {**campaign("c"), "targets": {"store_ids": ["s-a", "s-b"]}, "holdout_pct": 30})
    Population(e, "c", {"s-a": (0.5, 0.2), "s-b": (0.5, 0.2)}, n=300, seed=3)
    whole = e.results("c", START, END)
    first_week = e.results("c", START, START + timedelta(days=7))
    assert first_week["exposed"]["devices"] < whole["exposed"]["devices"]
    short = e.results("c", START, END, window_days=1)
    assert short["exposed"]["converted"] <= whole["exposed"]["converted"]
    assert short["exposed"]["devices"] == whole["exposed"]["devices"]
    few = e.results("c", START, START + timedelta(hours=12))
    assert few["lift"]["verdict"] == "insufficient_data" and few["exposed"]["devices"] < 30


def test_a_held_out_device_is_recorded_where_a_push_would_have_been(engine):  # noqa: F811
    """Through pings: a device in the holdout walks in and is turned down with `holdout` (and a
    held_out event names the campaign, at the moment); one outside it is pushed; a device
    whose cap would have stopped the push anyway is in no group. The daily reasons count."""
    engine.put_campaign("c1", campaign(holdout_pct=50, caps={"per_device_total": 1}))
    camp = engine.campaign("c1")
    held = next(f"d{k}" for k in range(100) if camp.in_holdout(f"d{k}"))
    pushed = next(f"d{k}" for k in range(100) if not camp.in_holdout(f"d{k}"))
    ping(engine, held, at(2000), T0)
    a = ping(engine, held, SF, T0 + timedelta(minutes=10))
    assert a["offer"] is None and reasons(a) == {"c1": "holdout"}
    ping(engine, pushed, at(2000), T0)
    assert ping(engine, pushed, SF, T0 + timedelta(minutes=10))["offer"]["campaign_id"] == "c1"
    rows = engine.db.sql.query("SELECT device_id, type, campaign_id, store_id, ts FROM events "
                               "WHERE type = 'held_out'")
    assert rows == [(held, "held_out", "c1", "s-sf", (T0 + timedelta(minutes=10)).timestamp())]
    # both leave, come back the next day and stay 5 minutes: a visit each
    for device in (held, pushed):
        ping(engine, device, at(2000), T0 + timedelta(hours=2))
        ping(engine, device, at(2000), T0 + timedelta(days=1))
        ping(engine, device, SF, T0 + timedelta(days=1, minutes=10))
        ping(engine, device, at(2000), T0 + timedelta(days=1, minutes=15))
    # the pushed device's cap is spent: it is turned down for the cap, the held one still held
    a = ping(engine, held, SF, T0 + timedelta(days=1, minutes=30))
    out = engine.results("c1", T0 - timedelta(days=1), T0 + timedelta(days=2))
    assert (out["exposed"]["devices"], out["exposed"]["converted"]) == (1, 1)
    assert (out["control"]["devices"], out["control"]["converted"]) == (1, 1)
    assert out["median_push_to_visit_s"] == pytest.approx(timedelta(days=1).total_seconds())
    days = {d["day"]: d["reasons"] for d in out["rejections_by_day"]}
    assert days[T0.date().isoformat()]["holdout"] == 1
    assert days[(T0 + timedelta(days=1)).date().isoformat()] == {"frequency_cap": 1, "holdout": 2}


def test_results_are_the_same_from_the_api_and_the_cli(stores_engine, tmp_path):
    e = stores_engine
    e.put_campaign("c", {**campaign("c"), "targets": {"store_ids": ["s-a", "s-b"]}, "holdout_pct": 30})
    Population(e, "c", {"s-a": (0.4, 0.2), "s-b": (0.2, 0.2)}, n=200, seed=8)
    want = e.results("c", START, END, by="store")
    db = e.db.path if e.db.sql.dialect == "postgresql" else e.path
    e.db.tallies.flush()
    run = [sys.executable, "-m", "geo_engine", "results", "c", "--db", db,
           "--from", "2026-11-01T00:00:00Z", "--to", "2026-11-15"]
    got = json.loads(subprocess.run([*run, "--json", "--by", "store"], capture_output=True, text=True,
                                    check=True).stdout)
    assert got == json.loads(json.dumps(want))
    text = subprocess.run(run, capture_output=True, text=True, check=True).stdout
    assert "exposed" in text and "control" in text and f"{want['exposed']['devices']:,}" in text
    assert "verdict:" in text
    lines = subprocess.run([*run, "--csv", "--by", "store"], capture_output=True, text=True,
                           check=True).stdout.splitlines()
    assert lines[0].startswith("slice,pushes,exposed_devices") and len(lines) == 4  # all, s-a, s-b
    assert lines[1].split(",")[2] == str(want["exposed"]["devices"])
    bad = subprocess.run([*run, "--window-days", "0"], capture_output=True, text=True)
    assert bad.returncode == 2 and bad.stderr.startswith("error:") and "Traceback" not in bad.stderr
    missing = subprocess.run([sys.executable, "-m", "geo_engine", "results", "nope", "--db", db],
                             capture_output=True, text=True)
    assert missing.returncode == 1 and "no campaign 'nope'" in missing.stderr


def test_results_over_http(stores_engine):
    from fastapi.testclient import TestClient

    from api.app import create_app

    e = stores_engine
    e.put_campaign("c", {**campaign("c"), "targets": {"store_ids": ["s-a", "s-b"]}, "holdout_pct": 30})
    Population(e, "c", {"s-a": (0.4, 0.2), "s-b": (0.2, 0.2)}, n=150, seed=9)
    admin = {"Authorization": f"Bearer {ADMIN_KEY}"}
    with TestClient(create_app(e)) as client:
        r = client.get("/v1/campaigns/c/results", params={"from": "2026-11-01T00:00:00Z",
                                                          "to": "2026-11-15T00:00:00Z", "by": "day"},
                       headers=admin)
        assert r.status_code == 200
        assert r.json() == json.loads(json.dumps(e.results("c", START, END, by="day")))
        assert client.get("/v1/campaigns/nope/results", headers=admin).status_code == 404
        bad = client.get("/v1/campaigns/c/results", params={"window_days": 0}, headers=admin)
        assert bad.status_code == 422 and "window_days" in bad.text
        bad = client.get("/v1/campaigns/c/results", params={"from": "2026-11-15", "to": "2026-11-01"},
                         headers=admin)
        assert bad.status_code == 422 and "from" in bad.text
        assert client.get("/v1/campaigns/c/results").status_code == 401


def test_counts_by_day_from_several_engines_add_up(stores_engine):
    e = stores_engine
    other = Engine(Settings(db=e.db.path if e.db.sql.dialect == "postgresql" else e.path))
    rejected = [type("R", (), {"campaign_id": "c", "reason": "holdout"})()] * 3
    e.db.tallies.add("2026-11-02", rejected)
    other.db.tallies.add("2026-11-02", rejected[:1])
    other.db.tallies.add("2026-11-03", rejected[:2])
    other.db.close()  # what it held goes at close
    assert e.db.tallies.by_day("c", "2026-11-01", "2026-11-30") == [
        ("2026-11-02", "holdout", 4), ("2026-11-03", "holdout", 2)]
    assert e.db.tallies.by_day("c", "2026-11-03", "2026-11-03") == [("2026-11-03", "holdout", 2)]


