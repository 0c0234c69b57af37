/* A store's pickup board (/console/stores/STORE_ID): the trips coming to the store with their
   estimated arrival, the customers waiting and for how long, and those served lately, for an
   associate's tablet. Redrawn at every trip event of the live stream (and every few seconds
   for the estimates, which move with pings that change no status); "Handed over" and
   "Cancel" end a trip through the API. */
"use strict";

const board = { storeId: decodeURIComponent(location.pathname.split("/").pop()), trips: [],
                figures: [], loadedAt: 0 };
window.boardState = board; // for the tests and the curious

function minutes(seconds) {
  if (seconds === null || seconds === undefined) return "";
  const s = Math.max(0, Math.round(seconds));
  return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, "0")}`;
}

function who(trip) {
  const m = trip.metadata || {};
  const name = m.name || m.customer || trip.device_id;
  const order = m.order || m.order_id;
  return order ? `${name} (order ${order})` : name;
}

async function end(trip, status) {
  try {
    await api("PATCH", `/v1/trips/${encodeURIComponent(trip.trip_id)}`, { status });
    document.getElementById("board-problem").textContent = "";
  } catch (e) {
    document.getElementById("board-problem").textContent = e.message;
  }
  await load();
}

function card(trip, kind) {
  const item = el("li", { class: "card card-" + trip.status, "data-trip": trip.trip_id },
    el("strong", {}, who(trip)), " ", el("span", { class: "badge" }, trip.status.replace("_", " ")));
  if (kind === "coming") {
    item.append(el("div", {}, trip.eta_s === null ? "no estimate yet" :
      el("span", { class: "eta" }, `arrives in ${minutes(trip.eta_s)}`),
      trip.distance_m === null ? "" : ` · ${(trip.distance_m / 1000).toFixed(1)} km · ${trip.mode}`));
    if (trip.arrived_elsewhere) {
      item.append(el("div", { class: "problem" }, `stopped at another store: ${trip.arrived_elsewhere}`));
    }
  } else if (kind === "waiting") {
    item.append(el("div", {}, "waiting ", el("span", { class: "wait" }, minutes(trip.wait_time_s)),
      " since ", new Date(trip.arrived_at).toLocaleTimeString()),
      el("div", { class: "row" },
        el("button", { type: "submit", onclick: () => end(trip, "completed") }, "Handed over"),
        el("button", { type: "button", onclick: () => end(trip, "canceled") }, "Cancel")));
  } else {
    const waited = trip.status === "completed" && trip.wait_time_s !== null ? `waited ${minutes(trip.wait_time_s)}` : "";
    const ended = trip.ended_at ? new Date(trip.ended_at).toLocaleTimeString() : "";
    item.append(el("div", {}, [waited, ended && `${trip.status} at ${ended}`].filter(Boolean).join(" · ")));
  }
  return item;
}

function draw() {
  const since = (Date.now() - board.loadedAt) / 1000; // the waits keep counting between loads
  const shown = board.trips.map((t) => t.status === "arrived" ? { ...t, wait_time_s: t.wait_time_s + since } : t);
  const lists = {
    waiting: shown.filter((t) => t.status === "arrived").sort((a, b) => b.wait_time_s - a.wait_time_s),
    coming: shown.filter((t) => t.status === "started" || t.status === "approaching")
      .sort((a, b) => (a.eta_s ?? Infinity) - (b.eta_s ?? Infinity)),
    done: shown.filter((t) => !["arrived", "started", "approaching"].includes(t.status)).reverse(),
  };
  for (const [kind, trips] of Object.entries(lists)) {
    const list = document.getElementById(kind);
    list.replaceChildren(...trips.map((t) => card(t, kind)));
    if (!trips.length) list.append(el("li", { class: "hint" }, "none"));
  }
  const today = board.figures[board.figures.length - 1];
  document.getElementById("kpi").textContent = today ?
    `${today.day}: ${today.completed} handed over, median wait ${minutes(today.median_s)}, ` +
    `90th percentile ${minutes(today.p90_s)}` : "No trip handed over in the last 7 days.";
}

async function load() {
  const got = await api("GET", `/v1/stores/${encodeURIComponent(board.storeId)}/trips`);
  board.trips = got.trips;
  board.figures = got.wait_time_s;
  board.loadedAt = Date.now();
  draw();
}

async function main() {
  await signIn(`/v1/stores/${encodeURIComponent(board.storeId)}/trips`);
  document.getElementById("board-title").textContent = `Pickup board: ${board.storeId}`;
  await load();
  setInterval(draw, 1000);
  setInterval(() => load().catch(() => {}), 5000);
  document.body.dataset.ready = "true";
  const status = document.getElementById("board-status");
  await followEvents(new AbortController().signal, (e) => {
    if (e.type.startsWith("trip.")) load().catch(() => {});
  }, (text) => { status.textContent = text.startsWith("Connected") ? "Live." : text; });
}

main().catch((e) => {
  document.getElementById("board-problem").textContent = "The board could not start: " + e.message;
  console.error(e);
});
