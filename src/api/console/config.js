// Switchboard console: channels, WABAs and partners, read-only (header values masked), with their signing
// state; paged lists of the listing API.
import { h, append, put, $, api, query, errorBox, num, when, badge, masked, table, pageHeader, field, pager } from './ui.js';

export const configLists = {
  channels: {
    title: 'Channels', path: '/admin/channels', filters: ['partner', 'waba', 'phone'],
    columns: [
      { title: 'Channel', cell: (c) => h('code', { text: c.id }) },
      { title: 'Number', cell: (c) => c.phone_number },
      { title: 'Phone number id', cell: (c) => c.phone_number_id },
      { title: 'WABA', num: true, cell: (c) => c.waba_id },
      { title: 'Route', cell: (c) => (c.route ? [badge(c.route.type), ' ', c.route.webhook ? h('code', { text: c.route.webhook.url }) : ''] : '–') },
      { title: 'Headers', cell: (c) => masked(c.webhook && c.webhook.headers) },
      { title: 'Extras', cell: (c) => (c.multi_webhook_enabled ? c.extra_destinations.join(', ') || 'on' : 'off') },
      { title: 'Ordered', cell: (c) => (c.ordered ? 'yes' : 'no') },
      { title: 'Signing', cell: (c) => signing(c.signing) },
    ],
  },
  wabas: {
    title: 'WABAs', path: '/admin/wabas', filters: ['partner'],
    columns: [
      { title: 'WABA', num: true, cell: (w) => w.waba_id },
      { title: 'Partner', cell: (w) => h('code', { text: w.partner_id }) },
      { title: 'Webhook', cell: (w) => (w.webhook ? h('code', { text: w.webhook.url }) : h('span', { class: 'muted', text: 'none' })) },
      { title: 'Override all', cell: (w) => (w.webhook ? (w.webhook.override_all ? 'yes' : 'no') : '–') },
      { title: 'Headers', cell: (w) => masked(w.webhook && w.webhook.headers) },
      { title: 'Channels', num: true, cell: (w) => num(w.channels) },
      { title: 'Signing', cell: (w) => signing(w.signing) },
      { title: 'Created', cell: (w) => when(w.created_at) },
    ],
  },
  partners: {
    title: 'Partners', path: '/admin/partners', filters: [],
    columns: [
      { title: 'Partner', cell: (p) => h('code', { text: p.id }) },
      { title: 'Name', cell: (p) => p.name },
      { title: 'Webhook', cell: (p) => (p.webhook_url ? h('code', { text: p.webhook_url }) : h('span', { class: 'muted', text: 'none' })) },
      { title: 'Headers', cell: (p) => masked(p.webhook_headers) },
      { title: 'WABAs', num: true, cell: (p) => num(p.wabas) },
      { title: 'Signing', cell: (p) => signing(p.signing) },
      { title: 'Created', cell: (p) => when(p.created_at) },
    ],
  },
};

export function signing(on) {
  return on ? badge('signed', 'b-ok') : h('span', { class: 'muted', text: 'unsigned' });
}

export function configPage(kind, root) {
  const spec = configLists[kind];
  root = root || $('page');
  const inputs = spec.filters.map((f) => h('input', { type: 'text', name: f, placeholder: 'any', autocomplete: 'off' }));
  const form = spec.filters.length ? h('form', { class: 'filters', 'aria-label': 'Filters' },
    inputs.map((i) => field(i.name === 'phone' ? 'Phone prefix' : i.name === 'waba' ? 'WABA id' : 'Partner id', i)),
    h('button', { type: 'submit', class: 'primary', text: 'Apply' })) : null;
  const holder = h('div');
  append(root, [pageHeader(spec.title, 'Read-only configuration; header values are masked.'), form, holder]);
  const cursors = [''];
  const load = async () => {
    const params = { after: cursors[cursors.length - 1], limit: 50 };
    for (const i of inputs) params[i.name] = i.value.trim();
    try {
      const page = await api('GET', `${spec.path}${query(params)}`);
      put(holder, table(spec.columns, page[kind] || [], `No ${spec.title.toLowerCase()}.`),
        pager(page.next_after, (next) => { cursors.push(next); load(); }, () => { cursors.length = 1; load(); }, cursors.length === 1));
    } catch (e) { put(holder, errorBox(e, `The ${spec.title.toLowerCase()} list`)); }
  };
  if (form) form.addEventListener('submit', (e) => { e.preventDefault(); cursors.length = 1; load(); });
  load();
}

