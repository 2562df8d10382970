// The parts' health (#/health), from GET /api/console/health every 10 s while shown:
// the sync worker, each credential's rate-limit budgets as gauges, deliveries and poll
// requests per minute over the last hour, the outbox backlog, connected clients and
// the clean-up jobs that keep failing (with a Retry button, not for a read-only token).

import { ReadOnly, api, auth, describe, post } from "./api.js";
import { gauge, legend, lineChart, minutes } from "./charts.js";
import { $, anchorId, el, muted, timeEl } from "./dom.js";

const REFRESH_MS = 10000;
const OUTCOMES = ["applied", "stale", "duplicate", "ignored", "rejected", "failed"];
const ui = { body: $("health-body"), updated: $("health-updated") };
const view = { shown: false, timer: null, epoch: 0, loading: false, retried: new Map() };
export const last = { health: null }; // the last answer (for debugging)

export function show() {
  view.shown = true;
  load();
  clearInterval(view.timer);
  view.timer = setInterval(load, REFRESH_MS);
  return null;
}

export function hide() {
  view.shown = false;
  clearInterval(view.timer);
}

export function reset() {
  hide();
  view.epoch += 1;
  view.retried.clear();
  ui.body.replaceChildren();
  ui.updated.textContent = "";
}

export async function load() {
  if (view.loading) return;
  const epoch = view.epoch;
  view.loading = true;
  try {
    const health = await api("/api/console/health?hours=1");
    if (epoch !== view.epoch) return;
    last.health = health;
    render(health);
    ui.updated.replaceChildren("updated ", timeEl(new Date().toISOString()));
  } catch (error) {
    if (epoch !== view.epoch) return;
    ui.updated.textContent = `Could not load: ${describe(error)}`;
  } finally {
    view.loading = false;
  }
}

function render(h) {
  // Keep the focus on a Retry button across the redraw.
  const focused = document.activeElement && document.activeElement.dataset.taskId;
  ui.body.replaceChildren(
    el(
      "div",
      { class: "cards" },
      syncCard(h.sync || {}),
      number("Outbox backlog", h.outbox_backlog, "events committed, not yet emitted"),
      number("Connected clients", h.clients, "Socket.IO connections"),
    ),
    part("Rate-limit budgets", budgets((h.sync || {}).budgets)),
    part(
      "Deliveries per minute",
      chart(
        "Deliveries per minute by outcome",
        h.minutes,
        OUTCOMES.map((o) => [`deliveries.${o}`, o, `outcome-${o}`]),
      ),
    ),
    part(
      "Poll requests per minute",
      chart("Requests to GitHub per minute", h.minutes, [
        ["github.rest", "REST", "api-rest"],
        ["github.graphql", "GraphQL", "api-graphql"],
      ]),
    ),
    part("Failing clean-ups", cleanups(h.cleanup_failing || [])),
  );
  if (focused) {
    const button = ui.body.querySelector(`button[data-task-id="${CSS.escape(focused)}"]`);
    if (button) button.focus();
  }
}

const part = (title, content) =>
  el("section", { class: "detail-part", "aria-label": title }, el("h3", { text: title }), content);

function number(title, value, note) {
  return el(
    "div",
    { class: "card", "data-part": anchorId("n", title) },
    el("h3", { text: title }),
    el("p", {
      class: "big num",
      text: value === undefined || value === null ? "—" : String(value),
    }),
    el("p", { class: "muted small", text: note }),
  );
}

function syncCard(sync) {
  const list = el("dl", { class: "facts compact" });
  const fact = (name, ...value) => list.append(el("dt", { text: name }), el("dd", {}, ...value));
  fact("Leader", sync.leader === undefined ? "—" : sync.leader ? "yes" : "no");
  const cycle = sync.last_cycle;
  fact("Last cycle", cycle && cycle.finished_at ? timeEl(cycle.finished_at) : muted("none yet"));
  const counts = Object.entries((cycle && cycle.counts) || {});
  if (counts.length) {
    const text = counts.map(([k, v]) => `${k.replace(/_/g, " ")} ${v}`).join(" · ");
    fact("Its counts", el("span", { class: "small", text }));
  }
  const error = sync.last_error || (cycle && cycle.credential_error);
  if (error) fact("Last error", el("span", { class: "error-text", text: error }));
  fact("Next cycle", sync.next_cycle_at ? timeEl(sync.next_cycle_at) : muted());
  return el(
    "div",
    { class: "card wide-card", "data-part": "sync" },
    el(
      "h3",
      {},
      "Sync worker ",
      el("span", {
        class: `badge sync-${String(sync.state || "").replace(/[^a-z]/g, "")}`,
        text: sync.state || "unknown",
      }),
    ),
    list,
  );
}

