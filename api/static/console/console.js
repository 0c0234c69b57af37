/* geo-engine console: the map of stores and geofences, drawing, campaigns, results and the
   live feed, all through the engine's own HTTP API with the admin key typed once (common.js
   keeps it, calls the API and follows the live feed). No framework; the libraries are served
   by the engine (no internet). */
"use strict";

const state = { fences: null, stores: [], campaigns: [],
                map: null, draw: null, drawn: null, editing: null, live: null };
window.consoleState = state; // for the tests and the curious

function problemText(p) {
  if (typeof p === "string") return p;
  const where = p.field || p.id || (p.index !== undefined && p.index !== null ? `feature ${p.index}` : "");
  return (where ? where + ": " : "") + (p.message || JSON.stringify(p));
}

// --- sign in and tabs -----------------------------------------------------------------------


function showTab() {
  const tab = (location.hash || "#map").slice(1);
  for (const section of document.querySelectorAll(".tab")) section.hidden = section.id !== "tab-" + tab;
  for (const a of document.querySelectorAll("nav a")) {
    if (a.dataset.tab === tab) a.setAttribute("aria-current", "page"); else a.removeAttribute("aria-current");
  }
  if (tab === "map" && state.map) state.map.resize();
  if (tab === "live") startLive();
  if (tab === "results") fillCampaignSelect();
}

// --- the map --------------------------------------------------------------------------------

function graticule() {
  const features = [];
  for (let lon = -180; lon <= 180; lon += 10) {
    features.push({ type: "Feature", properties: {}, geometry: { type: "LineString",
      coordinates: Array.from({ length: 33 }, (_, i) => [lon, -80 + i * 5]) } });
  }
  for (let lat = -80; lat <= 80; lat += 10) {
    features.push({ type: "Feature", properties: {}, geometry: { type: "LineString",
      coordinates: Array.from({ length: 73 }, (_, i) => [-180 + i * 5, lat]) } });
  }
  return { type: "FeatureCollection", features };
}

function circlePolygon(lon, lat, radiusM, steps = 64) {
  // points at radiusM from the centre on the sphere (drawing only; the engine measures on WGS84)
  const R = 6371008.8, d = radiusM / R, phi = lat * Math.PI / 180, lam = lon * Math.PI / 180;
  const ring = [];
  for (let i = 0; i <= steps; i++) {
    const b = 2 * Math.PI * i / steps;
    const p2 = Math.asin(Math.sin(phi) * Math.cos(d) + Math.cos(phi) * Math.sin(d) * Math.cos(b));
    const l2 = lam + Math.atan2(Math.sin(b) * Math.sin(d) * Math.cos(phi), Math.cos(d) - Math.sin(phi) * Math.sin(p2));
    ring.push([((l2 * 180 / Math.PI + 540) % 360) - 180, p2 * 180 / Math.PI]);
  }
  return { type: "Polygon", coordinates: [ring] };
}

function shapeOf(feature) {
  const g = feature.geometry;
  if (g.type === "Point") return circlePolygon(g.coordinates[0], g.coordinates[1], feature.properties.radius_m);
  return g;
}

async function baseStyle() {
  const style = { version: 8, sources: { graticule: { type: "geojson", data: graticule() } },
                  layers: [{ id: "background", type: "background", paint: { "background-color": "#eef1f3" } }] };
  let basemap = null;
  try { basemap = (await (await fetch("/console/config")).json()).basemap; } catch (e) { basemap = null; }
  if (basemap && basemap.pmtiles && window.pmtiles) {
    const protocol = new pmtiles.Protocol();
    maplibregl.addProtocol("pmtiles", protocol.tile);
    style.sources.base = { type: "raster", url: "pmtiles://" + location.origin + basemap.pmtiles, tileSize: 256 };
  } else if (basemap && basemap.tiles) {
    style.sources.base = { type: "raster", tiles: [basemap.tiles], tileSize: 256 };
  }
  if (style.sources.base) style.layers.push({ id: "base", type: "raster", source: "base" });
  style.layers.push({ id: "graticule", type: "line", source: "graticule",
                      paint: { "line-color": "#c3ccd3", "line-width": 0.7 } });
  return style;
}

