"""The phone's clock is not trusted (SPEC 6): clock_ahead, late, and caps on the push's time.

Each attack of issue 12 that a forged timestamp made possible, against a server's engine with
the clock rule on (the default), then the same pings with GEO_ENGINE_TRUST_CLIENT_CLOCK.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import orjson
import pytest

from geo_engine import Engine, InvalidInput, Settings
from geo_engine.devices import CLOCK_AHEAD_S, LATE_S, clock
from geo_engine.model import Ping

from .test_pings import SF, at, campaign, types
from .test_pings import engine as trusted_engine  # noqa: F401 - a fixture


@pytest.fixture
def engine(tmp_path, trusted_engine):  # noqa: F811 - the same world, the clock rule on
    trusted_engine.db.close()
    e = Engine(Settings(db=trusted_engine.path, min_offer_interval_s=0))
    assert e.settings.trust_client_clock is False  # the default
    e.put_campaign("c1", campaign(caps={"per_device_per_day": 1}))
    e.put_campaign("always", campaign("always", {"type": "nearby", "radius_m": 300},
                                      caps={"per_device_per_day": 1}))
    return e


def ping(engine, device, where, t=None, **kw):
    return orjson.loads(engine.handle_ping(Ping(device, where[0], where[1], 10.0, t, **kw)).body)


def test_the_rule_alone():
    now = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
    ahead = now + timedelta(seconds=CLOCK_AHEAD_S + 1)
    assert clock(ahead, now, trusted=False) == (now, ["clock_ahead"])
    assert clock(now + timedelta(seconds=CLOCK_AHEAD_S), now, trusted=False) == \
        (now + timedelta(seconds=CLOCK_AHEAD_S), [])
    old = now - timedelta(seconds=LATE_S + 1)
    assert clock(old, now, trusted=False) == (old, ["late"])
    assert clock(now - timedelta(seconds=LATE_S), now, trusted=False) == (now - timedelta(seconds=LATE_S), [])
    assert clock(None, now, trusted=False) == (now, [])
    assert clock(ahead, now, trusted=True) == (ahead, []) and clock(old, now, trusted=True) == (old, [])


def test_a_far_future_timestamp_cannot_mute_a_phone(engine):
    """Attack: one ping dated 9999 made every later real ping out_of_order, for good."""
    a = ping(engine, "x", at(150), datetime(9999, 12, 29, 23, tzinfo=UTC))
    assert a["flags"] == ["clock_ahead"]
    with engine.db.atomic() as tx:
        stored = engine.db.devices.load(tx, "x", cached=False).last_ts
    assert stored <= datetime.now(UTC).timestamp() + 1  # the state did not move into the future
    # the phone's real ping, with its clock right, walks in (a minute's walk, so not a
    # teleport from where the forged ping was taken, at the server's time)
    b = ping(engine, "x", SF, datetime.now(UTC) + timedelta(seconds=50))
    assert types(b) == ["enter"] and "out_of_order" not in b["flags"]
    assert b["offer"] is not None


def test_forged_past_dates_take_no_extra_coupon(engine):
    """Attack: pings dated on 7 past days took 7 coupons of a once-a-day campaign."""
    now = datetime.now(UTC)
    for days in range(7, 0, -1):
        a = ping(engine, "y", SF if days % 2 else at(2000), now - timedelta(days=days))
        assert a["flags"] == ["late"] and a["offer"] is None
    today = ping(engine, "y", at(5))
    assert today["offer"] is not None and today["flags"] == []
    again = ping(engine, "y", at(8))
    assert again["offer"] is None  # once a day, counted on the server's day
    assert [p[1] for p in engine.db.devices.pushes("y")] == [today["offer"]["campaign_id"]]


def test_a_late_pings_events_are_recorded_but_it_pushes_nothing(engine):
    t = datetime.now(UTC) - timedelta(minutes=30)
    a = ping(engine, "z", SF, t)
    assert types(a) == ["enter"] and a["offer"] is None and a["flags"] == ["late"]
    assert a["decision"] == {"considered": 0, "rejected": []}
    assert [e[0] for e in engine.db.devices.events("z")] == ["enter"]


def test_a_clock_ahead_ping_is_taken_at_the_servers_time(engine):
    t = datetime.now(UTC) + timedelta(hours=3)
    a = ping(engine, "w", SF, t)
    assert a["flags"] == ["clock_ahead"] and types(a) == ["enter"] and a["offer"] is not None
    ((_, _, _, _, ts),) = engine.db.devices.pushes("w")
    assert abs(ts - datetime.now(UTC).timestamp()) < 30


def test_trusted_clocks_take_timestamps_as_given(trusted_engine):  # noqa: F811
    trusted_engine.put_campaign("c1", campaign(caps={"per_device_per_day": 1}))
    now = datetime.now(UTC)
    got = [ping(trusted_engine, "v", SF if k % 2 else at(2000), now - timedelta(days=7 - k))
           for k in range(1, 7)]
    assert all(a["flags"] == [] for a in got)
    assert sum(a["offer"] is not None for a in got) == 3  # one a day, on the days sent


@pytest.mark.parametrize("sent", [datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=1))),
                                  datetime(1, 1, 1, 23, 59, tzinfo=UTC),
                                  datetime(9999, 12, 31, 23, tzinfo=UTC)])
def test_a_timestamp_out_of_range_is_named(sent):
    """0001-01-01T00:00:00+01:00 was an OverflowError (a 500) in the store's local time."""
    with pytest.raises(InvalidInput, match="timestamp must be between 0001-01-02 and 9999-12-30"):
        Ping("d", 1.0, 2.0, None, sent)


def test_the_oldest_and_newest_timestamps_taken_get_answers(trusted_engine):  # noqa: F811
    """Trusted as given (a replay), the calendar's ends still have a local time in every zone."""
    trusted_engine.put_campaign("c1", campaign())
    for t in (datetime(1, 1, 2, tzinfo=UTC), datetime(9999, 12, 29, 23, tzinfo=UTC)):
        a = ping(trusted_engine, f"d{t.year}", SF, t)
        assert types(a) == ["enter"]
