"""Fuzzing the two parsers anything outside can reach: GeoJSON files and campaign objects
(issue 12). Thousands of inputs, most of them nearly right, each one either parsed or refused
with problems that name where; never another exception (which a user would see as a traceback
or a 500)."""

from __future__ import annotations

import json
import math

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from geo_engine.campaigns import parse_campaign, parse_campaigns
from geo_engine.errors import InvalidCampaign
from geo_engine.io.places import parse_geojson

_scalar = st.one_of(st.none(), st.booleans(), st.integers(-10**20, 10**20),
                    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=12))
_json = st.recursive(_scalar, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)),
    max_leaves=12)
_lon = st.one_of(st.floats(-200, 200), _scalar)
_lat = st.one_of(st.floats(-100, 100), _scalar)
_position = st.one_of(st.lists(st.floats(-181, 181, allow_nan=False), min_size=2, max_size=3),
                      st.tuples(_lon, _lat).map(list), _json)
_ring = st.lists(_position, max_size=7).map(lambda r: r + r[:1] if r and r[0] is not None else r)
_geometry = st.one_of(
    st.fixed_dictionaries({"type": st.just("Point"), "coordinates": _position}),
    st.fixed_dictionaries({"type": st.just("Polygon"), "coordinates": st.lists(_ring, max_size=3)}),
    st.fixed_dictionaries({"type": st.just("MultiPolygon"),
                           "coordinates": st.lists(st.lists(_ring, max_size=2), max_size=2)}),
    st.fixed_dictionaries({"type": st.sampled_from(["LineString", "Circle", 3, None]),
                           "coordinates": _json}),
    _json)
_props = st.fixed_dictionaries({}, optional={
    "kind": st.one_of(st.sampled_from(["store", "geofence", "shop"]), _scalar),
    "id": st.one_of(st.sampled_from(["s1", "s2", "g1", "\ud800", ""]), _scalar),
    "store_id": st.one_of(st.sampled_from(["s1", "s2", "nope"]), _scalar),
    "name": _scalar, "radius_m": st.one_of(st.floats(-10, 60_000), _scalar),
    "tags": st.one_of(st.lists(st.text(max_size=5), max_size=3), _json),
    "enabled": _scalar, "expires_at": st.one_of(st.just("2026-12-24T18:00:00Z"), _scalar),
    "metadata": _json, "timezone": st.one_of(st.sampled_from(["Europe/Paris", "Mars/Base"]), _scalar),
    "opening_hours": st.one_of(st.just({"mon": [["09:00", "21:00"]]}), _json),
    "address": _scalar, "stroke": _scalar})
_feature = st.one_of(
    st.fixed_dictionaries({"type": st.just("Feature"), "properties": st.one_of(_props, _json),
                           "geometry": st.one_of(_geometry, st.none())},
                          optional={"id": _scalar, "bbox": _json}),
    _json)
_collection = st.one_of(
    st.fixed_dictionaries({"type": st.just("FeatureCollection"),
                           "features": st.lists(_feature, max_size=6)},
                          optional={"crs": st.one_of(_json, st.just(
                              {"type": "name", "properties": {"name": "EPSG:3857"}}))}),
    _json)


def _dumps(value) -> str:
    return json.dumps(value, allow_nan=True)


@settings(max_examples=3000, deadline=None, suppress_health_check=list(HealthCheck))
@given(doc=_collection)
def test_any_geojson_is_parsed_or_refused_with_named_problems(doc):
    data, problems = parse_geojson(_dumps(doc), "fuzz.geojson")
    for p in problems:
        assert p.source == "fuzz.geojson" and p.message
        json.dumps(p.as_dict())  # every problem can be sent back as JSON
    if not problems:  # what parsed is usable: finite coordinates, text ids
        for s in data.stores:
            assert math.isfinite(s.lat) and math.isfinite(s.lon) and s.id.encode()
        for g in data.geofences:
            assert g.id.encode() and g.store_id.encode()


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(text=st.one_of(st.text(max_size=60), st.binary(max_size=60).map(
    lambda b: b.decode("utf-8", "replace"))))
def test_any_text_as_geojson_is_refused_with_a_problem_not_an_exception(text):
    data, problems = parse_geojson(text, "fuzz.geojson")
    assert problems or not (data.stores or data.geofences) or text.strip().startswith("{")


_campaign = st.one_of(
    st.fixed_dictionaries({"id": st.one_of(st.just("c1"), _scalar),
                           "offer": st.one_of(st.fixed_dictionaries(
                               {"title": st.one_of(st.text(max_size=8), _scalar)},
                               optional={"body": _scalar, "url": _scalar, "coupon_code": _scalar,
                                         "color": _scalar}), _json),
                           "trigger": st.one_of(st.fixed_dictionaries(
                               {"type": st.one_of(st.sampled_from(
                                   ["enter", "exit", "dwell", "nearby", "wander"]), _scalar)},
                               optional={"dwell_s": _scalar, "radius_m": _scalar}), _json)},
                          optional={
                              "name": _scalar, "enabled": _scalar,
                              "targets": st.one_of(st.fixed_dictionaries({}, optional={
                                  "tags": _json, "store_ids": _json, "geofence_ids": _json}), _json),
                              "schedule": st.one_of(st.fixed_dictionaries({}, optional={
                                  "starts_at": st.one_of(st.just("2026-11-01T00:00:00Z"), _scalar),
                                  "ends_at": _scalar, "days": _json,
                                  "hours": st.one_of(st.just([["07:00", "11:00"]]), _json)}), _json),
                              "only_when_open": _scalar, "priority": _scalar,
                              "min_confidence": _scalar,
                              "caps": st.one_of(st.fixed_dictionaries({}, optional={
                                  "per_device_per_day": _scalar, "per_device_total": _scalar,
                                  "cooldown_s": _scalar, "budget_total": _scalar}), _json),
                              "audience": _json, "holdout_pct": _scalar}),
    _json)


@settings(max_examples=3000, deadline=None, suppress_health_check=list(HealthCheck))
@given(obj=_campaign)
def test_any_campaign_is_parsed_or_refused_by_field(obj):
    try:
        c = parse_campaign(obj)
    except InvalidCampaign as exc:
        assert str(exc)
        for p in getattr(exc, "problems", []):
            assert p["field"] and p["message"]
        return
    json.dumps(c.body)  # what is stored can be sent back
    assert c.id and c.trigger in ("enter", "exit", "dwell", "nearby")


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(text=st.one_of(st.text(max_size=40), _campaign.map(_dumps), st.lists(_campaign).map(_dumps)))
def test_any_campaign_file_is_parsed_or_refused_in_one_sentence(text):
    try:
        parse_campaigns(text, "fuzz.json")
    except InvalidCampaign as exc:
        assert "fuzz.json" in str(exc) or "campaign" in str(exc)
