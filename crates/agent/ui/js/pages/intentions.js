// Intentions: list in precedence order, create, edit, delete.

import { put, del, qs } from '../api.js';
import { h, replace, empty, errorBox, table, field, confirmDialog, toast, tag, loading } from '../dom.js';

function page(ctx) {
  ctx.title('Intentions');
  const formHost = h('div');
  const body = h('div', { id: 'intentions' }, loading());
  const newBtn = h('button', { type: 'button', class: 'primary', id: 'intention-new', onclick: () => showForm(null) }, 'New intention');
  replace(ctx.main, h('h1', {}, 'Intentions'),
    h('p', { class: 'muted' }, 'Which service may open connections to which. Listed in evaluation order: the first match decides (exact names before *, and deny before allow at equal precedence); with nothing matching, the ACL default policy decides.'),
    h('div', { class: 'toolbar' }, newBtn, h('span', { class: 'grow' }), h('span', { class: 'muted' }, 'Updates live')),
    formHost, body);

  function showForm(it) {
    const src = h('input', { type: 'text', id: 'intention-source', required: true, value: it ? it.SourceName : '', autocomplete: 'off' });
    const dst = h('input', { type: 'text', id: 'intention-destination', required: true, value: it ? it.DestinationName : '', autocomplete: 'off' });
    const action = h('select', { id: 'intention-action' },
      h('option', { value: 'allow' }, 'allow'), h('option', { value: 'deny' }, 'deny'));
    action.value = it && it.Action ? it.Action : 'allow';
    const desc = h('input', { type: 'text', id: 'intention-description', value: it ? it.Description || '' : '' });
    if (it) {
      src.readOnly = true;
      dst.readOnly = true;
    }
    const msg = h('div', { 'aria-live': 'assertive' });
    const form = h('form', { class: 'card', id: 'intention-form' },
      h('h2', {}, it ? `Edit ${it.SourceName} → ${it.DestinationName}` : 'New intention'),
      h('div', { class: 'row' },
        field('Source service', src, 'A service name, or * for every service.'),
        field('Destination service', dst, 'A service name, or *.')),
      h('div', { class: 'row' }, field('Action', action), field('Description', desc)),
      it && it.Permissions && it.Permissions.length ? h('p', { class: 'muted' }, 'This intention has L7 permissions; saving here keeps only the action (edit the service-intentions config entry for permissions).') : null,
      msg,
      h('div', { class: 'actions' },
        h('button', { type: 'submit', class: 'primary', id: 'intention-save' }, 'Save'),
        h('button', { type: 'button', onclick: () => replace(formHost) }, 'Cancel')));
    form.addEventListener('submit', async (e) => {
      e.preventDefault();
      const s = src.value.trim();
      const d = dst.value.trim();
      if (!s || !d) {
        replace(msg, h('p', { class: 'inline-error' }, 'Source and destination are required.'));
        return;
      }
      try {
        await put(`/v1/connect/intentions/exact${qs({ source: s, destination: d })}`,
          { SourceName: s, DestinationName: d, SourceType: 'consul', Action: action.value, Description: desc.value });
        toast(`Saved ${s} → ${d}`);
        replace(formHost);
      } catch (err) {
        replace(msg, errorBox(err, 'save the intention'));
      }
    });
    replace(formHost, form);
    (it ? action : src).focus();
  }

  ctx.watch('/v1/connect/intentions', (data) => {
    const list = data || [];
    if (!list.length) {
      replace(body, empty('No intentions.', 'Without intentions the ACL default policy decides whether services may connect.'));
      return;
    }
    const rows = list.map((it, i) => h('tr', { dataset: { source: it.SourceName, destination: it.DestinationName, action: it.Action || 'l7' } },
      h('td', { class: 'metric' }, String(i + 1)),
      h('td', {}, it.SourceName),
      h('td', {}, it.DestinationName),
      h('td', {}, it.Action ? tag(it.Action, it.Action === 'deny' ? 'external' : 'kind') : tag(`L7: ${(it.Permissions || []).length} permission(s)`)),
      h('td', { class: 'metric' }, String(it.Precedence ?? '')),
      h('td', {}, it.Description || ''),
      h('td', {}, h('div', { class: 'actions' },
        h('button', { type: 'button', class: 'link', onclick: () => showForm(it), 'aria-label': `Edit ${it.SourceName} to ${it.DestinationName}` }, 'Edit'),
        h('button', {
          type: 'button', class: 'link', 'aria-label': `Delete ${it.SourceName} to ${it.DestinationName}`,
          onclick: async () => {
            if (!(await confirmDialog(`Delete the intention ${it.SourceName} → ${it.DestinationName}?`))) return;
            try {
              await del(`/v1/connect/intentions/exact${qs({ source: it.SourceName, destination: it.DestinationName })}`);
              toast('Deleted');
            } catch (err) {
              toast(`Delete failed: ${err.message}`, 'bad');
            }
          },
        }, 'Delete')))));
    replace(body, table(['#', 'Source', 'Destination', 'Action', 'Precedence', 'Description', ''], rows, { id: 'intentions-table' }));
  }, (e) => replace(body, errorBox(e, 'list intentions')));
}

export default { page };
