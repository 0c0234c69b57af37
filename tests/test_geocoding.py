"""Customers located by address (through a geopy geocoder) and by postal code (offline).

No real geocoder runs here: the only stand-in is a small local HTTP server that answers as
Nominatim does (/search?q=...&format=json), counting the look-ups it gets.
"""

from __future__ import annotations

import json
import subprocess
import sys
from urllib.parse import parse_qs, urlparse

import pandas as pd
import pytest

from geo_engine import Engine, Settings
from geo_engine.io.geocoding import AddressGeocoder, PostalCodes
from geo_engine.scoring import score_frame

from .conftest import DEMO, loopback_http

PLACES = {"1 Ferry Building, San Francisco": (37.7955, -122.3937),
          "1 Dr Carlton B Goodlett Pl, San Francisco": (37.7793, -122.4193)}


class _Nominatim:
    """What a Nominatim server answers to /search?q=...&format=json; it counts the look-ups."""

    def __init__(self):
        self.asked: list[str] = []
        self.agents: list[str] = []

    def __call__(self, request) -> tuple[str, bytes]:
        url = urlparse(request.path)
        q = parse_qs(url.query).get("q", [""])[0]
        self.asked.append(q)
        self.agents.append(request.headers.get("User-Agent", ""))
        hit = PLACES.get(q)
        body = [] if url.path != "/search" or hit is None else [
            {"place_id": 1, "lat": str(hit[0]), "lon": str(hit[1]), "display_name": q,
             "boundingbox": [str(hit[0]), str(hit[0]), str(hit[1]), str(hit[1])]}]
        return "application/json", json.dumps(body).encode()


@pytest.fixture
def nominatim():
    answer = _Nominatim()
    server = loopback_http(answer)
    yield f"http://127.0.0.1:{server.server_address[1]}", answer.asked, answer.agents
    server.shutdown()


@pytest.fixture
def engine(tmp_path):
    e = Engine(Settings(db=str(tmp_path / "g.db")))
    e.import_files([DEMO])
    return e


def test_addresses_are_geocoded_once_and_cached(engine, nominatim, tmp_path):
    url, asked, _ = nominatim
    path = tmp_path / "customers.csv"
    pd.DataFrame({
        "id": ["a", "b", "c", "d", "e"],
        "address": ["1 Ferry Building, San Francisco", "1 Ferry Building, San Francisco",
                    "Nowhere Lane 99", "1 Dr Carlton B Goodlett Pl, San Francisco", "ignored"],
        "lat": ["", "", "", "", "37.7793"], "lon": ["", "", "", "", "-122.4193"],
    }).to_csv(path, index=False)

    def run():
        r = subprocess.run([sys.executable, "-m", "geo_engine", "score", str(path), "--out",
                            str(tmp_path / "out.csv"), "--db", engine.db.path, "--geocoder", "nominatim",
                            "--geocoder-url", url, "--geocode-delay-s", "0"], capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        return r, pd.read_csv(tmp_path / "out.csv", keep_default_na=False)

    r, out = run()
    assert out["status"].tolist() == ["ok", "ok", "not_geocoded", "ok", "ok"]
    assert out["location_source"].tolist() == ["address"] * 4 + ["latlon"]
    assert out["nearest_store_id"].tolist()[:2] == ["fc-ferry", "fc-ferry"]
    assert out["nearest_store_id"].tolist()[3] == "fc-civic"
    # three distinct addresses to look up (the row with lat/lon needs none), each asked once
    assert sorted(asked) == sorted(["1 Ferry Building, San Francisco", "Nowhere Lane 99",
                                    "1 Dr Carlton B Goodlett Pl, San Francisco"])
    assert "geocoder look-ups: 3" in r.stdout
    # a second run asks nothing: found and not-found answers are both cached
    r, again = run()
    assert len(asked) == 3 and "geocoder look-ups: 0" in r.stdout
    pd.testing.assert_frame_equal(again, out)


def test_without_a_geocoder_address_rows_are_kept_and_marked(engine):
    df = pd.DataFrame({"address": ["1 Ferry Building, San Francisco", None], "lat": [None, None],
                       "lon": [None, None]})
    out = score_frame(df, engine)
    assert out["status"].tolist() == ["not_geocoded", "missing_coordinates"]


def test_an_unknown_geocoder_is_one_sentence(engine):
    from geo_engine import InvalidInput

    with pytest.raises(InvalidInput, match="no geocoder geopy knows"):
        AddressGeocoder("no-such-geocoder", engine.db)


def test_postal_codes_offline(engine, tmp_path):
    geonames = tmp_path / "FR.txt"  # GeoNames layout: country, code, place, admin x6, lat, lon, acc
    row = "FR\t75001\t{}\tIle-de-France\t11\tParis\t75\tParis\t751\t{}\t{}\t5\n"
    geonames.write_text(row.format("Paris 01", 48.8592, 2.3417) + row.format("Paris Louvre", 48.8608, 2.3376))
    codes = PostalCodes(geonames)
    df = pd.DataFrame({"postal_code": ["94103", "2138", "75001", "00000", None],
                       "country": ["US", None, "FR", "US", "US"]})
    out = score_frame(df, engine, postal_codes=codes)
    # located, and Cambridge (MA) and Paris are flagged: the demo chain's stores are in San Francisco
    assert out["status"].tolist() == ["ok", "far_from_any_store", "far_from_any_store",
                                      "unknown_postal_code", "missing_coordinates"]
    assert out["location_source"].tolist()[:4] == ["postal_code"] * 4
    assert out.loc[0, "located_lat"] == pytest.approx(37.7725)
    assert out.loc[1, "located_lat"] == pytest.approx(42.377)  # a ZIP that lost its leading zero
    assert out.loc[2, "located_lat"] == pytest.approx((48.8592 + 48.8608) / 2)  # the code's centroid
    assert out.loc[0, "nearest_store_id"].startswith(("fc-", "gg-"))


def test_geocoder_options_reach_the_geocoder(engine, nominatim, tmp_path):
    url, _, agents = nominatim
    path = tmp_path / "customers.csv"
    pd.DataFrame({"address": ["1 Ferry Building, San Francisco"]}).to_csv(path, index=False)
    base = [sys.executable, "-m", "geo_engine", "score", str(path), "--out", str(tmp_path / "o.csv"),
            "--db", engine.db.path, "--geocoder", "nominatim", "--geocoder-url", url,
            "--geocode-delay-s", "0"]
    r = subprocess.run(base + ["--geocoder-option", "user_agent=acme-crm-import",
                               "--geocoder-option", "timeout=3"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert agents == ["acme-crm-import"]  # what the geocoder sent, as asked
    for bad, says in ((["--geocoder-option", "api_key"], "is not NAME=VALUE"),
                      (["--geocoder-option", "no_such_setting=1"], "cannot be set up this way")):
        r = subprocess.run(base + bad, capture_output=True, text=True)
        assert r.returncode != 0 and says in r.stderr and "Traceback" not in r.stderr
