// Switchboard console: an event's story: its payload, the route it took and why (phone-number webhook ▸ WABA
// webhook ▸ none), every attempt, replay.
import { REFRESH_MS, app, h, append, put, api, every, flash, errorBox, num, ms, when, badge, masked, table, pageHeader, field } from './ui.js';
import { summarize, describeSummary } from './whatsapp.js';
import { eventLink } from './tail.js';

export function eventPage(root, id) {
  const input = h('input', { type: 'text', inputmode: 'numeric', value: id || '', autocomplete: 'off' });
  const form = h('form', { class: 'filters', 'aria-label': 'Open an event' }, field('Event id', input),
    h('button', { type: 'submit', class: 'primary', text: 'Open' }));
  form.addEventListener('submit', (e) => { e.preventDefault(); if (input.value.trim()) location.hash = `#/events/${input.value.trim()}`; });
  const story = h('div', { id: 'story' });
  append(root, [pageHeader(id ? `Event #${id}` : 'Event story', 'Its payload, the route it took and why, every attempt.', form), story]);
  if (!id) {
    story.append(h('p', { class: 'empty', text: 'Open an event by id, or follow a link from the live tail or the failed deliveries.' }));
    return;
  }
  let routeView = null;
  const load = async () => {
    let event;
    try { event = await api('GET', `/admin/events/${encodeURIComponent(id)}`); } catch (e) {
      put(story, errorBox(e, `Event ${id}`));
      return;
    }
    if (routeView === null) routeView = await routeOf(event);
    put(story, renderStory(event, routeView, load));
    if (!event.deliveries.some((d) => d.state === 'pending')) return;
    app.timers.push(setTimeout(() => { if (location.hash === `#/events/${id}`) load(); }, REFRESH_MS));
  };
  load();
}

export async function routeOf(event) {
  if (!event.channel_id) return { kind: event.kind, channel: null };
  try {
    return { kind: event.kind, channel: await api('GET', `/admin/channels/${encodeURIComponent(event.channel_id)}`) };
  } catch (e) { return { kind: event.kind, error: e }; }
}

export function renderStory(event, routeView, reload) {
  const summary = summarize(event.payload);
  return [
    h('dl', { class: 'facts' },
      h('dt', { text: 'Kind' }), h('dd', {}, badge(event.kind)),
      h('dt', { text: 'Received' }), h('dd', { text: when(event.received_at) }),
      h('dt', { text: 'Channel' }), h('dd', {}, event.channel_id ? h('code', { text: event.channel_id }) : '–'),
      h('dt', { text: 'Phone number id' }), h('dd', { text: event.phone_number_id || '–' }),
      event.partner_id ? [h('dt', { text: 'Partner' }), h('dd', {}, h('code', { text: event.partner_id }))] : null),
    h('section', { class: 'panel' }, h('h2', { text: 'What it says' }),
      event.payload_purged_at ? h('p', { class: 'muted', text: `Payload purged ${when(event.payload_purged_at)} by the payload retention (--payload-retention-hours); its deliveries and attempts are kept.` })
        : describeSummary(summary).length ? describeSummary(summary) : h('p', { class: 'muted', text: 'No message or status in this payload.' })),
    h('section', { class: 'panel' }, h('h2', { text: 'Route and why' }), routeExplanation(routeView)),
    h('h2', { text: 'Deliveries' }),
    event.deliveries.length ? event.deliveries.map((d) => deliveryStory(d, reload)) : h('p', { class: 'empty', text: 'No delivery (unroutable events are stored, never delivered).' }),
    h('details', { class: 'panel', open: true }, h('summary', { text: 'Payload' }),
      event.payload_purged_at ? h('p', { class: 'muted', text: 'Purged.' }) : h('pre', { class: 'payload', text: JSON.stringify(event.payload, null, 2) })),
  ];
}

export function routeExplanation(view) {
  if (view.error) return errorBox(view.error, 'The channel\'s configuration');
  if (!view.channel) {
    const why = { partner: 'A partner event goes to the partner\'s webhook.', waba: 'A WABA-level notification goes to its WABA\'s webhook.',
      unroutable: 'No channel has this phone number id: stored, never delivered.' };
    return h('p', { text: why[view.kind] || 'No channel.' });
  }
  const c = view.channel;
  const chosen = c.route.type;
  const step = (type, title, detail) => h('li', { class: `step ${chosen === type ? 'chosen' : 'skipped'}`, 'aria-current': chosen === type ? 'step' : null },
    h('strong', { text: title }), h('div', { class: 'small' }, detail));
  const phone = c.webhook && c.webhook.url ? [h('code', { text: c.webhook.url }), ' ', masked(c.webhook.headers)] : 'not set';
  const waba = chosen === 'waba' ? [h('code', { text: c.route.webhook.url }), ' ', masked(c.route.webhook.headers)]
    : chosen === 'phone' ? 'not consulted: the number\'s own webhook wins' : 'not set';
  const reason = {
    phone: 'The number has its own webhook, which comes first.',
    waba: 'The number has no webhook of its own (or the WABA\'s override_all removed it): the WABA webhook serves it.',
    none: 'Neither the number nor its WABA has a webhook: its deliveries are dropped.',
  }[chosen];
  return [
    h('ol', { class: 'route' }, step('phone', 'Phone-number webhook', phone), step('waba', 'WABA webhook', waba),
      step('none', 'None', 'dropped')),
    h('p', {}, reason),
    h('p', { class: 'muted small', text: `Channel ${c.id}, WABA ${c.waba_id}, ${c.phone_number}. As configured now: each attempt is routed with the configuration of its time (the attempts below show the URL each one used).${c.multi_webhook_enabled ? ` Multi webhook on: extras ${c.extra_destinations.join(', ')}.` : ''}` }),
  ];
}

export function deliveryStory(d, reload) {
  const replay = async () => {
    try { await api('POST', `/admin/deliveries/${d.id}/retry`); flash(`Delivery ${d.id} requeued.`); reload(); } catch (e) { flash(`Replay failed: ${e.message}`, 'bad'); }
  };
  const canReplay = d.state === 'failed' || d.state === 'dropped';
  return h('section', { class: 'panel delivery', 'data-delivery': d.id },
    h('div', { class: 'summary-line' }, h('strong', { text: `Delivery ${d.id}` }), ' ', h('code', { text: d.target }), ' ',
      h('span', { class: 'delivery-state' }, badge(d.state)), ` · ${d.attempts} attempt${d.attempts === 1 ? '' : 's'}`,
      d.next_attempt_at ? ` · next ${when(d.next_attempt_at)}` : '',
      d.last_error ? h('span', { class: 'error', text: ` · ${d.last_error}` }) : '',
      canReplay ? h('button', { type: 'button', class: 'replay', text: 'Replay', onclick: replay }) : null),
    table([
      { title: '#', num: true, cell: (a) => a.number },
      { title: 'Time', cell: (a) => when(a.started_at) },
      { title: 'Duration', num: true, cell: (a) => ms(a.duration_ms) },
      { title: 'URL', cell: (a) => h('code', { text: a.url }) },
      { title: 'Status', cell: (a) => (a.status ? badge(String(a.status), a.status === 200 ? 'b-ok' : 'b-failing') : '–') },
      { title: 'Error', cell: (a) => a.error || '–' },
      { title: 'Answer', cell: (a) => (a.response ? h('code', { class: 'excerpt', text: a.response.slice(0, 120) }) : '–') },
    ], d.attempt_log || [], 'Not attempted yet.'));
}

