// The HTTP API, with the token as `Authorization: Bearer`. A 401 is the token refused
// (the console asks for another); a 403 on a write is a read-only token
// (DASHBOARD_TOKEN), which the console then remembers and stops offering writes.

export class Refused extends Error {}
export class HttpError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}
export class ReadOnly extends HttpError {}

export const auth = {
  token: null,
  readOnly: false, // learnt from a 403 to a write
  listeners: new Set(), // called with readOnly whenever it changes
  onRefused: () => {}, // set by the entry module: ask for another token
  onAccepted: () => {}, // set by the entry module: the stream took the token
};

export function setReadOnly(value) {
  if (auth.readOnly === value) return;
  auth.readOnly = value;
  for (const listener of auth.listeners) listener(value);
}

async function request(method, path, body) {
  const headers = { Authorization: `Bearer ${auth.token}`, Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
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
    if (response.status === 403 && method !== "GET") {
      setReadOnly(true);
      throw new ReadOnly(403, message);
    }
    throw new HttpError(response.status, message);
  }
  return response.json();
}

export const api = (path) => request("GET", path);
export const post = (path, body) => request("POST", path, body);

// A `next` from the server is followed only when it is a path of this API.
export const nextPath = (page) =>
  typeof page.next === "string" && page.next.startsWith("/api/") ? page.next : null;

// Every row of a list: the pages are followed through `next` until it is null or
// `alive()` says the caller no longer wants them.
export async function apiAll(path, key, alive) {
  const rows = [];
  let next = path;
  while (next && alive()) {
    const page = await api(next);
    for (const row of page[key]) rows.push(row);
    next = nextPath(page);
  }
  return rows;
}

// What a view shows when a request failed; a refused token goes back to the form.
export function describe(error) {
  if (error instanceof Refused) {
    auth.onRefused();
    return "The token was refused.";
  }
  if (error instanceof ReadOnly) return `Read-only token: ${error.message}`;
  return error && error.message ? error.message : String(error);
}
