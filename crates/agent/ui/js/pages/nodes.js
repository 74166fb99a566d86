// Nodes: health, services and meta; external nodes marked.

import { encPath } from '../api.js';
import {
  h, replace, empty, errorBox, statusBadge, tag, table, worst, isExternalNode, loading,
} from '../dom.js';
import { kindLabel } from './services.js';

function metaTags(meta) {
  return Object.keys(meta || {}).sort().map((k) => tag(`${k} = ${meta[k]}`, k === 'external-node' ? 'external' : ''));
}

function list(ctx) {
  ctx.title('Nodes');
  const search = h('input', { type: 'search', placeholder: 'Search node, address or meta', 'aria-label': 'Search nodes' });
  const body = h('div', { id: 'nodes' }, loading());
  const err = h('div');
  replace(ctx.main, h('h1', {}, 'Nodes'), h('div', { class: 'toolbar' }, search), err, body);
  // Every node with its services and checks: one blocking read whatever
  // the number of nodes.
  let nodes = null;
  const render = () => {
    if (!nodes) return;
    const q = search.value.trim().toLowerCase();
    const rows = [];
    for (const n of nodes) {
      const text = `${n.Node} ${n.Address} ${Object.entries(n.Meta || {}).flat().join(' ')}`.toLowerCase();
      if (q && !text.includes(q)) continue;
      const cs = n.Checks || [];
      const st = worst(cs.map((c) => c.Status));
      const nodeSt = worst(cs.filter((c) => !c.ServiceID).map((c) => c.Status));
      const svcSt = worst(cs.filter((c) => c.ServiceID).map((c) => c.Status));
      const svcs = n.Services || [];
      const ext = isExternalNode(n.Meta);
      rows.push(h('tr', { class: `st-${st}`, dataset: { node: n.Node, status: st, external: ext ? 'true' : 'false' } },
        h('td', {}, h('a', { href: `#/nodes/${encodeURIComponent(n.Node)}` }, n.Node), ext ? [' ', tag('external', 'external')] : null),
        h('td', { class: 'mono' }, n.Address),
        h('td', {}, statusBadge(nodeSt, `node ${nodeSt}`), ' ', statusBadge(svcSt, `services ${svcSt}`)),
        h('td', {}, svcs.length ? svcs.map((s) => h('a', { class: 'tag', href: `#/services/${encodeURIComponent(s.Service)}` }, s.Service)) : h('span', { class: 'muted' }, 'none')),
        h('td', {}, metaTags(n.Meta))));
    }
    if (!nodes.length) replace(body, empty('No nodes (or this token may not see any: it needs node:read).'));
    else if (!rows.length) replace(body, empty('No node matches the search.'));
    else replace(body, table(['Node', 'Address', 'Health', 'Services', 'Meta'], rows, { id: 'nodes-table' }));
  };
  search.addEventListener('input', render);
  ctx.watch('/v1/internal/ui/nodes', (d) => {
    nodes = d || [];
    replace(err);
    render();
  }, (e) => replace(err, errorBox(e, 'list nodes')));
}

function detail(ctx) {
  const name = ctx.params[0];
  ctx.title(name);
  const info = h('div', {}, loading());
  const checksEl = h('div');
  replace(ctx.main, h('div', { class: 'crumbs' }, h('a', { href: '#/nodes' }, 'Nodes'), ' / '), h('h1', {}, name), info, checksEl);
  ctx.watch(`/v1/catalog/node-services/${encPath(name)}`, (d) => {
    if (!d || !d.Node) {
      replace(info, empty(`No node ${name} (or this token may not see it).`));
      return;
    }
    const n = d.Node;
    const ext = isExternalNode(n.Meta);
    replace(info,
      h('div', { class: 'card' }, h('dl', { class: 'props' },
        h('dt', {}, 'Address'), h('dd', { class: 'mono' }, n.Address),
        h('dt', {}, 'Datacenter'), h('dd', {}, n.Datacenter || ''),
        h('dt', {}, 'Kind'), h('dd', {}, ext ? [tag('external', 'external'), ' health checked by the servers', n.Meta['external-probe'] === 'true' ? ' (node probe on)' : ''] : 'agent node'),
        h('dt', {}, 'Meta'), h('dd', {}, metaTags(n.Meta)))),
      h('h2', {}, 'Services'),
      (d.Services || []).length
        ? table(['ID', 'Service', 'Kind', 'Port', 'Tags'], d.Services.map((s) => h('tr', {},
          h('td', {}, s.ID),
          h('td', {}, h('a', { href: `#/services/${encodeURIComponent(s.Service)}` }, s.Service)),
          h('td', {}, tag(kindLabel(s.Kind), 'kind')),
          h('td', { class: 'metric' }, String(s.Port)),
          h('td', {}, (s.Tags || []).map((t) => tag(t))))))
        : empty('No services on this node.'));
  }, (e) => replace(info, errorBox(e, `read node ${name}`)), { allow404: true });
  ctx.watch(`/v1/health/node/${encPath(name)}`, (d) => {
    const cs = d || [];
    replace(checksEl, h('h2', {}, 'Checks'), cs.length ? table(['Check', 'Service', 'Status', 'Output'], cs.map((c) => h('tr', { class: `st-${c.Status}`, dataset: { check: c.CheckID, status: c.Status } },
      h('td', {}, c.Name || c.CheckID),
      h('td', {}, c.ServiceName || h('span', { class: 'muted' }, 'node')),
      h('td', {}, statusBadge(c.Status)),
      h('td', {}, h('span', { class: 'checks' }, h('span', { class: 'output' }, c.Output || '')))))) : empty('No checks on this node.'));
  }, (e) => replace(checksEl, errorBox(e, 'read checks')));
}

export default { list, detail };
