"""A scoring run that cannot be what the analyst meant fails before anything is written, with one
sentence and a non-zero exit; what it can work out it says (SPEC 7, issue 13). Every case runs
``geo-engine`` as a subprocess, as an analyst would."""

from __future__ import annotations

import geopandas as gpd
import pandas as pd
import pytest

from .test_cli import loaded_db, run  # noqa: F401 - loaded_db is a fixture

ROWS = [("c1", 37.7955, -122.3937), ("c2", 37.7793, -122.4193), ("c3", 37.80, -122.41)]


def customers(path, lat="lat", lon="lon", sep=",", decimal=".", id_name="id"):
    lines = [sep.join([id_name, lat, lon])]
    for cid, la, lo in ROWS:
        lines.append(sep.join([cid, str(la).replace(".", decimal), str(lo).replace(".", decimal)]))
    path.write_text("\n".join(lines) + "\n")
    return path


def fails(r, *words):
    assert r.returncode == 1, (r.returncode, r.stdout, r.stderr)
    assert "Traceback" not in r.stderr and r.stderr.startswith("error: ")
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    for w in words:
        assert w in r.stderr, r.stderr


def test_a_database_that_does_not_exist_is_not_created(tmp_path):
    path = customers(tmp_path / "c.csv")
    r = run("score", path, "--out", tmp_path / "o.csv", "--db", tmp_path / "nope.db")
    fails(r, "no database at", "nope.db")
    assert not (tmp_path / "nope.db").exists() and not (tmp_path / "o.csv").exists()
    r = run("validate", path, "--db", tmp_path / "nope.db")
    fails(r, "no database at")
    assert not (tmp_path / "nope.db").exists()


def test_a_database_without_stores_is_refused(tmp_path):
    empty = tmp_path / "empty.db"
    assert run("keys", "--db", empty).returncode == 0  # makes the database, with no store
    r = run("score", customers(tmp_path / "c.csv"), "--out", tmp_path / "o.csv", "--db", empty)
    fails(r, "holds no stores")
    assert not (tmp_path / "o.csv").exists()


@pytest.mark.parametrize(("lat", "lon"), [("latitude", "longitude"), ("Latitude", "Longitude"),
                                          ("LAT", "LNG"), ("y", "x")])
def test_coordinate_columns_are_recognised_and_reported(tmp_path, loaded_db, lat, lon):  # noqa: F811
    out = tmp_path / "o.csv"
    r = run("score", customers(tmp_path / "c.csv", lat, lon), "--out", out, "--db", loaded_db)
    assert r.returncode == 0, r.stderr
    assert f"note: coordinates from the columns {lat!r} and {lon!r}" in r.stdout
    assert list(pd.read_csv(out)["status"]) == ["ok"] * 3


def test_no_column_to_locate_by_names_the_columns(tmp_path, loaded_db):  # noqa: F811
    path = customers(tmp_path / "c.csv", "north", "east")
    fails(run("score", path, "--out", tmp_path / "o.csv", "--db", loaded_db),
          "no column to locate customers by", "north, east", "--lat-col")
    fails(run("score", path, "--out", tmp_path / "o.csv", "--db", loaded_db, "--lat-col", "nord"),
          "no column 'nord' for --lat-col")


def test_semicolons_and_decimal_commas_are_read_and_said(tmp_path, loaded_db):  # noqa: F811
    plain, euro = tmp_path / "plain.csv", tmp_path / "euro.csv"
    r1 = run("score", customers(tmp_path / "p.csv"), "--out", plain, "--db", loaded_db)
    r2 = run("score", customers(tmp_path / "e.csv", sep=";", decimal=","), "--out", euro,
             "--db", loaded_db)
    assert r1.returncode == 0 and r2.returncode == 0, r2.stderr
    assert "note: columns separated by semicolons" in r2.stdout
    assert "note: decimal commas read as decimal points" in r2.stdout
    a, b = pd.read_csv(plain), pd.read_csv(euro)
    cols = ["status", "nearest_store_id", "nearest_distance_m", "stores_within_radius"]
    pd.testing.assert_frame_equal(a[cols], b[cols])


def test_a_file_whose_columns_cannot_be_split_is_refused(tmp_path, loaded_db):  # noqa: F811
    bad = tmp_path / "bad.csv"
    bad.write_text("id;lat,lon\nc1;37,79;-122,4\nc2,37.7;-122\n")
    fails(run("score", bad, "--out", tmp_path / "o.csv", "--db", loaded_db))
    comma = tmp_path / "comma.csv"
    comma.write_text('id,lat,lon\nc1,"37,79","-122,39"\n')
    fails(run("score", comma, "--out", tmp_path / "o.csv", "--db", loaded_db),
          "decimal commas in a comma-separated file")


@pytest.mark.parametrize(("args", "words"), [
    (["--radius-m", "-5"], ["--radius-m must be a distance in metres above 0"]),
    (["--radius-m", "nan"], ["--radius-m"]),
    (["--chunk-rows", "0"], ["--chunk-rows must be 1 or more"]),
])
def test_options_out_of_range_are_refused(tmp_path, loaded_db, args, words):  # noqa: F811
    r = run("score", customers(tmp_path / "c.csv"), "--out", tmp_path / "o.csv", "--db", loaded_db,
            *args)
    fails(r, *words)


