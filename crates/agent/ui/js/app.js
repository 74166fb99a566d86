// The application: session (ACL token), navigation, the page frame.

import { api, ApiError, authorize, getToken, setToken } from './api.js';
import { h, replace, errorBox, field, loading, table, tag } from './dom.js';
import { watch } from './live.js';
import services from './pages/services.js';
import nodes from './pages/nodes.js';
import gateways from './pages/gateways.js';
import kv from './pages/kv.js';
import intentions from './pages/intentions.js';
import acl from './pages/acl.js';
import config from './pages/config.js';

// What the session knows: whether ACLs are on, the token's own description
// and what it may do.
export const session = {
  aclEnabled: false,
  self: null,
  perms: null,
};

// Permissions asked once per login, to hide what the token may not use.
const PERMS = [
  ['acl', 'read', ''],
  ['acl', 'write', ''],
  ['key', 'read', ''],
  ['key', 'write', ''],
  ['service', 'read', ''],
  ['service', 'write', ''],
  ['node', 'read', ''],
  ['intention', 'read', ''],
  ['intention', 'write', ''],
  ['operator', 'read', ''],
  ['mesh', 'read', ''],
  ['agent', 'read', ''],
];

export function may(resource, access, segment = '') {
  if (!session.aclEnabled || !session.perms) return true;
  const v = session.perms.get(`${resource}:${access}:${segment}`);
  return v === undefined ? true : v;
}

const ROUTES = [
  [/^services$/, services.list, 'services'],
  [/^services\/(.+)$/, services.detail, 'services'],
  [/^nodes$/, nodes.list, 'nodes'],
  [/^nodes\/(.+)$/, nodes.detail, 'nodes'],
  [/^gateways$/, gateways.list, 'gateways'],
  [/^kv\/(.*)$/, kv.page, 'kv'],
  [/^intentions$/, intentions.page, 'intentions'],
  [/^acl\/(tokens|policies)$/, acl.page, 'acl'],
  [/^acl\/(tokens|policies)\/(.+)$/, acl.page, 'acl'],
  [/^config$/, config.page, 'config'],
  [/^config\/([^/]+)$/, config.page, 'config'],
  [/^config\/([^/]+)\/(.+)$/, config.page, 'config'],
  [/^token$/, tokenPage, ''],
  [/^login$/, loginPage, ''],
];

let cleanups = [];

