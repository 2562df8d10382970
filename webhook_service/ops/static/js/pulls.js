// The board's pull request table: one row per PR, updated in place.

import {
  $,
  badge,
  compare,
  el,
  muted,
  openableRow,
  safeUrl,
  timeCell,
  timelineHref,
  upsertRow,
} from "./dom.js";
import { prAnchor, state, taskAnchor } from "./state.js";

export const pullsBody = document.querySelector("#pulls tbody");

// Repository A→Z, then newest PR first.
export const pullSort = (pr) => [pr.repository.toLowerCase(), -pr.number];

export function renderPull(key, flash) {
  const pr = state.pulls.get(key);
  if (!pr) return;
  const url = safeUrl(pr.url);
  const number = url
    ? el("a", { href: url, target: "_blank", rel: "noopener noreferrer", text: `#${pr.number}` })
    : el("span", { text: `#${pr.number}` });
  let taskCell;
  if (pr.task_id) {
    const task = state.tasks.get(pr.task_id);
    const label = task && task.title ? task.title : `task ${pr.task_id.slice(0, 8)}`;
    taskCell = el(
      "td",
      {},
      el("a", { href: `#${taskAnchor(pr.task_id)}`, class: "task-link", text: label }),
    );
  } else {
    taskCell = el("td", { class: "muted", text: "—" });
  }
  const title = pr._placeholder && !pr.title ? muted("loading…") : pr.title || "";
  const timeline = timelineHref(pr.repository, pr.number);
  const row = upsertRow(
    pullsBody,
    state.pullRows,
    key,
    {
      id: prAnchor(pr),
      "data-key": key,
      "data-repository": pr.repository,
      "data-status": pr.status || "",
    },
    [
      el("td", { class: "nowrap", text: pr.repository }),
      el("td", { class: "nowrap num" }, number),
      el("td", { class: "wide" }, title),
      el("td", {}, badge(pr.status)),
      el("td", {}, pr.draft ? el("span", { class: "badge draft", text: "draft" }) : muted()),
      taskCell,
      timeCell(pr.github_updated_at, pr._eventAt),
      el("td", { class: "muted nowrap", text: pr.last_source || "—" }),
      el(
        "td",
        { class: "nowrap" },
        el("a", {
          href: timeline,
          text: "Timeline",
          "aria-label": `Timeline of ${pr.repository} pull request ${pr.number}`,
        }),
      ),
    ],
    pullSort(pr),
    flash,
  );
  // Enter on the row opens the timeline too; its links stay in the tab order.
  openableRow(row, timeline);
}

// A PR's task cell shows the task's title: redraw those of one task.
export function renderPullsOfTask(id) {
  for (const [key, pr] of state.pulls) if (pr.task_id === id) renderPull(key, false);
}

export function linkedPulls(taskId) {
  const linked = [...state.pulls.values()].filter((pr) => pr.task_id === taskId);
  return linked.sort((a, b) => compare(pullSort(a), pullSort(b)));
}

export const pullsEmpty = $("pulls-empty");
export const pullsCount = $("pulls-count");