async function loadPlaces() {
  const fences = await api("GET", "/v1/geofences");
  const stores = [];
  let after = null;
  do {
    const page = await api("GET", "/v1/stores?limit=10000" + (after ? "&after=" + encodeURIComponent(after) : ""));
    stores.push(...page.stores);
    after = page.next;
  } while (after);
  state.fences = fences;
  state.stores = stores;
  state.campaigns = (await api("GET", "/v1/campaigns")).campaigns;
  const shapes = { type: "FeatureCollection", features: fences.features.map((f) => ({
    type: "Feature", id: undefined, properties: { id: f.properties.id, store_id: f.properties.store_id,
      enabled: f.properties.enabled !== false, circle: f.geometry.type === "Point" },
    geometry: shapeOf(f) })) };
  const points = { type: "FeatureCollection", features: stores.map((s) => ({ type: "Feature",
    properties: { id: s.properties.id, name: s.properties.name || s.properties.id }, geometry: s.geometry })) };
  const map = state.map;
  if (map.getSource("fences")) {
    map.getSource("fences").setData(shapes);
    map.getSource("stores").setData(points);
  } else {
    map.addSource("fences", { type: "geojson", data: shapes });
    map.addSource("stores", { type: "geojson", data: points });
    map.addLayer({ id: "fences-fill", type: "fill", source: "fences",
      paint: { "fill-color": ["case", ["get", "enabled"], "#0b6e99", "#9aa5ad"], "fill-opacity": 0.25 } });
    map.addLayer({ id: "fences-line", type: "line", source: "fences",
      paint: { "line-color": ["case", ["get", "enabled"], "#0b6e99", "#7a858c"], "line-width": 1.5 } });
    map.addLayer({ id: "stores", type: "circle", source: "stores",
      paint: { "circle-radius": 4, "circle-color": "#c0392b", "circle-stroke-color": "#fff", "circle-stroke-width": 1 } });
    map.on("click", "fences-fill", (e) => showFence(e.features[0].properties.id, e.lngLat));
    map.on("click", "stores", (e) => showStore(e.features[0].properties.id));
    map.on("mouseenter", "fences-fill", () => { map.getCanvas().style.cursor = "pointer"; });
    map.on("mouseleave", "fences-fill", () => { map.getCanvas().style.cursor = ""; });
  }
  const select = document.getElementById("fence-store");
  select.replaceChildren(...stores.map((s) => el("option", { value: s.properties.id },
    `${s.properties.name || s.properties.id} (${s.properties.id})`)));
  document.getElementById("map-status").textContent =
    `${stores.length} stores, ${fences.features.length} geofences, ${state.campaigns.length} campaigns.`;
  return shapes;
}

function fitTo(shapes) {
  const b = new maplibregl.LngLatBounds();
  for (const f of shapes.features) for (const ring of f.geometry.coordinates) for (const p of ring) b.extend(p);
  if (!b.isEmpty()) state.map.fitBounds(b, { padding: 40, animate: false });
}

function campaignsOn(fence, store) {
  return state.campaigns.filter((c) => {
    const t = c.targets || {};
    const tags = new Set([...(fence.properties.tags || []), ...((store && store.properties.tags) || [])]);
    return (t.geofence_ids || []).includes(fence.properties.id) ||
      (t.store_ids || []).includes(fence.properties.store_id) ||
      (t.tags || []).some((tag) => tags.has(tag));
  });
}

