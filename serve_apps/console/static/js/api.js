// Pulse's HTTP APIs from the browser (same origin). Errors come in the one shape
// {"error": {"code", "message", "details"}} and are thrown as ApiError. The CMS tokens live in
// sessionStorage (gone with the tab); an access token that expired is refreshed once, silently, with the
// refresh token (POST /v1/cms/auth/refresh rotates it), and the request is sent again.

export class ApiError extends Error {
  constructor(status, code, message, details) {
    super(message || code || `HTTP ${status}`);
    this.status = status;
    this.code = code;
    this.details = details || [];
  }
}

const KEY = "pulse.tokens";
const listeners = new Set();

export function tokens() {
  try {
    return JSON.parse(sessionStorage.getItem(KEY) || "null");
  } catch {
    return null;
  }
}

function storeTokens(value) {
  if (value) sessionStorage.setItem(KEY, JSON.stringify(value));
  else sessionStorage.removeItem(KEY);
  for (const listener of listeners) listener(session());
}

export function onSession(listener) {
  listeners.add(listener);
}

// The signed-in user as the access token says ({id, role}); null when signed out.
export function session() {
  const tk = tokens();
  if (!tk) return null;
  try {
    const payload = JSON.parse(atob(tk.access_token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/")));
    return { id: Number(payload.sub), role: payload.role, email: tk.email };
  } catch {
    return null;
  }
}

async function parse(response) {
  if (response.status === 204 || response.status === 304) return null;
  const text = await response.text();
  let body = null;
  try {
    body = text ? JSON.parse(text) : null;
  } catch {
    body = null;
  }
  if (!response.ok) {
    const err = body && body.error ? body.error : {};
    throw new ApiError(response.status, err.code || `http_${response.status}`, err.message || `HTTP ${response.status} ${response.statusText}`.trim(), err.details);
  }
  return { body, etag: response.headers.get("ETag") };
}

async function send(method, path, { params, body, headers = {}, auth = false } = {}) {
  const url = new URL(path, window.location.origin);
  for (const [key, value] of Object.entries(params || {})) {
    if (value === undefined || value === null || value === "") continue;
    if (Array.isArray(value)) value.forEach((v) => url.searchParams.append(key, v));
    else url.searchParams.set(key, value);
  }
  // A CMS write carries one Idempotency-Key for all its attempts (the retry after a token refresh, a
  // replay by the ingress): the CMS applies it once (docs/cms.md).
  const write = method !== "GET" && path.startsWith("/v1/cms/") && !path.startsWith("/v1/cms/auth/");
  const key = write && globalThis.crypto && crypto.randomUUID ? crypto.randomUUID() : null;
  const request = () => {
    const h = { Accept: "application/json", ...headers };
    if (key) h["Idempotency-Key"] = key;
    const tk = tokens();
    if (auth && tk) h.Authorization = `Bearer ${tk.access_token}`;
    if (body !== undefined) h["Content-Type"] = "application/json";
    return fetch(url, { method, headers: h, body: body === undefined ? undefined : JSON.stringify(body) });
  };
  let response = await request();
  if (response.status === 401 && auth && tokens()) {
    if (await refresh()) response = await request();
  }
  return parse(response);
}

let refreshing = null;
async function refresh() {
  // One refresh at a time: parallel 401s share it (a refresh token is single-use).
  if (!refreshing) {
    refreshing = (async () => {
      const tk = tokens();
      try {
        const response = await fetch("/v1/cms/auth/refresh", {
          method: "POST",
          headers: { "Content-Type": "application/json", Accept: "application/json" },
          body: JSON.stringify({ refresh_token: tk.refresh_token }),
        });
        if (!response.ok) {
          storeTokens(null);
          return false;
        }
        storeTokens({ ...(await response.json()), email: tk.email });
        return true;
      } finally {
        setTimeout(() => (refreshing = null), 0);
      }
    })();
  }
  return refreshing;
}

export async function login(email, password) {
  const { body } = await send("POST", "/v1/cms/auth/login", { body: { email, password } });
  storeTokens({ ...body, email });
  return session();
}

// Signed out at once in this tab (the tokens are dropped before the network is asked), then the server
// revokes the user's refresh tokens. Should that call fail, the dropped refresh token is still valid until
// it expires, but nothing in this browser holds it any more.
export async function logout() {
  const tk = tokens();
  storeTokens(null);
  if (!tk) return;
  try {
    await fetch("/v1/cms/auth/logout", { method: "POST", headers: { Accept: "application/json", Authorization: `Bearer ${tk.access_token}` } });
  } catch {
    // offline: see above
  }
}

export const api = {
  get: (path, params, options = {}) => send("GET", path, { params, ...options }).then((r) => r && r.body),
  getWithTag: (path, params, options = {}) => send("GET", path, { params, ...options }),
  send: (method, path, body, options = {}) => send(method, path, { body, ...options }).then((r) => r && r.body),
};
