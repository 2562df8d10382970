// The live dashboard of webhook-service: plain ES2020, no framework, no build step.
//
// Data flow:
//   * The API token is asked once and kept in localStorage ("Forget token" drops it);
//     /#token=... gives it once, and is cleared from the address bar.
//   * Socket.IO connects with auth {token, batch: true, since: lastEventId}; `auth` is a function,
//     which the v4 client calls before every connection attempt, reconnections
//     included, so each one resumes from the last event applied. The server replays
//     stored events after `since`, then streams live ones.
//   * Without a cursor (first connection, nothing received yet) and on
//     `resync_required`, the lists are (re)loaded from the HTTP API, every page of
//     them (each answer's `next` until it is null). Events arriving while a load is
//     in flight are kept and applied after it, in order.
//   * Events come in batches (`events`: a list, in id order, at most 20 per second),
//     so a busy service costs the page one message per batch, not one per event.
//   * Events are at least once: any event_id <= lastEventId is a repeat and dropped.
//   * The repository filter hides other rows and subscribes the socket to that
//     repository; widening it again reloads the lists (the narrowed stream skipped
//     other repositories' events).
"use strict";

(() => {
  const TOKEN_KEY = "webhook-service.dashboard.token";
  const FILTER_KEY = "webhook-service.dashboard.repository";
  const RETRY_MS = 5000;
  const PAGE_SIZE = 5000; // rows per request while loading the lists (the API's maximum)
  const ASK =
    "Enter the service's API token (API_TOKEN). It is kept in this browser's local storage.";

  const $ = (id) => document.getElementById(id);
  const ui = {
    tokenPanel: $("token-panel"),
    tokenForm: $("token-form"),
    tokenInput: $("token-input"),
    tokenMessage: $("token-message"),
    content: $("content"),
    notice: $("notice"),
    forget: $("forget-token"),
    filter: $("repo-filter"),
    filterLabel: document.querySelector("label.filter"),
    conn: $("connection"),
    connText: $("connection-text"),
    cursor: $("cursor"),
    pullsBody: document.querySelector("#pulls tbody"),
    tasksBody: document.querySelector("#tasks tbody"),
    pullsEmpty: $("pulls-empty"),
    tasksEmpty: $("tasks-empty"),
    pullsCount: $("pulls-count"),
    tasksCount: $("tasks-count"),
  };

  class Refused extends Error {}
  class HttpError extends Error {
    constructor(status, message) {
      super(message);
      this.status = status;
    }
  }

  const state = {
    session: 0, // bumped on every start/stop: callbacks of an older session are ignored
    token: null,
    socket: null,
    everConnected: false,
    reconnectAttempt: 0,
    refused: false,
    problem: null, // a connection problem to show, other than a refused token
    pulls: new Map(), // "owner/name#number" -> pull request
    tasks: new Map(), // task id -> task
    pullRows: new Map(),
    taskRows: new Map(),
    lastEventId: null, // highest event_id applied
    loading: null, // the promise of a list (re)load in flight
    loadReason: null,
    reloadAgain: false,
    pending: [], // events received while loading
    generation: 0, // bumped by every completed (re)load
    refreshing: new Map(), // key -> {again} for row refreshes in flight
    filter: "",
    subscribed: null, // the repository the server narrowed this connection's stream to
    retryTimer: null,
  };

  // ------------------------------------------------------------------ helpers --

  const prKey = (repository, number) => `${repository}#${number}`;
  const anchorId = (prefix, text) => `${prefix}-${String(text).replace(/[^A-Za-z0-9_-]/g, "-")}`;
  const prAnchor = (pr) => anchorId("pr", `${pr.repository}-${pr.number}`);
  const taskAnchor = (taskId) => anchorId("task", taskId);

  function el(tag, props = {}, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(props)) {
      if (value === undefined || value === null || value === false) continue;
      if (name === "class") node.className = value;
      else if (name === "text") node.textContent = value;
      else if (name.startsWith("data-") || name.startsWith("aria-")) node.setAttribute(name, value);
      else node[name] = value;
    }
    for (const child of children) {
      if (child !== null && child !== undefined) {
        node.append(typeof child === "string" ? document.createTextNode(child) : child);
      }
    }
    return node;
  }

  function safeUrl(url) {
    return typeof url === "string" && /^https?:\/\//i.test(url) ? url : null;
  }

  function latest(...stamps) {
    let best = null;
    for (const stamp of stamps) {
      if (!stamp) continue;
      const ms = Date.parse(stamp);
      if (!Number.isNaN(ms) && (best === null || ms > best.ms)) best = { ms, stamp };
    }
    return best;
  }

  function relative(ms) {
    const seconds = Math.round((Date.now() - ms) / 1000);
    if (seconds < 5) return "just now";
    if (seconds < 60) return `${seconds} s ago`;
    const minutes = Math.round(seconds / 60);
    if (minutes < 60) return `${minutes} min ago`;
    const hours = Math.round(minutes / 60);
    if (hours < 48) return `${hours} h ago`;
    return new Date(ms).toISOString().slice(0, 10);
  }

  function timeCell(...stamps) {
    const best = latest(...stamps);
    if (best === null) return el("td", { class: "muted", text: "—" });
    const when = new Date(best.ms);
    return el(
      "td",
      { class: "nowrap" },
      el("time", {
        dateTime: when.toISOString(),
        title: when.toLocaleString(),
        "data-ms": String(best.ms),
        text: relative(best.ms),
      }),
    );
  }

  function badge(status) {
    const text = status || "UNKNOWN";
    return el("span", {
      class: `badge status-${text.toLowerCase().replace(/[^a-z_]/g, "")}`,
      text,
    });
  }

  // ---------------------------------------------------------------------- API --

  async function api(path) {
    const response = await fetch(path, {
      headers: { Authorization: `Bearer ${state.token}`, Accept: "application/json" },
      cache: "no-store",
      credentials: "omit",
    });
    if (response.status === 401) throw new Refused("unauthorized");
    if (!response.ok) {
      let message = `HTTP ${response.status}`;
      try {
        message = (await response.json()).error || message;
      } catch (_) {
        // not JSON: keep the status
      }
      throw new HttpError(response.status, message);
    }
    return response.json();
  }

  // Every row of a list: the pages are followed through `next` (a path on this
  // server), until it is null or the session ends.
  async function apiAll(path, key, session) {
    const rows = [];
    let next = path;
    while (next && session === state.session) {
      const page = await api(next);
      for (const row of page[key]) rows.push(row);
      next = typeof page.next === "string" && page.next.startsWith("/api/") ? page.next : null;
    }
    return rows;
  }

  const pullPath = (repository, number) => {
    const [owner, name] = repository.split("/");
    return `/api/pulls/${encodeURIComponent(owner)}/${encodeURIComponent(name)}/${number}`;
  };

  // --------------------------------------------------------------- the lists --

  // (Re)load both lists. Events arriving meanwhile wait in state.pending and are
  // applied, in order, on top of the fresh lists.
  function reload(reason) {
    if (state.loading) {
      state.reloadAgain = true;
      state.loadReason = reason === "resync" ? reason : state.loadReason;
      renderConnection();
      return state.loading;
    }
    const session = state.session;
    state.loadReason = reason;
    state.loading = (async () => {
      let failed = null;
      try {
        do {
          state.reloadAgain = false;
          const [pulls, tasks] = await Promise.all([
            apiAll(`/api/pulls?limit=${PAGE_SIZE}`, "pulls", session),
            apiAll(`/api/tasks?limit=${PAGE_SIZE}`, "tasks", session),
          ]);
          if (session !== state.session) return;
          replaceLists(pulls, tasks);
        } while (state.reloadAgain && session === state.session);
      } catch (error) {
        failed = error;
      }
      if (session !== state.session) return;
      state.loading = null;
      state.loadReason = null;
      const pending = state.pending;
      state.pending = [];
      for (const event of pending) apply(event);
      if (failed instanceof Refused) {
        refuse();
        return;
      }
      if (failed) {
        showNotice(`Could not load the lists (${failed.message}); retrying…`);
        clearTimeout(state.retryTimer);
        state.retryTimer = setTimeout(() => session === state.session && reload(reason), RETRY_MS);
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
    state.pullRows.clear();
    state.taskRows.clear();
    ui.pullsBody.replaceChildren();
    ui.tasksBody.replaceChildren();
    for (const key of state.pulls.keys()) renderPull(key, false);
    for (const id of state.tasks.keys()) renderTask(id, false);
    refreshFilterOptions();
    applyFilter();
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
              ? pullPath(before.repository, before.number)
              : `/api/tasks/${encodeURIComponent(key)}`,
          );
        } catch (error) {
          if (session !== state.session) return;
          if (error instanceof Refused) refuse();
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

  // ------------------------------------------------------------------- events --

  function onEvent(event) {
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
    ui.cursor.textContent = `Last event #${state.lastEventId} at ${new Date().toLocaleTimeString()}`;
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

  // ------------------------------------------------------------------ rendering --

  function pullSort(pr) {
    // Repository A→Z, then newest PR first.
    return [pr.repository.toLowerCase(), -pr.number];
  }

  function taskSort(task) {
    // Newest task first, then by title.
    return [-(Date.parse(task.created_at || "") || Number.MAX_SAFE_INTEGER), task.title || ""];
  }

  function compare(a, b) {
    for (let i = 0; i < a.length; i += 1) {
      if (a[i] < b[i]) return -1;
      if (a[i] > b[i]) return 1;
    }
    return 0;
  }

  // Put `cells` into the row for `key`: the existing <tr> is updated in place, a new
  // one is inserted at its sorted position.
  function upsertRow(body, rows, key, props, cells, sortKey, flash) {
    let row = rows.get(key);
    if (!row) {
      row = el("tr");
      row._sortKey = sortKey;
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

  function renderPull(key, flash) {
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
    const title =
      pr._placeholder && !pr.title
        ? el("span", { class: "muted", text: "loading…" })
        : pr.title || "";
    upsertRow(
      ui.pullsBody,
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
        el(
          "td",
          {},
          pr.draft
            ? el("span", { class: "badge draft", text: "draft" })
            : el("span", { class: "muted", text: "—" }),
        ),
        taskCell,
        timeCell(pr.github_updated_at, pr._eventAt),
        el("td", { class: "muted nowrap", text: pr.last_source || "—" }),
      ],
      pullSort(pr),
      flash,
    );
  }

  function renderTask(id, flash) {
    const task = state.tasks.get(id);
    if (!task) return;
    const linked = [...state.pulls.values()].filter((pr) => pr.task_id === id);
    linked.sort((a, b) => compare(pullSort(a), pullSort(b)));
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
    const title =
      task._placeholder && !task.title
        ? el("span", { class: "muted", text: "loading…" })
        : task.title;
    upsertRow(
      ui.tasksBody,
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

  // A PR's task cell shows the task's title: redraw those of one task.
  function renderPullsOfTask(id) {
    for (const [key, pr] of state.pulls) if (pr.task_id === id) renderPull(key, false);
  }

  function tickTimes() {
    for (const node of document.querySelectorAll("time[data-ms]")) {
      node.textContent = relative(Number(node.dataset.ms));
    }
  }

  // ------------------------------------------------------------------- filter --

  function repositories() {
    const names = new Set();
    for (const pr of state.pulls.values()) if (pr.repository) names.add(pr.repository);
    for (const task of state.tasks.values()) if (task.repository) names.add(task.repository);
    if (state.filter) names.add(state.filter);
    return [...names].sort((a, b) => a.localeCompare(b));
  }

  function refreshFilterOptions() {
    const names = repositories();
    const current = [...ui.filter.options].slice(1).map((option) => option.value);
    if (names.join("\n") !== current.join("\n")) {
      ui.filter.replaceChildren(
        el("option", { value: "", text: "All repositories" }),
        ...names.map((name) => el("option", { value: name, text: name })),
      );
    }
    ui.filter.value = state.filter;
    ui.filter.disabled = false;
  }

  function applyFilter() {
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
    const label = (shown, total, noun) =>
      shown === total ? `${total} ${noun}` : `${shown} of ${total} ${noun}`;
    ui.pullsCount.textContent = label(pulls, state.pullRows.size, "shown");
    ui.tasksCount.textContent = label(tasks, state.taskRows.size, "shown");
    ui.pullsEmpty.hidden = pulls > 0;
    ui.tasksEmpty.hidden = tasks > 0;
    ui.pullsEmpty.textContent = state.pullRows.size
      ? "No pull requests in this repository."
      : "No pull requests tracked yet.";
    ui.tasksEmpty.textContent = state.taskRows.size
      ? "No tasks in this repository."
      : "No tasks yet.";
  }

  // Narrow (subscribe) or widen (unsubscribe) this connection's stream; the server's
  // acknowledgement tells when it took effect (state.subscribed).
  function subscription(socket, action, repository) {
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

  function setFilter(repository) {
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

  // ---------------------------------------------------------------- connection --

  function renderConnection() {
    let mode;
    let text;
    const socket = state.socket;
    if (state.refused) {
      mode = "refused";
      text = "Token refused";
    } else if (!socket) {
      mode = "idle";
      text = "Not connected";
    } else if (socket.connected && state.loading && state.loadReason === "resync") {
      mode = "resync";
      text = "Resyncing…";
    } else if (socket.connected && state.loading && !state.everLoaded) {
      mode = "connecting";
      text = "Loading…";
    } else if (socket.connected) {
      mode = "live";
      text = "Live";
    } else if (state.everConnected) {
      mode = "reconnecting";
      text = state.reconnectAttempt
        ? `Reconnecting (attempt ${state.reconnectAttempt})…`
        : "Reconnecting…";
    } else {
      mode = "connecting";
      text = "Connecting…";
    }
    if (state.problem && mode !== "live" && mode !== "refused") text += ` — ${state.problem}`;
    ui.conn.dataset.state = mode;
    ui.connText.textContent = text;
  }

  function connect() {
    const session = state.session;
    const token = state.token;
    const socket = io({
      forceNew: true,
      // WebSocket first; long-polling only where a WebSocket cannot be opened.
      transports: ["websocket", "polling"],
      tryAllTransports: true,
      // Called before every connection attempt: reconnections resume from the last
      // event applied (the server replays the stored events after it).
      auth: (send) =>
        send(
          state.lastEventId === null
            ? { token, batch: true }
            : { token, batch: true, since: state.lastEventId },
        ),
      reconnectionDelay: 1000,
      reconnectionDelayMax: 10000,
      timeout: 10000,
    });
    state.socket = socket;
    const current = () => session === state.session;

    socket.on("connect", () => {
      if (!current()) return;
      state.everConnected = true;
      state.reconnectAttempt = 0;
      state.problem = null;
      state.subscribed = null; // a new connection starts with the whole stream
      if (state.filter) subscription(socket, "subscribe", state.filter);
      // No cursor: the server sends live events only, so the lists must come from the
      // API (the socket is already in its rooms, so nothing falls in between).
      if (state.lastEventId === null) {
        reload("initial").then(() => {
          state.everLoaded = true;
          renderConnection();
        });
      }
      renderConnection();
    });
    socket.on("connect_error", (error) => {
      if (!current()) return;
      if (/unauthori[sz]ed/i.test(error.message)) {
        refuse();
        return;
      }
      state.problem = error.message;
      if (!socket.active) {
        // The server refused for another reason (a bad `since`?): start over without
        // a cursor, after a pause.
        state.lastEventId = null;
        setTimeout(() => current() && socket.connect(), RETRY_MS);
      }
      renderConnection();
    });
    socket.on("disconnect", (reason) => {
      if (!current()) return;
      if (reason === "io server disconnect") socket.connect(); // not retried by itself
      renderConnection();
    });
    socket.io.on("reconnect_attempt", (attempt) => {
      if (!current()) return;
      state.reconnectAttempt = attempt;
      renderConnection();
    });
    socket.on("resync_required", (info) => {
      if (!current()) return;
      // Our cursor is older than what the server keeps: reload, and go on from the
      // server's newest event (the live stream continues after it).
      const newest = info && typeof info.last_event_id === "number" ? info.last_event_id : null;
      state.lastEventId = newest;
      reload("resync").then(() => {
        state.everLoaded = true;
        renderConnection();
      });
    });
    socket.on("events", (batch) => {
      if (!current() || !Array.isArray(batch)) return;
      for (const event of batch) onEvent(event);
    });
    renderConnection();
  }

  function stop() {
    state.session += 1;
    clearTimeout(state.retryTimer);
    if (state.socket) {
      state.socket.removeAllListeners();
      state.socket.io.removeAllListeners();
      state.socket.disconnect();
      state.socket = null;
    }
    Object.assign(state, {
      subscribed: null,
      everConnected: false,
      everLoaded: false,
      reconnectAttempt: 0,
      problem: null,
      lastEventId: null,
      loading: null,
      loadReason: null,
      reloadAgain: false,
      pending: [],
      pulls: new Map(),
      tasks: new Map(),
    });
    state.refreshing.clear();
    state.pullRows.clear();
    state.taskRows.clear();
    ui.pullsBody.replaceChildren();
    ui.tasksBody.replaceChildren();
    ui.cursor.textContent = "No events received yet";
  }

  function start(token) {
    stop();
    state.token = token;
    state.refused = false;
    localStorage.setItem(TOKEN_KEY, token);
    ui.tokenPanel.hidden = true;
    ui.content.hidden = false;
    ui.forget.hidden = false;
    ui.filterLabel.hidden = false;
    showNotice(null);
    connect();
  }

  function askForToken(message, refused) {
    ui.content.hidden = true;
    ui.forget.hidden = true;
    ui.tokenPanel.hidden = false;
    ui.tokenPanel.classList.toggle("refused", Boolean(refused));
    ui.tokenMessage.textContent = message;
    ui.tokenInput.value = "";
    ui.filter.disabled = true;
    ui.filterLabel.hidden = true;
    ui.tokenInput.focus();
    renderConnection();
  }

  function refuse() {
    stop();
    state.token = null;
    state.refused = true;
    localStorage.removeItem(TOKEN_KEY);
    askForToken("The server refused this token. Check API_TOKEN and enter it again.", true);
  }

  function forget() {
    stop();
    state.token = null;
    state.refused = false;
    localStorage.removeItem(TOKEN_KEY);
    askForToken(`Token forgotten. ${ASK}`, false);
  }

  function showNotice(message) {
    ui.notice.hidden = !message;
    ui.notice.textContent = message || "";
  }

  // ------------------------------------------------------------------- start --

  ui.tokenForm.addEventListener("submit", (event) => {
    event.preventDefault();
    const token = ui.tokenInput.value.trim();
    if (token) start(token);
  });
  ui.forget.addEventListener("click", forget);
  ui.filter.addEventListener("change", () => setFilter(ui.filter.value));
  setInterval(tickTimes, 15000);

  if (typeof io !== "function") {
    ui.conn.dataset.state = "refused";
    ui.connText.textContent = "The socket.io client did not load";
    return;
  }
  state.filter = localStorage.getItem(FILTER_KEY) || "";
  // A bookmark or a wall screen opens signed in with /#token=...: the token is taken
  // once, kept as if typed, and cleared from the address bar (and so from the history).
  const fromUrl = new URLSearchParams(location.hash.slice(1)).get("token");
  if (fromUrl !== null) {
    history.replaceState(null, "", location.pathname + location.search);
  }
  const saved = (fromUrl && fromUrl.trim()) || localStorage.getItem(TOKEN_KEY);
  if (saved) start(saved);
  else askForToken(ASK, false);

  // For debugging from the console (read-only use, please).
  window.webhookDashboard = { state, reload };
})();
