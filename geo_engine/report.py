"""The scoring report: one self-contained HTML page with a map and the figures (SPEC 7).

The map is inline SVG in Web Mercator: stores as red squares (their names on hover), scored
customers (a sample when there are many) as dots coloured by distance to their nearest store.
It needs no network: no CDN, no script, no tile server.
"""

from __future__ import annotations

import html
import math
from pathlib import Path

import numpy as np
import pandas as pd

from .engine import Engine

__all__ = ["SAMPLE_POINTS", "MapSample", "write_report"]

SAMPLE_POINTS = 5000
WIDTH, HEIGHT = 960, 620
# distance buckets (metres) and their colours: near is green, far is purple
BUCKETS = [(500, "#1a9850"), (1000, "#66bd63"), (2500, "#fdae61"), (5000, "#f46d43"),
           (math.inf, "#762a83")]


class MapSample:
    """A bounded random sample of scored rows for the map, fed chunk by chunk."""

    COLUMNS = ["located_lat", "located_lon", "nearest_distance_m"]

    def __init__(self, size: int = SAMPLE_POINTS):
        self.size = size
        self.rows = 0
        self._sample = pd.DataFrame({c: pd.Series(dtype=float) for c in self.COLUMNS})

    def add(self, scored: pd.DataFrame) -> None:
        located = scored.loc[scored["status"] == "ok", self.COLUMNS]
        self.rows += len(scored)
        part = located.sample(n=min(self.size, len(located)), random_state=self.rows)
        both = pd.concat([self._sample, part]) if len(self._sample) else part
        self._sample = both.sample(n=min(self.size, len(both)), random_state=0)

    @property
    def frame(self) -> pd.DataFrame:
        return self._sample


def _mercator_y(lat: np.ndarray) -> np.ndarray:
    la = np.radians(np.clip(lat, -85.0, 85.0))
    return np.log(np.tan(np.pi / 4 + la / 2))


def _svg(engine: Engine, sample: pd.DataFrame) -> str:
    s_lat, s_lon = engine.stores.lats, engine.stores.lons
    c_lat = sample["located_lat"].to_numpy(dtype=float)
    c_lon = sample["located_lon"].to_numpy(dtype=float)
    lats = np.concatenate([s_lat, c_lat])
    lons = np.concatenate([s_lon, c_lon])
    if len(lats) == 0:
        return '<p class="empty">nothing to draw: no stores and no scored customers</p>'
    x0, x1 = np.radians(lons.min()), np.radians(lons.max())
    y0, y1 = _mercator_y(lats.min()), _mercator_y(lats.max())
    span = max(x1 - x0, y1 - y0, 1e-6) * 1.08
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    scale = min(WIDTH, HEIGHT) / span

    def px(lat, lon):
        return (WIDTH / 2 + (np.radians(lon) - cx) * scale, HEIGHT / 2 - (_mercator_y(lat) - cy) * scale)

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" '
             f'width="{WIDTH}" height="{HEIGHT}" role="img" aria-label="stores and customers">',
             f'<rect width="{WIDTH}" height="{HEIGHT}" fill="#f4f1ea"/>']
    dist = sample["nearest_distance_m"].to_numpy(dtype=float)
    x, y = px(c_lat, c_lon)
    for (limit, colour), lower in zip(BUCKETS, [0] + [b[0] for b in BUCKETS[:-1]], strict=True):
        sel = (dist >= lower) & (dist < limit)
        dots = "".join(f'<circle cx="{a:.1f}" cy="{b:.1f}" r="2.2"/>' for a, b in zip(x[sel], y[sel],
                                                                                       strict=True))
        parts.append(f'<g fill="{colour}" fill-opacity="0.75">{dots}</g>')
    x, y = px(s_lat, s_lon)
    squares = "".join(
        f'<rect x="{a - 4:.1f}" y="{b - 4:.1f}" width="8" height="8"><title>{html.escape(str(i))} '
        f'{html.escape(str(n))}</title></rect>'
        for a, b, i, n in zip(x, y, engine.stores.ids, engine.stores.names, strict=True))
    parts.append(f'<g fill="#d7191c" stroke="#ffffff" stroke-width="1">{squares}</g>')
    parts.append("</svg>")
    return "".join(parts)


def write_report(path: Path, engine: Engine, *, rows: int, statuses: dict[str, int],
                 near: dict[str, int], sample: pd.DataFrame, radius_m: float, seconds: float) -> None:
    """Write the report page: map, rows scored, unscorable by reason, the top stores."""
    legend = "".join(f'<li><span class="dot" style="background:{c}"></span>'
                     f'{"under " + format(b, ",.0f") + " m" if b != math.inf else "farther"}</li>'
                     for b, c in BUCKETS)
    status_rows = "".join(f"<tr><td>{html.escape(k)}</td><td>{v:,}</td></tr>"
                          for k, v in sorted(statuses.items(), key=lambda kv: -kv[1]))
    names = dict(zip(engine.stores.ids, engine.stores.names, strict=True))
    top = sorted(near.items(), key=lambda kv: (-kv[1], kv[0]))[:15]
    top_rows = "".join(f"<tr><td>{html.escape(s)}</td><td>{html.escape(str(names.get(s, '')))}</td>"
                       f"<td>{n:,}</td></tr>" for s, n in top)
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>geo-engine scoring report</title>
<style>
body {{ font: 14px/1.4 system-ui, sans-serif; margin: 24px; color: #222; }}
h1 {{ font-size: 20px; margin: 0 0 4px; }} .muted {{ color: #666; }}
.wrap {{ display: flex; gap: 24px; align-items: flex-start; flex-wrap: wrap; }}
table {{ border-collapse: collapse; margin-bottom: 16px; }}
td, th {{ border-bottom: 1px solid #ddd; padding: 3px 10px; text-align: left; }}
ul.legend {{ list-style: none; padding: 0; }} .dot {{ display: inline-block; width: 10px;
height: 10px; border-radius: 5px; margin-right: 6px; }}
.store {{ display: inline-block; width: 9px; height: 9px; background: #d7191c; margin-right: 6px; }}
</style></head><body>
<h1>Scoring report</h1>
<p class="muted">{rows:,} rows scored in {seconds:.1f} s against {len(engine.stores):,} stores;
map: {len(sample):,} customers{" (a sample)" if len(sample) < statuses.get("ok", 0) else ""}.</p>
<div class="wrap"><div id="map">{_svg(engine, sample)}</div>
<div><ul class="legend"><li><span class="store"></span>store</li>{legend}</ul>
<h2>Rows by status</h2><table><tr><th>status</th><th>rows</th></tr>{status_rows}</table>
<h2>Top stores</h2><p class="muted">customers within {radius_m:,.0f} m of each store</p>
<table><tr><th>store</th><th>name</th><th>customers</th></tr>{top_rows}</table></div></div>
</body></html>
"""
    path.write_text(page, encoding="utf-8")
