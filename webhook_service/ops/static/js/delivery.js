// One delivery (#/deliveries/<guid>): what it was, its headers (the secret ones as
// the server redacted them), its body in a JSON viewer, what it changed (the
// observations it led to, with links to the PR's timeline) and a Redeliver button,
// which runs the stored delivery through the core again (not offered to a read-only
// token). Escape goes back to the list (router.js).

import { ReadOnly, api, auth, describe, post } from "./api.js";
import { update } from "./deliveries.js";
import { $, el, muted, outcomeBadge, timeEl, timelineHref } from "./dom.js";
import { jsonView, setAll } from "./json_view.js";
import { observationItem } from "./timeline.js";

const ui = { title: $("delivery-title"), body: $("delivery-body") };
const view = { guid: null, epoch: 0 };
const REDACTED = "[redacted]";

export function show(params) {
  if (params.guid !== view.guid) {
    view.guid = params.guid;
    load();
  }
  return null;
}

export function hide() {}

export function reset() {
  view.epoch += 1;
  view.guid = null;
  ui.body.replaceChildren();
  ui.title.textContent = "Delivery";
}

async function load() {
  const epoch = ++view.epoch;
  const guid = view.guid;
  ui.title.replaceChildren("Delivery ", el("code", { text: guid }));
  ui.body.replaceChildren(el("p", { class: "muted", role: "status", text: "Loading…" }));
  let delivery;
  try {
    delivery = await api(`/api/deliveries/${encodeURIComponent(guid)}`);
  } catch (error) {
    if (epoch !== view.epoch) return;
    const text = error.status === 404 ? "No delivery with this GUID is stored." : describe(error);
    ui.body.replaceChildren(el("p", { class: "notice", role: "alert", text }));
    return;
  }
  if (epoch !== view.epoch) return;
  update(delivery);
  ui.body.replaceChildren(
    facts(delivery),
    actions(delivery),
    section("What it changed", changes(delivery)),
    section("Headers", headers(delivery.headers)),
    section("Body", body(delivery)),
  );
}

function section(title, ...content) {
  return el("section", { class: "detail-part" }, el("h3", { text: title }), ...content);
}

function facts(d) {
  const list = el("dl", { class: "facts" });
  const fact = (name, ...value) => list.append(el("dt", { text: name }), el("dd", {}, ...value));
  fact(
    "Event",
    d.event || "—",
    d.action ? el("span", { class: "muted", text: ` (${d.action})` }) : null,
  );
  fact("Repository", d.repository || muted());
  fact(
    "Pull request",
    d.repository && d.number
      ? el("a", { href: timelineHref(d.repository, d.number), text: `#${d.number} — timeline` })
      : muted(),
  );
  fact(
    "Outcome",
    outcomeBadge(d.outcome),
    d.attempts > 1 ? el("span", { class: "chip", text: `received ${d.attempts} times` }) : null,
  );
  fact("Decision", d.decision ? outcomeBadge(d.decision, "decision") : muted());
  fact("Attempts", String(d.attempts ?? "—"));
  fact(
    "Received",
    timeEl(d.received_at),
    d.received_at ? el("span", { class: "muted mono", text: ` ${d.received_at}` }) : null,
  );
  fact("Processed", timeEl(d.processed_at));
  if (d.detail) fact("Detail", el("span", { text: d.detail }));
  return list;
}

function actions(d) {
  const result = el("div", { class: "redeliver-result", role: "status", "aria-live": "polite" });
  const button = el("button", {
    type: "button",
    class: "write",
    text: "Redeliver",
    title: "Run the stored delivery through the core again",
  });
  button.disabled = auth.readOnly;
  button.addEventListener("click", async () => {
    button.disabled = true;
    result.replaceChildren(muted("Redelivering…"));
    try {
      const answer = await post(`/api/deliveries/${encodeURIComponent(d.guid)}/redeliver`);
      const list = el(
        "ol",
        { class: "timeline" },
        ...(answer.changes || []).map((o) => observationItem(o, null)),
      );
      result.replaceChildren(
        el(
          "p",
          {},
          "Redelivered: outcome ",
          outcomeBadge(answer.outcome),
          ", decision ",
          answer.decision ? outcomeBadge(answer.decision, "decision") : muted(),
        ),
        list,
      );
      result.dataset.outcome = answer.outcome || "";
      refreshRow(d.guid);
    } catch (error) {
      const readOnly = error instanceof ReadOnly;
      result.replaceChildren(
        el("p", {
          class: readOnly ? "notice" : "notice error",
          text: readOnly
            ? "This token is read-only: it cannot redeliver."
            : `Redeliver failed: ${describe(error)}`,
        }),
      );
      result.dataset.outcome = readOnly ? "read-only" : "error";
    } finally {
      button.disabled = auth.readOnly;
    }
  });
  return el("div", { class: "actions" }, button, result);
}

async function refreshRow(guid) {
  try {
    update(await api(`/api/deliveries/${encodeURIComponent(guid)}`));
  } catch (_) {
    // the list shows what it had; the next refresh will tell
  }
}

function changes(d) {
  const observations = d.changes || [];
  if (!observations.length) return muted("Nothing: no observation was applied from it.");
  return el("ol", { class: "timeline" }, ...observations.map((o) => observationItem(o, null)));
}

function headers(recorded) {
  const pairs = Array.isArray(recorded) ? recorded : Object.entries(recorded || {});
  if (!pairs.length) return muted("None recorded.");
  const rows = pairs.map(([name, value]) =>
    el(
      "tr",
      {},
      el("th", { scope: "row", class: "mono", text: name }),
      el(
        "td",
        { class: "mono" },
        value === REDACTED
          ? el("span", { class: "badge redacted", text: "redacted", title: "Not shown: a secret" })
          : String(value),
      ),
    ),
  );
  return el(
    "div",
    { class: "table-wrap" },
    el(
      "table",
      { class: "grid headers", "aria-label": "Headers" },
      el(
        "thead",
        {},
        el(
          "tr",
          {},
          el("th", { scope: "col", text: "Name" }),
          el("th", { scope: "col", text: "Value" }),
        ),
      ),
      el("tbody", {}, ...rows),
    ),
  );
}

function body(d) {
  if (d.body === undefined || d.body === null) {
    if (typeof d.body_text === "string")
      return el("pre", { class: "body-text", text: d.body_text });
    return muted("No body stored.");
  }
  const viewer = jsonView(d.body, "body");
  const expand = el("button", { type: "button", class: "secondary small", text: "Expand all" });
  const collapse = el("button", { type: "button", class: "secondary small", text: "Collapse all" });
  expand.addEventListener("click", () => setAll(viewer, true));
  collapse.addEventListener("click", () => setAll(viewer, false));
  return el("div", {}, el("div", { class: "json-tools" }, expand, " ", collapse), viewer);
}

auth.listeners.add(() => {
  for (const button of ui.body.querySelectorAll("button.write")) button.disabled = auth.readOnly;
});
