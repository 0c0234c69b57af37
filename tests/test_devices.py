"""Device state on plain values (SPEC 6): events from (open visits, this fix), flags, next state.

Named scenarios as Tile38's fence tests: enter, jitter at the edge, exit with duration, dwell
once, poor accuracy, out of order, impossible movement. No database, no index.
"""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from geo_engine.devices import (
    MIN_MARGIN_M,
    POOR_ACCURACY_M,
    add_push,
    leaving,
    movement_flags,
    next_state,
    settled,
    transition,
)
from geo_engine.geodesy import GEOD
from geo_engine.model import Confidence, DeviceState, Event, EventType, Visit

HIGH, MEDIUM, LOW = Confidence.HIGH, Confidence.MEDIUM, Confidence.LOW


def step(visits, hits, ts=100.0, accuracy_m=10.0, away=None, dwell=None):
    """One fix: (events, visits after); ``away`` gives each leaving geofence's distance."""
    distances = {fid: (away or {}).get(fid, math.inf) for fid in leaving(visits, hits, accuracy_m)}
    return transition(visits, hits, ts, accuracy_m, distances, dwell or {})


def test_a_first_fix_inside_enters_and_one_that_only_touches_does_not():
    events, after = step({}, {"g1": ("s1", HIGH), "g2": ("s2", MEDIUM), "g3": ("s3", LOW)})
    assert events == [Event(EventType.ENTER, "g1", "s1", HIGH), Event(EventType.ENTER, "g2", "s2", MEDIUM)]
    assert set(after) == {"g1", "g2"} and after["g1"].entered_ts == 100.0


def test_inside_again_is_no_new_enter():
    open_ = {"g1": Visit("g1", "s1", 50.0)}
    events, after = step(open_, {"g1": ("s1", HIGH)})
    assert events == [] and after["g1"].entered_ts == 50.0


@pytest.mark.parametrize(("accuracy_m", "distance_m", "exits"), [
    (10.0, MIN_MARGIN_M - 1, False),  # jitter just outside: within the 25 m margin, stays in
    (10.0, MIN_MARGIN_M + 1, True),  # beyond it: exits
    (60.0, 50.0, False),  # a coarse fix: the margin grows to its accuracy
    (60.0, 61.0, True),
])
def test_an_exit_needs_the_hysteresis_margin(accuracy_m, distance_m, exits):
    open_ = {"g1": Visit("g1", "s1", 40.0)}
    events, after = step(open_, {}, ts=100.0, accuracy_m=accuracy_m, away={"g1": distance_m})
    if exits:
        assert events == [Event(EventType.EXIT, "g1", "s1", duration_s=60.0)] and after == {}
    else:
        assert events == [] and set(after) == {"g1"}


def test_a_fix_only_touching_an_open_visit_is_measured_for_an_exit():
    open_ = {"g1": Visit("g1", "s1", 40.0)}
    assert leaving(open_, {"g1": ("s1", LOW)}, 10.0) == ["g1"]
    assert leaving(open_, {"g1": ("s1", MEDIUM)}, 10.0) == []
    events, _ = step(open_, {"g1": ("s1", LOW)}, away={"g1": 5.0})
    assert events == []  # touching, 5 m out: still inside the margin


def test_a_fix_of_very_poor_accuracy_neither_enters_nor_exits():
    acc = POOR_ACCURACY_M + 1
    assert step({}, {"g1": ("s1", MEDIUM)}, accuracy_m=acc)[0] == []
    open_ = {"g1": Visit("g1", "s1", 40.0)}
    assert leaving(open_, {}, acc) == []
    events, after = step(open_, {}, accuracy_m=acc)
    assert events == [] and set(after) == {"g1"}


def test_dwell_once_per_visit_after_the_threshold():
    open_ = {"g1": Visit("g1", "s1", 0.0)}
    hits = {"g1": ("s1", HIGH)}
    assert step(open_, hits, ts=299.0, dwell={"g1": 300.0})[0] == []
    events, after = step(open_, hits, ts=300.0, dwell={"g1": 300.0})
    assert events == [Event(EventType.DWELL, "g1", "s1", HIGH, duration_s=300.0)]
    assert after["g1"].dwell_done and not open_["g1"].dwell_done  # the input is not changed
    assert step(after, hits, ts=900.0, dwell={"g1": 300.0})[0] == []  # once per visit


def test_exit_then_enter_again_is_a_new_visit():
    events, after = step({"g1": Visit("g1", "s1", 0.0, dwell_done=True)}, {}, ts=50.0,
                         away={"g1": 100.0})
    assert [e.type for e in events] == [EventType.EXIT]
    events, after = step(after, {"g1": ("s1", HIGH)}, ts=60.0)
    assert [e.type for e in events] == [EventType.ENTER] and not after["g1"].dwell_done


def _moved(lat, lon, bearing, metres):
    lon2, lat2, _ = GEOD.fwd(lon, lat, bearing, metres)
    return lat2, lon2


