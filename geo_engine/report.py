"""The scoring report: one self-contained HTML page with a map and the figures (SPEC 7).

The map is inline SVG in Web Mercator: stores as red squares (their names on hover), scored
customers (a sample when there are many) as dots coloured by distance to their nearest store.
It needs no network: no CDN, no script, no tile server. A base map is optional
(:class:`~geo_engine.basemap.BaseMap`): tiles from a local PMTiles archive are embedded in the
page; only tiles from a tile server's URL are fetched by the browser when the page is opened.

It draws what it is given (the stores, a sample, the totals); it never queries anything.
"""

from __future__ import annotations

import html
import math
from pathlib import Path

import numpy as np
import pandas as pd

from .basemap import BaseMap
from .model import StoreArrays

__all__ = ["SAMPLE_POINTS", "MapSample", "tiles", "write_report"]

SAMPLE_POINTS = 5000
WIDTH, HEIGHT = 960, 620
# distance buckets (metres) and their colours: near is green, far is purple
BUCKETS = [(500, "#1a9850"), (1000, "#66bd63"), (2500, "#fdae61"), (5000, "#f46d43"),
           (math.inf, "#762a83")]


class MapSample:
    """A bounded random sample of scored rows for the map, fed chunk by chunk."""

    COLUMNS = ["located_lat", "located_lon", "nearest_distance_m"]

    def __init__(self, size: int = SAMPLE_POINTS, id_col: str | None = None):
        self.size = size
        self.rows = 0
        self.id_col = id_col  # shown when a dot is hovered
        self.offers: dict[str, int] = {}  # campaign id -> rows offered it
        self.store_offers: dict[str, dict[str, int]] = {}  # nearest store -> campaign -> rows
        columns = self.COLUMNS + ([id_col] if id_col else [])
        self._sample = pd.DataFrame({c: pd.Series(dtype=float) for c in columns})

    def add(self, scored: pd.DataFrame) -> None:
        # every row's offer, counted (not sampled): in total, and by the nearest store
        offered = scored[scored["offer_campaign_id"].notna()] if "offer_campaign_id" in scored \
            else scored.iloc[:0]
        for cid, n in offered["offer_campaign_id"].value_counts().items():
            self.offers[cid] = self.offers.get(cid, 0) + int(n)
        for (sid, cid), n in offered.groupby(["nearest_store_id", "offer_campaign_id"]).size().items():
            self.store_offers.setdefault(sid, {})
            self.store_offers[sid][cid] = self.store_offers[sid].get(cid, 0) + int(n)
        columns = self.COLUMNS + ([self.id_col] if self.id_col in scored.columns else [])
        located = scored.loc[scored["status"].isin(["ok", "far_from_any_store"]), columns]
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


MAX_TILES = 64


def tiles(x0: float, x1: float, y0: float, y1: float, scale: float, min_zoom: int = 0,
          max_zoom: int = 19) -> tuple[int, list[tuple[int, int]]]:
    """The zoom and the ``(x, y)`` tiles covering a Web Mercator box (radians) drawn at
    ``scale`` pixels a radian: the zoom whose 256-pixel tiles show closest to their own size
    (within the zooms the tiles exist at), lowered until at most MAX_TILES cover the box."""
    z = int(np.clip(round(math.log2(max(scale * 2 * math.pi / 256, 1e-9))), min_zoom, max_zoom))
    def tile(v: float, n: int) -> int:  # v: radians from the tile grid's west or north edge
        return int(np.clip(math.floor(v / (2 * math.pi) * n), 0, n - 1))
    while True:
        n = 2 ** z
        xs = range(tile(x0 + math.pi, n), tile(x1 + math.pi, n) + 1)
        ys = range(tile(math.pi - y1, n), tile(math.pi - y0, n) + 1)
        if len(xs) * len(ys) <= MAX_TILES or z <= min_zoom:
            return z, [(x, y) for y in ys for x in xs]
        z -= 1


