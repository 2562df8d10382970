// The board's repository filter: it hides other rows and subscribes the socket to that
// repository; widening it again reloads the lists (the narrowed stream skipped other
// repositories' events).

import { $, el } from "./dom.js";
import { reload } from "./lists.js";
import { pullsCount, pullsEmpty } from "./pulls.js";
import { state } from "./state.js";
import { tasksCount, tasksEmpty } from "./tasks.js";

const FILTER_KEY = "webhook-service.dashboard.repository";
export const filterSelect = $("repo-filter");
export const filterLabel = document.querySelector("label.filter");

function repositories() {
  const names = new Set();
  for (const pr of state.pulls.values()) if (pr.repository) names.add(pr.repository);
  for (const task of state.tasks.values()) if (task.repository) names.add(task.repository);
  if (state.filter) names.add(state.filter);
  return [...names].sort((a, b) => a.localeCompare(b));
}

export function refreshFilterOptions() {
  const names = repositories();
  const current = [...filterSelect.options].slice(1).map((option) => option.value);
  if (names.join("\n") !== current.join("\n")) {
    filterSelect.replaceChildren(
      el("option", { value: "", text: "All repositories" }),
      ...names.map((name) => el("option", { value: name, text: name })),
    );
  }
  filterSelect.value = state.filter;
  filterSelect.disabled = false;
}

export function applyFilter() {
  const count = (rows) => {
    let shown = 0;
    for (const row of rows.values()) {
      const visible = !state.filter || row.dataset.repository === state.filter;
      row.hidden = !visible;
      if (visible) shown += 1;
    }
    return shown;
  };
  const pulls = count(state.pullRows);
  const tasks = count(state.taskRows);
  const label = (shown, total) =>
    shown === total ? `${total} shown` : `${shown} of ${total} shown`;
  pullsCount.textContent = label(pulls, state.pullRows.size);
  tasksCount.textContent = label(tasks, state.taskRows.size);
  pullsEmpty.hidden = pulls > 0;
  tasksEmpty.hidden = tasks > 0;
  pullsEmpty.textContent = state.pullRows.size
    ? "No pull requests in this repository."
    : "No pull requests tracked yet.";
  tasksEmpty.textContent = state.taskRows.size ? "No tasks in this repository." : "No tasks yet.";
}

// Narrow (subscribe) or widen (unsubscribe) this connection's stream; the server's
// acknowledgement tells when it took effect (state.subscribed).
export function subscription(socket, action, repository) {
  socket.emit(action, { repository }, (ack) => {
    if (socket !== state.socket) return;
    if (!ack || ack.ok !== true) {
      console.warn(`${action} ${repository} was not accepted`, ack);
      return;
    }
    if (action === "subscribe") state.subscribed = repository;
    else if (state.subscribed === repository) state.subscribed = null;
  });
}

export function setFilter(repository) {
  const previous = state.filter;
  if (repository === previous) return;
  state.filter = repository;
  if (repository) localStorage.setItem(FILTER_KEY, repository);
  else localStorage.removeItem(FILTER_KEY);
  applyFilter();
  const socket = state.socket;
  if (socket && socket.connected) {
    if (repository) subscription(socket, "subscribe", repository);
    if (previous) subscription(socket, "unsubscribe", previous);
  }
  // The stream was narrowed to `previous`: other repositories' rows may be stale.
  if (previous) reload("filter");
}

export const savedFilter = () => localStorage.getItem(FILTER_KEY) || "";