function currentPath() {
  const hash = location.hash.replace(/^#\/?/, '');
  return hash.split('?')[0];
}

export function hashQuery() {
  const i = location.hash.indexOf('?');
  return new URLSearchParams(i >= 0 ? location.hash.slice(i + 1) : '');
}

export function go(path) {
  const target = `#/${path}`;
  if (location.hash === target) route();
  else location.hash = target;
}

// Renders the page for the current hash.
function route() {
  for (const c of cleanups) {
    try {
      c();
    } catch {
      // A stopped watch has nothing left to undo.
    }
  }
  cleanups = [];
  const path = currentPath();
  const main = document.getElementById('main');
  if (session.aclEnabled && !session.self && path !== 'login') {
    go('login');
    return;
  }
  if (!path) {
    go('services');
    return;
  }
  let found = null;
  for (const [re, render, section] of ROUTES) {
    const m = re.exec(path);
    if (m) {
      found = { render, section, params: m.slice(1).map(safeDecode) };
      break;
    }
  }
  for (const a of document.querySelectorAll('nav#nav a')) {
    if (found && a.dataset.section === found.section) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  document.getElementById('nav').classList.remove('open');
  document.querySelector('.menu-toggle').setAttribute('aria-expanded', 'false');
  replace(main, loading());
  if (!found) {
    replace(main, h('h1', {}, 'Not found'), h('p', {}, 'There is no page at this address. ', h('a', { href: '#/services' }, 'Go to Services')));
    return;
  }
  const ctx = {
    main,
    params: found.params,
    query: hashQuery(),
    watch(p, onData, onError, opts) {
      const stop = watch(p, onData, onError, opts);
      cleanups.push(stop);
      return stop;
    },
    onCleanup(f) {
      cleanups.push(f);
    },
    title(t) {
      document.title = t ? `${t} · meshgate` : 'meshgate';
    },
  };
  Promise.resolve()
    .then(() => found.render(ctx))
    .catch((e) => replace(main, errorBox(e, 'show this page')));
}

function safeDecode(s) {
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
}

// Asks who the token is. Sets session.*; resolves to an error message when
// the token is refused.
async function checkSession() {
  session.self = null;
  session.perms = null;
  const token = getToken();
  if (!token) {
    // Are ACLs on at all? /v1/internal/acl/authorize answers 401 when not.
    try {
      await api('POST', '/v1/internal/acl/authorize', { body: [] });
      session.aclEnabled = true;
    } catch (e) {
      if (e instanceof ApiError && e.status === 401) {
        session.aclEnabled = false;
        return null;
      }
      session.aclEnabled = true;
      if (e instanceof ApiError && e.status === 0) return e.message;
    }
    return null;
  }
  try {
    const r = await api('GET', '/v1/acl/token/self');
    session.aclEnabled = true;
    session.self = r.data;
  } catch (e) {
    if (e instanceof ApiError && e.status === 401) {
      session.aclEnabled = false;
      return null;
    }
    session.aclEnabled = true;
    setToken('');
    return e instanceof ApiError && e.status === 403 ? 'The agent does not know this token.' : e.message;
  }
  try {
    session.perms = await authorize(PERMS.map(([r, a, s]) => ({ Resource: r, Access: a, Segment: s })));
  } catch {
    session.perms = null;
  }
  return null;
}

function renderSession() {
  const el = document.getElementById('session');
  for (const li of document.querySelectorAll('nav#nav [data-needs="acl"]')) {
    li.hidden = session.aclEnabled && (!session.self || !may('acl', 'read'));
  }
  if (!session.aclEnabled) {
    replace(el, h('span', { title: 'This agent does not enforce ACLs' }, 'ACLs disabled'));
    return;
  }
  if (!session.self) {
    replace(el, h('a', { href: '#/login' }, 'Log in'));
    return;
  }
  const s = session.self;
  const name = s.Description || `token ${String(s.AccessorID || '').slice(0, 8)}`;
  replace(el,
    h('a', { href: '#/token', title: 'What this token may do', id: 'whoami' }, name),
    h('button', { type: 'button', id: 'logout', onclick: logout }, 'Log out'));
}

async function logout() {
  setToken('');
  // What the last token did is none of the next one's business.
  document.getElementById('toasts').replaceChildren();
  session.self = null;
  session.perms = null;
  renderSession();
  go('login');
}

function loginPage(ctx) {
  ctx.title('Log in');
  if (!session.aclEnabled) {
    replace(ctx.main, h('h1', {}, 'Log in'), h('p', {}, 'This agent does not enforce ACLs: no token is needed. ', h('a', { href: '#/services' }, 'Go to Services')));
    return;
  }
  const input = h('input', { type: 'password', name: 'token', autocomplete: 'off', spellcheck: 'false', required: true });
  const msg = h('div', { 'aria-live': 'assertive' });
  const form = h('form', { class: 'login card', id: 'login-form' },
    h('p', {}, 'This agent enforces ACLs. Enter an ACL token (its SecretID). It is kept in this browser tab only (session storage) and sent as ', h('code', {}, 'X-Consul-Token'), '.'),
    field('Token', input),
    msg,
    h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'primary' }, 'Log in')));
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const t = input.value.trim();
    if (!t) {
      replace(msg, h('p', { class: 'inline-error' }, 'Enter a token.'));
      return;
    }
    setToken(t);
    const err = await checkSession();
    renderSession();
    if (err || !session.self) {
      replace(msg, h('p', { class: 'inline-error', role: 'alert' }, err || 'The token was refused.'));
      input.focus();
      return;
    }
    input.value = '';
    go('services');
  });
  replace(ctx.main, h('h1', {}, 'Log in'), form);
  input.focus();
}

function tokenPage(ctx) {
  ctx.title('Token');
  if (!session.aclEnabled || !session.self) {
    replace(ctx.main, h('h1', {}, 'Token'), h('p', {}, 'No token in use.'));
    return;
  }
  const s = session.self;
  const rows = PERMS.map(([r, a]) => {
    const ok = may(r, a);
    return h('tr', {}, h('td', {}, h('code', {}, `${r}:${a}`)), h('td', {}, ok ? tag('allowed', 'ok') : tag('denied', 'external')));
  });
  replace(ctx.main,
    h('h1', {}, 'This token'),
    h('div', { class: 'card' }, h('dl', { class: 'props' },
      h('dt', {}, 'Description'), h('dd', {}, s.Description || '—'),
      h('dt', {}, 'AccessorID'), h('dd', { class: 'mono' }, s.AccessorID || ''),
      h('dt', {}, 'Policies'), h('dd', {}, (s.Policies || []).map((p) => tag(p.Name)).concat((s.Policies || []).length ? [] : ['—'])),
      h('dt', {}, 'Roles'), h('dd', {}, (s.Roles || []).map((p) => tag(p.Name)).concat((s.Roles || []).length ? [] : ['—'])))),
    h('h2', {}, 'What it may do (on every name)'),
    h('p', { class: 'muted' }, 'Rules on a prefix or a single name may allow more than this; pages show what the agent returns to this token.'),
    table(['Permission', ''], rows));
}

async function start() {
  const toggle = document.querySelector('.menu-toggle');
  toggle.addEventListener('click', () => {
    const nav = document.getElementById('nav');
    const open = nav.classList.toggle('open');
    toggle.setAttribute('aria-expanded', String(open));
  });
  const err = await checkSession();
  renderSession();
  if (err) {
    replace(document.getElementById('main'), errorBox(new ApiError(0, err), 'check the token'));
  }
  window.addEventListener('hashchange', route);
  route();
}

start();
