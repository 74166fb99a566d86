// Blocking queries: a read repeated with ?index=N&wait=… so that the page
// learns of changes as they happen.

import { api, ApiError } from './api.js';

const WAIT = '60s';

// Watches `path` (which may already hold a query string). Calls
// onData(data, index) after the first read and after every change, and
// onError(err) when a read fails (it retries with backoff). Returns a stop
// function.
export function watch(path, onData, onError, opts = {}) {
  const ctl = new AbortController();
  let index = 0;
  let stopped = false;
  let delay = 500;
  const sep = path.includes('?') ? '&' : '?';
  (async () => {
    while (!stopped) {
      const url = index ? `${path}${sep}index=${index}&wait=${WAIT}` : path;
      try {
        const r = await api('GET', url, { signal: ctl.signal, allow404: opts.allow404 });
        if (stopped) return;
        delay = 500;
        const changed = r.index !== index || !index;
        // An index that goes backwards (a restore) starts over.
        index = r.index && r.index >= index ? r.index : 0;
        if (changed) onData(r.data, r.index, r.status);
        if (!r.index) await sleep(2000, ctl.signal);
      } catch (e) {
        if (stopped || (e && e.name === 'AbortError')) return;
        if (onError) onError(e);
        // A refusal will not heal by itself: stop asking.
        if (e instanceof ApiError && (e.status === 403 || e.status === 401 || e.status === 400)) return;
        index = 0;
        await sleep(delay, ctl.signal).catch(() => {});
        delay = Math.min(delay * 2, 10000);
      }
    }
  })();
  return () => {
    stopped = true;
    ctl.abort();
  };
}

export function sleep(ms, signal) {
  return new Promise((resolve, reject) => {
    const t = setTimeout(resolve, ms);
    if (signal) {
      signal.addEventListener('abort', () => {
        clearTimeout(t);
        reject(new DOMException('aborted', 'AbortError'));
      }, { once: true });
    }
  });
}

// Runs `fn` at most once per `ms`, the last call winning.
export function debounce(fn, ms) {
  let t = null;
  return (...args) => {
    clearTimeout(t);
    t = setTimeout(() => fn(...args), ms);
  };
}
