// Config entries by kind, shown as JSON or HCL.

import { get, encPath } from '../api.js';
import { h, replace, empty, errorBox, table, loading } from '../dom.js';
import { pool } from './services.js';

const KINDS = [
  'service-defaults', 'proxy-defaults', 'service-resolver', 'service-router', 'service-splitter',
  'service-intentions', 'terminating-gateway', 'ingress-gateway', 'mesh',
];

// HCL for a config entry: attributes `Key = value`, objects as `Key = { }`
// and lists of objects as `Key = [ { }, ]`, as in the files operators write.
export function toHcl(v, indent = '') {
  const pad = `${indent}  `;
  const scalar = (x) => (typeof x === 'string' ? JSON.stringify(x) : String(x));
  const val = (x, ind) => {
    if (x === null || x === undefined) return 'null';
    if (Array.isArray(x)) {
      if (!x.length) return '[]';
      if (x.every((e) => typeof e !== 'object' || e === null)) return `[${x.map(scalar).join(', ')}]`;
      return `[\n${x.map((e) => `${ind}  ${val(e, `${ind}  `)},`).join('\n')}\n${ind}]`;
    }
    if (typeof x === 'object') {
      const keys = Object.keys(x);
      if (!keys.length) return '{}';
      return `{\n${toHcl(x, ind)}${ind}}`;
    }
    return scalar(x);
  };
  let out = '';
  const keys = Object.keys(v);
  const width = Math.max(0, ...keys.map((k) => (typeof v[k] === 'object' && v[k] !== null ? 0 : key(k).length)));
  for (const k of keys) {
    const x = v[k];
    const simple = typeof x !== 'object' || x === null;
    out += `${pad}${simple ? key(k).padEnd(width) : key(k)} = ${val(x, pad)}\n`;
  }
  return indent === '' ? out.replace(/^ {2}/gm, '') : out;
}

function key(k) {
  return /^[A-Za-z_][A-Za-z0-9_-]*$/.test(k) ? k : JSON.stringify(k);
}

function strip(e) {
  const { CreateIndex, ModifyIndex, Hash, ...rest } = e;
  return rest;
}

async function page(ctx) {
  const [kind, name] = ctx.params;
  ctx.title(kind ? `${kind}${name ? ` ${name}` : ''}` : 'Config entries');
  const tabs = h('nav', { class: 'tabs', 'aria-label': 'Kinds' },
    KINDS.map((k) => h('a', { href: `#/config/${k}`, 'aria-current': k === kind ? 'page' : null }, k)));
  const body = h('div', { id: 'config' }, loading());
  replace(ctx.main, h('h1', {}, 'Config entries'), tabs, body);
  if (!kind) {
    // Counts per kind.
    const counts = await pool(KINDS, 3, async (k) => {
      try {
        return (await get(`/v1/config/${k}`)).data.length;
      } catch (e) {
        return e.status === 403 ? 'no access' : '—';
      }
    });
    replace(body, table(['Kind', 'Entries'], KINDS.map((k, i) => h('tr', {},
      h('td', {}, h('a', { href: `#/config/${k}` }, k)), h('td', { class: 'metric' }, String(counts[i]))))));
    return;
  }
  if (name) {
    ctx.watch(`/v1/config/${encPath(kind)}/${encPath(name)}`, (e, _i, status) => {
      if (status === 404 || !e) {
        replace(body, empty(`No ${kind} entry named ${name}.`));
        return;
      }
      const jsonPre = h('pre', { id: 'config-json' }, JSON.stringify(strip(e), null, 2));
      const hclPre = h('pre', { id: 'config-hcl' }, toHcl(strip(e)));
      const view = h('div', {}, hclPre);
      const bJ = h('button', { type: 'button', role: 'tab', 'aria-selected': 'false' }, 'JSON');
      const bH = h('button', { type: 'button', role: 'tab', 'aria-selected': 'true' }, 'HCL');
      bJ.addEventListener('click', () => {
        replace(view, jsonPre);
        bJ.setAttribute('aria-selected', 'true');
        bH.setAttribute('aria-selected', 'false');
      });
      bH.addEventListener('click', () => {
        replace(view, hclPre);
        bH.setAttribute('aria-selected', 'true');
        bJ.setAttribute('aria-selected', 'false');
      });
      replace(body,
        h('div', { class: 'crumbs' }, h('a', { href: `#/config/${kind}` }, kind), ' / ', name),
        h('h2', {}, `${kind} ${name}`),
        h('p', { class: 'muted' }, `CreateIndex ${e.CreateIndex}, ModifyIndex ${e.ModifyIndex}. Change it with meshgate config write.`),
        h('div', { class: 'tabs', role: 'tablist' }, bH, bJ), view);
    }, (err) => replace(body, errorBox(err, `read ${kind} ${name}`)), { allow404: true });
    return;
  }
  ctx.watch(`/v1/config/${encPath(kind)}`, (list) => {
    const rows = (list || []).map((e) => h('tr', { dataset: { entry: e.Name } },
      h('td', {}, h('a', { href: `#/config/${kind}/${encodeURIComponent(e.Name)}` }, e.Name)),
      h('td', { class: 'mono' }, summary(e)),
      h('td', { class: 'metric' }, String(e.ModifyIndex))));
    replace(body, rows.length ? table(['Name', 'Summary', 'ModifyIndex'], rows) : empty(`No ${kind} entries.`));
  }, (err) => replace(body, errorBox(err, `list ${kind}`)));
}

function summary(e) {
  if (e.Kind === 'terminating-gateway') return `links ${(e.Services || []).map((s) => s.Name).join(', ') || 'nothing'}`;
  if (e.Kind === 'service-defaults' || e.Kind === 'proxy-defaults') return e.Protocol ? `protocol ${e.Protocol}` : '';
  if (e.Kind === 'service-intentions') return `${(e.Sources || []).length} source(s)`;
  if (e.Kind === 'service-resolver' && e.Failover) return 'failover';
  return '';
}

export default { page };
