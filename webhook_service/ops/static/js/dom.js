// Small DOM helpers shared by every view. Untrusted text only ever goes in through
// textContent or attributes (never innerHTML), so a payload cannot inject markup.

export const $ = (id) => document.getElementById(id);

export function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(props)) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "class") node.className = value;
    else if (name === "text") node.textContent = value;
    else if (name.startsWith("data-") || name.startsWith("aria-") || name === "role")
      node.setAttribute(name, value);
    else node[name] = value;
  }
  for (const child of children) {
    if (child !== null && child !== undefined && child !== false) {
      node.append(typeof child === "string" ? document.createTextNode(child) : child);
    }
  }
  return node;
}

export const anchorId = (prefix, text) =>
  `${prefix}-${String(text).replace(/[^A-Za-z0-9_-]/g, "-")}`;

export function safeUrl(url) {
  return typeof url === "string" && /^https?:\/\//i.test(url) ? url : null;
}

export function latest(...stamps) {
  let best = null;
  for (const stamp of stamps) {
    if (!stamp) continue;
    const ms = Date.parse(stamp);
    if (!Number.isNaN(ms) && (best === null || ms > best.ms)) best = { ms, stamp };
  }
  return best;
}

export function relative(ms) {
  const seconds = Math.round((Date.now() - ms) / 1000);
  if (seconds < -5) return `in ${Math.max(1, Math.round(-seconds / 60))} min`;
  if (seconds < 5) return "just now";
  if (seconds < 60) return `${seconds} s ago`;
  const minutes = Math.round(seconds / 60);
  if (minutes < 60) return `${minutes} min ago`;
  const hours = Math.round(minutes / 60);
  if (hours < 48) return `${hours} h ago`;
  return new Date(ms).toISOString().slice(0, 10);
}

// A <time> that says "3 min ago" and keeps saying it (tickTimes), the exact time on hover.
export function timeEl(...stamps) {
  const best = latest(...stamps);
  if (best === null) return el("span", { class: "muted", text: "—" });
  const when = new Date(best.ms);
  return el("time", {
    dateTime: when.toISOString(),
    title: when.toLocaleString(),
    "data-ms": String(best.ms),
    text: relative(best.ms),
  });
}

export function timeCell(...stamps) {
  const time = timeEl(...stamps);
  return time.tagName === "TIME" ? el("td", { class: "nowrap" }, time) : el("td", {}, time);
}

export function tickTimes() {
  for (const node of document.querySelectorAll("time[data-ms]")) {
    node.textContent = relative(Number(node.dataset.ms));
  }
}

const slug = (text) =>
  String(text)
    .toLowerCase()
    .replace(/[^a-z_]/g, "");

export function badge(status) {
  const text = status || "UNKNOWN";
  return el("span", { class: `badge status-${slug(text)}`, text });
}

// A delivery's outcome (applied, stale, ignored, failed, rejected) or a decision.
export function outcomeBadge(outcome, kind = "outcome") {
  const text = outcome || "—";
  return el("span", { class: `badge ${kind}-${slug(text)}`, text });
}

export const muted = (text = "—") => el("span", { class: "muted", text });

// Put `cells` into the row for `key`: the existing <tr> is updated in place, a new
// one is inserted at its sorted position.
export function upsertRow(body, rows, key, props, cells, sortKey, flash) {
  let row = rows.get(key);
  if (!row) {
    row = el("tr");
    let before = null;
    for (const other of body.children) {
      if (compare(sortKey, other._sortKey) < 0) {
        before = other;
        break;
      }
    }
    body.insertBefore(row, before);
    rows.set(key, row);
  }
  row._sortKey = sortKey;
  for (const [name, value] of Object.entries(props)) {
    if (value === null || value === undefined) row.removeAttribute(name);
    else row.setAttribute(name, value);
  }
  row.replaceChildren(...cells);
  if (flash) {
    row.classList.remove("flash");
    void row.offsetWidth; // restart the animation
    row.classList.add("flash");
  }
  return row;
}

export function compare(a, b) {
  for (let i = 0; i < a.length; i += 1) {
    if (a[i] < b[i]) return -1;
    if (a[i] > b[i]) return 1;
  }
  return 0;
}

// Rows that open something: focusable, Enter or a click opens `href`, arrow keys move
// between rows. A click or Enter on a link or button inside keeps its own meaning.
export function openableRow(row, href, label) {
  row.tabIndex = 0;
  row.classList.add("openable");
  row.dataset.href = href;
  if (label) row.setAttribute("aria-label", label);
}

export function wireOpenableRows(tbody) {
  const open = (row) => {
    if (!row || !row.dataset.href) return;
    tbody.lastOpened = row;
    location.hash = row.dataset.href;
  };
  tbody.addEventListener("click", (event) => {
    if (event.target.closest("a, button")) return;
    open(event.target.closest("tr.openable"));
  });
  tbody.addEventListener("keydown", (event) => {
    const row = event.target;
    if (!(row instanceof HTMLTableRowElement) || !row.classList.contains("openable")) return;
    if (event.key === "Enter") {
      event.preventDefault();
      open(row);
    } else if (event.key === "ArrowDown" || event.key === "ArrowUp") {
      event.preventDefault();
      let next = event.key === "ArrowDown" ? row.nextElementSibling : row.previousElementSibling;
      while (next && next.hidden) {
        next = event.key === "ArrowDown" ? next.nextElementSibling : next.previousElementSibling;
      }
      if (next) next.focus();
    }
  });
}

// The row opened last, to take the focus back to when its list is shown again.
export const lastOpened = (tbody) =>
  tbody.lastOpened && tbody.lastOpened.isConnected && !tbody.lastOpened.hidden
    ? tbody.lastOpened
    : null;

export function pullPath(repository, number) {
  const [owner, name] = repository.split("/");
  return `${encodeURIComponent(owner)}/${encodeURIComponent(name)}/${number}`;
}

export const timelineHref = (repository, number) => `#/pulls/${pullPath(repository, number)}`;
export const deliveryHref = (guid) => `#/deliveries/${encodeURIComponent(guid)}`;
