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

from .conftest import DEMO

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def test_the_report_draws_a_map_with_no_network(tmp_path):
    engine = Engine(Settings(db=str(tmp_path / "r.db")))
    engine.import_files([DEMO])
    rng = np.random.default_rng(5)
    n = 3000
    path = tmp_path / "customers.csv"
    pd.DataFrame({"id": range(n + 2), "lat": [*(37.70 + rng.random(n) * 0.12), "", "north"],
                  "lon": [*(-122.52 + rng.random(n) * 0.14), "", "1"]}).to_csv(path, index=False)
    report = tmp_path / "report.html"
    r = subprocess.run([sys.executable, "-m", "geo_engine", "score", str(path), "--out",
                        str(tmp_path / "out.parquet"), "--db", engine.db.path, "--report", str(report),
                        "--chunk-rows", "1000"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    page = report.read_text()
    # self-contained: nothing fetched from anywhere (the SVG namespace is a name, not a fetch)
    assert "<script" not in page and "<link" not in page
    assert re.findall(r"https?://", page) == ["http://"]
    assert f"{n + 2:,} rows scored" in page
    assert "missing_coordinates" in page and "invalid_coordinates" in page
    assert page.count("<rect x=") == 32  # every store on the map

    shot = tmp_path / "shot.png"
    subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1400,900",
                    f"--screenshot={shot}", report.as_uri()], capture_output=True, timeout=120, check=True)
    pixels = np.asarray(Image.open(shot).convert("RGB")).reshape(-1, 3).astype(int)

    def count(rgb, tol=40):
        return int((np.abs(pixels - np.array(rgb)).sum(axis=1) < tol).sum())
    assert count((0xD7, 0x19, 0x1C)) > 32 * 20  # the stores' red squares drew
    assert count((0x1A, 0x98, 0x50)) + count((0x66, 0xBD, 0x63)) > 500  # near customers, green
    assert count((0xF4, 0xF1, 0xEA)) > 100_000  # the map's background
