// The Socket.IO connection and its indicator.
//
//   * It connects with auth {token, batch: true, since: lastEventId}; `auth` is a
//     function, which the v4 client calls before every connection attempt,
//     reconnections included, so each one resumes from the last event applied. The
//     server replays stored events after `since`, then streams live ones.
//   * Events come in batches (`events`: a list, in id order, at most 20 per second),
//     so a busy service costs the page one message per batch, not one per event.
//   * The board applies every event (lists.onEvent); the console's views are told of
//     each batch (onBatch) and re-read what they show.

import { auth } from "./api.js";
import { $ } from "./dom.js";
import { subscription } from "./filter.js";
import { onEvent, reload } from "./lists.js";
import { state } from "./state.js";

const RETRY_MS = 5000;
const conn = $("connection");
const connText = $("connection-text");
const batchListeners = new Set();

// `listener(batch)` after each batch of events the board applied.
export function onBatch(listener) {
  batchListeners.add(listener);
}

export function renderConnection() {
  let mode;
  let text;
  const socket = state.socket;
  if (state.refused) {
    mode = "refused";
    text = "Token refused";
  } else if (!socket) {
    mode = "idle";
    text = "Not connected";
  } else if (socket.connected && state.loading && state.loadReason === "resync") {
    mode = "resync";
    text = "Resyncing…";
  } else if (socket.connected && state.loading && !state.everLoaded) {
    mode = "connecting";
    text = "Loading…";
  } else if (socket.connected) {
    mode = "live";
    text = "Live";
  } else if (state.everConnected) {
    mode = "reconnecting";
    text = state.reconnectAttempt
      ? `Reconnecting (attempt ${state.reconnectAttempt})…`
      : "Reconnecting…";
  } else {
    mode = "connecting";
    text = "Connecting…";
  }
  if (state.problem && mode !== "live" && mode !== "refused") text += ` — ${state.problem}`;
  conn.dataset.state = mode;
  connText.textContent = text;
}

export function renderMissingClient() {
  conn.dataset.state = "refused";
  connText.textContent = "The socket.io client did not load";
}

function loaded() {
  state.everLoaded = true;
  renderConnection();
}

export function connect() {
  const session = state.session;
  const token = auth.token;
  const socket = io({
    forceNew: true,
    // WebSocket first; long-polling only where a WebSocket cannot be opened.
    transports: ["websocket", "polling"],
    tryAllTransports: true,
    // Called before every connection attempt: reconnections resume from the last
    // event applied (the server replays the stored events after it).
    auth: (send) =>
      send(
        state.lastEventId === null
          ? { token, batch: true }
          : { token, batch: true, since: state.lastEventId },
      ),
    reconnectionDelay: 1000,
    reconnectionDelayMax: 10000,
    timeout: 10000,
  });
  state.socket = socket;
  const current = () => session === state.session;

  socket.on("connect", () => {
    if (!current()) return;
    state.everConnected = true;
    state.reconnectAttempt = 0;
    state.problem = null;
    state.subscribed = null; // a new connection starts with the whole stream
    if (state.filter) subscription(socket, "subscribe", state.filter);
    // No cursor: the server sends live events only, so the lists must come from the
    // API (the socket is already in its rooms, so nothing falls in between).
    if (state.lastEventId === null) reload("initial").then(loaded);
    auth.onAccepted();
    renderConnection();
  });
  socket.on("connect_error", (error) => {
    if (!current()) return;
    if (/unauthori[sz]ed/i.test(error.message)) {
      auth.onRefused();
      return;
    }
    state.problem = error.message;
    if (!socket.active) {
      // The server refused for another reason (a bad `since`?): start over without
      // a cursor, after a pause.
      state.lastEventId = null;
      setTimeout(() => current() && socket.connect(), RETRY_MS);
    }
    renderConnection();
  });
  socket.on("disconnect", (reason) => {
    if (!current()) return;
    if (reason === "io server disconnect") socket.connect(); // not retried by itself
    renderConnection();
  });
  socket.io.on("reconnect_attempt", (attempt) => {
    if (!current()) return;
    state.reconnectAttempt = attempt;
    renderConnection();
  });
  socket.on("resync_required", (info) => {
    if (!current()) return;
    // Our cursor is older than what the server keeps: reload, and go on from the
    // server's newest event (the live stream continues after it).
    const newest = info && typeof info.last_event_id === "number" ? info.last_event_id : null;
    state.lastEventId = newest;
    reload("resync").then(loaded);
    for (const listener of batchListeners) listener([]);
  });
  socket.on("events", (batch) => {
    if (!current() || !Array.isArray(batch)) return;
    for (const event of batch) onEvent(event);
    for (const listener of batchListeners) listener(batch);
  });
  renderConnection();
}

export function disconnect() {
  if (state.socket) {
    state.socket.removeAllListeners();
    state.socket.io.removeAllListeners();
    state.socket.disconnect();
    state.socket = null;
  }
}
