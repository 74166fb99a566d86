// Terminating gateways: instances, linked services with their (external)
// instances and health, TLS origination, protocol, connection counts.

import { get, encPath } from '../api.js';
import {
  h, replace, empty, errorBox, statusBadge, tag, table, worst, isExternalNode, loading,
} from '../dom.js';
import { debounce } from '../live.js';
import { pool, instancesOf } from './services.js';

// Prometheus text -> Map service -> {metric: value} for meshgate_proxy_*.
export function parseMetrics(text) {
  const out = new Map();
  for (const line of (text || '').split('\n')) {
    const m = /^meshgate_proxy_([a-z_]+)\{([^}]*)\}\s+(\S+)$/.exec(line.trim());
    if (!m) continue;
    const svc = /service="((?:[^"\\]|\\.)*)"/.exec(m[2]);
    const name = svc ? svc[1].replace(/\\(.)/g, '$1') : '';
    if (!out.has(name)) out.set(name, {});
    out.get(name)[m[1]] = Number(m[3]);
  }
  return out;
}

function list(ctx) {
  ctx.title('Gateways');
  const body = h('div', { id: 'gateways' }, loading());
  const err = h('div');
  replace(ctx.main, h('h1', {}, 'Terminating gateways'),
    h('p', { class: 'muted' }, 'Each gateway carries mesh connections to services outside the mesh. Linked services come from the terminating-gateway config entry; health comes from the checks the servers run on external nodes.'),
    err, body);

  let entries = null;
  let names = null;
  let stopped = false;
  ctx.onCleanup(() => {
    stopped = true;
  });

  const refresh = debounce(async () => {
    if (!entries || !names || stopped) return;
    try {
      const svcNames = Object.keys(names);
      const inst = await instancesOf(svcNames);
      const gwNames = new Set(entries.map((e) => e.Name));
      for (const [n, list] of inst) {
        if (list.some((i) => i.ServiceKind === 'terminating-gateway')) gwNames.add(n);
      }
      const gws = [...gwNames].sort();
      if (!gws.length) {
        replace(body, empty('No terminating gateway is configured.', 'Write a terminating-gateway config entry (meshgate config write) and start one with `meshgate connect envoy -gateway=terminating -register -service <name>`.'));
        return;
      }
      const sections = await pool(gws, 2, (gw) => gatewaySection(gw, entries.find((e) => e.Name === gw)));
      if (stopped) return;
      replace(body, sections);
      replace(err);
    } catch (e) {
      replace(err, errorBox(e, 'read the gateways'));
    }
  }, 100);

  ctx.watch('/v1/config/terminating-gateway', (d) => {
    entries = d || [];
    refresh();
  }, (e) => replace(err, errorBox(e, 'read terminating-gateway config entries')));
  ctx.watch('/v1/catalog/services', (d) => {
    names = d || {};
    refresh();
  }, (e) => replace(err, errorBox(e, 'list services')));
  // Health changes (a database going down) redraw the page.
  ctx.watch('/v1/health/state/any', () => refresh(), () => {});
  // Counters are not in the catalog: read them every few seconds.
  const timer = setInterval(() => refresh(), 5000);
  ctx.onCleanup(() => clearInterval(timer));
}