@pytest.mark.parametrize(("args", "words"), [
    (["--at", "yesterday"], "'yesterday' is not a time: give one like 2026-11-24T17:00:00Z"),
    (["--at", "2026-13-01T00:00:00"], "is not a time"),
    (["--radius-m", "five"], "'five' is not a valid float"),
    (["--chunk-rows", "many"], "'many' is not a valid integer"),
    (["--colour", "red"], "No such option '--colour'"),
])
def test_a_mistyped_option_is_one_sentence_and_exit_2(tmp_path, loaded_db, args, words):  # noqa: F811
    out = tmp_path / "o.csv"
    r = run("score", customers(tmp_path / "c.csv"), "--out", out, "--db", loaded_db, *args)
    assert r.returncode == 2 and r.stderr.startswith("error: ") and words in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "(see geo-engine score --help)" in r.stderr
    assert not out.exists()


def test_an_at_time_is_rfc_3339_with_or_without_a_zone(tmp_path, loaded_db):  # noqa: F811
    """The same instant, written with Z, with an offset, or without a zone (taken as UTC),
    scores the same offers; a report says the instant it used."""
    outs = []
    for k, at in enumerate(["2026-11-24T17:00:00Z", "2026-11-24T12:00:00-05:00", "2026-11-24T17:00:00"]):
        out, report = tmp_path / f"o{k}.csv", tmp_path / f"r{k}.html"
        r = run("score", customers(tmp_path / "c.csv"), "--out", out, "--db", loaded_db, "--at", at,
                "--report", report)
        assert r.returncode == 0, r.stderr
        outs.append(pd.read_csv(out))
        said = "2026-11-24T12:00:00-05:00" if k == 1 else "2026-11-24T17:00:00+00:00"
        assert f"offers as of {said}" in report.read_text()
    assert outs[0].equals(outs[1]) and outs[0].equals(outs[2])


def test_an_output_in_a_missing_folder_or_format_is_refused_first(tmp_path, loaded_db):  # noqa: F811
    path = customers(tmp_path / "c.csv")
    fails(run("score", path, "--out", tmp_path / "nowhere" / "o.csv", "--db", loaded_db),
          "does not exist")
    fails(run("score", path, "--out", tmp_path / "o.csv", "--db", loaded_db, "--report",
              tmp_path / "nowhere" / "r.html"), "does not exist")
    fails(run("score", path, "--out", tmp_path / "o.xlsx", "--db", loaded_db), "use .csv")


@pytest.mark.parametrize("suffix", [".csv", ".parquet", ".geojson", ".gpkg"])
def test_every_output_format_round_trips(tmp_path, loaded_db, suffix):  # noqa: F811
    out = tmp_path / f"scored{suffix}"
    r = run("score", customers(tmp_path / "c.csv"), "--out", out, "--db", loaded_db)
    assert r.returncode == 0, r.stderr
    if suffix == ".csv":
        back = pd.read_csv(out)
    elif suffix == ".parquet":
        back = pd.read_parquet(out)
    else:
        back = gpd.read_file(out)
        if suffix == ".gpkg":
            import pyogrio

            assert [name for name, _ in pyogrio.list_layers(out)] == ["scored"]  # not ".scored.partial"
    assert list(back["id"]) == ["c1", "c2", "c3"]
    assert list(back["status"]) == ["ok"] * 3
    assert back["nearest_store_id"].notna().all()
    assert not list(tmp_path.glob(".*partial*"))  # nothing left behind


def test_a_failed_report_leaves_the_earlier_output_and_report_as_they_were(tmp_path, loaded_db):  # noqa: F811
    out, report = tmp_path / "o.csv", tmp_path / "r.html"
    out.write_text("the earlier output\n")
    report.mkdir()  # the report cannot be put there: it fails after the output was scored
    r = run("score", customers(tmp_path / "c.csv"), "--out", out, "--db", loaded_db, "--report", report)
    assert r.returncode != 0 and "Traceback" not in r.stderr
    assert out.read_text() == "the earlier output\n" and report.is_dir()
    assert not list(tmp_path.glob(".*partial*"))


def test_suspicious_rows_are_kept_in_order_and_flagged(tmp_path, loaded_db):  # noqa: F811
    """A customer at (0, 0) was scored "ok" at 12,800 km; swapped lat/lon got
    invalid_coordinates with no hint."""
    path = tmp_path / "c.csv"
    path.write_text("id,lat,lon\n"
                    "a,37.7955,-122.3937\n"        # fine
                    "b,0,0\n"                      # an empty value written as zeros
                    "c,-122.4193,37.7793\n"        # swapped: valid only the other way, near a store
                    "d,-95.0,10.0\n"               # invalid, and swapped far from every store
                    "e,48.8566,2.3522\n"           # Paris: 9,000 km from this chain
                    "f,37.80,-122.41\n")
    out = tmp_path / "o.csv"
    r = run("score", path, "--out", out, "--db", loaded_db)
    assert r.returncode == 0, r.stderr
    back = pd.read_csv(out)
    assert list(back["id"]) == list("abcdef")  # every row, in order
    assert list(back["status"]) == ["ok", "null_island", "swapped_lat_lon", "invalid_coordinates",
                                    "far_from_any_store", "ok"]
    assert back.loc[1, "nearest_store_id"] != back.loc[1, "nearest_store_id"]  # not scored (NaN)
    assert back.loc[4, "nearest_distance_m"] > 500_000  # scored, and flagged
    for status in ("null_island", "swapped_lat_lon", "far_from_any_store"):
        assert status in r.stdout  # the summary counts them
    near = run("score", path, "--out", out, "--db", loaded_db,
               env={"GEO_ENGINE_FAR_FROM_STORE_M": "20000000"})
    assert near.returncode == 0 and list(pd.read_csv(out)["status"])[4] == "ok"
