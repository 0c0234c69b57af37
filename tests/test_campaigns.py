"""Campaign validation names the field; schedules and targeting behave as SPEC 3.2 says."""

from __future__ import annotations

import pytest

from geo_engine import InvalidCampaign
from geo_engine.campaigns import parse_campaign, parse_campaigns

GOOD = {
    "id": "coffee-am", "name": "Morning coffee 20% off", "enabled": True,
    "offer": {"title": "20% off your latte", "body": "Show this at the till",
              "url": "app://offers/coffee-am", "coupon_code": "LATTE20"},
    "targets": {"geofence_ids": [], "store_ids": [], "tags": ["coffee"]},
    "trigger": {"type": "enter"},
    "schedule": {"starts_at": "2026-11-01T00:00:00Z", "ends_at": "2027-01-31T23:59:59Z",
                 "days": ["mon", "tue", "wed", "thu", "fri"], "hours": [["07:00", "11:00"]]},
    "only_when_open": True, "priority": 10, "min_confidence": "medium",
    "caps": {"per_device_per_day": 1, "per_device_total": 5, "cooldown_s": 3600, "budget_total": 100000},
    "audience": {"segments": []}, "holdout_pct": 0,
}


def test_the_spec_example_is_valid():
    c = parse_campaign(GOOD)
    assert (c.id, c.trigger, c.priority, c.per_device_per_day, c.tags) == (
        "coffee-am", "enter", 10, 1, frozenset({"coffee"}))
    assert c.hours == ((7 * 60, 11 * 60),)


@pytest.mark.parametrize(("change", "field", "message"), [
    ({"offer": {}}, "offer.title", "is required"),
    ({"offer": {"title": "x", "price": 3}}, "offer.price", "is not an offer field"),
    ({"trigger": {"type": "teleport"}}, "trigger.type", "must be one of enter, exit, dwell, nearby"),
    ({"trigger": {"type": "dwell"}}, "trigger.dwell_s", "needs dwell_s"),
    ({"trigger": {"type": "nearby", "radius_m": 0}}, "trigger.radius_m", "needs radius_m"),
    ({"schedule": {"hours": [["7:00", "11:00"]]}}, "schedule.hours[0]", 'is not a time "HH:MM"'),
    ({"schedule": {"days": ["monday"]}}, "schedule.days", "must be a list of mon"),
    ({"schedule": {"starts_at": "2027-01-01T00:00:00Z", "ends_at": "2026-01-01T00:00:00Z"}},
     "schedule.ends_at", "must be after starts_at"),
    ({"schedule": {"starts_at": "tomorrow"}}, "schedule.starts_at", "RFC 3339"),
    ({"caps": {"cooldown_s": -1}}, "caps.cooldown_s", "a number of seconds >= 0"),
    ({"caps": {"per_device_total": 1.5}}, "caps.per_device_total", "a whole number >= 0"),
    ({"caps": {"daily": 1}}, "caps.daily", "is not a cap"),
    ({"priority": "high"}, "priority", "must be a whole number"),
    ({"min_confidence": "sure"}, "min_confidence", 'must be "low", "medium" or "high"'),
    ({"holdout_pct": 150}, "holdout_pct", "percentage from 0 to 100"),
    ({"targets": {"stores": ["s1"]}}, "targets.stores", "is not a target"),
    ({"colour": "red"}, "colour", "is not a campaign field"),
    ({"id": ""}, "id", "is required"),
])
def test_each_problem_names_its_field(change, field, message):
    with pytest.raises(InvalidCampaign) as err:
        parse_campaign({**GOOD, **change})
    found = {p["field"]: p["message"] for p in err.value.problems}
    assert field in found and message in found[field], found
    assert f"{field} " in str(err.value)


def test_every_problem_is_reported():
    with pytest.raises(InvalidCampaign) as err:
        parse_campaign({**GOOD, "priority": "x", "holdout_pct": -1, "trigger": {"type": "?"}})
    assert {p["field"] for p in err.value.problems} == {"priority", "holdout_pct", "trigger.type"}


def test_the_url_id_must_agree():
    with pytest.raises(InvalidCampaign, match="differs from the id in the URL 'other'"):
        parse_campaign(GOOD, "other")
    assert parse_campaign({k: v for k, v in GOOD.items() if k != "id"}, "from-url").id == "from-url"


def test_a_campaign_file_is_a_list_or_one_object():
    import json

    assert [c.id for c in parse_campaigns(json.dumps([GOOD, {**GOOD, "id": "b"}]))] == ["coffee-am", "b"]
    assert [c.id for c in parse_campaigns(json.dumps(GOOD))] == ["coffee-am"]
    with pytest.raises(InvalidCampaign, match="duplicate campaign id 'coffee-am'"):
        parse_campaigns(json.dumps([GOOD, GOOD]))
