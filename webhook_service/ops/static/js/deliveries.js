// The deliveries (#/deliveries): newest first, filtered by event, outcome, repository
// and PR number, a page at a time ("Load more" follows the answer's `next`). New
// deliveries are asked for with `since` (the newest one shown) when events arrive and
// every 10 s while the view is open: a delivery that changed nothing sends no event.
// Rows are only ever added or updated, never all redrawn, so the thousandth page
// costs what the first did.

import { api, describe, nextPath } from "./api.js";
import {
  $,
  deliveryHref,
  el,
  lastOpened,
  muted,
  openableRow,
  outcomeBadge,
  timeEl,
  timelineHref,
  wireOpenableRows,
} from "./dom.js";
import { onBatch } from "./stream.js";

const PAGE = 100;
const POLL_MS = 10000;
const ui = {
  form: $("delivery-filters"),
  body: document.querySelector("#deliveries tbody"),
  empty: $("deliveries-empty"),
  count: $("deliveries-count"),
  more: $("deliveries-more"),
  status: $("deliveries-status"),
};
const view = {
  filters: {},
  rows: new Map(), // guid -> <tr>
  next: null,
  newest: null, // received_at of the newest delivery shown
  epoch: 0, // bumped when the list starts over: older answers are dropped
  loaded: false,
  shown: false,
  timer: null,
  polling: null,
  timings: [], // per page: {rows, fetchMs, renderMs} (the tests read them)
};
export const timings = view.timings;

function query(extra = {}) {
  const params = new URLSearchParams();
  for (const [name, value] of Object.entries({ ...view.filters, ...extra })) {
    if (value !== "" && value !== null && value !== undefined) params.set(name, value);
  }
  return `/api/deliveries?${params}`;
}

export function show() {
  view.shown = true;
  if (!view.loaded) startOver();
  else poll();
  clearInterval(view.timer);
  view.timer = setInterval(poll, POLL_MS);
  return lastOpened(ui.body);
}

export function hide() {
  view.shown = false;
  clearInterval(view.timer);
}

export function reset() {
  hide();
  clear();
  view.filters = {};
  ui.form.reset();
}

function clear() {
  view.epoch += 1;
  Object.assign(view, { rows: new Map(), next: null, newest: null, loaded: false, polling: null });
  view.timings.length = 0;
  ui.body.replaceChildren();
  ui.count.textContent = "";
  ui.status.textContent = "";
  ui.more.hidden = true;
  ui.empty.hidden = true;
}

function startOver() {
  clear();
  view.loaded = true;
  loadPage(query({ limit: PAGE }));
}

async function loadPage(path) {
  const epoch = view.epoch;
  const started = performance.now();
  ui.more.disabled = true;
  ui.status.textContent = "Loading…";
  let page;
  try {
    page = await api(path);
  } catch (error) {
    if (epoch !== view.epoch) return;
    ui.status.textContent = `Could not load the deliveries: ${describe(error)}`;
    ui.more.disabled = false;
    return;
  }
  if (epoch !== view.epoch) return;
  const fetched = performance.now();
  const fragment = document.createDocumentFragment();
  for (const delivery of page.deliveries) {
    if (view.rows.has(delivery.guid)) continue;
    fragment.append(row(delivery));
    noteNewest(delivery);
  }
  ui.body.append(fragment);
  view.next = nextPath(page);
  renderCounts();
  void ui.body.offsetHeight; // lay the rows out before the clock stops
  const done = performance.now();
  view.timings.push({
    rows: page.deliveries.length,
    fetchMs: fetched - started,
    renderMs: done - fetched,
  });
  ui.status.textContent = "";
  ui.more.disabled = false;
}

// What arrived since the newest delivery shown goes on top (all pages of it).
async function poll() {
  if (!view.shown || !view.loaded || view.polling || view.filters.outcome === "rejected") return;
  const epoch = view.epoch;
  const since = view.newest ? new Date(Date.parse(view.newest) - 1).toISOString() : null;
  view.polling = (async () => {
    try {
      const fresh = [];
      let next = query({ limit: 500, since });
      for (let pages = 0; next && pages < 10 && epoch === view.epoch; pages += 1) {
        const page = await api(next);
        fresh.push(...page.deliveries);
        next = nextPath(page);
      }
      if (epoch !== view.epoch) return;
      const fragment = document.createDocumentFragment();
      for (const delivery of fresh) {
        const existing = view.rows.get(delivery.guid);
        if (existing) update(delivery);
        else fragment.append(row(delivery, true));
        noteNewest(delivery);
      }
      ui.body.prepend(fragment);
      renderCounts();
    } catch (error) {
      if (epoch === view.epoch) ui.status.textContent = `Could not refresh: ${describe(error)}`;
    } finally {
      if (epoch === view.epoch) view.polling = null;
    }
  })();
}

function noteNewest(delivery) {
  const at = delivery.received_at;
  if (at && (!view.newest || Date.parse(at) > Date.parse(view.newest))) view.newest = at;
}

function cells(d) {
  const outcome = el("td", { class: "nowrap" }, outcomeBadge(d.outcome));
  if (d.attempts > 1)
    outcome.append(" ", el("span", { class: "chip", text: `received ${d.attempts} times` }));
  const pr =
    d.repository && d.number
      ? el("a", {
          href: timelineHref(d.repository, d.number),
          text: `#${d.number}`,
          "aria-label": `Timeline of ${d.repository} pull request ${d.number}`,
        })
      : muted();
  return [
    el("td", { class: "nowrap" }, timeEl(d.received_at)),
    el(
      "td",
      { class: "nowrap" },
      d.event || "",
      d.action ? el("span", { class: "muted", text: ` ${d.action}` }) : null,
    ),
    el("td", { class: "nowrap", text: d.repository || "—" }),
    el("td", { class: "nowrap num" }, pr),
    outcome,
    el("td", {}, d.decision ? outcomeBadge(d.decision, "decision") : muted()),
    el("td", { class: "num", text: String(d.attempts ?? "") }),
    el("td", { class: "mono guid", title: d.guid, text: d.guid }),
  ];
}

function row(delivery, flash = false) {
  const tr = el("tr", { "data-guid": delivery.guid, "data-outcome": delivery.outcome || "" });
  tr.append(...cells(delivery));
  openableRow(tr, deliveryHref(delivery.guid));
  if (flash) tr.classList.add("flash");
  view.rows.set(delivery.guid, tr);
  return tr;
}

// A delivery changed (redelivered, received again): its row, if shown, says so.
export function update(delivery) {
  const tr = view.rows.get(delivery.guid);
  if (!tr) return;
  tr.dataset.outcome = delivery.outcome || "";
  tr.replaceChildren(...cells(delivery));
}

function renderCounts() {
  const shown = view.rows.size;
  ui.empty.hidden = shown > 0;
  ui.more.hidden = !view.next;
  ui.count.textContent = `${shown} shown${view.next ? ", more to load" : ""}`;
}

function readFilters() {
  const data = new FormData(ui.form);
  const filters = {};
  for (const name of ["event", "outcome", "repository", "number"]) {
    const value = String(data.get(name) || "").trim();
    if (value) filters[name] = value;
  }
  return filters;
}

ui.form.addEventListener("submit", (event) => {
  event.preventDefault();
  view.filters = readFilters();
  startOver();
});
ui.form.addEventListener("reset", () => {
  if (!view.shown) return; // reset() clearing the fields
  view.filters = {};
  startOver();
});
ui.more.addEventListener("click", () => view.next && loadPage(view.next));
wireOpenableRows(ui.body);
onBatch(() => view.shown && poll());
