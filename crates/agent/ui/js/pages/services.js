// Services: the list with health, and one service's instances.

import { get, encPath } from '../api.js';
import {
  h, replace, empty, errorBox, statusBadge, healthSummary, tag, table, worst, isExternalNode, loading,
} from '../dom.js';

// Runs `fn` over `items` with at most `n` at a time (browsers allow few
// connections per host; blocking reads already hold some).
export async function pool(items, n, fn) {
  const out = new Array(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i], i);
    }
  };
  await Promise.all(Array.from({ length: Math.min(n, items.length) }, worker));
  return out;
}

// The instances of each service name: Map name -> catalog entries.
export async function instancesOf(names) {
  const lists = await pool(names, 3, async (n) => {
    const r = await get(`/v1/catalog/service/${encodeURIComponent(n)}`);
    return r.data || [];
  });
  const m = new Map();
  names.forEach((n, i) => m.set(n, lists[i]));
  return m;
}

const KINDS = {
  '': 'service',
  'connect-proxy': 'sidecar proxy',
  'terminating-gateway': 'terminating gateway',
  'mesh-gateway': 'mesh gateway',
  'ingress-gateway': 'ingress gateway',
  'api-gateway': 'api gateway',
};
export const kindLabel = (k) => KINDS[k || ''] || k;

function list(ctx) {
  ctx.title('Services');
  const search = h('input', { type: 'search', id: 'service-search', placeholder: 'Search name or tag', 'aria-label': 'Search services' });
  const kindSel = h('select', { 'aria-label': 'Kind', id: 'service-kind' },
    h('option', { value: '' }, 'All kinds'),
    Object.entries(KINDS).map(([k, v]) => h('option', { value: k || 'service' }, v)));
  const statusSel = h('select', { 'aria-label': 'Health', id: 'service-status' },
    h('option', { value: '' }, 'Any health'),
    h('option', { value: 'passing' }, 'Passing'),
    h('option', { value: 'warning' }, 'Warning'),
    h('option', { value: 'critical' }, 'Critical'));
  const body = h('div', { id: 'services' }, loading());
  const err = h('div');
  replace(ctx.main, h('h1', {}, 'Services'),
    h('div', { class: 'toolbar' }, search, kindSel, statusSel, h('span', { class: 'grow' }),
      h('span', { class: 'muted', id: 'live-note' }, 'Updates live')),
    err, body);

  // Consul's summary of every service (one blocking read whatever the
  // number of services), and which nodes are external.
  let sums = null;
  let externalNodes = new Set();

  const render = () => {
    if (!sums) return;
    const q = search.value.trim().toLowerCase();
    const wantKind = kindSel.value;
    const wantStatus = statusSel.value;
    const rows = [];
    for (const s of sums) {
      const name = s.Name;
      const kind = s.Kind || '';
      const tags = s.Tags || [];
      const counts = { passing: s.ChecksPassing, warning: s.ChecksWarning, critical: s.ChecksCritical };
      const st = s.ChecksCritical ? 'critical' : s.ChecksWarning ? 'warning' : 'passing';
      if (q && !name.toLowerCase().includes(q) && !tags.some((t) => t.toLowerCase().includes(q))) continue;
      if (wantKind && (kind || 'service') !== wantKind) continue;
      if (wantStatus && st !== wantStatus) continue;
      const external = (s.Nodes || []).some((n) => externalNodes.has(n));
      rows.push(h('tr', { class: `st-${st}`, dataset: { service: name, status: st } },
        h('td', {}, h('a', { href: `#/services/${encodeURIComponent(name)}` }, name)),
        h('td', {}, tag(kindLabel(kind), 'kind'), external ? tag('external', 'external') : null),
        h('td', {}, tags.map((t) => tag(t))),
        h('td', { class: 'metric' }, String(s.InstanceCount)),
        h('td', {}, statusBadge(st), ' ', healthSummary(counts))));
    }
    if (!sums.length) {
      replace(body, empty('No services are registered.', 'Register one with `meshgate services register` or PUT /v1/catalog/register.'));
    } else if (!rows.length) {
      replace(body, empty('No service matches the filter.'));
    } else {
      replace(body, table(['Name', 'Kind', 'Tags', 'Instances', 'Health'], rows, { id: 'services-table' }));
    }
  };
  for (const el of [search, kindSel, statusSel]) el.addEventListener('input', render);

  ctx.watch('/v1/internal/ui/services', (data) => {
    sums = data || [];
    replace(err);
    render();
  }, (e) => replace(err, errorBox(e, 'list services')));
  ctx.watch('/v1/catalog/nodes?node-meta=external-node:true', (data) => {
    externalNodes = new Set((data || []).map((n) => n.Node));
    render();
  }, (e) => replace(err, errorBox(e, 'list external nodes')));
}

function checkList(cs) {
  if (!cs.length) return h('p', { class: 'muted' }, 'No checks.');
  return h('ul', { class: 'checks' }, cs.map((c) => h('li', { dataset: { check: c.CheckID, status: c.Status } },
    statusBadge(c.Status), ' ', h('strong', {}, c.Name || c.CheckID),
    c.ServiceID ? null : h('span', { class: 'muted' }, ' (node check)'),
    c.Output ? h('span', { class: 'output' }, c.Output) : null)));
}