function showFence(id, at) {
  const fence = state.fences.features.find((f) => f.properties.id === id);
  if (!fence) return;
  const store = state.stores.find((s) => s.properties.id === fence.properties.store_id);
  const camps = campaignsOn(fence, store);
  const box = document.getElementById("selected");
  box.replaceChildren(
    el("h3", {}, `Geofence ${id}`),
    el("p", {}, "Store: ", el("strong", {}, store ? `${store.properties.name || store.properties.id} (${store.properties.id})` : fence.properties.store_id)),
    el("p", {}, fence.geometry.type === "Point" ? `A circle of ${fence.properties.radius_m} m.` : `A ${fence.geometry.type}.`),
    el("p", {}, "Campaigns: ", camps.length ? camps.map((c) => c.id).join(", ") : "none"),
    el("div", { class: "row" },
      el("button", { type: "button", onclick: () => editFence(fence) }, "Edit the shape"),
      el("button", { type: "button", onclick: () => deleteFence(id) }, "Delete")));
  if (at) new maplibregl.Popup().setLngLat(at).setHTML("").setDOMContent(
    el("div", {}, el("strong", {}, id), el("br"), `store ${fence.properties.store_id}`,
       el("br"), `${camps.length} campaign${camps.length === 1 ? "" : "s"}`)).addTo(state.map);
}

function showStore(id) {
  const store = state.stores.find((s) => s.properties.id === id);
  if (!store) return;
  const fences = state.fences.features.filter((f) => f.properties.store_id === id);
  document.getElementById("selected").replaceChildren(
    el("h3", {}, `Store ${store.properties.name || id}`),
    el("p", {}, `Id ${id}; geofences: ${fences.map((f) => f.properties.id).join(", ") || "none"}.`));
}

// --- drawing --------------------------------------------------------------------------------

function startDraw() {
  const TD = window.terraDraw, Adapter = window.terraDrawMaplibreGlAdapter;
  if (!TD || !Adapter) {
    document.getElementById("map-status").textContent = "Drawing is not available (the drawing scripts did not load).";
    return;
  }
  const draw = new TD.TerraDraw({
    adapter: new Adapter.TerraDrawMapLibreGLAdapter({ map: state.map }),
    modes: [new TD.TerraDrawPolygonMode(), new TD.TerraDrawCircleMode(),
            new TD.TerraDrawSelectMode({ flags: {
              polygon: { feature: { draggable: true, coordinates: { midpoints: true, draggable: true, deletable: true } } },
              circle: { feature: { draggable: true } } } })],
  });
  draw.start();
  draw.on("finish", (id) => finished(id));
  state.draw = draw;
}

function setMode(mode) {
  for (const b of document.querySelectorAll("[data-draw]")) b.setAttribute("aria-pressed", String(b.dataset.draw === mode));
  if (!state.draw) return;
  if (mode === "clear") {
    state.draw.clear();
    state.drawn = null;
    state.editing = null;
    document.getElementById("fence-form").hidden = true;
    state.draw.setMode("static");
    return;
  }
  state.draw.setMode(mode);
}

function finished(id) {
  const feature = state.draw.getSnapshot().find((f) => f.id === id);
  if (!feature) return;
  state.drawn = feature;
  const form = document.getElementById("fence-form");
  form.hidden = false;
  const idInput = document.getElementById("fence-id");
  if (state.editing) {
    idInput.value = state.editing.properties.id;
    document.getElementById("fence-store").value = state.editing.properties.store_id;
    document.getElementById("fence-name").value = state.editing.properties.name || "";
  } else if (!idInput.value) {
    idInput.value = "g-" + Date.now().toString(36);
  }
  idInput.focus();
}

function editFence(fence) {
  if (!state.draw) return;
  state.draw.clear();
  state.editing = fence;
  const g = fence.geometry;
  const props = g.type === "Point" ? { mode: "circle", radiusKilometers: fence.properties.radius_m / 1000 } : { mode: "polygon" };
  const shape = g.type === "MultiPolygon" ? { type: "Polygon", coordinates: g.coordinates[0] } : shapeOf(fence);
  // Terra Draw takes at most 9 decimals a coordinate (about 0.1 mm)
  const round = (v) => Math.round(v * 1e9) / 1e9;
  const geometry = { type: "Polygon", coordinates: shape.coordinates.map((ring) => ring.map((p) => [round(p[0]), round(p[1])])) };
  const [added] = state.draw.addFeatures([{ type: "Feature", id: state.draw.getFeatureId(), properties: props, geometry }]);
  if (!added || !added.valid) {
    document.getElementById("map-status").textContent = `This shape cannot be edited here (${added ? added.reason : "refused"}); draw it again and save it under the id ${fence.properties.id}.`;
    state.editing = null;
    return;
  }
  setMode("select");
  try { state.draw.selectFeature(added.id); } catch (e) { /* selected by a click instead */ }
  finished(added.id);
}

