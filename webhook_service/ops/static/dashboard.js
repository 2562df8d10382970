// The operator's console of webhook-service: plain ES2020 modules, no framework, no
// build step. This module signs in and wires the views; each view lives in js/:
//
//   api.js       the HTTP API with the token (401 refused, 403 read-only)
//   stream.js    the Socket.IO connection (batches, resume, resync) and its indicator
//   lists.js, pulls.js, tasks.js, filter.js   the board of PRs and tasks
//   deliveries.js, delivery.js, json_view.js  the deliveries and one delivery
//   timeline.js  one PR's observations;  health.js, charts.js  the parts' health
//   router.js    the hash routes (#/deliveries, #/pulls/o/r/5, #/health)
//
// The API token is asked once and kept in localStorage ("Forget token" drops it);
// /#token=... gives it once, and is cleared from the address bar. A read-only token
// (DASHBOARD_TOKEN) sees everything; the first 403 to a write marks it read-only:
// the writes (Redeliver, Retry) are hidden from then on, also on later visits (the
// mark is kept beside the token, and dropped with it).

import { api, auth, setReadOnly } from "./js/api.js";
import * as deliveries from "./js/deliveries.js";
import * as delivery from "./js/delivery.js";
import { $, lastOpened, tickTimes, wireOpenableRows } from "./js/dom.js";
import { filterLabel, filterSelect, savedFilter, setFilter } from "./js/filter.js";
import * as health from "./js/health.js";
import { clearRows, reload, resetCursor, showNotice } from "./js/lists.js";
import { pullsBody } from "./js/pulls.js";
import { enable, register } from "./js/router.js";
import { resetSession, state } from "./js/state.js";
import { connect, disconnect, renderConnection, renderMissingClient } from "./js/stream.js";
import * as timeline from "./js/timeline.js";

const TOKEN_KEY = "webhook-service.dashboard.token";
const READ_ONLY_KEY = "webhook-service.dashboard.read-only";
const ASK =
  "Enter the service's API token (API_TOKEN, or the read-only DASHBOARD_TOKEN). " +
  "It is kept in this browser's local storage.";
const ui = {
  tokenPanel: $("token-panel"),
  tokenForm: $("token-form"),
  tokenInput: $("token-input"),
  tokenMessage: $("token-message"),
  content: $("content"),
  forget: $("forget-token"),
  readOnly: $("read-only"),
};
const consoleViews = [deliveries, delivery, timeline, health];

register("board", {
  show: () => {
    filterLabel.hidden = false;
    return lastOpened(pullsBody);
  },
  hide: () => {
    filterLabel.hidden = true; // the filter narrows the board (and the stream) only
  },
});
register("deliveries", deliveries);
register("delivery", delivery);
register("timeline", timeline);
register("health", health);
wireOpenableRows(pullsBody);

function stop() {
  state.session += 1;
  clearTimeout(state.retryTimer);
  disconnect();
  resetSession();
  clearRows();
  resetCursor();
  enable(false);
  for (const view of consoleViews) view.reset();
}

function start(token) {
  stop();
  if (localStorage.getItem(TOKEN_KEY) !== token) localStorage.removeItem(READ_ONLY_KEY);
  auth.token = token;
  setReadOnly(localStorage.getItem(READ_ONLY_KEY) === "true");
  state.refused = false;
  localStorage.setItem(TOKEN_KEY, token);
  ui.tokenPanel.hidden = true;
  ui.content.hidden = false;
  ui.forget.hidden = false;
  filterLabel.hidden = false;
  showNotice(null);
  connect();
  enable(true);
}

// Whether the token may write (DASHBOARD_TOKEN may not), asked when the stream has
// accepted the token (a refused one is not asked about: the browser would log the
// 401), so that Redeliver and Retry are never offered to a token that would be
// refused. The remembered flag covers the moment before the answer.
async function learnAccess(session) {
  try {
    const access = await api("/api/console/access");
    if (session === state.session) setReadOnly(!access.write);
  } catch (_) {
    // refused or unreachable: the token form or the connection state says so
  }
}

function askForToken(message, refused) {
  ui.content.hidden = true;
  ui.forget.hidden = true;
  ui.tokenPanel.hidden = false;
  ui.tokenPanel.classList.toggle("refused", Boolean(refused));
  ui.tokenMessage.textContent = message;
  ui.tokenInput.value = "";
  filterSelect.disabled = true;
  filterLabel.hidden = true;
  ui.tokenInput.focus();
  renderConnection();
}

function refuse() {
  stop();
  auth.token = null;
  state.refused = true;
  localStorage.removeItem(TOKEN_KEY);
  localStorage.removeItem(READ_ONLY_KEY);
  askForToken("The server refused this token. Check API_TOKEN and enter it again.", true);
}

function forget() {
  stop();
  auth.token = null;
  state.refused = false;
  localStorage.removeItem(TOKEN_KEY);
  localStorage.removeItem(READ_ONLY_KEY);
  askForToken(`Token forgotten. ${ASK}`, false);
}

auth.onAccepted = () => learnAccess(state.session);
auth.onRefused = () => {
  if (auth.token !== null) refuse();
};
auth.listeners.add((readOnly) => {
  if (readOnly) localStorage.setItem(READ_ONLY_KEY, "true");
  else localStorage.removeItem(READ_ONLY_KEY);
  ui.readOnly.hidden = !readOnly;
  document.body.classList.toggle("read-only", readOnly);
});

ui.tokenForm.addEventListener("submit", (event) => {
  event.preventDefault();
  const token = ui.tokenInput.value.trim();
  if (token) start(token);
});
ui.forget.addEventListener("click", forget);
filterSelect.addEventListener("change", () => setFilter(filterSelect.value));
setInterval(tickTimes, 15000);

function main() {
  if (typeof io !== "function") {
    renderMissingClient();
    return;
  }
  state.filter = savedFilter();
  // A bookmark or a wall screen opens signed in with /#token=...: the token is taken
  // once, kept as if typed, and cleared from the address bar (and so from the history).
  const fromUrl = new URLSearchParams(location.hash.slice(1)).get("token");
  if (fromUrl !== null) {
    history.replaceState(null, "", location.pathname + location.search);
  }
  const saved = (fromUrl && fromUrl.trim()) || localStorage.getItem(TOKEN_KEY);
  if (saved) start(saved);
  else askForToken(ASK, false);
}

main();

// For debugging from the console (read-only use, please), and for the tests.
window.webhookDashboard = { state, reload, auth, views: { deliveries, timeline, health } };
