/* geo-engine pages, the shared part: the admin key (asked once, kept in sessionStorage), calls
   to the engine's HTTP API, building elements, and following the live event stream. The console
   (console.js) and the store's pickup board (board.js) load it first. */
"use strict";

const auth = { key: sessionStorage.getItem("geoEngineKey") };

function forgetKey() {
  sessionStorage.removeItem("geoEngineKey");
  auth.key = null;
}

async function api(method, path, body) {
  const headers = { Authorization: "Bearer " + auth.key };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const r = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await r.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch (e) { data = null; }
  if (!r.ok) {
    const err = new Error((data && data.detail) || text || r.statusText);
    err.status = r.status;
    err.problems = (data && data.problems) || [];
    throw err;
  }
  return data;
}

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else if (v !== undefined && v !== null && v !== false) node.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return node;
}

/* The sign-in dialog (#login: the key's field #key, the form #login-form, its problem line),
   made once at the top of the page: its button says what it opens (the body's data-opens). */
function loginDialog() {
  let dialog = document.getElementById("login");
  if (dialog) return dialog;
  dialog = el("dialog", { id: "login" },
    el("form", { id: "login-form", method: "dialog" },
      el("h2", {}, "Admin key"),
      el("p", {}, "The key is kept for this browser session only."),
      el("label", { for: "key" }, "Admin API key"),
      el("input", { id: "key", name: "key", type: "password", autocomplete: "off", required: true }),
      el("p", { class: "problem", id: "login-problem", role: "alert" }),
      el("button", { type: "submit" }, "Open " + (document.body.dataset.opens || "the page"))));
  document.body.prepend(dialog);
  return dialog;
}

/* Ask for the admin key until one works (``probe`` is an admin-only GET); then show the page's
   #signout button. */
async function signIn(probe = "/v1/campaigns") {
  const dialog = loginDialog();
  while (true) {
    if (auth.key) {
      try { await api("GET", probe); break; } catch (e) {
        document.getElementById("login-problem").textContent =
          e.status === 401 || e.status === 403 ? "That key is not an admin key." : e.message;
        forgetKey();
      }
    }
    dialog.showModal();
    await new Promise((resolve) => document.getElementById("login-form").addEventListener("submit", resolve, { once: true }));
    auth.key = document.getElementById("key").value.trim();
    sessionStorage.setItem("geoEngineKey", auth.key);
  }
  if (dialog.open) dialog.close();
  const signout = document.getElementById("signout");
  signout.hidden = false;
  signout.addEventListener("click", () => { forgetKey(); location.reload(); });
}

/* Follow /v1/events/stream (Server-Sent Events, read with fetch so that the key goes in a
   header) until ``signal`` aborts: ``onEvent(event)`` for each, ``onStatus(text)`` when the
   connection comes or goes; a lost connection is resumed after the last event seen. */
async function followEvents(signal, onEvent, onStatus) {
  let last = null;
  while (true) {
    try {
      const headers = { Authorization: "Bearer " + auth.key, Accept: "text/event-stream" };
      if (last) headers["Last-Event-ID"] = last;
      const r = await fetch("/v1/events/stream", { headers, signal });
      if (!r.ok) throw new Error(`the stream answered ${r.status}`);
      onStatus("Connected: new events appear at the top.");
      const reader = r.body.getReader();
      const decoder = new TextDecoder();
      let buffer = "";
      while (true) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer = (buffer + decoder.decode(value, { stream: true })).replace(/\r\n/g, "\n");
        let cut;
        while ((cut = buffer.indexOf("\n\n")) >= 0) {
          const message = buffer.slice(0, cut);
          buffer = buffer.slice(cut + 2);
          let data = null;
          for (const line of message.split(/\r?\n/)) {
            if (line.startsWith("id:")) last = line.slice(3).trim();
            if (line.startsWith("data:")) data = line.slice(5).trim();
          }
          if (data) onEvent(JSON.parse(data));
        }
      }
    } catch (e) {
      if (signal.aborted) return;
      onStatus("Disconnected (" + e.message + "); trying again in 3 s.");
    }
    await new Promise((resolve) => setTimeout(resolve, 3000));
  }
}