// [{credential, ...}] or {credential: {...}}: each one's gauges, secondary (per
// minute, as planned) and primary (per hour, as GitHub counts).
function budgets(raw) {
  const entries = Array.isArray(raw)
    ? raw.map((b, i) => [b.credential || b.label || b.name || `credential ${i + 1}`, b])
    : Object.entries(raw || {});
  if (!entries.length)
    return muted(
      "No GitHub credential in use (the sync worker is not configured or has sent nothing yet).",
    );
  return el(
    "div",
    { class: "budgets" },
    ...entries.map(([name, b]) => {
      const perMinute = b.window_seconds ? `per ${Math.round(b.window_seconds)} s` : "per minute";
      const gauges = [
        gauge({
          label: `${name} REST secondary`,
          used: b.rest && b.rest.used,
          limit: b.rest && b.rest.planned,
          caption: `REST ${perMinute}`,
        }),
        gauge({
          label: `${name} GraphQL secondary`,
          used: b.graphql && b.graphql.used,
          limit: b.graphql && b.graphql.planned,
          caption: `GraphQL ${perMinute}`,
        }),
      ];
      const primary = b.primary || {};
      for (const [resource, label] of [
        ["core", "REST"],
        ["graphql", "GraphQL"],
        ...Object.keys(primary)
          .filter((k) => k !== "core" && k !== "graphql")
          .map((k) => [k, k]),
      ]) {
        const p = primary[resource];
        const used =
          p && typeof p.limit === "number" && typeof p.remaining === "number"
            ? p.limit - p.remaining
            : null;
        gauges.push(
          gauge({
            label: `${name} ${label} primary`,
            used,
            limit: p ? p.limit : null,
            caption: `${label} per hour`,
          }),
        );
      }
      const refusals = b.secondary_refusals
        ? el("p", { class: "small", text: `${b.secondary_refusals} secondary-limit refusals` })
        : null;
      return el(
        "figure",
        { class: "budget", "data-credential": name },
        el("figcaption", {}, el("strong", { class: "mono", text: name })),
        el("div", { class: "gauges" }, ...gauges),
        refusals,
      );
    }),
  );
}

function chart(label, data, wanted) {
  if (!data || !data.series) return muted("No counts yet.");
  const series = wanted.map(([key, name, className]) => ({
    name,
    className,
    points: minutes(data.from, data.to, data.series[key]),
  }));
  return el(
    "figure",
    { class: "chart-box", "data-chart": label },
    lineChart({ label, series }),
    legend(series),
  );
}

function cleanups(jobs) {
  if (!jobs.length)
    return el("p", {
      class: "muted",
      "data-empty": "cleanups",
      text: "None: every clean-up job succeeded or is waiting its first try.",
    });
  const rows = jobs.map((job) => {
    const button = el("button", {
      type: "button",
      class: "write small",
      text: "Retry",
      "data-task-id": job.task_id,
      "aria-label": `Retry the clean-up of ${job.worktree_path || job.task_id}`,
    });
    button.disabled = auth.readOnly;
    const result = el("span", {
      class: "retry-result",
      role: "status",
      text: view.retried.get(job.task_id) || "",
    });
    button.addEventListener("click", () => retry(job, button, result));
    return el(
      "tr",
      { "data-task-id": job.task_id },
      el("td", { class: "mono", text: String(job.task_id).slice(0, 8), title: job.task_id }),
      el("td", { class: "mono", text: job.worktree_path || "—" }),
      el("td", { class: "nowrap", text: job.status || "—" }),
      el("td", { class: "num", text: String(job.attempts ?? "—") }),
      el("td", { class: "error-text", text: job.last_error || "—" }),
      el("td", { class: "nowrap" }, timeEl(job.next_attempt_at)),
      el("td", { class: "nowrap" }, button, " ", result),
    );
  });
  return el(
    "div",
    { class: "table-wrap" },
    el(
      "table",
      { class: "grid", id: "cleanups", "aria-label": "Failing clean-up jobs" },
      el(
        "thead",
        {},
        el(
          "tr",
          {},
          ...["Task", "Worktree", "Status", "Attempts", "Last error", "Next attempt", ""].map((t) =>
            el("th", { scope: "col", text: t }),
          ),
        ),
      ),
      el("tbody", {}, ...rows),
    ),
  );
}

async function retry(job, button, result) {
  button.disabled = true;
  result.textContent = "Retrying…";
  try {
    const answer = await post(`/api/cleanups/${encodeURIComponent(job.task_id)}/retry`);
    const due =
      answer && answer.next_attempt_at
        ? ` (due ${new Date(answer.next_attempt_at).toLocaleTimeString()})`
        : "";
    result.textContent = `Queued now${due}`;
  } catch (error) {
    result.textContent =
      error instanceof ReadOnly
        ? "Read-only token: not retried."
        : `Retry failed: ${describe(error)}`;
  } finally {
    view.retried.set(job.task_id, result.textContent);
    button.disabled = auth.readOnly;
  }
}

auth.listeners.add(() => {
  for (const button of ui.body.querySelectorAll("button.write")) button.disabled = auth.readOnly;
});
