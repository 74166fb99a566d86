// ACL tokens and policies: list, create, edit (policy rules with the
// agent's validation errors inline), delete; secrets hidden until asked.

import { get, put, del, encPath } from '../api.js';
import { h, replace, empty, errorBox, table, field, confirmDialog, toast, tag, loading } from '../dom.js';
import { go, session } from '../app.js';

function tabs(active) {
  const t = (id, label) => h('a', { href: `#/acl/${id}`, 'aria-current': active === id ? 'page' : null }, label);
  return h('nav', { class: 'tabs', 'aria-label': 'ACL' }, t('tokens', 'Tokens'), t('policies', 'Policies'));
}

function page(ctx) {
  const [which, id] = ctx.params;
  ctx.title(which === 'tokens' ? 'ACL tokens' : 'ACL policies');
  if (!session.aclEnabled) {
    replace(ctx.main, h('h1', {}, 'ACL'), empty('ACLs are disabled on this agent.', 'Enable them with an acl { enabled = true } block in the agent configuration.'));
    return;
  }
  if (which === 'tokens') return id ? tokenForm(ctx, id === 'new' ? null : id) : tokenList(ctx);
  return id ? policyForm(ctx, id === 'new' ? null : id) : policyList(ctx);
}

// A secret shown as dots until its button is pressed.
function secretCell(accessor, known) {
  const out = h('span', { class: 'secret' }, '••••••••');
  const btn = h('button', {
    type: 'button', class: 'link', 'aria-label': 'Show secret',
    onclick: async () => {
      if (btn.textContent === 'Hide') {
        replace(out, '••••••••');
        btn.textContent = 'Show';
        return;
      }
      let secret = known && !/^<hidden>$/.test(known) ? known : '';
      if (!secret) {
        try {
          secret = (await get(`/v1/acl/token/${encPath(accessor)}`)).data.SecretID || '';
        } catch (e) {
          toast(e.permission ? `Permission denied: lacks ${e.permission}` : e.message, 'bad');
          return;
        }
      }
      replace(out, secret || '(not shown to this token)');
      btn.textContent = 'Hide';
    },
  }, 'Show');
  return h('span', {}, out, ' ', btn);
}

function tokenList(ctx) {
  const body = h('div', { id: 'tokens' }, loading());
  replace(ctx.main, h('h1', {}, 'ACL'), tabs('tokens'),
    h('div', { class: 'toolbar' }, h('a', { class: 'button primary', href: '#/acl/tokens/new' }, 'Create token')),
    body);
  ctx.watch('/v1/acl/tokens', (list) => {
    const rows = (list || []).map((t) => h('tr', { dataset: { accessor: t.AccessorID } },
      h('td', { class: 'mono' }, h('a', { href: `#/acl/tokens/${encodeURIComponent(t.AccessorID)}` }, t.AccessorID.slice(0, 8)), '…',
        session.self && session.self.AccessorID === t.AccessorID ? [' ', tag('this token', 'kind')] : null),
      h('td', {}, t.Description || h('span', { class: 'muted' }, '—')),
      h('td', {}, (t.Policies || []).map((p) => tag(p.Name)), (t.Roles || []).map((r) => tag(`role ${r.Name}`)),
        (t.ServiceIdentities || []).map((s) => tag(`service ${s.ServiceName}`))),
      h('td', {}, t.Local ? 'local' : 'global'),
      h('td', {}, secretCell(t.AccessorID, t.SecretID)),
      h('td', {}, h('button', {
        type: 'button', class: 'link', 'aria-label': `Delete token ${t.AccessorID}`,
        onclick: async () => {
          if (!(await confirmDialog(`Delete the token ${t.Description || t.AccessorID}? Whatever uses it loses access.`))) return;
          try {
            await del(`/v1/acl/token/${encPath(t.AccessorID)}`);
            toast('Token deleted');
          } catch (e) {
            toast(`Delete failed: ${e.message}`, 'bad');
          }
        },
      }, 'Delete'))));
    replace(body, rows.length ? table(['AccessorID', 'Description', 'Policies', 'Scope', 'Secret', ''], rows, { id: 'tokens-table' }) : empty('No tokens.'));
  }, (e) => replace(body, errorBox(e, 'list tokens')));
}

