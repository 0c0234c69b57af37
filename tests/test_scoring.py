"""Batch scoring: exact against brute force, every row kept and marked, any chunking, any format."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime

import geopandas as gpd
import numpy as np
import orjson
import pandas as pd
import pytest
import shapely
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from geo_engine import Engine, Settings
from geo_engine.model import Ping
from geo_engine.scoring import OUTPUT_COLUMNS, score_frame

from .conftest import DEMO, WGS84, brute_nearest

AT = datetime(2026, 11, 24, 17, 10, tzinfo=UTC)  # Tuesday 09:10 in San Francisco


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    import json

    e = Engine(Settings(trust_client_clock=True, db=str(tmp_path_factory.mktemp("score") / "s.db")))
    e.import_files([DEMO])
    for c in json.loads((DEMO.parent / "demo_campaigns.json").read_text()):
        e.put_campaign(c["id"], c)
    return e


def sf_points(n, seed=1):
    rng = np.random.default_rng(seed)
    return 37.70 + rng.random(n) * 0.12, -122.52 + rng.random(n) * 0.14


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.floats(-90, 90), st.floats(-180, 180)), min_size=1, max_size=30),
       st.floats(0, 3_000_000))
def test_exact_against_brute_force_anywhere(engine, points, radius):
    df = pd.DataFrame({"lat": [p[0] for p in points], "lon": [p[1] for p in points]})
    out = score_frame(df, engine, radius_m=radius, at=AT)
    s = engine.snapshot.places.stores
    for row in out.itertuples():
        if row.lat == 0 and row.lon == 0:  # (0, 0) is flagged, not scored (test_score_checks)
            assert row.status == "null_island" and pd.isna(row.nearest_store_id)  # pandas 3: None or NaN
            continue
        want_i, want_d = brute_nearest(row.lat, row.lon, s.lats, s.lons, k=1)
        assert row.nearest_store_id == s.ids[want_i[0]]
        assert row.nearest_distance_m == pytest.approx(want_d[0], abs=1e-6)
        assert row.stores_within_radius == len(brute_nearest(row.lat, row.lon, s.lats, s.lons,
                                                             radius_m=radius)[0])


def test_geofences_and_offers_match_what_a_ping_would_get(engine, tmp_path):
    lats, lons = sf_points(400)
    # and some points right at the stores, inside their fences
    lats = np.concatenate([lats, engine.snapshot.places.stores.lats + 1e-5])
    lons = np.concatenate([lons, engine.snapshot.places.stores.lons])
    out = score_frame(pd.DataFrame({"lat": lats, "lon": lons}), engine, at=AT)
    fences = engine.snapshot.places.fence_index
    checked = 0
    for k, row in enumerate(out.itertuples()):
        want = sorted(fences.fences[i].id for i, _ in fences.containing(row.lat, row.lon, 0.0, AT))
        assert row.geofence_ids == "|".join(want)
        if want:
            answer = orjson.loads(engine.handle_ping(Ping(f"probe-{k}", row.lat, row.lon, 0.0, AT)).body)
            got = answer["offer"]["campaign_id"] if answer["offer"] else None
            scored = None if pd.isna(row.offer_campaign_id) else row.offer_campaign_id
            assert scored == got, (row, answer)
            checked += 1
    assert checked > 20


def test_bad_rows_are_kept_in_order_and_marked(engine):
    df = pd.DataFrame({"id": list("abcdefg"),
                       "lat": ["37.7955", None, "north", "nan", "95", "37.7", ""],
                       "lon": ["-122.3937", "1", "1", "1", "0", "-200", ""]})
    out = score_frame(df, engine, at=AT)
    assert out["id"].tolist() == list("abcdefg")
    assert out["status"].tolist() == ["ok", "missing_coordinates", "invalid_coordinates",
                                      "invalid_coordinates", "invalid_coordinates",
                                      "invalid_coordinates", "missing_coordinates"]
    assert out.loc[0, "nearest_store_id"] == "fc-ferry"
    assert out.loc[1:, "nearest_store_id"].isna().all()
    assert list(out.columns) == ["id", "lat", "lon", *OUTPUT_COLUMNS]


def test_point_geometry_wins_and_other_geometry_is_invalid(engine):
    # SPEC 3.3's order: a Point geometry, then lat/lon; a line is no Point, so lat/lon decide
    line = shapely.LineString([(0, 0), (1, 1)])
    gdf = gpd.GeoDataFrame({"id": ["p", "line", "line+latlon", "none"],
                            "lat": [0.0, None, 37.7955, 37.7955],
                            "lon": [0.0, None, -122.3937, -122.3937]},
                           geometry=[shapely.Point(-122.3937, 37.7955), line, line, None],
                           crs="EPSG:4326")
    out = score_frame(gdf, engine, at=AT)
    assert out["location_source"].tolist() == ["geometry", "", "latlon", "latlon"]
    assert out["status"].tolist() == ["ok", "invalid_coordinates", "ok", "ok"]
    assert out["nearest_store_id"].tolist()[2:] == ["fc-ferry", "fc-ferry"]
    assert out["nearest_store_id"].tolist()[0] == "fc-ferry"


def write_all_formats(df: pd.DataFrame, tmp_path):
    gdf = gpd.GeoDataFrame(df, geometry=gpd.points_from_xy(df["lon"], df["lat"]), crs="EPSG:4326")
    paths = {"csv": tmp_path / "c.csv", "parquet": tmp_path / "c.parquet",
             "geoparquet": tmp_path / "c.geo.parquet", "geojson": tmp_path / "c.geojson",
             "gpkg": tmp_path / "c.gpkg", "gpkg-web-mercator": tmp_path / "c3857.gpkg"}
    df.to_csv(paths["csv"], index=False)
    df.to_parquet(paths["parquet"], index=False)
    gdf.to_parquet(paths["geoparquet"], index=False)
    gdf.to_file(paths["geojson"], driver="GeoJSON")
    gdf.to_file(paths["gpkg"], driver="GPKG")
    gdf.to_crs(3857).to_file(paths["gpkg-web-mercator"], driver="GPKG")  # projected: read back to WGS84
    return paths


def run_score(*args):
    return subprocess.run([sys.executable, "-m", "geo_engine", "score", *map(str, args)],
                          capture_output=True, text=True, timeout=300)


def test_every_format_and_any_chunking_give_the_same_scores(engine, tmp_path):
    lats, lons = sf_points(250, seed=4)
    df = pd.DataFrame({"customer_id": [f"c{i}" for i in range(250)], "lat": lats, "lon": lons})
    results = {}
    for name, path in write_all_formats(df, tmp_path).items():
        for chunk in (1000, 37):  # one chunk, and many
            out = tmp_path / f"out-{name}-{chunk}.parquet"
            r = run_score(path, "--out", out, "--db", engine.db.path, "--at", "2026-11-24T17:10:00+0000",
                          "--chunk-rows", chunk)
            assert r.returncode == 0, r.stderr
            scored = pd.read_parquet(out)
            assert len(scored) == 250 and scored["customer_id"].tolist() == df["customer_id"].tolist()
            results[(name, chunk)] = scored[["nearest_store_id", "stores_within_radius", "geofence_ids",
                                             "offer_campaign_id", "status"]]
            np.testing.assert_allclose(scored["nearest_distance_m"],
                                       results.setdefault(("d",), scored["nearest_distance_m"]), atol=1e-6)
    first = next(iter(results.values()))
    for key, frame in results.items():
        if key != ("d",):
            pd.testing.assert_frame_equal(frame.reset_index(drop=True), first.reset_index(drop=True))


def test_the_cli_summarises_and_refuses_an_unknown_output(engine, tmp_path):
    path = tmp_path / "in.csv"
    path.write_text("id,lat,lon\na,37.7955,-122.3937\nb,,\nc,north,1\n")
    r = run_score(path, "--out", tmp_path / "o.csv", "--db", engine.db.path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("scored 3 rows in ")
    assert "invalid_coordinates" in r.stdout and "missing_coordinates" in r.stdout
    scored = pd.read_csv(tmp_path / "o.csv")
    assert scored["status"].tolist() == ["ok", "missing_coordinates", "invalid_coordinates"]
    r = run_score(path, "--out", tmp_path / "o.xlsx", "--db", engine.db.path)
    assert r.returncode == 1 and "the format is chosen by the extension" in r.stderr
    r = run_score(tmp_path / "missing.csv", "--out", tmp_path / "o.csv", "--db", engine.db.path)
    assert r.returncode == 1 and "no such file" in r.stderr and "Traceback" not in r.stderr


def test_distances_are_geodesic_across_the_antimeridian(tmp_path):
    import json

    path = tmp_path / "fiji.geojson"
    path.write_text(json.dumps({"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {"kind": "store", "id": "east"},
         "geometry": {"type": "Point", "coordinates": [179.9999, 0.0]}}]}))
    e = Engine(Settings(trust_client_clock=True, db=str(tmp_path / "f.db")))
    e.import_files([path])
    out = score_frame(pd.DataFrame({"lat": [0.0], "lon": [-179.9999]}), e, radius_m=100)
    assert out.loc[0, "nearest_distance_m"] == pytest.approx(WGS84.inv(179.9999, 0, -179.9999, 0)[2])
    assert out.loc[0, "stores_within_radius"] == 1


def test_the_summary_counts_customers_within_the_radius_of_each_store(engine, tmp_path):
    lats, lons = sf_points(3000, seed=8)
    path = tmp_path / "c.csv"
    pd.DataFrame({"lat": lats, "lon": lons}).to_csv(path, index=False)
    r = run_score(path, "--out", tmp_path / "o.parquet", "--db", engine.db.path, "--radius-m", 800,
                  "--chunk-rows", 700)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.split("top stores by customers within 800 m:")[1].strip().splitlines()
    got = {line.split()[0]: int(line.split()[1].replace(",", "")) for line in lines}
    assert len(got) == 5
    s = engine.snapshot.places.stores
    for sid, count in got.items():
        i = list(s.ids).index(sid)
        d = np.asarray(WGS84.inv(np.full(len(lats), s.lons[i]), np.full(len(lats), s.lats[i]), lons, lats)[2])
        assert count == int((d <= 800).sum()), sid


def test_nearby_campaigns_score_as_pings_decide(tmp_path):
    e = Engine(Settings(trust_client_clock=True, db=str(tmp_path / "n.db")))
    e.import_files([DEMO])
    e.put_campaign("near", {"id": "near", "offer": {"title": "x"}, "targets": {"tags": ["market"]},
                            "trigger": {"type": "nearby", "radius_m": 800}})
    rng = np.random.default_rng(1)
    lats, lons = 37.72 + rng.random(300) * 0.08, -122.50 + rng.random(300) * 0.12
    out = score_frame(pd.DataFrame({"lat": lats, "lon": lons}), e, at=AT)
    scored = [None if pd.isna(v) else v for v in out["offer_campaign_id"]]
    pinged = []
    for k, (a, o) in enumerate(zip(lats, lons, strict=True)):
        answer = orjson.loads(e.handle_ping(Ping(f"p{k}", float(a), float(o), 0.0, AT)).body)
        pinged.append(answer["offer"]["campaign_id"] if answer["offer"] else None)
    assert scored == pinged
    assert 10 < scored.count("near") < 290  # some in reach of a market, some not


def test_a_write_that_fails_in_the_writer_thread_is_raised_and_leaves_no_output(tmp_path):
    from geo_engine.io.customers import BackgroundWriter, ChunkWriter

    out = tmp_path / "o.parquet"
    writer = BackgroundWriter(ChunkWriter(out))
    writer.write(pd.DataFrame({"located_lat": [1.0], "n": [1]}))
    writer.write(pd.DataFrame({"located_lat": [2.0], "n": ["not a number"]}))  # schema differs
    with pytest.raises(Exception, match="not a number|convert|cast|Integer"):
        writer.close()
    assert list(tmp_path.iterdir()) == []  # close itself dropped the partial file
    writer.abort()
    assert not out.exists() and list(tmp_path.iterdir()) == []
    good = BackgroundWriter(ChunkWriter(out))
    for k in range(5):
        good.write(pd.DataFrame({"located_lat": [float(k)], "n": [k]}))
    good.close()
    assert pd.read_parquet(out)["n"].tolist() == [0, 1, 2, 3, 4]  # every chunk, in order


def test_prefetch_yields_in_order_and_raises_where_the_error_was():
    from geo_engine.io.customers import prefetch

    def chunks():
        yield from range(5)
        raise ValueError("bad row 1234 in chunk 6")
    got = []
    with pytest.raises(ValueError, match="bad row 1234"):
        for item in prefetch(chunks(), depth=2):
            got.append(item)
    assert got == [0, 1, 2, 3, 4]
    assert list(prefetch(iter(range(100)))) == list(range(100))


def test_reading_a_parquet_file_in_chunks_holds_no_more_than_a_chunk(tmp_path):
    """Memory bounded by the chunk, whatever the file's size (pyarrow's pre-buffering would
    keep every column chunk read so far: linear growth)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from geo_engine.io.customers import read_chunks

    path = tmp_path / "big.parquet"
    rng = np.random.default_rng(4)
    with pq.ParquetWriter(path, pa.schema([("customer_id", pa.string()), ("lat", pa.float64()),
                                           ("lon", pa.float64())])) as w:
        for g in range(30):
            w.write_table(pa.table({"customer_id": [f"c{g}-{k}" for k in range(20_000)],
                                    "lat": rng.uniform(-60, 60, 20_000),
                                    "lon": rng.uniform(-180, 180, 20_000)}))
    before = pa.total_allocated_bytes()
    held = []
    for chunk in read_chunks(path, 20_000):
        del chunk
        held.append(pa.total_allocated_bytes() - before)
    assert len(held) == 30
    whole_file = 30 * 20_000 * (8 + 8 + 12)  # about 17 MB decoded
    assert max(held) < whole_file / 4, [h // 1024 for h in held]
