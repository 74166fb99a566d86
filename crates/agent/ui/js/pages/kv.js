// Key/Value: browse folders, create, edit, delete; flags, indexes, binary
// values shown as a hex dump.

import { get, put, del, encPath, authorize, b64ToBytes, bytesToText, ApiError } from '../api.js';
import {
  h, replace, empty, errorBox, deniedBox, table, field, confirmDialog, toast, fmtBytes, hexDump, loading,
} from '../dom.js';
import { go, session } from '../app.js';

function crumbs(path) {
  const parts = path.split('/').filter((p, i, a) => p !== '' || i < a.length - 1);
  const out = [h('a', { href: '#/kv/' }, 'Key/Value'), ' / '];
  let acc = '';
  const isFolder = path === '' || path.endsWith('/');
  parts.forEach((p, i) => {
    const last = i === parts.length - 1;
    acc += p + (last && !isFolder ? '' : '/');
    if (last) out.push(h('span', {}, p));
    else out.push(h('a', { href: `#/kv/${encPath(acc)}` }, p), ' / ');
  });
  return h('nav', { class: 'crumbs', 'aria-label': 'Folders' }, out);
}

// Whether the token may read under `prefix` (the API filters instead of
// refusing, so ask). True when ACLs are off.
async function mayRead(prefix) {
  if (!session.aclEnabled) return true;
  try {
    const m = await authorize([{ Resource: 'key', Access: 'read', Segment: prefix }]);
    return !m || m.get(`key:read:${prefix}`) !== false;
  } catch {
    return true;
  }
}

async function page(ctx) {
  const path = ctx.params[0] || '';
  const isFolder = path === '' || path.endsWith('/');
  ctx.title(path ? `KV ${path}` : 'Key/Value');
  if (isFolder && ctx.query.get('new') === null) return folder(ctx, path);
  if (ctx.query.get('new') !== null) return editor(ctx, path, null);
  return keyView(ctx, path);
}

async function folder(ctx, prefix) {
  const body = h('div', { id: 'kv-list' }, loading());
  replace(ctx.main, crumbs(prefix), h('h1', {}, prefix ? prefix : 'Key/Value'),
    h('div', { class: 'toolbar' },
      h('a', { class: 'button primary', href: `#/kv/${encPath(prefix)}?new`, id: 'kv-create' }, 'Create'),
      h('span', { class: 'grow' }), h('span', { class: 'muted' }, 'Updates live')),
    body);
  let checked = false;
  ctx.watch(`/v1/kv/${encPath(prefix)}?keys&separator=/`, async (keys, _idx, status) => {
    const list = status === 404 ? [] : keys || [];
    if (!list.length && !checked) {
      checked = true;
      if (!(await mayRead(prefix))) {
        replace(body, deniedBox('key:read', prefix, 'this token may not list these keys'));
        return;
      }
    }
    if (!list.length) {
      replace(body, empty(prefix ? `Nothing under ${prefix}.` : 'The key/value store is empty.', 'Create a key, or a folder by ending its name with /.'));
      return;
    }
    const rows = list.filter((k) => k !== prefix).map((k) => {
      const rel = k.slice(prefix.length);
      const folderKey = k.endsWith('/');
      return h('tr', { dataset: { key: k } },
        h('td', {}, h('a', { href: `#/kv/${encPath(k)}` }, folderKey ? `📁 ${rel}` : rel)),
        h('td', {}, folderKey ? 'folder' : 'key'),
        h('td', {}, h('button', {
          type: 'button', class: 'link', 'aria-label': `Delete ${k}`,
          onclick: () => remove(k, folderKey, prefix),
        }, 'Delete')));
    });
    replace(body, rows.length ? table(['Name', 'Type', ''], rows, { id: 'kv-table' }) : empty(`Nothing under ${prefix}.`));
  }, (e) => replace(body, errorBox(e, 'list keys')), { allow404: true });
}

async function remove(key, recurse, back) {
  const ok = await confirmDialog(recurse
    ? `Delete the folder ${key} and every key under it?`
    : `Delete the key ${key}?`);
  if (!ok) return false;
  try {
    await del(`/v1/kv/${encPath(key)}${recurse ? '?recurse' : ''}`);
    toast(`Deleted ${key}`);
    if (back !== undefined) go(`kv/${encPath(back)}`);
    return true;
  } catch (e) {
    toast(e instanceof ApiError && e.permission ? `Permission denied: lacks ${e.permission}` : `Delete failed: ${e.message}`, 'bad');
    return false;
  }
}

function parentOf(key) {
  const i = key.replace(/\/$/, '').lastIndexOf('/');
  return i < 0 ? '' : key.slice(0, i + 1);
}

async function keyView(ctx, key) {
  const body = h('div', { id: 'kv-key' }, loading());
  replace(ctx.main, crumbs(key), h('h1', {}, key), body);
  let r;
  try {
    r = await get(`/v1/kv/${encPath(key)}`, { allow404: true });
  } catch (e) {
    replace(body, errorBox(e, `read ${key}`));
    return;
  }
  if (r.status === 404 || !r.data || !r.data.length) {
    if (!(await mayRead(key))) {
      replace(body, deniedBox('key:read', key, `this token may not read ${key}`));
      return;
    }
    replace(body, empty(`There is no key ${key}.`), h('p', {}, h('a', { href: `#/kv/${encPath(parentOf(key))}` }, 'Back to the folder')));
    return;
  }
  editor(ctx, key, r.data[0]);
}

