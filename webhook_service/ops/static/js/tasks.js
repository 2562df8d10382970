// The board's task table: one row per task, with its linked PRs.

import { $, badge, el, muted, timeCell, upsertRow } from "./dom.js";
import { linkedPulls } from "./pulls.js";
import { prAnchor, state, taskAnchor } from "./state.js";

export const tasksBody = document.querySelector("#tasks tbody");
export const tasksEmpty = $("tasks-empty");
export const tasksCount = $("tasks-count");

// Newest task first, then by title.
const taskSort = (task) => [
  -(Date.parse(task.created_at || "") || Number.MAX_SAFE_INTEGER),
  task.title || "",
];

export function renderTask(id, flash) {
  const task = state.tasks.get(id);
  if (!task) return;
  const linked = linkedPulls(id);
  const prLinks = linked.length
    ? el(
        "td",
        { class: "links" },
        ...linked.map((pr) =>
          el(
            "a",
            { href: `#${prAnchor(pr)}`, title: `${pr.repository}#${pr.number} (${pr.status})` },
            `#${pr.number} `,
            badge(pr.status),
          ),
        ),
      )
    : el("td", { class: "muted", text: "—" });
  const title = task._placeholder && !task.title ? muted("loading…") : task.title;
  upsertRow(
    tasksBody,
    state.taskRows,
    id,
    {
      id: taskAnchor(id),
      "data-key": id,
      "data-repository": task.repository || "",
      "data-status": task.status || "",
    },
    [
      el("td", { class: "wide" }, title),
      el("td", {}, badge(task.status)),
      el("td", { class: "nowrap", text: task.repository || "—" }),
      el("td", { class: "mono", text: task.branch || "—" }),
      prLinks,
      timeCell(task.updated_at, task._eventAt),
    ],
    taskSort(task),
    flash,
  );
}