function drawnFeature() {
  const f = state.drawn && state.draw.getSnapshot().find((x) => x.id === state.drawn.id) || state.drawn;
  const id = document.getElementById("fence-id").value.trim();
  const props = { id, store_id: document.getElementById("fence-store").value };
  const name = document.getElementById("fence-name").value.trim();
  if (name) props.name = name;
  if (f.properties.mode === "circle") {
    const ring = f.geometry.coordinates[0].slice(0, -1);
    const lon = ring.reduce((s, p) => s + p[0], 0) / ring.length;
    const lat = ring.reduce((s, p) => s + p[1], 0) / ring.length;
    props.radius_m = Math.round(f.properties.radiusKilometers * 1000 * 10) / 10;
    return { type: "Feature", properties: props, geometry: { type: "Point", coordinates: [lon, lat] } };
  }
  return { type: "Feature", properties: props, geometry: { type: "Polygon", coordinates: f.geometry.coordinates } };
}

async function saveFence(event) {
  event.preventDefault();
  const list = document.getElementById("fence-problems");
  list.replaceChildren();
  if (!state.drawn) return;
  const feature = drawnFeature();
  try {
    await api("POST", "/v1/geofences/import", { type: "FeatureCollection", features: [feature] });
  } catch (e) {
    const lines = e.problems.length ? e.problems.map(problemText) : [e.message];
    list.replaceChildren(...lines.map((t) => el("li", {}, t)));
    const first = feature.geometry.type === "Point" ? feature.geometry.coordinates : feature.geometry.coordinates[0][0];
    new maplibregl.Popup({ closeOnClick: false }).setLngLat(first)
      .setDOMContent(el("div", { class: "popup-problem", role: "alert" }, ...lines.map((t) => el("div", {}, t))))
      .addTo(state.map);
    return;
  }
  setMode("clear");
  document.getElementById("fence-id").value = "";
  await loadPlaces();
  const status = document.getElementById("map-status");
  status.textContent = `Saved geofence ${feature.properties.id}. ` + status.textContent;
}

async function deleteFence(id) {
  if (!confirm(`Delete geofence ${id}?`)) return;
  await api("DELETE", "/v1/geofences/" + encodeURIComponent(id));
  await loadPlaces();
  document.getElementById("selected").replaceChildren(el("p", {}, `Deleted ${id}.`));
}

// --- campaigns ------------------------------------------------------------------------------

async function loadCampaigns() {
  state.campaigns = (await api("GET", "/v1/campaigns")).campaigns;
  const body = document.querySelector("#campaign-table tbody");
  body.replaceChildren(...state.campaigns.map((c) => el("tr", { "data-id": c.id },
    el("td", {}, c.id), el("td", {}, c.name || ""), el("td", {}, (c.trigger || {}).type || ""),
    el("td", { class: "num" }, c.priority ?? 0), el("td", { class: "num" }, (c.holdout_pct ?? 0) + " %"),
    el("td", {}, el("input", { type: "checkbox", "aria-label": `enable ${c.id}`, checked: c.enabled !== false,
      onchange: (e) => toggleCampaign(c, e.target.checked) })),
    el("td", {}, el("button", { type: "button", onclick: () => editCampaign(c) }, "Edit")))));
  fillCampaignSelect();
}

function csv(text) { return text.split(",").map((s) => s.trim()).filter(Boolean); }