async function tokenForm(ctx, accessor) {
  const body = h('div', {}, loading());
  replace(ctx.main, h('h1', {}, 'ACL'), tabs('tokens'), body);
  let token = null;
  let policies = [];
  try {
    [token, policies] = await Promise.all([
      accessor ? get(`/v1/acl/token/${encPath(accessor)}`).then((r) => r.data) : null,
      get('/v1/acl/policies').then((r) => r.data || []),
    ]);
  } catch (e) {
    replace(body, errorBox(e, 'read the token'));
    return;
  }
  const desc = h('input', { type: 'text', id: 'token-description', value: token ? token.Description || '' : '' });
  const held = new Set(((token && token.Policies) || []).map((p) => p.ID));
  const boxes = policies.map((p) => {
    const cb = h('input', { type: 'checkbox', value: p.ID, id: `pol-${p.ID}`, checked: held.has(p.ID) });
    return h('div', {}, cb, ' ', h('label', { for: `pol-${p.ID}` }, p.Name), p.Description ? h('span', { class: 'muted' }, ` — ${p.Description}`) : null);
  });
  const local = h('input', { type: 'checkbox', id: 'token-local', checked: token ? token.Local : false, disabled: !!token });
  const msg = h('div', { 'aria-live': 'assertive' });
  const form = h('form', { class: 'card', id: 'token-form' },
    h('h2', {}, token ? `Token ${token.AccessorID}` : 'New token'),
    token ? h('dl', { class: 'props' },
      h('dt', {}, 'AccessorID'), h('dd', { class: 'mono' }, token.AccessorID),
      h('dt', {}, 'SecretID'), h('dd', {}, secretCell(token.AccessorID, token.SecretID)),
      h('dt', {}, 'Created'), h('dd', {}, token.CreateTime || '')) : null,
    field('Description', desc),
    h('fieldset', {}, h('legend', {}, 'Policies'), boxes.length ? boxes : h('p', { class: 'muted' }, 'No policies yet.')),
    h('p', {}, local, h('label', { for: 'token-local' }, ' Local to this datacenter')),
    msg,
    h('div', { class: 'actions' },
      h('button', { type: 'submit', class: 'primary', id: 'token-save' }, token ? 'Save' : 'Create'),
      h('a', { class: 'button', href: '#/acl/tokens' }, 'Cancel')));
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const chosen = [...form.querySelectorAll('fieldset input[type=checkbox]:checked')].map((c) => ({ ID: c.value }));
    const payload = token
      ? {
        AccessorID: token.AccessorID, Description: desc.value, Policies: chosen,
        Roles: token.Roles || [], ServiceIdentities: token.ServiceIdentities || [],
        NodeIdentities: token.NodeIdentities || [], Local: token.Local,
      }
      : { Description: desc.value, Policies: chosen, Local: local.checked };
    try {
      const r = await put(token ? `/v1/acl/token/${encPath(token.AccessorID)}` : '/v1/acl/token', payload);
      toast(token ? 'Token saved' : 'Token created');
      go(`acl/tokens/${encodeURIComponent(r.data.AccessorID)}`);
    } catch (err) {
      replace(msg, errorBox(err, 'save the token'));
    }
  });
  replace(body, form);
  desc.focus();
}

