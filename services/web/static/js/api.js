// The API from the browser: the login's tokens in sessionStorage (gone when the tab closes),
// the access token refreshed a minute before it expires, one refresh at a time (a refresh
// token used twice ends the session), and a 401 that a refresh cannot cure sends the person
// back to the login form.

const ACCESS = "anxin.access";
const REFRESH = "anxin.refresh";
const EXPIRES_AT = "anxin.expiresAt";
const LIFETIME = "anxin.lifetime";

const endListeners = new Set();
let refreshing = null;
let timer = null;

/** An answer that was not a success; ``problems`` are sentences to show the person. */
export class ApiError extends Error {
  constructor(status, detail) {
    const problems = problemsOf(detail);
    super(problems.join("; ") || `HTTP ${status}`);
    this.status = status;
    this.problems = problems;
  }
}

/** The API's error bodies as sentences: a string, {"problems": [...]}, or FastAPI's field
 * errors ([{loc, msg}, ...]). */
export function problemsOf(detail) {
  if (detail == null) return [];
  if (typeof detail === "string") return [detail];
  if (Array.isArray(detail)) {
    return detail.map((e) => {
      const where = (e.loc || []).filter((p) => p !== "body").join(".");
      return where ? `${where}: ${e.msg}` : String(e.msg);
    });
  }
  if (Array.isArray(detail.problems)) return detail.problems.map(String);
  return [JSON.stringify(detail)];
}

const store = sessionStorage;

export function loggedIn() {
  return Boolean(store.getItem(REFRESH));
}

export function accessToken() {
  return store.getItem(ACCESS);
}

export function onSessionEnd(listener) {
  endListeners.add(listener);
}

function keep(tokens) {
  const lifetime = tokens.expires_in * 1000;
  store.setItem(ACCESS, tokens.access_token);
  store.setItem(REFRESH, tokens.refresh_token);
  store.setItem(EXPIRES_AT, String(Date.now() + lifetime));
  store.setItem(LIFETIME, String(lifetime));
  scheduleRefresh();
}

function margin() {
  return Math.min(60_000, Number(store.getItem(LIFETIME) || 0) / 4);
}

/** Refresh a minute (or a quarter of the lifetime) before the access token expires. */
export function scheduleRefresh() {
  clearTimeout(timer);
  if (!loggedIn()) return;
  const due = Number(store.getItem(EXPIRES_AT) || 0) - margin() - Date.now();
  timer = setTimeout(() => refresh().catch(() => {}), Math.max(1000, due));
}

export async function login(email, password) {
  const response = await fetch("/v1/auth/login", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ email, password }),
  });
  const body = await response.json().catch(() => null);
  if (!response.ok) throw new ApiError(response.status, body?.detail);
  keep(body);
}

export function refresh() {
  refreshing ??= (async () => {
    const token = store.getItem(REFRESH);
    if (!token) throw new ApiError(401, "log in again");
    const response = await fetch("/v1/auth/refresh", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ refresh_token: token }),
    });
    const body = await response.json().catch(() => null);
    if (!response.ok) {
      endSession();
      throw new ApiError(401, body?.detail);
    }
    keep(body);
  })().finally(() => {
    refreshing = null;
  });
  return refreshing;
}

/** A usable access token now: refreshed first when it is about to expire. */
export async function freshToken() {
  if (!loggedIn()) throw new ApiError(401, "log in");
  if (Number(store.getItem(EXPIRES_AT) || 0) - Date.now() < 5000) await refresh();
  return accessToken();
}

export function endSession() {
  const was = loggedIn();
  clearTimeout(timer);
  for (const key of [ACCESS, REFRESH, EXPIRES_AT, LIFETIME]) store.removeItem(key);
  if (was) for (const listener of endListeners) listener();
}

export async function logout() {
  try {
    await fetch("/v1/auth/logout", {
      method: "POST",
      headers: { Authorization: `Bearer ${accessToken()}` },
    });
  } catch {
    // the session ends here whatever the server heard
  }
  endSession();
}

/** Call the API as the logged-in person; JSON in, JSON out; throws ApiError. */
export async function api(method, path, body) {
  for (let attempt = 0; ; attempt += 1) {
    const headers = { Authorization: `Bearer ${await freshToken()}` };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const response = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    if (response.status === 401 && attempt === 0) {
      await refresh(); // ends the session and throws when it cannot
      continue;
    }
    if (response.status === 401) endSession();
    if (response.status === 204) return null;
    const data = await response.json().catch(() => null);
    if (!response.ok) throw new ApiError(response.status, data?.detail);
    return data;
  }
}
