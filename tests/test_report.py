"""The scoring report opens in a real browser (headless Chromium) and its map draws."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
from PIL import Image

from geo_engine import Engine, Settings

from .conftest import DEMO, loopback_http

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def test_the_report_draws_a_map_with_no_network(tmp_path):
    engine = Engine(Settings(db=str(tmp_path / "r.db")))
    engine.import_files([DEMO])
    rng = np.random.default_rng(5)
    n = 3000
    path = tmp_path / "customers.csv"
    far = [("far-reno", 39.5296, -119.8138), ("far-sacramento", 38.5816, -121.4944),
           ("far-la", 34.0522, -118.2437)]  # a few rows far from the bulk: listed, not zoomed to
    pd.DataFrame({"id": [*range(n + 2), *(f[0] for f in far)],
                  "lat": [*(37.70 + rng.random(n) * 0.12), "", "north", *(f[1] for f in far)],
                  "lon": [*(-122.52 + rng.random(n) * 0.14), "", "1", *(f[2] for f in far)]}
                 ).to_csv(path, index=False)
    engine.put_campaign("coffee", {"id": "coffee", "offer": {"title": "A cookie"},
                                   "targets": {"tags": ["coffee"]}, "trigger": {"type": "enter"}})
    report = tmp_path / "report.html"
    r = subprocess.run([sys.executable, "-m", "geo_engine", "score", str(path), "--out",
                        str(tmp_path / "out.parquet"), "--db", engine.db.path, "--report", str(report),
                        "--chunk-rows", "1000", "--at", "2026-11-24T17:10:00Z"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    page = report.read_text()
    # what a marketer reads: the input, the time, the settings; the offers; the far rows listed
    assert f"{path}: " in page and "offers as of 2026-11-24T17:10:00+00:00" in page
    assert "within 5,000 m" in page
    assert re.search(r"<td>coffee</td><td>[\d,]+</td>", page)  # the offer, counted in total
    outside = page[page.index("Outside the map"):]
    assert all(name in outside for name, _, _ in far)
    # the map: geofences drawn, stores labelled, a scale bar
    assert page.count('class="fence"') >= 20
    labels = page[page.index('class="labels"'):]
    assert "Fog City Coffee Ferry Building" in labels
    assert re.search(r'class="scale".*?<text[^>]*>\d+(\.\d+)? k?m</text>', page)
    # self-contained: nothing fetched from anywhere (the SVG namespace is a name, not a fetch)
    assert "<script" not in page and "<link" not in page
    assert re.findall(r"https?://", page) == ["http://"]
    assert f"{n + 2 + len(far):,} rows scored" in page
    assert "missing_coordinates" in page and "invalid_coordinates" in page
    assert page.count('width="8" height="8"') == 32  # every store on the map

    shot = tmp_path / "shot.png"
    subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1400,900",
                    f"--screenshot={shot}", report.as_uri()], capture_output=True, timeout=120, check=True)
    pixels = np.asarray(Image.open(shot).convert("RGB")).reshape(-1, 3).astype(int)

    def count(rgb, tol=40):
        return int((np.abs(pixels - np.array(rgb)).sum(axis=1) < tol).sum())
    assert count((0xD7, 0x19, 0x1C)) > 32 * 20  # the stores' red squares drew
    assert count((0x1A, 0x98, 0x50)) + count((0x66, 0xBD, 0x63)) > 500  # near customers, green
    assert count((0xF4, 0xF1, 0xEA)) > 100_000  # the map's background


def test_tiles_cover_the_view_and_stay_few():
    import math

    from geo_engine.report import MAX_TILES, tiles

    rng = np.random.default_rng(3)
    for _ in range(200):
        x0 = rng.uniform(-math.pi, math.pi - 0.01)
        x1 = min(math.pi, x0 + 10 ** rng.uniform(-5, 0.5))
        y0 = rng.uniform(-3, 3)
        y1 = min(3.1, y0 + 10 ** rng.uniform(-5, 0.5))
        scale = 960 / (x1 - x0)
        z, cover = tiles(x0, x1, y0, y1, scale)
        assert 1 <= len(cover) <= MAX_TILES
        n = 2 ** z
        xs = {x for x, _ in cover}
        ys = {y for _, y in cover}
        for x in (x0, x1):  # every corner of the view lies on a tile that is drawn
            assert min(int((x + math.pi) / (2 * math.pi) * n), n - 1) in xs
        for y in (y0, y1):
            assert min(int((math.pi - y) / (2 * math.pi) * n), n - 1) in ys


def _tile_server(colour):
    """A tile server on a free loopback port: every tile a flat colour; requests recorded."""
    import io

    buf = io.BytesIO()
    Image.new("RGB", (256, 256), colour).save(buf, format="PNG")
    png, seen = buf.getvalue(), []

    def answer(request):
        seen.append(request.path)
        return "image/png", png
    return loopback_http(answer), seen


def test_a_tile_layer_only_when_asked_and_it_draws(tmp_path):
    import math

    engine = Engine(Settings(db=str(tmp_path / "r.db")))
    engine.import_files([DEMO])
    rng = np.random.default_rng(6)
    path = tmp_path / "customers.csv"
    pd.DataFrame({"customer": [f"cust-{k}" for k in range(400)], "lat": 37.72 + rng.random(400) * 0.08,
                  "lon": -122.50 + rng.random(400) * 0.1}).to_csv(path, index=False)
    blue = (0x20, 0x40, 0xC0)
    server, seen = _tile_server(blue)
    try:
        url = f"http://127.0.0.1:{server.server_port}/tile/{{z}}/{{x}}/{{y}}.png"
        report, out = tmp_path / "report.html", tmp_path / "out.csv"
        r = subprocess.run([sys.executable, "-m", "geo_engine", "score", str(path), "--out", str(out),
                            "--db", engine.db.path, "--report", str(report), "--tile-url", url,
                            "--id-col", "customer"], capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr
        page = report.read_text()
        assert "<title>cust-0</title>" in page  # hovering a customer shows its id
        assert pd.read_csv(out).columns[0] == "customer"  # the id column comes first
        hrefs = re.findall(r'<image href="([^"]+)"', page)
        assert hrefs and all(h.startswith(f"http://127.0.0.1:{server.server_port}/tile/") for h in hrefs)
        z = int(hrefs[0].split("/")[-3])
        # the tile holding the demo chain's middle (San Francisco) is one of them
        n = 2 ** z
        x = int((-122.42 + 180) / 360 * n)
        y = int((1 - math.asinh(math.tan(math.radians(37.77))) / math.pi) / 2 * n)
        assert f"/tile/{z}/{x}/{y}.png" in {h.split(str(server.server_port))[1] for h in hrefs}

        shot = tmp_path / "shot.png"
        subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={tmp_path / 'profile'}",
                        "--window-size=1400,900", f"--screenshot={shot}", report.as_uri()],
                       capture_output=True, timeout=120, check=True)
    finally:
        server.shutdown()
    assert {p for p in seen} >= {f"/tile/{z}/{x}/{y}.png"}  # the browser fetched the tiles
    # the map: 960 x 620 at the page's top left, below the heading
    pixels = np.asarray(Image.open(shot).convert("RGB"))[110:700, 30:960].reshape(-1, 3).astype(int)
    tiles_drawn = int((np.abs(pixels - np.array(blue)).sum(axis=1) < 40).sum())
    background = int((np.abs(pixels - np.array((0xF4, 0xF1, 0xEA))).sum(axis=1) < 40).sum())
    assert tiles_drawn > 0.8 * len(pixels) and background < 0.01 * len(pixels)  # tiles fill it


def test_a_named_id_column_must_exist_and_a_failed_run_keeps_the_old_output(tmp_path):
    engine = Engine(Settings(db=str(tmp_path / "r.db")))
    engine.import_files([DEMO])
    path = tmp_path / "customers.csv"
    pd.DataFrame({"id": [1], "lat": [37.78], "lon": [-122.41]}).to_csv(path, index=False)
    (tmp_path / "o.csv").write_text("an earlier run's output\n")
    r = subprocess.run([sys.executable, "-m", "geo_engine", "score", str(path), "--out",
                        str(tmp_path / "o.csv"), "--db", engine.db.path, "--id-col", "customer_id"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode != 0 and "Traceback" not in r.stderr
    assert "no column 'customer_id' for --id-col (its columns are id, lat, lon)" in r.stderr
    assert (tmp_path / "o.csv").read_text() == "an earlier run's output\n"
    assert sorted(p.name for p in tmp_path.iterdir() if "partial" in p.name) == []
    r = subprocess.run([sys.executable, "-m", "geo_engine", "score", str(path), "--out",
                        str(tmp_path / "o.csv"), "--db", engine.db.path, "--tile-url", "http://x/t.png"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode != 0 and "needs {z}, {x} and {y}" in r.stderr


def _pmtiles(path, colour, zooms, kind="PNG", box=(-123.0, 37.0, -121.5, 38.5)):
    """A PMTiles archive of flat-colour tiles over a lon/lat box at some zooms."""
    import io
    import math

    from pmtiles.tile import Compression, TileType, zxy_to_tileid
    from pmtiles.writer import write

    buf = io.BytesIO()
    Image.new("RGB", (256, 256), colour).save(buf, format="PNG")
    png = buf.getvalue()

    def xy(lon, lat, n):
        y = (1 - math.asinh(math.tan(math.radians(lat))) / math.pi) / 2 * n
        return int((lon + 180) / 360 * n), int(y)
    ids = []
    for z in zooms:
        n = 2 ** z
        (x0, y0), (x1, y1) = xy(box[0], box[3], n), xy(box[2], box[1], n)
        ids += [zxy_to_tileid(z, x, y) for x in range(x0, x1 + 1) for y in range(y0, y1 + 1)]
    with write(path) as w:
        for t in sorted(ids):
            w.write_tile(t, png)
        w.finalize({"tile_type": TileType[kind], "tile_compression": Compression.NONE,
                    "min_lon_e7": int(box[0] * 1e7), "min_lat_e7": int(box[1] * 1e7),
                    "max_lon_e7": int(box[2] * 1e7), "max_lat_e7": int(box[3] * 1e7),
                    "center_zoom": zooms[0], "center_lon_e7": int(-122.4e7), "center_lat_e7": int(37.77e7)},
                   {"name": "test tiles"})
    return path


def test_a_local_pmtiles_base_map_is_embedded_and_draws_with_no_network(tmp_path):
    """Tiles from a PMTiles archive go into the page as data: images (the zoom held to the
    archive's deepest), so the page still fetches nothing; in Chromium they fill the map."""
    engine = Engine(Settings(db=str(tmp_path / "r.db")))
    engine.import_files([DEMO])
    rng = np.random.default_rng(7)
    path = tmp_path / "customers.csv"
    pd.DataFrame({"id": range(300), "lat": 37.72 + rng.random(300) * 0.08,
                  "lon": -122.50 + rng.random(300) * 0.1}).to_csv(path, index=False)
    green = (0x30, 0xA0, 0x50)
    archive = _pmtiles(tmp_path / "base.pmtiles", green, zooms=[9, 10, 11])  # the view wants ~13
    report = tmp_path / "report.html"
    r = subprocess.run([sys.executable, "-m", "geo_engine", "score", str(path), "--out",
                        str(tmp_path / "out.csv"), "--db", engine.db.path, "--report", str(report),
                        "--pmtiles", str(archive)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    page = report.read_text()
    hrefs = re.findall(r'<image href="([^"]+)"', page)
    assert hrefs and all(h.startswith("data:image/png;base64,") for h in hrefs)
    assert re.findall(r"https?://", page) == ["http://"]  # only the SVG namespace: nothing to fetch
    assert "base map: tiles from base.pmtiles (embedded)" in page
    shot = tmp_path / "shot.png"
    subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={tmp_path / 'profile'}",
                    "--host-resolver-rules=MAP * ~NOTFOUND", "--window-size=1400,900",
                    f"--screenshot={shot}", report.as_uri()], capture_output=True, timeout=120, check=True)
    pixels = np.asarray(Image.open(shot).convert("RGB"))[110:700, 30:960].reshape(-1, 3).astype(int)
    tiles_drawn = int((np.abs(pixels - np.array(green)).sum(axis=1) < 40).sum())
    background = int((np.abs(pixels - np.array((0xF4, 0xF1, 0xEA))).sum(axis=1) < 40).sum())
    assert tiles_drawn > 0.8 * len(pixels) and background < 0.01 * len(pixels)


def test_a_base_map_that_cannot_serve_is_refused_before_anything_is_written(tmp_path):
    engine = Engine(Settings(db=str(tmp_path / "r.db")))
    engine.import_files([DEMO])
    path = tmp_path / "customers.csv"
    pd.DataFrame({"id": [1], "lat": [37.78], "lon": [-122.41]}).to_csv(path, index=False)
    (tmp_path / "notes.pmtiles").write_text("not an archive at all\n")
    (tmp_path / "empty.pmtiles").write_bytes(b"")
    vector = _pmtiles(tmp_path / "vector.pmtiles", (0, 0, 0), zooms=[9], kind="MVT")
    good = _pmtiles(tmp_path / "good.pmtiles", (0, 0, 0), zooms=[9])
    out, report = tmp_path / "out.csv", tmp_path / "r.html"
    cases = [
        (["--pmtiles", tmp_path / "nope.pmtiles"], "no such file"),
        (["--pmtiles", tmp_path / "notes.pmtiles"], "is not a PMTiles archive"),
        (["--pmtiles", tmp_path / "empty.pmtiles"], "is empty"),
        (["--pmtiles", vector], "holds MVT tiles; the report embeds raster tiles only"),
        (["--pmtiles", good, "--tile-url", "http://127.0.0.1:1/{z}/{x}/{y}.png"], "not both"),
    ]
    for extra, words in cases:
        r = subprocess.run([sys.executable, "-m", "geo_engine", "score", str(path), "--out", str(out),
                            "--db", engine.db.path, "--report", str(report), *map(str, extra)],
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 1 and r.stderr.startswith("error: ") and words in r.stderr, r.stderr
        assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr
        assert not out.exists() and not report.exists()
    r = subprocess.run([sys.executable, "-m", "geo_engine", "score", str(path), "--out", str(out),
                        "--db", engine.db.path, "--pmtiles", str(good)], capture_output=True, text=True)
    assert r.returncode == 1 and "add --report" in r.stderr and not out.exists()