function policyList(ctx) {
  const body = h('div', { id: 'policies' }, loading());
  replace(ctx.main, h('h1', {}, 'ACL'), tabs('policies'),
    h('div', { class: 'toolbar' }, h('a', { class: 'button primary', href: '#/acl/policies/new' }, 'Create policy')),
    body);
  ctx.watch('/v1/acl/policies', (list) => {
    const rows = (list || []).map((p) => h('tr', { dataset: { policy: p.Name } },
      h('td', {}, h('a', { href: `#/acl/policies/${encodeURIComponent(p.ID)}` }, p.Name)),
      h('td', {}, p.Description || ''),
      h('td', {}, (p.Datacenters || []).length ? p.Datacenters.join(', ') : 'all'),
      h('td', {}, h('button', {
        type: 'button', class: 'link', 'aria-label': `Delete policy ${p.Name}`,
        onclick: async () => {
          if (!(await confirmDialog(`Delete the policy ${p.Name}? Tokens holding it lose what it grants.`))) return;
          try {
            await del(`/v1/acl/policy/${encPath(p.ID)}`);
            toast('Policy deleted');
          } catch (e) {
            toast(`Delete failed: ${e.message}`, 'bad');
          }
        },
      }, 'Delete'))));
    replace(body, rows.length ? table(['Name', 'Description', 'Datacenters', ''], rows, { id: 'policies-table' }) : empty('No policies.'));
  }, (e) => replace(body, errorBox(e, 'list policies')));
}

async function policyForm(ctx, id) {
  const body = h('div', {}, loading());
  replace(ctx.main, h('h1', {}, 'ACL'), tabs('policies'), body);
  let p = null;
  if (id) {
    try {
      p = (await get(`/v1/acl/policy/${encPath(id)}`)).data;
    } catch (e) {
      replace(body, errorBox(e, 'read the policy'));
      return;
    }
  }
  const name = h('input', { type: 'text', id: 'policy-name', required: true, value: p ? p.Name : '' });
  const desc = h('input', { type: 'text', id: 'policy-description', value: p ? p.Description || '' : '' });
  const rules = h('textarea', { id: 'policy-rules', spellcheck: 'false', 'aria-describedby': 'policy-rules-error' });
  rules.value = p ? p.Rules || '' : 'key_prefix "" {\n  policy = "read"\n}\n';
  const rulesErr = h('div', { id: 'policy-rules-error', 'aria-live': 'assertive' });
  const msg = h('div', { 'aria-live': 'assertive' });
  const form = h('form', { class: 'card', id: 'policy-form' },
    h('h2', {}, p ? `Policy ${p.Name}` : 'New policy'),
    p ? h('p', { class: 'muted mono' }, `ID ${p.ID}`) : null,
    field('Name', name), field('Description', desc),
    field('Rules (HCL or JSON)', rules, 'Checked by the agent when saved.'), rulesErr,
    msg,
    h('div', { class: 'actions' },
      h('button', { type: 'submit', class: 'primary', id: 'policy-save' }, p ? 'Save' : 'Create'),
      h('a', { class: 'button', href: '#/acl/policies' }, 'Cancel')));
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    replace(rulesErr);
    replace(msg);
    const payload = { Name: name.value.trim(), Description: desc.value, Rules: rules.value };
    if (p) {
      payload.ID = p.ID;
      payload.Datacenters = p.Datacenters;
    }
    try {
      const r = await put(p ? `/v1/acl/policy/${encPath(p.ID)}` : '/v1/acl/policy', payload);
      toast(p ? 'Policy saved' : 'Policy created');
      go(`acl/policies/${encodeURIComponent(r.data.ID)}`);
    } catch (err) {
      // The agent answers 400 or 500 for rules it cannot parse.
      if ((err.status === 400 || err.status === 500) && /rule|pars|policy|syntax|line \d+/i.test(err.message)) {
        replace(rulesErr, h('p', { class: 'inline-error', role: 'alert' }, err.message));
        rules.setAttribute('aria-invalid', 'true');
        rules.focus();
      } else {
        replace(msg, errorBox(err, 'save the policy'));
      }
    }
  });
  replace(body, form);
  name.focus();
}

export default { page };
