// Building the page: elements from data (text only, never HTML strings),
// badges, messages and dialogs.

import { ApiError } from './api.js';

// h('div', {class: 'x', onclick: f}, 'text', child, [more])
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on') && typeof v === 'function') {
      el.addEventListener(k.slice(2), v);
    } else if (k === 'class') {
      el.className = v;
    } else if (k === 'dataset') {
      Object.assign(el.dataset, v);
    } else if (k === 'value') {
      el.value = v;
    } else if (k === 'checked') {
      el.checked = !!v;
    } else {
      el.setAttribute(k, v === true ? '' : String(v));
    }
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children) {
    if (c === undefined || c === null || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else if (c instanceof Node) el.appendChild(c);
    else el.appendChild(document.createTextNode(String(c)));
  }
}

export function clear(el) {
  while (el.firstChild) el.removeChild(el.firstChild);
  return el;
}

export function replace(el, ...children) {
  clear(el);
  append(el, children);
  return el;
}

const RANK = { passing: 0, warning: 1, critical: 2 };

// The worst of several check statuses ('passing' when there are none).
export function worst(statuses) {
  let w = 'passing';
  for (const s of statuses) {
    if ((RANK[s] ?? 2) > RANK[w]) w = RANK[s] === undefined ? 'critical' : s;
  }
  return w;
}

export function statusBadge(status, label) {
  const s = RANK[status] === undefined ? 'critical' : status;
  return h('span', { class: `badge st-${s}`, dataset: { status: s } },
    h('span', { class: 'dot', 'aria-hidden': 'true' }), label || s);
}

// "3 passing, 1 critical" with colours.
export function healthSummary(counts) {
  const parts = [];
  for (const s of ['critical', 'warning', 'passing']) {
    if (counts[s]) parts.push(statusBadge(s, `${counts[s]} ${s}`));
  }
  if (!parts.length) parts.push(h('span', { class: 'muted' }, 'no checks'));
  return h('span', { class: 'summary' }, parts);
}

export function tag(text, cls) {
  return h('span', { class: `tag ${cls || ''}` }, text);
}

export function empty(text, hint) {
  return h('div', { class: 'empty', role: 'status' }, h('p', {}, text), hint ? h('p', { class: 'muted' }, hint) : null);
}

export function loading() {
  return h('p', { class: 'loading muted', role: 'status' }, 'Loading…');
}

// An error for people: a refusal names the missing permission.
export function errorBox(err, what) {
  const box = h('div', { class: 'error', role: 'alert' });
  if (err instanceof ApiError && err.status === 403) {
    box.classList.add('denied');
    box.dataset.permission = err.permission || '';
    const perm = err.permission
      ? h('p', {}, 'This token lacks the permission ', h('code', {}, err.permission),
        err.on !== null && err.on !== undefined ? [' on ', h('code', {}, `"${err.on}"`)] : null, '.')
      : null;
    append(box, [
      h('strong', {}, `Permission denied${what ? `: ${what}` : ''}`),
      perm,
      h('p', { class: 'muted' }, err.message),
    ]);
  } else if (err instanceof ApiError) {
    append(box, [
      h('strong', {}, what ? `Could not ${what}` : 'Request failed'),
      h('p', {}, err.status ? `${err.status}: ${err.message}` : err.message),
    ]);
  } else {
    append(box, [h('strong', {}, what ? `Could not ${what}` : 'Error'), h('p', {}, String(err && err.message ? err.message : err))]);
  }
  return box;
}

// A refusal computed from /v1/internal/acl/authorize (the API filtered
// instead of refusing).
export function deniedBox(permission, on, what) {
  return h('div', { class: 'error denied', role: 'alert', dataset: { permission } },
    h('strong', {}, `Permission denied${what ? `: ${what}` : ''}`),
    h('p', {}, 'This token lacks the permission ', h('code', {}, permission),
      on !== null && on !== undefined ? [' on ', h('code', {}, `"${on}"`)] : null, '.'));
}

// A modal confirmation; resolves true when confirmed.
export function confirmDialog(message, confirmLabel = 'Delete') {
  return new Promise((resolve) => {
    const dlg = h('dialog', { class: 'confirm', 'aria-label': 'Confirm' });
    const done = (v) => {
      dlg.close();
      dlg.remove();
      resolve(v);
    };
    const cancel = h('button', { type: 'button', onclick: () => done(false) }, 'Cancel');
    const ok = h('button', { type: 'button', class: 'danger', onclick: () => done(true) }, confirmLabel);
    append(dlg, [h('p', {}, message), h('div', { class: 'actions' }, cancel, ok)]);
    dlg.addEventListener('cancel', (e) => {
      e.preventDefault();
      done(false);
    });
    document.body.appendChild(dlg);
    dlg.showModal();
    cancel.focus();
  });
}

// A short-lived message at the bottom of the screen.
export function toast(text, kind = 'ok') {
  const host = document.getElementById('toasts');
  if (!host) return;
  const t = h('div', { class: `toast ${kind}`, role: 'status' }, text);
  host.appendChild(t);
  setTimeout(() => t.remove(), 4000);
}

// A labelled form field.
export function field(label, input, hint) {
  const id = input.id || `f-${Math.random().toString(36).slice(2, 9)}`;
  input.id = id;
  return h('div', { class: 'field' },
    h('label', { for: id }, label), input, hint ? h('small', { class: 'muted' }, hint) : null);
}

export function table(headers, rows, attrs) {
  return h('div', { class: 'table-wrap' },
    h('table', attrs || {},
      h('thead', {}, h('tr', {}, headers.map((x) => h('th', { scope: 'col' }, x)))),
      h('tbody', {}, rows)));
}

export function link(href, text, attrs) {
  return h('a', { href, ...(attrs || {}) }, text);
}

export function fmtBytes(n) {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / 1024 / 1024).toFixed(1)} MiB`;
}

// A hex dump of at most `max` bytes.
export function hexDump(bytes, max = 512) {
  const lines = [];
  const n = Math.min(bytes.length, max);
  for (let i = 0; i < n; i += 16) {
    const row = Array.from(bytes.slice(i, Math.min(i + 16, n)));
    const hex = row.map((b) => b.toString(16).padStart(2, '0')).join(' ');
    const asc = row.map((b) => (b >= 32 && b < 127 ? String.fromCharCode(b) : '.')).join('');
    lines.push(`${i.toString(16).padStart(6, '0')}  ${hex.padEnd(47)}  ${asc}`);
  }
  if (bytes.length > max) lines.push(`… ${bytes.length - max} more bytes`);
  return lines.join('\n');
}

export function isExternalNode(meta) {
  return !!meta && meta['external-node'] === 'true';
}
