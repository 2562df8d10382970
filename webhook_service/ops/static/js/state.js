// The page's state, one object (window.webhookDashboard.state, for debugging and the
// tests): the connection and the board's lists. The console's other views keep their
// own state in their modules.

import { anchorId } from "./dom.js";

export const state = {
  session: 0, // bumped on every start/stop: callbacks of an older session are ignored
  socket: null,
  everConnected: false,
  everLoaded: false,
  reconnectAttempt: 0,
  refused: false,
  problem: null, // a connection problem to show, other than a refused token
  pulls: new Map(), // "owner/name#number" -> pull request
  tasks: new Map(), // task id -> task
  pullRows: new Map(),
  taskRows: new Map(),
  lastEventId: null, // highest event_id applied
  loading: null, // the promise of a list (re)load in flight
  loadReason: null,
  reloadAgain: false,
  pending: [], // events received while loading
  generation: 0, // bumped by every completed (re)load
  refreshing: new Map(), // key -> {again} for row refreshes in flight
  filter: "",
  subscribed: null, // the repository the server narrowed this connection's stream to
  retryTimer: null,
};

// What every session starts from (stop() puts these back).
export function resetSession() {
  Object.assign(state, {
    subscribed: null,
    everConnected: false,
    everLoaded: false,
    reconnectAttempt: 0,
    problem: null,
    lastEventId: null,
    loading: null,
    loadReason: null,
    reloadAgain: false,
    pending: [],
    pulls: new Map(),
    tasks: new Map(),
  });
  state.refreshing.clear();
  state.pullRows.clear();
  state.taskRows.clear();
}

export const prKey = (repository, number) => `${repository}#${number}`;
export const prAnchor = (pr) => anchorId("pr", `${pr.repository}-${pr.number}`);
export const taskAnchor = (taskId) => anchorId("task", taskId);
