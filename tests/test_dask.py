"""--scheduler: the same scoring on a Dask LocalCluster gives identical results."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pandas as pd

from geo_engine import Engine, Settings

from .conftest import DEMO


def test_a_local_dask_cluster_scores_identically(tmp_path):
    engine = Engine(Settings(db=str(tmp_path / "d.db")))
    engine.import_files([DEMO])
    for c in json.loads((DEMO.parent / "demo_campaigns.json").read_text()):
        engine.put_campaign(c["id"], c)
    rng = np.random.default_rng(9)
    n = 5000
    lats = [*(37.70 + rng.random(n) * 0.12)]
    lats[17] = "north"  # bad rows travel too
    pd.DataFrame({"id": range(n), "lat": lats, "lon": -122.52 + rng.random(n) * 0.14}).to_csv(
        tmp_path / "c.csv", index=False)

    def run(*extra):
        out = tmp_path / f"out{len(extra)}.parquet"
        r = subprocess.run([sys.executable, "-m", "geo_engine", "score", str(tmp_path / "c.csv"), "--out",
                            str(out), "--db", engine.db.path, "--at", "2026-11-24T17:10:00+0000",
                            "--chunk-rows", "700", *extra], capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr
        return pd.read_parquet(out)

    single = run()
    on_dask = run("--scheduler", "local")
    pd.testing.assert_frame_equal(single, on_dask)
    assert single["status"].value_counts().to_dict() == {"ok": n - 1, "invalid_coordinates": 1}
    assert single["offer_campaign_id"].notna().sum() > 0  # offers were decided, identically
