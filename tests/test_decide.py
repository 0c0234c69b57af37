"""The offer decision on plain values (SPEC 6): every rejection reason, the order they are
checked in, and the choice among survivors. No database, no index, no device."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from geo_engine.campaigns import parse_campaign
from geo_engine.decide import counts_for, decide
from geo_engine.model import Candidate, Confidence, Reason, Store

AT = datetime(2026, 11, 24, 18, 0, tzinfo=UTC)  # Tuesday 10:00 in San Francisco
SF = Store(id="s-sf", lat=37.78, lon=-122.42, timezone="America/Los_Angeles",
           opening_hours={d: [["09:00", "21:00"]] for d in ("mon", "tue", "wed", "thu", "fri")})
NIGHT = Store(id="s-night", lat=37.79, lon=-122.41, timezone="America/Los_Angeles",
              opening_hours={"tue": [["22:00", "02:00"]]})


def camp(cid="c", **extra):
    return parse_campaign({"id": cid, "offer": {"title": cid}, "targets": {"store_ids": ["s-sf"]},
                           "trigger": {"type": "enter"}, **extra})


def cand(c, store=SF, distance_m=10.0, confidence=Confidence.HIGH, geofence_id="g"):
    return Candidate(c, store, geofence_id, distance_m, confidence)


def run(*candidates, device_id="d", segments=(), at=AT, opted_out=False, suspicious=False,
        interval_blocked=False, history=None, spend=None, per_device=True):
    return decide(candidates, device_id=device_id, segments=frozenset(segments), at=at,
                  ts=at.timestamp(), opted_out=opted_out, suspicious=suspicious,
                  interval_blocked=interval_blocked, history=history or {}, spend=spend or {},
                  per_device=per_device)


def reason(decision):
    assert decision.chosen is None and len(decision.rejected) == 1
    return decision.rejected[0].reason


def _history(total=0, last=None, today=0):
    return {"c": [total, last, {"2026-11-24": today}]}


@pytest.mark.parametrize(("campaign", "kwargs", "want"), [
    (camp(), dict(opted_out=True), Reason.OPTED_OUT),
    (camp(), dict(suspicious=True), Reason.SUSPICIOUS_MOVEMENT),
    (camp(audience={"segments": ["vip"]}), dict(segments=["loyalty"]), Reason.NOT_IN_AUDIENCE),
    (camp(holdout_pct=100), {}, Reason.HOLDOUT),
    (camp(min_confidence="high"), dict(), None),  # a high-confidence candidate passes
    (camp(schedule={"days": ["sat", "sun"]}), {}, Reason.OUTSIDE_SCHEDULE),
    # 10:00 in San Francisco (the store's zone), though 18:00 UTC
    (camp(schedule={"hours": [["17:00", "19:00"]]}), {}, Reason.OUTSIDE_SCHEDULE),
    (camp(caps={"budget_total": 5}), dict(spend={"c": 5}), Reason.BUDGET_EXHAUSTED),
    (camp(caps={"budget_total": 5}), dict(spend={"c": 4}), None),
    (camp(caps={"per_device_per_day": 1}), dict(history=_history(3, 0.0, 1)), Reason.FREQUENCY_CAP),
    (camp(caps={"per_device_per_day": 2}), dict(history=_history(3, 0.0, 1)), None),
    (camp(caps={"per_device_total": 3}), dict(history=_history(3, 0.0, 0)), Reason.FREQUENCY_CAP),
    (camp(caps={"cooldown_s": 3600}), dict(history=_history(1, AT.timestamp() - 60)), Reason.COOLDOWN),
    (camp(caps={"cooldown_s": 3600}), dict(history=_history(1, AT.timestamp() - 3600)), None),
    (camp(), dict(interval_blocked=True), Reason.DEVICE_INTERVAL),
], ids=lambda v: str(v) if isinstance(v, Reason) else None)
def test_each_rejection_reason(campaign, kwargs, want):
    d = run(cand(campaign), **kwargs)
    assert d.considered == 1
    if want is None:
        assert d.chosen is not None and d.chosen.campaign.id == "c" and d.rejected == []
    else:
        assert reason(d) is want


def test_low_confidence_and_a_closed_store():
    assert reason(run(cand(camp(min_confidence="high"), confidence=Confidence.MEDIUM))) is \
        Reason.LOW_CONFIDENCE
    assert reason(run(cand(camp(only_when_open=True), store=NIGHT))) is Reason.STORE_CLOSED
    # 23:00 on a Tuesday in San Francisco: the night store is open, past midnight too
    late = datetime(2026, 11, 25, 7, 0, tzinfo=UTC)
    assert run(cand(camp(only_when_open=True), store=NIGHT), at=late).chosen is not None
    assert run(cand(camp(only_when_open=True), store=NIGHT),
               at=datetime(2026, 11, 25, 9, 59, tzinfo=UTC)).chosen is not None  # 01:59


def test_the_first_reason_in_order_wins():
    c = camp(audience={"segments": ["vip"]}, holdout_pct=100, caps={"per_device_total": 0})
    assert reason(run(cand(c), opted_out=True, suspicious=True)) is Reason.OPTED_OUT
    assert reason(run(cand(c), suspicious=True)) is Reason.SUSPICIOUS_MOVEMENT
    assert reason(run(cand(c))) is Reason.NOT_IN_AUDIENCE
    # a holdout is decided where a push would have been: the cap would have stopped this one
    assert reason(run(cand(c), segments=["vip"])) is Reason.FREQUENCY_CAP
    assert run(cand(c), segments=["vip"]).held_out == ()
    # scoring a place, not a device: audiences and holdouts do not apply; the cap then does
    assert reason(run(cand(c), per_device=False)) is Reason.FREQUENCY_CAP


def test_a_holdout_is_decided_where_a_push_would_have_been():
    """The winner whose holdout holds the device is turned down with `holdout` and listed in
    `held_out` (the campaign's control group); the next survivor wins as though that campaign
    were not there; a held-out campaign that would have lost anyway, or a device within the
    interval, puts the device in no control group."""
    held = camp("held", priority=9, holdout_pct=100)
    other = camp("other", priority=1)
    d = run(cand(held, distance_m=5.0), cand(other, distance_m=50.0))
    assert [c.campaign.id for c in d.held_out] == ["held"]
    assert d.chosen.campaign.id == "other"
    assert [(r.campaign_id, r.reason) for r in d.rejected] == [("held", Reason.HOLDOUT)]
    both = run(cand(held), cand(camp("also", priority=5, holdout_pct=100)), cand(other))
    assert [c.campaign.id for c in both.held_out] == ["held", "also"]  # each would have won in turn
    assert both.chosen.campaign.id == "other"
    low = run(cand(camp("low", priority=0, holdout_pct=100)), cand(other))
    assert low.held_out == () and low.chosen.campaign.id == "other"
    assert [(r.campaign_id, r.reason) for r in low.rejected] == [("low", Reason.LOWER_PRIORITY)]
    blocked = run(cand(held), cand(other), interval_blocked=True)
    assert blocked.held_out == () and blocked.chosen is None
    assert (blocked.rejected[-1].campaign_id, blocked.rejected[-1].reason) == ("held", Reason.DEVICE_INTERVAL)
    assert run(cand(held), per_device=False).held_out == ()


def test_highest_priority_then_nearest_store_then_id_and_the_rest_lower_priority():
    a, b, z = camp("a", priority=1), camp("b", priority=5), camp("z", priority=5)
    d = run(cand(a, distance_m=1.0), cand(z, distance_m=10.0), cand(b, distance_m=10.0))
    assert d.chosen.campaign.id == "b" and d.considered == 3
    assert [(r.campaign_id, r.reason) for r in d.rejected] == [
        ("z", Reason.LOWER_PRIORITY), ("a", Reason.LOWER_PRIORITY)]
    d = run(cand(b, distance_m=30.0), cand(z, distance_m=20.0))
    assert d.chosen.campaign.id == "z"


def test_a_campaign_at_several_places_is_considered_once_at_its_best():
    c = camp(min_confidence="high")
    d = run(cand(c, distance_m=5.0, confidence=Confidence.MEDIUM, geofence_id="g1"),
            cand(c, distance_m=50.0, confidence=Confidence.HIGH, geofence_id="g2"),
            cand(c, distance_m=40.0, confidence=Confidence.HIGH, geofence_id="g3"))
    assert d.considered == 1 and d.chosen.geofence_id == "g3"  # high beats near; then nearest


def test_the_interval_turns_down_only_the_winner():
    a, b = camp("a", priority=1), camp("b", priority=2)
    d = run(cand(a), cand(b), interval_blocked=True)
    assert d.chosen is None
    assert [(r.campaign_id, r.reason) for r in d.rejected] == [
        ("a", Reason.LOWER_PRIORITY), ("b", Reason.DEVICE_INTERVAL)]


def test_counts_come_from_the_history_on_the_stores_local_day():
    c = camp(caps={"per_device_per_day": 1, "budget_total": 9})
    # 02:00 UTC on the 25th is still the 24th in San Francisco
    at = datetime(2026, 11, 25, 2, 0, tzinfo=UTC)
    n = counts_for(cand(c), at, {"c": [4, 123.0, {"2026-11-24": 2}]}, {"c": 7})
    assert (n.today, n.total, n.last_ts, n.budget_used) == (2, 4, 123.0, 7)
    n = counts_for(cand(camp()), at, {}, {"c": 7})  # no budget: its spend does not matter
    assert (n.today, n.total, n.last_ts, n.budget_used) == (0, 0, None, 0)
