// The board's lists: loaded from the HTTP API, then kept up to date by the stream.
//
//   * Without a cursor (first connection, nothing received yet) and on
//     `resync_required`, the lists are (re)loaded from the HTTP API, every page of
//     them (each answer's `next` until it is null). Events arriving while a load is
//     in flight are kept and applied after it, in order.
//   * Events are at least once: any event_id <= lastEventId is a repeat and dropped.
//   * A row an event touched is refreshed from the API (its other fields).

import { Refused, api, apiAll, auth } from "./api.js";
import { $, pullPath } from "./dom.js";
import { applyFilter, refreshFilterOptions } from "./filter.js";
import { pullsBody, renderPull, renderPullsOfTask } from "./pulls.js";
import { prKey, state } from "./state.js";
import { renderConnection } from "./stream.js";
import { renderTask, tasksBody } from "./tasks.js";

const RETRY_MS = 5000;
const PAGE_SIZE = 5000; // rows per request while loading the lists (the API's maximum)
const cursor = $("cursor");
const notice = $("notice");

export function showNotice(message) {
  notice.hidden = !message;
  notice.textContent = message || "";
}

// (Re)load both lists. Events arriving meanwhile wait in state.pending and are
// applied, in order, on top of the fresh lists.
export function reload(reason) {
  if (state.loading) {
    state.reloadAgain = true;
    state.loadReason = reason === "resync" ? reason : state.loadReason;
    renderConnection();
    return state.loading;
  }
  const session = state.session;
  const alive = () => session === state.session;
  state.loadReason = reason;
  state.loading = (async () => {
    let failed = null;
    try {
      do {
        state.reloadAgain = false;
        const [pulls, tasks] = await Promise.all([
          apiAll(`/api/pulls?limit=${PAGE_SIZE}`, "pulls", alive),
          apiAll(`/api/tasks?limit=${PAGE_SIZE}`, "tasks", alive),
        ]);
        if (!alive()) return;
        replaceLists(pulls, tasks);
      } while (state.reloadAgain && alive());
    } catch (error) {
      failed = error;
    }
    if (!alive()) return;
    state.loading = null;
    state.loadReason = null;
    const pending = state.pending;
    state.pending = [];
    for (const event of pending) apply(event);
    if (failed instanceof Refused) {
      auth.onRefused();
      return;
    }
    if (failed) {
      showNotice(`Could not load the lists (${failed.message}); retrying…`);
      clearTimeout(state.retryTimer);
      state.retryTimer = setTimeout(() => alive() && reload(reason), RETRY_MS);
    } else {
      showNotice(null);
    }
    renderConnection();
  })();
  renderConnection();
  return state.loading;
}

function replaceLists(pulls, tasks) {
  state.generation += 1;
  // Keep the time of the last event seen for a row: the API has no such field.
  const carry = (old, fresh) => {
    for (const [key, row] of fresh) {
      const before = old.get(key);
      if (before && before._eventAt)
        Object.assign(row, { _eventAt: before._eventAt, _eventId: before._eventId });
    }
    return fresh;
  };
  state.pulls = carry(
    state.pulls,
    new Map(pulls.map((pr) => [prKey(pr.repository, pr.number), pr])),
  );
  state.tasks = carry(state.tasks, new Map(tasks.map((task) => [task.id, task])));
  clearRows();
  for (const key of state.pulls.keys()) renderPull(key, false);
  for (const id of state.tasks.keys()) renderTask(id, false);
  refreshFilterOptions();
  applyFilter();
}

export function clearRows() {
  state.pullRows.clear();
  state.taskRows.clear();
  pullsBody.replaceChildren();
  tasksBody.replaceChildren();
}

// Refresh one row from the API (a PR first seen in an event, or its other fields).
// A response that a newer event or a reload overtook is dropped and asked again.
async function refreshRow(kind, key) {
  const entry = state.refreshing.get(`${kind}:${key}`);
  if (entry) {
    entry.again = true;
    return;
  }
  const mine = { again: false };
  const session = state.session;
  state.refreshing.set(`${kind}:${key}`, mine);
  try {
    do {
      mine.again = false;
      const map = kind === "pr" ? state.pulls : state.tasks;
      const before = map.get(key);
      if (!before) return;
      const seen = before._eventId;
      const generation = state.generation;
      let data;
      try {
        data = await api(
          kind === "pr"
            ? `/api/pulls/${pullPath(before.repository, before.number)}`
            : `/api/tasks/${encodeURIComponent(key)}`,
        );
      } catch (error) {
        if (session !== state.session) return;
        if (error instanceof Refused) auth.onRefused();
        return; // 404 (not tracked) or a transient error: keep what the event said
      }
      if (session !== state.session) return;
      const current = (kind === "pr" ? state.pulls : state.tasks).get(key);
      if (!current || generation !== state.generation || current._eventId !== seen) {
        mine.again = true;
        continue;
      }
      Object.assign(current, data, { _placeholder: false });
      if (kind === "pr") {
        renderPull(key, false);
        if (current.task_id) renderTask(current.task_id, false);
      } else {
        renderTask(key, false);
        renderPullsOfTask(key);
      }
      refreshFilterOptions();
      applyFilter();
    } while (mine.again);
  } finally {
    state.refreshing.delete(`${kind}:${key}`);
  }
}

export function onEvent(event) {
  if (!event || typeof event.event_id !== "number") return;
  if (state.loading) {
    state.pending.push(event);
    return;
  }
  apply(event);
}

function apply(event) {
  if (state.lastEventId !== null && event.event_id <= state.lastEventId) return; // a repeat
  state.lastEventId = event.event_id;
  if (event.type === "pr_status_change") applyPull(event);
  else if (event.type === "task_status_change") applyTask(event);
  cursor.textContent = `Last event #${state.lastEventId} at ${new Date().toLocaleTimeString()}`;
}

function applyPull(event) {
  const key = prKey(event.repository, event.pr_number);
  let pr = state.pulls.get(key);
  const isNew = !pr;
  if (isNew) {
    pr = {
      repository: event.repository,
      number: event.pr_number,
      title: "",
      draft: false,
      url: null,
      github_updated_at: null,
      task_id: null,
      _placeholder: true,
    };
    state.pulls.set(key, pr);
  }
  pr.status = event.new_status;
  pr.last_source = event.sync_source;
  if (event.task_id) pr.task_id = event.task_id;
  pr._eventId = event.event_id;
  pr._eventAt = event.timestamp;
  renderPull(key, true);
  if (pr.task_id && state.tasks.has(pr.task_id)) renderTask(pr.task_id, false);
  if (isNew) refreshFilterOptions();
  applyFilter();
  refreshRow("pr", key);
}

function applyTask(event) {
  let task = state.tasks.get(event.task_id);
  const isNew = !task;
  if (isNew) {
    task = { id: event.task_id, title: "", repository: null, branch: null, _placeholder: true };
    state.tasks.set(event.task_id, task);
  }
  task.status = event.new_status;
  task._eventId = event.event_id;
  task._eventAt = event.timestamp;
  renderTask(event.task_id, true);
  applyFilter();
  if (isNew) refreshRow("task", event.task_id);
}

export function resetCursor() {
  cursor.textContent = "No events received yet";
}