def _svg(stores: StoreArrays, sample: pd.DataFrame, base_map: BaseMap | None = None,
         id_col: str | None = None, fences=None) -> tuple[str, list]:
    """The map as SVG, and the customers left outside its view (farthest first)."""
    s_lat, s_lon = stores.lats, stores.lons
    c_lat = sample["located_lat"].to_numpy(dtype=float)
    c_lon = sample["located_lon"].to_numpy(dtype=float)
    if len(c_lat) >= 20:  # the bulk of the customers: a few far rows do not set the view
        b_lat, b_lon = np.percentile(c_lat, [2, 98]), np.percentile(c_lon, [2, 98])
        lats, lons = np.asarray(b_lat), np.asarray(b_lon)
    else:
        lats, lons = np.concatenate([s_lat, c_lat]), np.concatenate([s_lon, c_lon])
    if len(lats) == 0:
        return '<p class="empty">nothing to draw: no stores and no scored customers</p>', []
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
    if base_map is not None:
        # the whole view, not only the points' box: tiles fill the frame
        vx0, vx1 = cx - WIDTH / 2 / scale, cx + WIDTH / 2 / scale
        vy0, vy1 = cy - HEIGHT / 2 / scale, cy + HEIGHT / 2 / scale
        z, cover = tiles(vx0, vx1, vy0, vy1, scale, base_map.min_zoom, base_map.max_zoom)
        size = 2 * math.pi / 2 ** z * scale
        images = []
        for tx, ty in cover:
            left = WIDTH / 2 + (tx / 2 ** z * 2 * math.pi - math.pi - cx) * scale
            top = HEIGHT / 2 - (math.pi - ty / 2 ** z * 2 * math.pi - cy) * scale
            href = base_map.href(z, tx, ty)
            if href is None:  # not in the archive
                continue
            images.append(f'<image href="{html.escape(href)}" x="{left:.2f}" y="{top:.2f}" '
                          f'width="{size + 1:.2f}" height="{size + 1:.2f}"/>')
        parts.append(f'<g class="tiles">{"".join(images)}</g>')
    for fence in fences or []:  # the geofences in view, drawn under the customers
        parts.append(_fence_svg(fence, px))
    dist = sample["nearest_distance_m"].to_numpy(dtype=float)
    ids = sample[id_col].astype(str).to_numpy() if id_col and id_col in sample.columns else None
    x, y = px(c_lat, c_lon)
    outside = np.flatnonzero((x < 0) | (x > WIDTH) | (y < 0) | (y > HEIGHT))
    outliers = [(ids[k] if ids is not None else "", float(c_lat[k]), float(c_lon[k]),
                 float(dist[k])) for k in outside[np.argsort(-dist[outside])][:20]]
    for (limit, colour), lower in zip(BUCKETS, [0] + [b[0] for b in BUCKETS[:-1]], strict=True):
        sel = (dist >= lower) & (dist < limit)
        if ids is None:
            dots = "".join(f'<circle cx="{a:.1f}" cy="{b:.1f}" r="2.2"/>'
                           for a, b in zip(x[sel], y[sel], strict=True))
        else:
            dots = "".join(f'<circle cx="{a:.1f}" cy="{b:.1f}" r="2.2"><title>{html.escape(i)}</title>'
                           f'</circle>' for a, b, i in zip(x[sel], y[sel], ids[sel], strict=True))
        parts.append(f'<g fill="{colour}" fill-opacity="0.75">{dots}</g>')
    x, y = px(s_lat, s_lon)
    squares = "".join(
        f'<rect x="{a - 4:.1f}" y="{b - 4:.1f}" width="8" height="8"><title>{html.escape(str(i))} '
        f'{html.escape(str(n))}</title></rect>'
        for a, b, i, n in zip(x, y, stores.ids, stores.names, strict=True))
    parts.append(f'<g fill="#d7191c" stroke="#ffffff" stroke-width="1">{squares}</g>')
    shown = np.flatnonzero((x >= 0) & (x <= WIDTH) & (y >= 0) & (y <= HEIGHT))
    if len(shown) <= MAX_LABELS:  # labels when they can be read
        labels = "".join(f'<text x="{x[k] + 6:.1f}" y="{y[k] - 6:.1f}">'
                         f'{html.escape(str(stores.names[k] or stores.ids[k]))}</text>' for k in shown)
        parts.append(f'<g class="labels" font-size="11" fill="#222" stroke="#ffffff" '
                     f'stroke-width="3" paint-order="stroke">{labels}</g>')
    parts.append(_scale_bar(scale, cy))
    parts.append("</svg>")
    return "".join(parts), outliers


