"""The demo's simulated week (make run: serve --demo --seed-week) tells the story it promises:
the holdout campaign works at one shop and not at the other, as the engine decided the pings."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from geo_engine import Engine, Settings
from geo_engine.demo import CAMPAIGN, RATES, seed_week

from .conftest import DEMO


def test_the_seeded_week_shows_a_lift_at_union_square_and_none_at_civic_center(tmp_path):
    e = Engine(Settings(db=str(tmp_path / "demo.db"), trust_client_clock=True))
    e.import_files([DEMO])
    for c in json.loads((DEMO.parent / "demo_campaigns.json").read_text()):
        e.put_campaign(c["id"], c)
    now = datetime(2026, 11, 30, 20, 0, tzinfo=UTC)
    done = seed_week(e, now=now)
    assert done["pushed"] + done["held_out"] <= done["phones"]
    # the engine chose the groups: about the campaign's holdout share held out
    share = done["held_out"] / (done["pushed"] + done["held_out"])
    assert abs(share - CAMPAIGN["holdout_pct"] / 100) < 0.06
    out = e.results(CAMPAIGN["id"], end=now, by="store")
    assert out["exposed"]["devices"] == done["pushed"] and out["control"]["devices"] == done["held_out"]
    by_store = {s["store"]: s for s in out["by_store"]}
    assert by_store["fc-union"]["lift"]["verdict"] == "lift"
    assert by_store["fc-civic"]["lift"]["verdict"] == "no_detectable_lift"
    for sid, (exposed, control) in RATES.items():  # the rates found are near the rates simulated
        assert abs(by_store[sid]["exposed"]["rate"] - exposed) < 0.1
        assert abs(by_store[sid]["control"]["rate"] - control) < 0.1
    # every moment lies in the week before now
    assert all(d["day"] <= now.date().isoformat() for d in out["rejections_by_day"])
    assert sum(d["reasons"].get("holdout", 0) for d in out["rejections_by_day"]) >= done["held_out"]
    e.db.close()
