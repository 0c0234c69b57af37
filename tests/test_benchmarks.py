"""The index benchmark keeps working, and what it reports about exactness holds."""

from __future__ import annotations

import subprocess
import sys

from .conftest import ROOT


def test_bench_index_reports_exact_answers(tmp_path):
    out = tmp_path / "bench.md"
    r = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_index.py"), "--sizes", "3000",
                        "--queries", "60", "--fences", "1500", "--markdown", str(out)],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in out.read_text().splitlines()
            if line.startswith("| stores") or line.startswith("| fences")]
    by_impl = {}
    for row in rows:  # section, n, operation, implementation, p50, p99, ops/s, ratio, wrong %
        if row[8] != "-":  # rows timed on a sample report no wrong %
            by_impl.setdefault(row[3], []).append((row[2], row[8]))
    # geo-engine agrees with the brute-force geodesic scan on every query measured
    checks = by_impl["exact check: geo-engine vs brute force"]
    assert [op for op, _ in checks] == ["nearest-1", "nearest-5"]
    assert all(wrong == "0.0" for _, wrong in checks)
    assert all(wrong == "0.0" for _, wrong in by_impl["brute-force numpy"])
    assert all(wrong == "0.0" for _, wrong in by_impl["rtree + the same exact test"])
    # and a planar index on raw lon/lat does get some worldwide queries wrong
    assert any(float(w) > 0 for _, w in by_impl["rtree nearest (raw lon/lat) + geodesic"])


def test_the_load_benchmark_runs_a_walking_fleet_with_no_errors():
    """A short run of `make bench-load` (wrk installed from Debian when missing), on SQLite and
    on a throwaway PostgreSQL: every target answers every request, the fleet's pings do enter
    geofences and get offers, and the database's CPU a ping is reported."""
    r = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "load" / "bench_load.py"),
                        "--stores", "400", "--devices", "100", "--connections", "4",
                        "--duration", "2", "--rounds", "1", "--workers", "1,2",
                        "--backends", "sqlite,postgresql"],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    rows = {row[0]: row for row in ([c.strip() for c in line.strip("|").split("|")]
                                    for line in r.stdout.splitlines() if line.startswith("| "))}
    for target in ("geo-engine serve --workers 1 (sqlite)", "geo-engine serve --workers 2 (sqlite)",
                   "geo-engine serve --workers 1 (postgresql)", "geo-engine serve --workers 2 (postgresql)",
                   "bare FastAPI app (parse only)"):
        assert float(rows[target][1].replace(",", "")) > 0 and rows[target][4] == "0", rows[target]
    for backend in ("sqlite", "postgresql"):
        did = next(line for line in r.stdout.splitlines()  # one worker: its /metrics saw every ping
                   if line.startswith(f"# geo-engine serve --workers 1 ({backend}):"))
        pings, events, offers = (int(w.split()[0].replace(",", "")) for w in
                                 did.split(":", 1)[1].split("(")[0].split(", "))
        assert pings > 0 and events > 0 and offers > 0, did
    cpu = next(line for line in r.stdout.splitlines()
               if line.startswith("# geo-engine serve --workers 1 (postgresql): the database used"))
    assert float(cpu.split(" used ")[1].split()[0]) > 0, cpu


def test_the_postgis_benchmark_compares_answers_and_times(tmp_path):
    """A short run of bench_postgis (PostGIS installed from Debian when missing): a row for each
    query, and wherever PostGIS's nearest store differs, the engine's is the nearer one."""
    r = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_postgis.py"), "--stores", "3000",
                        "--queries", "50", "--customers", "3000", "--no-http"],
                       capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in r.stdout.splitlines()
            if line.startswith("| 3,000")]
    assert [row[1].split(",")[0] for row in rows] == ["nearest-1", "within 1 km", "bulk nearest",
                                                       "bulk nearest"]
    assert "in process" in rows[2][1] and "geo-engine score" in rows[3][1]
    for row in rows:
        assert float(row[2].split()[0]) > 0 and float(row[4].split()[0]) > 0, row
    for row in (rows[0], rows[2], rows[3]):  # every disagreement is PostGIS's sphere, not the engine
        assert row[6] == row[7], row
    assert rows[1][6] == "0", rows[1]  # within 1 km: the same stores


def test_the_growth_benchmark_prints_a_row_for_every_size():
    """`bench_growth.py --quick`: one dimension grows at a time from the base, every row timed."""
    r = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_growth.py"), "--quick",
                        "--pings", "500"], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in r.stdout.splitlines()
            if line.startswith("| ") and not line.startswith("| grows")]
    assert [(row[0], row[1], row[2], row[3]) for row in rows] == [
        ("stores", "1,000", "10", "1,000"), ("stores", "4,000", "10", "1,000"),
        ("campaigns", "1,000", "10", "1,000"), ("campaigns", "1,000", "200", "1,000"),
        ("devices", "1,000", "10", "1,000"), ("devices", "1,000", "10", "4,000")]
    assert all(float(row[5]) > 0 and float(row[9]) > 0 for row in rows)  # timed; offers made


def test_the_scoring_benchmark_runs_each_workload_beside_sjoin_nearest():
    """A short run of bench_score: every workload scored by both, geo-engine's answers compared."""
    r = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_score.py"), "--sizes", "3000",
                        "--workloads", "world-cities,dense"], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in r.stdout.splitlines()
            if line.startswith("| ") and not line.startswith("| workload")]
    assert [(row[0], row[2].split(" (")[0]) for row in rows] == [
        ("world-cities", "geo-engine score"), ("world-cities", "geopandas sjoin_nearest, EPSG:5070"),
        ("dense", "geo-engine score"), ("dense", "geopandas sjoin_nearest, EPSG:32618")]
    assert all(float(row[3]) > 0 for row in rows)
    assert float(rows[1][6]) < 5 and rows[0][7].endswith("x")  # answers compared, ratio given


def test_the_results_benchmark_runs_on_a_small_log():
    """A short run of bench_results: the table has the scan baseline and each period's row,
    and the periods' groups shrink with the period."""
    r = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_results.py"), "--events", "60000"],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in r.stdout.splitlines()
            if line.startswith("| results")]
    assert [row[0] for row in rows] == [f"results, {d} days, by store" for d in (30, 7, 1)]
    exposed = [int(row[2].replace(",", "")) for row in rows]
    assert exposed[0] >= exposed[1] >= exposed[2] and exposed[0] > 0