function editCampaign(c) {
  const form = document.getElementById("campaign-form");
  form.hidden = false;
  document.getElementById("campaign-problems").replaceChildren();
  for (const input of form.querySelectorAll("[data-field]")) input.classList.remove("invalid");
  const t = c.targets || {}, offer = c.offer || {};
  form.elements.id.value = c.id || "";
  form.elements.id.readOnly = Boolean(c.id);
  form.elements.name.value = c.name || "";
  form.elements.trigger.value = (c.trigger || {}).type || "enter";
  form.elements.priority.value = c.priority ?? 0;
  form.elements.holdout_pct.value = c.holdout_pct ?? 0;
  form.elements.enabled.checked = c.enabled !== false;
  form.elements.store_ids.value = (t.store_ids || []).join(", ");
  form.elements.tags.value = (t.tags || []).join(", ");
  form.elements.title.value = offer.title || "";
  form.elements.body.value = offer.body || "";
  document.getElementById("campaign-json").value = JSON.stringify(c, null, 2);
  document.getElementById("campaign-form-title").textContent = c.id ? `Campaign ${c.id}` : "New campaign";
  form.elements.name.focus();
}

function campaignFromForm() {
  const form = document.getElementById("campaign-form");
  let obj = {};
  const raw = document.getElementById("campaign-json").value.trim();
  if (raw) obj = JSON.parse(raw);
  const f = form.elements;
  obj.id = f.id.value.trim();
  obj.name = f.name.value.trim() || undefined;
  obj.trigger = { ...(obj.trigger || {}), type: f.trigger.value };
  obj.priority = f.priority.value === "" ? undefined : Number(f.priority.value);
  obj.holdout_pct = f.holdout_pct.value === "" ? undefined : Number(f.holdout_pct.value);
  obj.enabled = f.enabled.checked;
  const targets = { ...(obj.targets || {}) };
  const stores = csv(f.store_ids.value), tags = csv(f.tags.value);
  if (stores.length) targets.store_ids = stores; else delete targets.store_ids;
  if (tags.length) targets.tags = tags; else delete targets.tags;
  obj.targets = targets;
  obj.offer = { ...(obj.offer || {}), title: f.title.value.trim() || undefined, body: f.body.value.trim() || undefined };
  return JSON.parse(JSON.stringify(obj)); // drops the undefined
}

async function saveCampaign(event) {
  event.preventDefault();
  const list = document.getElementById("campaign-problems");
  const form = document.getElementById("campaign-form");
  list.replaceChildren();
  for (const input of form.querySelectorAll("[data-field]")) input.classList.remove("invalid");
  let body;
  try { body = campaignFromForm(); } catch (e) {
    list.replaceChildren(el("li", {}, "The JSON is not valid: " + e.message));
    return;
  }
  try {
    await api("PUT", "/v1/campaigns/" + encodeURIComponent(body.id), body);
  } catch (e) {
    const problems = e.problems.length ? e.problems : [{ message: e.message }];
    list.replaceChildren(...problems.map((p) => el("li", {}, problemText(p))));
    for (const p of problems) {
      const input = p.field && form.querySelector(`[data-field="${p.field}"]`);
      if (input) input.classList.add("invalid");
    }
    return;
  }
  form.hidden = true;
  document.getElementById("campaign-status").textContent = `Saved campaign ${body.id}.`;
  await loadCampaigns();
}

async function toggleCampaign(c, enabled) {
  try {
    await api("PUT", "/v1/campaigns/" + encodeURIComponent(c.id), { ...c, enabled });
    document.getElementById("campaign-status").textContent = `${c.id} ${enabled ? "enabled" : "disabled"}.`;
  } catch (e) {
    document.getElementById("campaign-status").textContent = e.message;
  }
  await loadCampaigns();
}

// --- results --------------------------------------------------------------------------------

function fillCampaignSelect() {
  const select = document.getElementById("results-campaign");
  const had = select.value;
  select.replaceChildren(...state.campaigns.map((c) => el("option", { value: c.id }, c.id)));
  if (had) select.value = had;
}

const pct = (x) => x === null || x === undefined ? "-" : (100 * x).toFixed(1) + " %";
const pts = (x) => x === null || x === undefined ? "-" : (x >= 0 ? "+" : "") + (100 * x).toFixed(1) + " pt";