function kvList(obj) {
  const keys = Object.keys(obj || {});
  if (!keys.length) return h('span', { class: 'muted' }, '—');
  return h('span', {}, keys.sort().map((k) => tag(`${k} = ${obj[k]}`)));
}

function upstreamList(proxy) {
  const ups = (proxy && proxy.Upstreams) || [];
  if (!ups.length) return h('span', { class: 'muted' }, 'none');
  return h('ul', { class: 'checks' }, ups.map((u) => h('li', {},
    h('a', { href: `#/services/${encodeURIComponent(u.DestinationName)}` }, u.DestinationName),
    ` on ${u.LocalBindAddress || '127.0.0.1'}:${u.LocalBindPort}`)));
}

function detail(ctx) {
  const name = ctx.params[0];
  ctx.title(name);
  const body = h('div', { id: 'service-detail' }, loading());
  const via = h('div', { id: 'service-via' });
  replace(ctx.main,
    h('div', { class: 'crumbs' }, h('a', { href: '#/services' }, 'Services'), ' / '),
    h('h1', {}, name), body, via);

  ctx.watch(`/v1/health/service/${encPath(name)}`, (data) => {
    const list = data || [];
    if (!list.length) {
      replace(body, empty(`No instance of ${name} is registered (or this token may not see any).`));
      return;
    }
    const kind = list[0].Service.Kind || '';
    const overall = worst(list.flatMap((e) => (e.Checks || []).map((c) => c.Status)));
    const cards = list.map((e) => {
      const s = e.Service;
      const n = e.Node;
      const st = worst((e.Checks || []).map((c) => c.Status));
      const ext = isExternalNode(n.Meta);
      return h('div', { class: `card instance st-${st}`, dataset: { instance: s.ID, status: st } },
        h('h3', {}, statusBadge(st), ' ', s.ID),
        h('dl', { class: 'props' },
          h('dt', {}, 'Node'), h('dd', {}, h('a', { href: `#/nodes/${encodeURIComponent(n.Node)}` }, n.Node), ext ? [' ', tag('external', 'external')] : null),
          h('dt', {}, 'Address'), h('dd', { class: 'mono' }, `${s.Address || n.Address}:${s.Port}`),
          h('dt', {}, 'Tags'), h('dd', {}, (s.Tags || []).length ? s.Tags.map((t) => tag(t)) : h('span', { class: 'muted' }, '—')),
          h('dt', {}, 'Meta'), h('dd', {}, kvList(s.Meta)),
          ext ? [h('dt', {}, 'Node meta'), h('dd', {}, kvList(n.Meta))] : null,
          s.Kind === 'connect-proxy' ? [
            h('dt', {}, 'Proxy for'), h('dd', {}, h('a', { href: `#/services/${encodeURIComponent(s.Proxy.DestinationServiceName)}` }, s.Proxy.DestinationServiceName)),
            h('dt', {}, 'Upstreams'), h('dd', {}, upstreamList(s.Proxy)),
          ] : null,
          s.Connect && s.Connect.SidecarService ? [h('dt', {}, 'Sidecar'), h('dd', {}, 'defined with the service')] : null),
        h('h3', {}, ext ? 'Checks (run by the servers: probe results)' : 'Checks'),
        checkList(e.Checks || []));
    });
    replace(body,
      h('p', {}, tag(kindLabel(kind), 'kind'), ' ', statusBadge(overall), ` ${list.length} instance${list.length === 1 ? '' : 's'}`,
        kind === 'terminating-gateway' ? [' · ', h('a', { href: '#/gateways' }, 'see what it links')] : null),
      cards);
  }, (e) => replace(body, errorBox(e, `read ${name}`)));

  ctx.watch(`/v1/health/connect/${encPath(name)}`, (data) => {
    const list = data || [];
    if (!list.length) {
      replace(via, h('h2', {}, 'Sidecars and gateways'), h('p', { class: 'muted' }, 'No sidecar proxy or terminating gateway serves this service.'));
      return;
    }
    const rows = list.map((e) => {
      const s = e.Service;
      const st = worst((e.Checks || []).map((c) => c.Status));
      return h('tr', { class: `st-${st}` },
        h('td', {}, h('a', { href: `#/services/${encodeURIComponent(s.Service)}` }, s.ID)),
        h('td', {}, tag(kindLabel(s.Kind), 'kind')),
        h('td', {}, h('a', { href: `#/nodes/${encodeURIComponent(e.Node.Node)}` }, e.Node.Node)),
        h('td', { class: 'mono' }, `${s.Address || e.Node.Address}:${s.Port}`),
        h('td', {}, s.Kind === 'connect-proxy' ? upstreamList(s.Proxy) : '—'),
        h('td', {}, statusBadge(st)));
    });
    replace(via, h('h2', {}, 'Sidecars and gateways'),
      h('p', { class: 'muted' }, 'Where mesh connections to this service arrive (only while the service has a passing instance, for gateways).'),
      table(['ID', 'Kind', 'Node', 'Address', 'Upstreams', 'Health'], rows));
  }, (e) => replace(via, errorBox(e, 'read the sidecars and gateways')));
}

export default { list, detail };
