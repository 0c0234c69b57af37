"""Loading and validating store/geofence files: one test per problem a marketer can make."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from pyproj import Transformer

from geo_engine import ValidationFailed, load_files, parse_csv, parse_geojson

from .conftest import DEMO


def store(sid="s1", lon=-122.4, lat=37.78, **props):
    return {"type": "Feature", "geometry": {"type": "Point", "coordinates": [lon, lat]},
            "properties": {"kind": "store", "id": sid, **props}}


def circle(fid="g1", lon=-122.4, lat=37.78, radius_m=100, store_id="s1", **props):
    p = {"id": fid, "store_id": store_id, **props}
    if radius_m is not None:
        p["radius_m"] = radius_m
    return {"type": "Feature", "geometry": {"type": "Point", "coordinates": [lon, lat]},
            "properties": p}


def square(fid="g2", store_id="s1", ring=None, **props):
    ring = ring or [[-122.41, 37.77], [-122.40, 37.77], [-122.40, 37.78], [-122.41, 37.78],
                    [-122.41, 37.77]]
    return {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [ring]},
            "properties": {"id": fid, "store_id": store_id, **props}}


def fc(*features, **extra):
    return json.dumps({"type": "FeatureCollection", "features": list(features), **extra})


def problems_of(text, source="f.geojson"):
    return parse_geojson(text, source)[1]


def only_problem(text):
    found = problems_of(text)
    assert len(found) == 1, found
    return found[0]


def test_a_good_file_loads_everything():
    data, problems = parse_geojson(fc(store(), circle(), square()))
    assert problems == []
    assert [s.id for s in data.stores] == ["s1"]
    assert [g.id for g in data.geofences] == ["g1", "g2"]
    assert data.geofences[0].radius_m == 100 and data.geofences[1].parts


def test_every_problem_is_reported_not_just_the_first():
    text = fc(store(), circle("a", radius_m=None), circle("b", lat=95), square("c", ring=[[0, 0]]))
    found = problems_of(text)
    assert [(p.index, p.id) for p in found] == [(1, "a"), (2, "b"), (3, "c")]


@pytest.mark.parametrize(("feature", "match"), [
    # a Point geofence without a sane radius
    (circle(radius_m=None), "a Point geofence needs radius_m"),
    (circle(radius_m=0.5), r"radius_m must be a number of metres from 1 to 50,000, got 0.5"),
    (circle(radius_m=60_000), "got 60000"),
    (circle(radius_m="100"), 'got "100"'),
    # coordinates outside WGS84, with a guess at why
    (circle(lon=-13_627_361.0, lat=4_548_840.0), "looks like Web Mercator"),
    (circle(lon=37.78, lat=-122.4), r"looks like \[lat, lon\]: GeoJSON positions are \[lon, lat\]"),
    (circle(lon=200.0, lat=10.0), r"outside WGS84: lon must be in \[-180, 180\]"),
    (circle(lon=float("nan")), "must be finite numbers"),
    (circle(lon=float("inf")), "must be finite numbers"),
    (circle(lon="-122.4"), r"is not a \[lon, lat\] pair of numbers"),
    # polygons
    (square(ring=[[0, 0], [1, 0], [1, 1], [0, 1]]), r"ring 0 is not closed: its last position"),
    (square(ring=[[0, 0], [1, 0], [0, 0]]), "has 3 positions; it needs at least 4"),
    (square(ring=[[0, 0], [1, 1], [1, 0], [0, 1], [0, 0]]),
     r"ring crosses itself near lon 0.500000, lat 0.500000; redraw it"),
    (square(ring=[[-100, 0], [0, 0], [100, 0], [100, 10], [0, 10], [-100, 10], [-100, 0]]),
     "spans 200.0 degrees of longitude"),
    # null and non-area geometry
    ({"type": "Feature", "geometry": None, "properties": {"id": "g", "store_id": "s1"}},
     r"has no geometry \(null\)"),
    ({"type": "Feature", "geometry": {"type": "LineString", "coordinates": [[0, 0], [1, 1]]},
      "properties": {"id": "g", "store_id": "s1"}}, "got a LineString"),
    # ids and references inside a feature
    ({"type": "Feature", "geometry": {"type": "Point", "coordinates": [0, 0]},
      "properties": {"store_id": "s1", "radius_m": 10}}, "has no id"),
    (circle(store_id=None), "needs the store_id"),
    (circle(fid=True), "id must be a string or a number"),
    # properties
    (circle(tags="coffee"), "tags must be a list of strings"),
    (circle(enabled="yes"), "enabled must be true or false"),
    (circle(expires_at="next week"), "expires_at must be an RFC 3339 time"),
    (circle(expires_at="2026-12-24T18:00:00"), "expires_at must be an RFC 3339 time with a zone"),
    (store(sid="s9", timezone="Mars/Olympus"), "is not an IANA time zone name"),
    (store(sid="s9", opening_hours={"mon": [["9:00", "21:00"]]}), r'"9:00" is not a time "HH:MM"'),
    (store(sid="s9", opening_hours={"funday": []}), "unknown day 'funday'"),
    (store(sid="s9", opening_hours={"fri": [["22:00", "02:00"]]}), "closes before it opens"),
    ({"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 0]]]},
      "properties": {"kind": "store", "id": "s9"}}, "a store must be a Point"),
    ({"type": "Feature", "geometry": {"type": "Point", "coordinates": [0, 0]},
      "properties": {"kind": "shop", "id": "x"}}, 'kind must be "store" or "geofence"'),
    ({"type": "Feature", "properties": {"id": "x"}}, r"has no geometry"),
    ("not a feature", "not a GeoJSON Feature"),
])
def test_each_feature_problem(feature, match):
    found = problems_of(fc(store(), feature))
    assert len(found) == 1, found
    assert found[0].index == 1
    assert re.search(match, found[0].message), found[0].message


def test_malformed_json_names_the_line():
    p = only_problem('{"type": "FeatureCollection",\n "features": [\n  {"type": "Feature",}\n]}')
    assert p.message.startswith("malformed JSON at line 3, column")


def test_not_a_feature_collection():
    p = only_problem(json.dumps({"type": "Feature", "geometry": None, "properties": {}}))
    assert 'not a GeoJSON FeatureCollection (type is "Feature")' in p.message


def test_duplicate_and_missing_store_references_across_files(tmp_path):
    a = tmp_path / "a.geojson"
    b = tmp_path / "b.geojson"
    a.write_text(fc(store(), circle("g1")))
    b.write_text(fc(circle("g1"), circle("g7", store_id="nowhere")))
    with pytest.raises(ValidationFailed) as err:
        load_files([a, b])
    messages = [(p.source.endswith("b.geojson"), p.index, p.id, p.message) for p in err.value.problems]
    assert messages[0][:3] == (True, 0, "g1")
    assert "duplicate geofence id: feature 1 of" in messages[0][3]
    assert messages[1][:3] == (True, 1, "g7")
    assert "store_id 'nowhere' is no store in these files or the database" in messages[1][3]


def test_a_store_already_loaded_satisfies_a_reference(tmp_path):
    f = tmp_path / "fences.geojson"
    f.write_text(fc(circle("g1", store_id="old")))
    assert [g.id for g in load_files([f], known_store_ids={"old"}).geofences] == ["g1"]


def test_numeric_feature_id_and_unknown_properties_become_metadata():
    feature = circle(fid=None, stroke="#f00", fid_qgis=12)
    del feature["properties"]["id"]
    feature["id"] = 42
    data, problems = parse_geojson(fc(store(), feature))
    assert problems == []
    g = data.geofences[0]
    assert g.id == "42"
    assert g.metadata == {"stroke": "#f00", "fid_qgis": 12}


def test_altitude_is_ignored_and_either_winding_is_fine():
    cw = [[-122.41, 37.77, 12.0], [-122.41, 37.78, 12.0], [-122.40, 37.78, 12.0],
          [-122.40, 37.77, 12.0], [-122.41, 37.77, 12.0]]
    data, problems = parse_geojson(fc(store(), square(ring=cw), square("g3")))
    assert problems == []
    a, b = data.geofences
    assert a.parts[0].equals(b.parts[0])
    assert a.geometry["coordinates"][0][0] == [-122.41, 37.77]


def test_web_mercator_with_a_crs_member_is_reprojected():
    to_merc = Transformer.from_crs("EPSG:4326", "EPSG:3857", always_xy=True)
    x, y = to_merc.transform(-122.4, 37.78)
    crs = {"type": "name", "properties": {"name": "urn:ogc:def:crs:EPSG::3857"}}
    data, problems = parse_geojson(fc(store(lon=x, lat=y), circle(lon=x, lat=y)), "m.geojson")
    assert problems and "Web Mercator" in problems[0].message  # without crs: refused
    data, problems = parse_geojson(fc(store(lon=x, lat=y), circle(lon=x, lat=y), crs=crs), "m.geojson")
    assert problems == []
    assert data.stores[0].lon == pytest.approx(-122.4, abs=1e-9)
    assert data.stores[0].lat == pytest.approx(37.78, abs=1e-9)
    assert data.notices == ["m.geojson: coordinates reprojected from EPSG:3857 to WGS84 lon/lat "
                            "(the file's \"crs\" member)"]


def test_a_crs84_member_is_taken_as_lon_lat():
    crs = {"type": "name", "properties": {"name": "urn:ogc:def:crs:OGC:1.3:CRS84"}}
    data, problems = parse_geojson(fc(store(), crs=crs))
    assert problems == [] and data.notices == [] and data.stores[0].lon == -122.4


def test_an_unknown_crs_is_a_problem():
    crs = {"type": "name", "properties": {"name": "EPSG:99999999"}}
    assert "names no CRS pyproj knows" in only_problem(fc(store(), crs=crs)).message


def test_a_split_polygon_keeps_its_parts_and_drops_the_seam_from_its_boundary():
    east = [[179.0, -1.0], [180.0, -1.0], [180.0, 1.0], [179.0, 1.0], [179.0, -1.0]]
    west = [[-180.0, -1.0], [-179.0, -1.0], [-179.0, 1.0], [-180.0, 1.0], [-180.0, -1.0]]
    feature = {"type": "Feature", "properties": {"id": "fiji", "store_id": "s1"},
               "geometry": {"type": "MultiPolygon", "coordinates": [[east], [west]]}}
    data, problems = parse_geojson(fc(store(), feature))
    assert problems == []
    g = data.geofences[0]
    assert len(g.parts) == 2
    assert not ((np.abs(g.edges[:, 0]) == 180) & (g.edges[:, 0] == g.edges[:, 2])).any()


# --- CSV -------------------------------------------------------------------------------------

CSV_GOOD = """id,store_id,lat,lon,radius_m,name,tags
g1,s1,37.78,-122.40,150,Union Sq,coffee|downtown
g2,s1,37.78,-122.40,400,Union Sq wide,
,s2,37.70,-122.45,,Store alone,
"""


def test_csv_makes_stores_once_and_circle_geofences():
    data, problems = parse_csv(CSV_GOOD, "stores.csv")
    assert problems == []
    assert [(s.id, s.name, s.tags) for s in data.stores] == [
        ("s1", "Union Sq", ("coffee", "downtown")), ("s2", "Store alone", ())]
    assert [(g.id, g.store_id, g.radius_m) for g in data.geofences] == [("g1", "s1", 150.0),
                                                                        ("g2", "s1", 400.0)]


@pytest.mark.parametrize(("row", "match"), [
    ("g1,s1,north,-122.4,100", "must be numbers"),
    ("g1,s1,122.4,37.7,100", r"looks like \[lat, lon\]"),
    ("g1,,37.7,-122.4,100", "store_id is empty"),
    (",s1,37.7,-122.4,100", "id is empty"),
    ("g1,s1,37.7,-122.4,big", "radius_m must be a number of metres from 1 to 50,000, got 'big'"),
])
def test_csv_problems_name_the_line(row, match):
    _, problems = parse_csv("id,store_id,lat,lon,radius_m\ng0,s0,1,1,10\n" + row + "\n", "x.csv")
    assert len(problems) == 1
    assert problems[0].index == 3 and problems[0].unit == "line"
    assert re.search(match, problems[0].message)
    assert str(problems[0]).startswith("x.csv, line 3")


def test_csv_missing_columns():
    _, problems = parse_csv("id,lat,lon\n1,2,3\n", "x.csv")
    assert "the header lacks columns store_id, radius_m" in problems[0].message


def test_csv_store_at_two_places():
    _, problems = parse_csv("id,store_id,lat,lon,radius_m\ng1,s1,1,1,10\ng2,s1,2,2,10\n", "x.csv")
    assert "store 's1' is at lat 1.0, lon 1.0 on an earlier line" in problems[0].message


def test_demo_data_is_clean():
    data = load_files([DEMO])
    assert len(data.stores) >= 24 and len(data.geofences) >= 24
    kinds = {g.geometry["type"] if g.geometry else "circle" for g in data.geofences}
    assert kinds == {"circle", "Polygon", "MultiPolygon"}


def test_nan_and_infinity_literals_are_reported_as_coordinates():
    # some exporters write NaN/Infinity, which is not JSON; the file is still read to say where
    text = fc(store(), circle("g1")).replace("-122.4, 37.78]}, \"properties\": {\"id\": \"g1\"",
                                             "NaN, 37.78]}, \"properties\": {\"id\": \"g1\"")
    assert "NaN" in text
    p = only_problem(text)
    assert (p.index, p.id) == (1, "g1")
    assert "coordinates must be finite numbers, got nan, 37.78" in p.message


def test_reprojected_polygon_with_altitude_keeps_wgs84_geometry():
    to_utm = Transformer.from_crs("EPSG:4326", "EPSG:32610", always_xy=True)
    ring = [[-122.41, 37.77], [-122.40, 37.77], [-122.40, 37.78], [-122.41, 37.78], [-122.41, 37.77]]
    utm = [[*to_utm.transform(x, y), 5.0] for x, y in ring]
    crs = {"type": "name", "properties": {"name": "EPSG:32610"}}
    data, problems = parse_geojson(fc(store(*to_utm.transform(-122.4, 37.78)),
                                      square(ring=utm), crs=crs), "utm.geojson")
    assert problems == []
    got = np.array(data.geofences[0].geometry["coordinates"][0])
    np.testing.assert_allclose(got, np.array(ring), atol=1e-9)
    assert "reprojected from EPSG:32610" in data.notices[0]


def test_generated_data_validates(tmp_path):
    import subprocess
    import sys

    from .conftest import ROOT

    for layout in ("worldwide", "city"):
        out = tmp_path / f"fences-{layout}.geojson"
        subprocess.run([sys.executable, str(ROOT / "data" / "generate.py"), "fences", "-n", "3000",
                        "--layout", layout, "-o", str(out)], check=True, capture_output=True)
        data = load_files([out])
        assert len(data.stores) == 3000 and len(data.geofences) == 3000
    out = tmp_path / "stores.csv"
    subprocess.run([sys.executable, str(ROOT / "data" / "generate.py"), "stores", "-n", "500",
                    "-o", str(out)], check=True, capture_output=True)
    assert len(load_files([out]).geofences) == 500