MAX_LABELS = 60


def _scale_bar(scale: float, cy: float) -> str:
    """A bar of a round number of metres, bottom left (Web Mercator: ground metres a pixel are
    the Earth's radius times the cosine of the latitude over the scale)."""
    lat = math.degrees(2 * math.atan(math.exp(cy)) - math.pi / 2)
    per_px = 6_371_008.8 * math.cos(math.radians(lat)) / scale
    want = per_px * 120
    step = 10 ** math.floor(math.log10(want))
    metres = max((m * step for m in (1, 2, 5) if m * step <= want), default=step)
    width = metres / per_px
    label = f"{metres / 1000:g} km" if metres >= 1000 else f"{metres:g} m"
    return (f'<g class="scale" transform="translate(16 {HEIGHT - 20})">'
            f'<rect x="-4" y="-16" width="{width + 60:.1f}" height="24" fill="#ffffff" '
            f'fill-opacity="0.8"/><path d="M0 0 H{width:.1f}" stroke="#222" stroke-width="3"/>'
            f'<text x="{width + 6:.1f}" y="4" font-size="11">{label}</text></g>')


def _fence_svg(fence, px) -> str:
    """A geofence's outline: its circle (as a polygon of 48 points) or its polygons' rings."""
    if fence.is_circle:
        from .geodesy import GEOD

        az = np.linspace(0, 360, 49)
        lo, la, _ = GEOD.fwd(np.full(49, fence.lon), np.full(49, fence.lat), az, np.full(49, fence.radius_m))
        rings = [(np.asarray(la), np.asarray(lo))]
    else:
        geom = fence.geometry or {}
        polys = [geom.get("coordinates", [])] if geom.get("type") == "Polygon" else \
            geom.get("coordinates", []) if geom.get("type") == "MultiPolygon" else []
        rings = [(np.array([p[1] for p in ring]), np.array([p[0] for p in ring]))
                 for poly in polys for ring in poly if len(ring) >= 3]
    paths = []
    for la, lo in rings:
        x, y = px(la, lo)
        if (x.max() < 0) or (x.min() > WIDTH) or (y.max() < 0) or (y.min() > HEIGHT):
            continue
        paths.append("M" + " L".join(f"{a:.1f} {b:.1f}" for a, b in zip(x, y, strict=True)) + " Z")
    if not paths:
        return ""
    return (f'<path class="fence" d="{" ".join(paths)}" fill="#2c7bb6" fill-opacity="0.12" '
            f'stroke="#2c7bb6" stroke-width="1.2" fill-rule="evenodd"/>')