def test_movement_flags():
    last = DeviceState("d", last_ts=1000.0, last_lat=37.0, last_lon=-122.0, last_accuracy_m=10.0)
    assert movement_flags(last, 37.0, -122.0, 999.0, 10.0, 70.0) == ["out_of_order"]
    assert movement_flags(last, 37.0, -122.0, 1000.0, 1500.0, 70.0) == ["low_accuracy"]
    # 10 km in 60 s is 167 m/s beyond both accuracy circles: impossible for a car
    far = _moved(37.0, -122.0, 90.0, 10_000.0)
    assert movement_flags(last, *far, 1060.0, 10.0, 70.0) == ["suspicious_movement"]
    # 4 km in 60 s is 67 m/s less the slack: fine
    near = _moved(37.0, -122.0, 90.0, 4_000.0)
    assert movement_flags(last, *near, 1060.0, 10.0, 70.0) == []
    # an older fix far away is out of order, not also suspicious
    assert movement_flags(last, *far, 900.0, 10.0, 70.0) == ["out_of_order"]
    assert movement_flags(DeviceState("new"), *far, 0.0, 10.0, 70.0) == []


def test_next_state_keeps_what_did_not_happen():
    state = DeviceState("d", last_ts=10.0, last_lat=1.0, last_lon=2.0, last_accuracy_m=5.0,
                        visits={"g": Visit("g", "s", 5.0)}, version=7, history={})
    same = next_state(state, 8)
    assert (same.last_ts, same.visits, same.version, same.history) == (10.0, state.visits, 8, {})
    moved = next_state(state, 9, moved_to=(20.0, 3.0, 4.0, 15.0), visits={},
                       pushed=("c1", 20.0, "2026-11-24"))
    assert (moved.last_ts, moved.last_lat, moved.last_lon, moved.last_accuracy_m) == (20.0, 3.0, 4.0, 15.0)
    assert moved.visits == {} and moved.last_offer_ts == 20.0
    assert moved.history == {"c1": [1, 20.0, {"2026-11-24": 1}]}
    assert state.history == {} and state.last_ts == 10.0  # the input is not changed


def test_a_push_history_keeps_the_days_a_cap_can_ask_about():
    h = add_push({}, "c", 1_000_000.0, "1970-01-12")
    h = add_push(h, "c", 1_000_100.0, "1970-01-12")
    assert h["c"] == [2, 1_000_100.0, {"1970-01-12": 2}]
    later = add_push(h, "c", 1_000_000.0 + 5 * 86400, "1970-01-17")
    assert later["c"] == [3, 1_000_000.0 + 5 * 86400, {"1970-01-17": 1}]  # old days dropped


FENCES = ["g1", "g2", "g3"]
_visit = st.builds(lambda sid, entered, done: (sid, entered, done), st.sampled_from(["s1", "s2"]),
                   st.sampled_from([0.0, 50.0, 99.0, 100.0]), st.booleans())


@settings(max_examples=400, deadline=None)
@given(visits=st.dictionaries(st.sampled_from(FENCES), _visit, max_size=3),
       hits=st.dictionaries(st.sampled_from(FENCES),
                            st.tuples(st.sampled_from(["s1", "s2"]), st.sampled_from([HIGH, MEDIUM, LOW])),
                            max_size=3),
       accuracy_m=st.sampled_from([5.0, 30.0, POOR_ACCURACY_M, POOR_ACCURACY_M + 1]),
       dwell=st.dictionaries(st.sampled_from(FENCES), st.sampled_from([1.0, 50.0, 100.0, 500.0]), max_size=3),
       far=st.sampled_from([0.0, 10.0, math.inf]))
def test_settled_only_says_so_when_the_rules_find_no_event_and_keep_the_visits(visits, hits, accuracy_m,
                                                                              dwell, far):
    """The quiet short cut against the rules themselves, whatever the leaving distances."""
    open_ = {fid: Visit(fid, sid, entered, done) for fid, (sid, entered, done) in visits.items()}
    if not settled(open_, hits, 100.0, accuracy_m, dwell):
        return
    away = {fid: far for fid in open_}
    events, after = step(open_, hits, accuracy_m=accuracy_m, away=away, dwell=dwell)
    assert events == []
    assert {f: (v.store_id, v.entered_ts, v.dwell_done) for f, v in after.items()} == \
        {f: (v.store_id, v.entered_ts, v.dwell_done) for f, v in open_.items()}


def test_settled_names_what_would_happen():
    inside = {"g1": Visit("g1", "s1", 0.0)}
    assert settled(inside, {"g1": ("s1", HIGH)}, 100.0, 10.0, {})
    assert not settled({}, {"g1": ("s1", HIGH)}, 100.0, 10.0, {})  # an enter
    assert settled({}, {"g1": ("s1", LOW)}, 100.0, 10.0, {})  # only touching: no enter
    assert not settled(inside, {"g1": ("s1", LOW)}, 100.0, 10.0, {})  # maybe leaving
    assert not settled(inside, {}, 100.0, 10.0, {})  # maybe leaving
    assert not settled(inside, {"g1": ("s1", HIGH)}, 100.0, 10.0, {"g1": 100.0})  # dwell reached
    assert settled(inside, {"g1": ("s1", HIGH)}, 99.0, 10.0, {"g1": 100.0})  # not yet
    assert not settled({}, {}, 100.0, POOR_ACCURACY_M + 1, {})  # poor accuracy: rules decide
