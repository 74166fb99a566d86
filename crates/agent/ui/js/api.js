// Talking to the agent's HTTP API: the token, errors that say what is
// missing, and blocking reads.

const TOKEN_KEY = 'meshgate-ui-token';

export function getToken() {
  try {
    return sessionStorage.getItem(TOKEN_KEY) || '';
  } catch {
    return '';
  }
}

export function setToken(t) {
  try {
    if (t) sessionStorage.setItem(TOKEN_KEY, t);
    else sessionStorage.removeItem(TOKEN_KEY);
  } catch {
    // Storage refused (private mode): the token lives for this page only.
  }
}

// An API failure. `permission` and `on` are set for a 403 that names a
// missing permission.
export class ApiError extends Error {
  constructor(status, message, path) {
    super(message || `HTTP ${status}`);
    this.status = status;
    this.path = path;
    const m = /lacks permission '([^']+)'(?: on "([^"]*)")?/.exec(message || '');
    this.permission = m ? m[1] : '';
    this.on = m && m[2] !== undefined ? m[2] : null;
  }
  get denied() {
    return this.status === 403;
  }
}

// Encodes each segment of a path (keys may hold anything but '/').
export function encPath(p) {
  return p.split('/').map(encodeURIComponent).join('/');
}

export function qs(params) {
  const u = new URLSearchParams();
  for (const [k, v] of Object.entries(params || {})) {
    if (v === undefined || v === null || v === false) continue;
    u.set(k, v === true ? '' : String(v));
  }
  const s = u.toString().replace(/=(&|$)/g, '$1');
  return s ? `?${s}` : '';
}

// One request. Resolves to {status, data, index, text}; rejects with an
// ApiError for any status but 2xx, or for 404 unless `allow404`.
export async function api(method, path, opts = {}) {
  const headers = {};
  const token = getToken();
  if (token) headers['X-Consul-Token'] = token;
  let body;
  if (opts.body !== undefined) {
    if (typeof opts.body === 'string' || opts.body instanceof Uint8Array) {
      body = opts.body;
    } else {
      body = JSON.stringify(opts.body);
      headers['Content-Type'] = 'application/json';
    }
  }
  let r;
  try {
    r = await fetch(path, { method, headers, body, signal: opts.signal, cache: 'no-store' });
  } catch (e) {
    if (e && e.name === 'AbortError') throw e;
    throw new ApiError(0, 'The agent cannot be reached.', path);
  }
  const index = Number(r.headers.get('X-Consul-Index') || 0);
  const text = await r.text();
  if (r.status === 404 && opts.allow404) {
    return { status: 404, data: null, index, text };
  }
  if (!r.ok) {
    throw new ApiError(r.status, text.trim(), path);
  }
  let data = text;
  const ct = r.headers.get('Content-Type') || '';
  if (ct.includes('json') || opts.json) {
    try {
      data = text ? JSON.parse(text) : null;
    } catch {
      data = text;
    }
  }
  return { status: r.status, data, index, text };
}

export const get = (path, opts) => api('GET', path, opts);
export const put = (path, body, opts = {}) => api('PUT', path, { ...opts, body });
export const del = (path, opts) => api('DELETE', path, opts);

// Asks the agent which of `checks` ({Resource, Access, Segment}) the token
// holds. Resolves to a Map "resource:access:segment" -> bool, or null when
// ACLs are off.
export async function authorize(checks) {
  try {
    const r = await api('POST', '/v1/internal/acl/authorize', { body: checks });
    const m = new Map();
    for (const c of r.data || []) {
      m.set(`${c.Resource}:${c.Access}:${c.Segment || ''}`, !!c.Allow);
    }
    return m;
  } catch (e) {
    if (e instanceof ApiError && e.status === 401) return null;
    throw e;
  }
}

// Base64 (the KV store's Value) to bytes.
export function b64ToBytes(b64) {
  if (!b64) return new Uint8Array(0);
  const bin = atob(b64);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

// Bytes to text when they are UTF-8 without control characters other than
// whitespace; null otherwise (binary).
export function bytesToText(bytes) {
  let s;
  try {
    s = new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    return null;
  }
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u0008\u000e-\u001f\u007f]/.test(s)) return null;
  return s;
}