function intervalChart(rows, label) {
  // rows: [{name, rate, interval}], drawn as bars with their 95 % interval whiskers
  const W = 560, rowH = 34, left = 120, right = 60, H = rows.length * rowH + 30;
  const max = Math.max(0.05, ...rows.map((r) => (r.interval ? r.interval[1] : r.rate || 0)));
  const x = (v) => left + (W - left - right) * v / max;
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
  svg.setAttribute("width", W);
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", label);
  svg.classList.add("interval-chart");
  const add = (tag, attrs, text) => {
    const n = document.createElementNS(ns, tag);
    for (const [k, v] of Object.entries(attrs)) n.setAttribute(k, v);
    if (text !== undefined) n.textContent = text;
    svg.append(n);
    return n;
  };
  rows.forEach((r, i) => {
    const y = 10 + i * rowH;
    add("text", { x: 0, y: y + 16 }, r.name);
    if (r.rate === null || r.rate === undefined) return;
    add("rect", { x: left, y: y + 4, width: Math.max(1, x(r.rate) - left), height: 16,
                  fill: i === 0 ? "#0b6e99" : "#9aa5ad", class: "bar" });
    if (r.interval) {
      const [lo, hi] = r.interval;
      add("line", { x1: x(lo), x2: x(hi), y1: y + 12, y2: y + 12, stroke: "#1d2a33", "stroke-width": 1.5, class: "whisker" });
      add("line", { x1: x(lo), x2: x(lo), y1: y + 6, y2: y + 18, stroke: "#1d2a33" });
      add("line", { x1: x(hi), x2: x(hi), y1: y + 6, y2: y + 18, stroke: "#1d2a33" });
    }
    add("text", { x: x(r.interval ? r.interval[1] : r.rate) + 6, y: y + 16 }, pct(r.rate));
  });
  add("line", { x1: left, x2: left, y1: 4, y2: H - 20, stroke: "#5b6770" });
  add("text", { x: left, y: H - 4 }, "0 %");
  add("text", { x: W - right - 30, y: H - 4 }, pct(max));
  return svg;
}

async function showResults(event) {
  event.preventDefault();
  const id = document.getElementById("results-campaign").value;
  const params = new URLSearchParams({ by: "store" });
  const from = document.getElementById("results-from").value, to = document.getElementById("results-to").value;
  if (from) params.set("from", from + "T00:00:00Z");
  if (to) params.set("to", to + "T00:00:00Z");
  params.set("window_days", document.getElementById("results-window").value || "7");
  const status = document.getElementById("results-status");
  const out = document.getElementById("results-out");
  status.textContent = "Reading the log...";
  let r;
  try { r = await api("GET", `/v1/campaigns/${encodeURIComponent(id)}/results?` + params); } catch (e) {
    status.textContent = e.message;
    out.replaceChildren();
    return;
  }
  status.textContent = `Pushes and holdouts from ${r.from} to ${r.to}; a visit (${r.visit_min_dwell_s} s inside) counts within ${r.window_days} days. Days are UTC.`;
  const lift = r.lift;
  const byStore = el("table", { id: "results-by-store" },
    el("thead", {}, el("tr", {}, ...["Store", "Pushes", "Exposed", "Rate", "Control", "Rate", "Lift", "95 % interval", "Verdict"]
      .map((h) => el("th", { scope: "col" }, h)))),
    el("tbody", {}, ...r.by_store.map((s) => el("tr", {},
      el("td", {}, s.store), el("td", { class: "num" }, s.pushes), el("td", { class: "num" }, s.exposed.devices),
      el("td", { class: "num" }, pct(s.exposed.rate)), el("td", { class: "num" }, s.control.devices),
      el("td", { class: "num" }, pct(s.control.rate)), el("td", { class: "num" }, pts(s.lift.absolute)),
      el("td", {}, s.lift.interval ? `${pts(s.lift.interval[0])} to ${pts(s.lift.interval[1])}` : "-"),
      el("td", { class: "verdict-" + s.lift.verdict }, s.lift.verdict.replaceAll("_", " "))))));
  const reasons = [...new Set(r.rejections_by_day.flatMap((d) => Object.keys(d.reasons)))].sort();
  const why = el("table", { id: "results-reasons" },
    el("thead", {}, el("tr", {}, el("th", { scope: "col" }, "Day"), ...reasons.map((x) => el("th", { scope: "col", class: "num" }, x)))),
    el("tbody", {}, ...r.rejections_by_day.map((d) => el("tr", {}, el("td", {}, d.day),
      ...reasons.map((x) => el("td", { class: "num" }, d.reasons[x] || 0))))));
  out.replaceChildren(
    el("h3", {}, "Visit rate to the offer's store"),
    intervalChart([{ name: `exposed (${r.exposed.devices})`, rate: r.exposed.rate, interval: r.exposed.interval },
                   { name: `control (${r.control.devices})`, rate: r.control.rate, interval: r.control.interval }],
                  "visit rates of the exposed and control groups with 95 % intervals"),
    el("p", { id: "results-verdict" }, "Lift ", el("strong", {}, pts(lift.absolute)),
      lift.interval ? ` (95 % interval ${pts(lift.interval[0])} to ${pts(lift.interval[1])})` : "",
      lift.relative !== null && lift.relative !== undefined ? `, ${(100 * lift.relative).toFixed(0)} % relative` : "",
      ": ", el("span", { class: "verdict-" + lift.verdict }, lift.verdict.replaceAll("_", " ")), "."),
    el("p", {}, `${r.pushes} pushes to ${r.unique_devices} devices; ${r.visits} visits after a push; median time to a visit ` +
      (r.median_push_to_visit_s === null ? "-" : `${(r.median_push_to_visit_s / 3600).toFixed(1)} h`) +
      `. Any of the campaign's stores: exposed ${pct(r.exposed.any_store.rate)}, control ${pct(r.control.any_store.rate)}.`),
    el("h3", {}, "By store"), byStore,
    el("h3", {}, "Why it was not sent, by day"), reasons.length ? why : el("p", {}, "Never turned down in this period."));
}