// The form for a new key (entry null, `prefix` the folder) or an existing one.
function editor(ctx, prefixOrKey, entry) {
  const isNew = !entry;
  const prefix = isNew ? prefixOrKey : parentOf(prefixOrKey);
  const bytes = entry ? b64ToBytes(entry.Value) : new Uint8Array(0);
  const text = bytesToText(bytes);
  const binary = !isNew && text === null;
  const msg = h('div', { 'aria-live': 'assertive' });
  const nameIn = h('input', { type: 'text', id: 'kv-name', required: true, autocomplete: 'off', spellcheck: 'false' });
  const valueIn = h('textarea', { id: 'kv-value', spellcheck: 'false' });
  valueIn.value = text || '';
  const flagsIn = h('input', { type: 'number', id: 'kv-flags', min: '0', step: '1', value: String(entry ? entry.Flags : 0) });
  const form = h('form', { class: 'card', id: 'kv-form' });
  const fields = [];
  if (isNew) {
    fields.push(field(`Key (under ${prefix || 'the root'})`, nameIn, 'End with / to create a folder.'));
  } else {
    fields.push(h('dl', { class: 'props', id: 'kv-meta' },
      h('dt', {}, 'Flags'), h('dd', {}, String(entry.Flags)),
      h('dt', {}, 'CreateIndex'), h('dd', {}, String(entry.CreateIndex)),
      h('dt', {}, 'ModifyIndex'), h('dd', {}, String(entry.ModifyIndex)),
      h('dt', {}, 'LockIndex'), h('dd', {}, String(entry.LockIndex)),
      h('dt', {}, 'Session'), h('dd', { class: 'mono' }, entry.Session || '—'),
      h('dt', {}, 'Size'), h('dd', {}, fmtBytes(bytes.length))));
  }
  if (binary) {
    fields.push(h('h2', {}, 'Value (binary)'),
      h('p', { class: 'muted' }, 'This value is not UTF-8 text; it is shown as a hex dump. Saving text here replaces it.'),
      h('pre', { id: 'kv-hex' }, hexDump(bytes)));
    const replaceBox = h('input', { type: 'checkbox', id: 'kv-replace' });
    fields.push(h('p', {}, replaceBox, h('label', { for: 'kv-replace' }, ' Replace the binary value with text')));
    valueIn.disabled = true;
    replaceBox.addEventListener('change', () => {
      valueIn.disabled = !replaceBox.checked;
    });
  }
  fields.push(field('Value', valueIn), field('Flags', flagsIn, 'An opaque 64-bit number stored with the key.'));
  const actions = h('div', { class: 'actions' },
    h('button', { type: 'submit', class: 'primary', id: 'kv-save' }, isNew ? 'Create' : 'Save'),
    h('a', { class: 'button', href: `#/kv/${encPath(prefix)}` }, 'Cancel'),
    isNew ? null : h('button', {
      type: 'button', class: 'danger', id: 'kv-delete',
      onclick: () => remove(entry.Key, false, prefix),
    }, 'Delete'));
  replace(form, fields, msg, actions);
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const key = isNew ? prefix + nameIn.value.trim() : entry.Key;
    if (isNew && !nameIn.value.trim()) {
      replace(msg, h('p', { class: 'inline-error' }, 'Enter a key name.'));
      return;
    }
    if (!/^\d+$/.test(flagsIn.value)) {
      replace(msg, h('p', { class: 'inline-error' }, 'Flags must be a whole number.'));
      return;
    }
    if (binary && valueIn.disabled) {
      replace(msg, h('p', { class: 'inline-error' }, 'Tick "Replace the binary value" to save text over it.'));
      return;
    }
    // cas: never overwrite a key created meanwhile, nor a change made since
    // this page was read.
    const cas = isNew ? 0 : entry.ModifyIndex;
    try {
      const r = await put(`/v1/kv/${encPath(key)}?flags=${flagsIn.value}&cas=${cas}`, key.endsWith('/') ? '' : valueIn.value);
      if (r.data === false || String(r.text).trim() === 'false') {
        replace(msg, h('p', { class: 'inline-error', role: 'alert' }, isNew
          ? `${key} already exists.`
          : `${key} was changed by someone else since it was read: reload to see the new value.`));
        return;
      }
      toast(isNew ? `Created ${key}` : `Saved ${key}`);
      go(`kv/${encPath(key.endsWith('/') ? key : parentOf(key))}`);
    } catch (err) {
      replace(msg, errorBox(err, `save ${key}`));
    }
  });
  if (isNew) replace(ctx.main, crumbs(prefix), h('h1', {}, 'New key'), form);
  else replace(document.getElementById('kv-key') || ctx.main, form);
  (isNew ? nameIn : valueIn).focus();
}

export default { page };
