// One PR's timeline (#/pulls/<owner>/<repo>/<n>): every observation applied to it,
// newest first, with where it came from, what was observed, the core's decision and
// what it changed. New observations are fetched when an event about the PR arrives,
// and every 10 s while the view is open (most observations change nothing, and so
// send no event).

import { api, describe, nextPath } from "./api.js";
import {
  $,
  badge,
  deliveryHref,
  el,
  muted,
  outcomeBadge,
  pullPath,
  safeUrl,
  timeEl,
} from "./dom.js";
import { onBatch } from "./stream.js";
import { taskAnchor } from "./state.js";

const POLL_MS = 10000;
const ui = {
  title: $("timeline-title"),
  count: $("timeline-count"),
  pr: $("timeline-pr"),
  list: $("timeline"),
  empty: $("timeline-empty"),
  more: $("timeline-more"),
  status: $("timeline-status"),
};
const view = {
  pull: null,
  next: null,
  newest: 0,
  ids: new Set(),
  shown: false,
  timer: null,
  epoch: 0,
};

const apiPath = ({ repository, number }) => `/api/pulls/${pullPath(repository, number)}/timeline`;

export function show(params) {
  const same =
    view.pull && view.pull.repository === params.repository && view.pull.number === params.number;
  view.shown = true;
  if (!same) {
    reset();
    view.pull = { repository: params.repository, number: params.number };
    ui.title.textContent = `Timeline of ${params.repository}#${params.number}`;
    load(`${apiPath(view.pull)}?limit=50`, "replace");
  } else {
    load(`${apiPath(view.pull)}?limit=50`, "newer");
  }
  clearInterval(view.timer);
  view.timer = setInterval(() => load(`${apiPath(view.pull)}?limit=50`, "newer"), POLL_MS);
  return null;
}

export function hide() {
  view.shown = false;
  clearInterval(view.timer);
}

export function reset() {
  hide();
  view.epoch += 1;
  Object.assign(view, { pull: null, next: null, newest: 0 });
  view.ids.clear();
  ui.list.replaceChildren();
  ui.pr.replaceChildren();
  ui.count.textContent = "";
  ui.status.textContent = "";
  ui.more.hidden = true;
  ui.empty.hidden = true;
}

// mode: "replace" (first page), "older" (the `next` page), "newer" (the first page
// again: what is not shown yet goes on top).
async function load(path, mode) {
  const epoch = view.epoch;
  ui.status.textContent = mode === "newer" ? "" : "Loading…";
  let page;
  try {
    page = await api(path);
  } catch (error) {
    if (epoch !== view.epoch) return;
    const gone = error.status === 404;
    ui.status.textContent = gone ? "" : `Could not load the timeline: ${describe(error)}`;
    if (gone) {
      ui.empty.hidden = false;
      ui.empty.textContent = "This pull request was never observed.";
    }
    return;
  }
  if (epoch !== view.epoch) return;
  ui.status.textContent = "";
  renderPull(page.pull_request);
  let fresh = page.observations.filter((o) => !view.ids.has(o.id));
  if (mode === "newer") fresh = fresh.filter((o) => o.id > view.newest);
  const items = fresh.map((o) => {
    view.ids.add(o.id);
    return observationItem(o, view.pull);
  });
  if (mode === "newer") ui.list.prepend(...items);
  else ui.list.append(...items);
  if (mode !== "newer") view.next = nextPath(page);
  for (const o of fresh) view.newest = Math.max(view.newest, o.id);
  ui.more.hidden = !view.next;
  ui.empty.hidden = view.ids.size > 0;
  ui.empty.textContent = "No observations.";
  ui.count.textContent = `${view.ids.size} shown${view.next ? ", more below" : ""}`;
}

function renderPull(pr) {
  if (!pr) {
    ui.pr.replaceChildren(muted("Not stored (never tracked)."));
    return;
  }
  const url = safeUrl(pr.url);
  ui.pr.replaceChildren(
    el(
      "p",
      { class: "pr-summary" },
      badge(pr.status),
      " ",
      pr.draft ? el("span", { class: "badge draft", text: "draft" }) : null,
      " ",
      el("strong", { text: pr.title || "" }),
      " ",
      url
        ? el("a", { href: url, target: "_blank", rel: "noopener noreferrer", text: "on GitHub" })
        : null,
      pr.task_id ? " · " : null,
      pr.task_id ? el("a", { href: `#${taskAnchor(pr.task_id)}`, text: "its task" }) : null,
    ),
  );
}

const arrow = (from, to) =>
  el("span", { class: "transition" }, badge(from || "none"), " → ", badge(to));

// One observation as a list item; also used by a delivery's "what it changed".
export function observationItem(o, pull) {
  const changes = o.changes || {};
  const facts = el("dl", { class: "facts compact" });
  const fact = (name, ...value) => facts.append(el("dt", { text: name }), el("dd", {}, ...value));
  const observed = o.observed || {};
  fact("Observed", badge(observed.status), " updated ", timeEl(observed.updated_at));
  fact("Decision", outcomeBadge(o.decision, "decision"));
  if (changes.pr) fact("PR", arrow(changes.pr.from, changes.pr.to));
  if (changes.task) {
    fact(
      "Task",
      el("a", {
        href: `#${taskAnchor(changes.task.id)}`,
        class: "mono",
        text: String(changes.task.id).slice(0, 8),
      }),
      " ",
      arrow(changes.task.from, changes.task.to),
    );
  }
  const followUps = changes.follow_ups || [];
  if (followUps.length)
    fact("Follow-ups", ...followUps.map((f) => el("span", { class: "chip", text: f })));
  const ids = changes.event_ids || [];
  if (ids.length)
    fact("Events", el("span", { class: "mono", text: ids.map((id) => `#${id}`).join(", ") }));
  const repository = o.repository || (pull && pull.repository);
  const number = o.number || (pull && pull.number);
  const head = el(
    "p",
    { class: "obs-head" },
    timeEl(o.applied_at),
    " ",
    el("span", { class: `chip source-${String(o.source).toLowerCase()}`, text: o.source || "?" }),
    o.delivery_guid
      ? el("a", {
          href: deliveryHref(o.delivery_guid),
          class: "mono",
          text: `delivery ${o.delivery_guid.slice(0, 13)}…`,
          "aria-label": `Delivery ${o.delivery_guid}`,
        })
      : null,
    repository && number && !pull
      ? el("span", { class: "mono", text: ` ${repository}#${number}` })
      : null,
  );
  return el(
    "li",
    { class: `obs decision-${String(o.decision).toLowerCase()}`, "data-id": String(o.id) },
    head,
    facts,
  );
}

ui.more.addEventListener("click", () => view.next && load(view.next, "older"));

onBatch((batch) => {
  if (!view.shown || !view.pull) return;
  const mine =
    batch.length === 0 ||
    batch.some((e) => e.repository === view.pull.repository && e.pr_number === view.pull.number);
  if (mine) load(`${apiPath(view.pull)}?limit=50`, "newer");
});