def write_report(path: Path, stores: StoreArrays, *, rows: int, statuses: dict[str, int],
                 near: dict[str, int], sample: pd.DataFrame, radius_m: float, seconds: float,
                 base_map: BaseMap | None = None, id_col: str | None = None, fences=None,
                 offers: dict[str, int] | None = None,
                 store_offers: dict[str, dict[str, int]] | None = None,
                 at: str = "", source: str = "") -> None:
    """Write the report page: the map (geofences, labelled stores, a scale bar, the bulk of the
    customers, those outside it listed), the input and the settings, rows by status, the
    offers in total and at the top stores.

    With ``base_map`` the map has a base layer (embedded from an archive, or from a tile
    server when the page is opened); without, the page fetches nothing. With ``id_col``,
    hovering a customer shows its id.
    """
    esc = html.escape
    svg, outliers = _svg(stores, sample, base_map, id_col, fences)
    legend = "".join(f'<li><span class="dot" style="background:{c}"></span>'
                     f'{"under " + format(b, ",.0f") + " m" if b != math.inf else "farther"}</li>'
                     for b, c in BUCKETS)
    status_rows = "".join(f"<tr><td>{esc(k)}</td><td>{v:,}</td></tr>"
                          for k, v in sorted(statuses.items(), key=lambda kv: -kv[1]))
    names = dict(zip(stores.ids, stores.names, strict=True))
    top = sorted(near.items(), key=lambda kv: (-kv[1], kv[0]))[:15]

    def offered(sid: str) -> str:
        got = (store_offers or {}).get(sid) or {}
        if not got:
            return "none"
        cid, n = max(got.items(), key=lambda kv: (kv[1], kv[0]))
        return f"{esc(cid)} ({n:,})"
    top_rows = "".join(f"<tr><td>{esc(s)}</td><td>{esc(str(names.get(s, '')))}</td>"
                       f"<td>{n:,}</td><td>{offered(s)}</td></tr>" for s, n in top)
    offer_rows = "".join(f"<tr><td>{esc(c)}</td><td>{n:,}</td></tr>"
                         for c, n in sorted((offers or {}).items(), key=lambda kv: (-kv[1], kv[0])))
    if not offer_rows:
        offer_rows = '<tr><td colspan="2">no offer at any customer\'s place</td></tr>'
    far_rows = "".join(f"<tr><td>{esc(i)}</td><td>{la:.5f}, {lo:.5f}</td><td>{d / 1000:,.1f} km</td></tr>"
                       for i, la, lo, d in outliers)
    far = "" if not outliers else (
        f"<h2>Outside the map</h2><p class=\"muted\">{len(outliers)} of the mapped customers lie "
        f"beyond the bulk the map shows; the farthest:</p><table><tr><th>customer</th><th>where"
        f"</th><th>to its nearest store</th></tr>{far_rows}</table>")
    credit = "" if base_map is None else f'<p class="muted">base map: {esc(base_map.credit)}</p>'
    sampled = " (a sample)" if len(sample) < statuses.get("ok", 0) else ""
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>geo-engine scoring report</title>
<style>
body {{ font: 14px/1.4 system-ui, sans-serif; margin: 24px; color: #222; }}
h1 {{ font-size: 20px; margin: 0 0 4px; }} h2 {{ font-size: 16px; }} .muted {{ color: #666; }}
.wrap {{ display: flex; gap: 24px; align-items: flex-start; flex-wrap: wrap; }}
table {{ border-collapse: collapse; margin-bottom: 16px; }}
td, th {{ border-bottom: 1px solid #ddd; padding: 3px 10px; text-align: left; }}
ul.legend {{ list-style: none; padding: 0; }} .dot {{ display: inline-block; width: 10px;
height: 10px; border-radius: 5px; margin-right: 6px; }}
.store {{ display: inline-block; width: 9px; height: 9px; background: #d7191c; margin-right: 6px; }}
.fence {{ display: inline-block; width: 12px; height: 9px; background: #cfe1ef; border: 1px solid
#2c7bb6; margin-right: 6px; }}
</style></head><body>
<h1>Scoring report</h1>
<p class="muted">{esc(source) + ": " if source else ""}{rows:,} rows scored in {seconds:.1f} s
against {len(stores):,} stores; offers as of {esc(at) or "the time of the run"}; stores counted
within {radius_m:,.0f} m; map: {len(sample):,} customers{sampled}.</p>
<div class="wrap"><div id="map">{svg}{credit}</div>
<div><ul class="legend"><li><span class="store"></span>store</li>
<li><span class="fence"></span>geofence</li>{legend}</ul>
<h2>Rows by status</h2><table><tr><th>status</th><th>rows</th></tr>{status_rows}</table>
<h2>Offers</h2><p class="muted">what a ping at each customer's place would be offered</p>
<table><tr><th>campaign</th><th>customers</th></tr>{offer_rows}</table>
<h2>Top stores</h2><p class="muted">customers within {radius_m:,.0f} m of each store, and the offer
most often chosen among the customers nearest it</p>
<table><tr><th>store</th><th>name</th><th>customers</th><th>offer</th></tr>{top_rows}</table>
{far}</div></div>
</body></html>
"""
    path.write_text(page, encoding="utf-8")
