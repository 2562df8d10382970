// A readable, collapsible view of a JSON value. Objects and arrays are <details>
// (keyboard and screen reader friendly as they come); a branch's children are built
// only when it is first opened, so a 30 KB payload costs what is looked at. Every key
// and value goes in as text: a payload cannot inject markup.

import { el } from "./dom.js";

const OPEN_DEPTH = 1; // the top level and its children start open

export function jsonView(value, label = "body") {
  const root = el("div", { class: "json", role: "group", "aria-label": `JSON ${label}` });
  root.append(node(null, value, 0));
  return root;
}

function node(key, value, depth) {
  if (value !== null && typeof value === "object") return branch(key, value, depth);
  return el("div", { class: "json-leaf" }, keyLabel(key), scalar(value));
}

function keyLabel(key) {
  if (key === null) return null;
  return el(
    "span",
    { class: "json-key", text: typeof key === "number" ? `${key}` : `"${key}"` },
    ": ",
  );
}

function scalar(value) {
  if (value === null) return el("span", { class: "json-null", text: "null" });
  if (typeof value === "string")
    return el("span", { class: "json-string", text: JSON.stringify(value) });
  if (typeof value === "number") return el("span", { class: "json-number", text: String(value) });
  if (typeof value === "boolean") return el("span", { class: "json-bool", text: String(value) });
  return el("span", { text: String(value) });
}

function branch(key, value, depth) {
  const isArray = Array.isArray(value);
  const entries = isArray ? value.map((v, i) => [i, v]) : Object.entries(value);
  const [open, close] = isArray ? ["[", "]"] : ["{", "}"];
  if (entries.length === 0) {
    return el(
      "div",
      { class: "json-leaf" },
      keyLabel(key),
      el("span", { text: `${open}${close}` }),
    );
  }
  const n = entries.length;
  const size = isArray ? `${n} item${n === 1 ? "" : "s"}` : `${n} key${n === 1 ? "" : "s"}`;
  const details = el(
    "details",
    { class: "json-branch" },
    el("summary", {}, keyLabel(key), `${open} `, el("span", { class: "json-size", text: size })),
  );
  const body = el("div", { class: "json-children" });
  details.append(body, el("div", { class: "json-close", text: close }));
  let built = false;
  const build = () => {
    if (built) return;
    built = true;
    for (const [k, v] of entries) body.append(node(k, v, depth + 1));
  };
  details.addEventListener("toggle", () => details.open && build());
  if (depth <= OPEN_DEPTH) {
    build();
    details.open = true;
  }
  return details;
}

// Open or close every branch under `root` (opening builds the children first, so
// "expand all" goes all the way down).
export function setAll(root, open) {
  if (!open) {
    for (const details of root.querySelectorAll("details")) details.open = false;
    return;
  }
  let closed;
  while ((closed = root.querySelectorAll("details:not([open])")).length) {
    for (const details of closed) {
      details.open = true;
      details.dispatchEvent(new Event("toggle"));
    }
  }
}