// --- the live feed --------------------------------------------------------------------------

async function startLive() {
  if (state.live) return;
  state.live = new AbortController();
  const status = document.getElementById("live-status");
  const body = document.querySelector("#live-table tbody");
  await followEvents(state.live.signal, (e) => {
    body.prepend(el("tr", { class: "event-" + e.type }, el("td", {}, e.at), el("td", {}, e.type),
      el("td", {}, e.device_id), el("td", {}, e.store_id), el("td", {}, e.geofence_id || ""),
      el("td", {}, e.campaign_id || "")));
    while (body.rows.length > 200) body.deleteRow(-1);
  }, (text) => { status.textContent = text; });
}

// --- start ----------------------------------------------------------------------------------

async function main() {
  await signIn();
  window.addEventListener("hashchange", showTab);
  document.getElementById("fence-form").addEventListener("submit", saveFence);
  document.getElementById("campaign-form").addEventListener("submit", saveCampaign);
  document.getElementById("campaign-cancel").addEventListener("click", () => { document.getElementById("campaign-form").hidden = true; });
  document.getElementById("campaign-new").addEventListener("click", () => editCampaign({ enabled: true, trigger: { type: "enter" }, offer: {} }));
  document.getElementById("results-form").addEventListener("submit", showResults);
  for (const b of document.querySelectorAll("[data-draw]")) b.addEventListener("click", () => setMode(b.dataset.draw));
  state.map = new maplibregl.Map({ container: "map", style: await baseStyle(), center: [0, 20], zoom: 1,
                                   attributionControl: false });
  state.map.addControl(new maplibregl.NavigationControl(), "top-left");
  state.map.addControl(new maplibregl.ScaleControl(), "bottom-left");
  await new Promise((resolve) => state.map.on("load", resolve));
  fitTo(await loadPlaces());
  startDraw();
  await loadCampaigns();
  showTab();
  document.body.dataset.ready = "true";
}

main().catch((e) => {
  document.getElementById("map-status").textContent = "The console could not start: " + e.message;
  console.error(e);
});