async function gatewaySection(gw, entry) {
  const [instR, linkedR, defaultsR, metricsR] = await Promise.all([
    get(`/v1/health/service/${encPath(gw)}`),
    get(`/v1/catalog/gateway-services/${encPath(gw)}`).catch((e) => ({ error: e })),
    get('/v1/config/service-defaults').catch(() => ({ data: [] })),
    get(`/v1/internal/ui/gateway-metrics/${encPath(gw)}`).catch((e) => ({ error: e })),
  ]);
  const instances = instR.data || [];
  const linked = linkedR.error ? [] : linkedR.data || [];
  const defaults = new Map((defaultsR.data || []).map((d) => [d.Name, d]));
  const counters = new Map();
  const metricNotes = [];
  if (!metricsR.error) {
    for (const m of metricsR.data || []) {
      if (m.Metrics !== undefined) {
        for (const [svc, vals] of parseMetrics(m.Metrics)) {
          const acc = counters.get(svc) || {};
          for (const [k, v] of Object.entries(vals)) acc[k] = (acc[k] || 0) + v;
          counters.set(svc, acc);
        }
      } else {
        metricNotes.push(`${m.ServiceID}: ${m.Error}`);
      }
    }
  }
  const haveCounters = !metricsR.error && (metricsR.data || []).some((m) => m.Metrics !== undefined);

  const linkedHealth = await pool(linked, 3, async (l) => {
    const r = await get(`/v1/health/service/${encPath(l.Service.Name)}`).catch((e) => ({ error: e }));
    return r.error ? { error: r.error } : { list: r.data || [] };
  });

  const gwSt = instances.length ? worst(instances.flatMap((e) => (e.Checks || []).map((c) => c.Status))) : 'critical';
  const instRows = instances.map((e) => {
    const st = worst((e.Checks || []).map((c) => c.Status));
    return h('tr', { class: `st-${st}`, dataset: { instance: e.Service.ID, status: st } },
      h('td', {}, e.Service.ID),
      h('td', {}, h('a', { href: `#/nodes/${encodeURIComponent(e.Node.Node)}` }, e.Node.Node)),
      h('td', { class: 'mono' }, `${e.Service.Address || e.Node.Address}:${e.Service.Port}`),
      h('td', {}, statusBadge(st)),
      h('td', {}, (e.Checks || []).map((c) => h('div', { class: 'checks' }, `${c.Name}: `, h('span', { class: 'output' }, c.Output || c.Status)))));
  });

  const linkRows = linked.map((l, i) => {
    const name = l.Service.Name;
    const hl = linkedHealth[i];
    const list = hl.list || [];
    const st = hl.error ? 'critical' : list.length ? worst(list.flatMap((e) => (e.Checks || []).map((c) => c.Status))) : 'critical';
    const d = defaults.get(name);
    const proto = d && d.Protocol ? d.Protocol : 'tcp';
    const c = counters.get(name);
    const tls = l.CAFile || l.SNI || l.CertFile
      ? h('dl', { class: 'props' },
        l.CAFile ? [h('dt', {}, 'CAFile'), h('dd', { class: 'mono' }, l.CAFile)] : null,
        l.SNI ? [h('dt', {}, 'SNI'), h('dd', { class: 'mono' }, l.SNI)] : null,
        l.CertFile ? [h('dt', {}, 'CertFile'), h('dd', { class: 'mono' }, l.CertFile)] : null)
      : h('span', { class: 'muted' }, 'plain TCP (no TLS origination)');
    const instCells = hl.error
      ? errorBox(hl.error, `read ${name}`)
      : list.length
        ? h('ul', { class: 'checks' }, list.map((e) => {
          const ist = worst((e.Checks || []).map((x) => x.Status));
          const failing = (e.Checks || []).filter((x) => x.Status !== 'passing');
          return h('li', { dataset: { instance: e.Service.ID, status: ist } },
            statusBadge(ist), ' ',
            h('a', { href: `#/nodes/${encodeURIComponent(e.Node.Node)}` }, e.Node.Node), ' ',
            h('span', { class: 'mono' }, `${e.Service.Address || e.Node.Address}:${e.Service.Port}`),
            isExternalNode(e.Node.Meta) ? [' ', tag('external', 'external')] : null,
            failing.map((x) => h('span', { class: 'output' }, `${x.Name}: ${x.Output}`)));
        }))
        : h('span', { class: 'muted' }, 'no instance registered');
    return h('tr', { class: `st-${st}`, dataset: { linked: name, status: st } },
      h('td', {}, h('a', { href: `#/services/${encodeURIComponent(name)}` }, name), l.FromWildcard ? [' ', tag('wildcard')] : null),
      h('td', {}, statusBadge(st)),
      h('td', {}, instCells),
      h('td', {}, tls),
      h('td', {}, tag(proto, 'kind'), d ? null : h('span', { class: 'muted' }, ' default')),
      h('td', { class: 'metric' }, haveCounters
        ? h('span', { dataset: { active: String((c && c.connections_active) || 0) } },
          `${(c && c.connections_active) || 0} open`, h('br'),
          h('span', { class: 'muted' }, `${(c && c.connections_opened_total) || 0} total`),
          c && c.no_healthy_instance_refused_total ? [h('br'), h('span', { class: 'muted' }, `${c.no_healthy_instance_refused_total} refused (no healthy instance)`)] : null)
        : h('span', { class: 'muted', title: 'Counters come from the admin endpoint of gateways registered with this agent' }, 'n/a')));
  });

  return h('section', { class: 'card gateway', dataset: { gateway: gw, status: gwSt } },
    h('h2', {}, statusBadge(gwSt), ' ', h('a', { href: `#/services/${encodeURIComponent(gw)}` }, gw)),
    entry ? null : h('p', { class: 'inline-error' }, 'No terminating-gateway config entry for this gateway: it links no service.'),
    h('h3', {}, `Instances (${instances.length})`),
    instances.length
      ? table(['ID', 'Node', 'Address', 'Health', 'Checks'], instRows)
      : empty('No instance of this gateway is running.', 'Start one: meshgate connect envoy -gateway=terminating -register -service ' + gw),
    h('h3', {}, `Linked services (${linked.length})`),
    linkedR.error ? errorBox(linkedR.error, 'read linked services')
      : linked.length ? table(['Service', 'Health', 'Instances', 'TLS origination', 'Protocol', 'Connections'], linkRows)
        : empty('This gateway links no service.'),
    metricNotes.length ? h('p', { class: 'muted' }, `Counters unavailable: ${metricNotes.join('; ')}`) : null);
}

export default { list };
