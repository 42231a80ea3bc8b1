// Switchboard console: destinations: the list, one destination's figures and routes, pause and resume, and
// recovery over a time window (counted with a dry run before it runs).
import { REFRESH_MS, h, append, put, api, query, every, flash, errorBox, num, ms, pct, when, clock, badge, table, pageHeader, field, pager, card } from './ui.js';

export function destinationTable(list) {
  return table([
    { title: 'Destination', cell: (d) => [h('a', { href: `#/destinations/${d.id}` }, h('code', { text: d.url })), h('div', { class: 'muted small', text: d.id })] },
    { title: 'State', cell: (d) => badge(d.state) },
    { title: 'Grade', cell: (d) => badge(d.grade) },
    { title: 'p50', num: true, cell: (d) => ms(d.last_5m.latency_ms.p50) },
    { title: 'p99', num: true, cell: (d) => ms(d.last_5m.latency_ms.p99) },
    { title: 'Over 1 s', num: true, cell: (d) => pct(d.last_5m.over_1s_share) },
    { title: 'Success', num: true, cell: (d) => pct(d.last_5m.success_rate) },
    { title: 'Backlog', num: true, cell: (d) => num(d.backlog) },
    { title: 'Next attempt', cell: (d) => when(d.next_attempt_at) },
  ], list, 'No destination yet.');
}

export function destinationsPage(root, id) {
  if (id) { destinationDetail(root, id); return; }
  const holder = h('div');
  append(root, [pageHeader('Destinations', 'Graded over the last 5 minutes against the provider\'s standards (p50 under 250 ms, under 1 % over 1 s).'), holder]);
  const cursors = [''];
  const load = async () => {
    const after = cursors[cursors.length - 1];
    try {
      const page = await api('GET', `/admin/destinations${query({ after, limit: 50 })}`);
      put(holder, destinationTable(page.destinations),
        pager(page.next_after, (next) => { cursors.push(next); load(); }, () => { cursors.length = 1; load(); }, cursors.length === 1));
    } catch (e) { put(holder, errorBox(e, 'The destination list')); }
  };
  every(REFRESH_MS, load);
}

export function destinationDetail(root, id) {
  const figures = h('div', { id: 'destination-figures' });
  const actions = h('div', { class: 'actions' });
  append(root, [h('p', {}, h('a', { href: '#/destinations', text: '← All destinations' })),
    pageHeader('Destination', id, actions), figures, recoverForm(id)]);
  const act = async (verb) => {
    try {
      await api('POST', `/admin/destinations/${id}/${verb}`);
      flash(verb === 'pause' ? 'Paused: only probes are sent until it is resumed.' : 'Resumed: its backlog drains now.');
      await load();
    } catch (e) { flash(`${verb} failed: ${e.message}`, 'bad'); }
  };
  const load = async () => {
    let d;
    try { d = await api('GET', `/admin/destinations/${id}`); } catch (e) {
      put(figures, errorBox(e, 'This destination'));
      return;
    }
    const paused = d.state === 'paused';
    put(actions, paused
      ? h('button', { type: 'button', class: 'primary', id: 'resume', text: 'Resume', onclick: () => act('resume') })
      : h('button', { type: 'button', id: 'pause', text: 'Pause', onclick: () => act('pause') }));
    const windows = [['Last 5 minutes', d.last_5m], ['Last hour', d.last_1h]];
    put(figures, 
      h('div', { class: 'summary-line' }, h('code', { class: 'big', text: d.url }), ' ',
        h('span', { id: 'destination-state' }, badge(d.state)), ' grade ', badge(d.grade),
        paused ? h('span', { class: 'muted', text: ` since ${when(d.paused_at)} (${d.pause_reason})` }) : null),
      h('div', { class: 'cards' },
        card('Backlog', num(d.backlog), '', 'deliveries waiting', d.backlog ? 'warn' : ''),
        card('Oldest waiting', d.oldest_waiting_s === null ? '–' : num(d.oldest_waiting_s), d.oldest_waiting_s === null ? '' : 's', 'since arrival or replay'),
        card('Next attempt', d.next_attempt_at ? clock(d.next_attempt_at) : '–', '', d.next_attempt_at ? when(d.next_attempt_at) : 'nothing due')),
      h('h2', { text: 'Answers' }),
      table([
        { title: 'Window', cell: (w) => w[0] },
        { title: 'Attempts', num: true, cell: (w) => num(w[1].attempts) },
        { title: 'Delivered', num: true, cell: (w) => num(w[1].delivered) },
        { title: 'Success', num: true, cell: (w) => pct(w[1].success_rate) },
        { title: 'p50', num: true, cell: (w) => ms(w[1].latency_ms.p50) },
        { title: 'p90', num: true, cell: (w) => ms(w[1].latency_ms.p90) },
        { title: 'p99', num: true, cell: (w) => ms(w[1].latency_ms.p99) },
        { title: 'Over 1 s', num: true, cell: (w) => pct(w[1].over_1s_share) },
      ], windows),
      h('h2', { text: 'Routes here' }),
      table([
        { title: 'Why', cell: (r) => badge(r.reason) },
        { title: 'Channel', cell: (r) => (r.channel_id ? h('code', { text: r.channel_id }) : '–') },
        { title: 'Partner', cell: (r) => (r.partner_id ? h('code', { text: r.partner_id }) : '–') },
        { title: 'Name', cell: (r) => r.name || '–' },
      ], d.routes, 'No configuration routes here now (attempted lately only).'));
  };
  every(REFRESH_MS, load);
}

export function localInput(date) {
  const pad = (n) => String(n).padStart(2, '0');
  return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}T${pad(date.getHours())}:${pad(date.getMinutes())}`;
}

export function recoverForm(destination) {
  const now = new Date();
  const since = h('input', { type: 'datetime-local', required: true, value: localInput(new Date(now - 3600e3)) });
  const until = h('input', { type: 'datetime-local', value: localInput(new Date(now.getTime() + 60e3)) });
  const states = ['failed', 'dropped', 'delivered'].map((s) => h('input', { type: 'checkbox', value: s, id: `rs-${s}`, checked: s !== 'delivered' }));
  const result = h('div', { class: 'recover-result', role: 'status', 'aria-live': 'polite', id: 'recover-result' });
  const body = () => ({
    since: new Date(since.value).toISOString(),
    until: until.value ? new Date(until.value).toISOString() : undefined,
    destination,
    state: states.filter((s) => s.checked).map((s) => s.value),
  });
  const run = async () => {
    try {
      const answer = await api('POST', '/admin/deliveries/recover', body());
      put(result, h('p', { class: 'ok-text', text: `${num(answer.requeued)} deliveries requeued.` }));
      flash(`Recovery started: ${answer.requeued} deliveries requeued.`);
    } catch (e) { put(result, h('p', { class: 'error', text: e.message })); }
  };
  const form = h('form', { class: 'panel', 'aria-labelledby': 'recover-title' },
    h('h2', { id: 'recover-title', text: 'Recover a time window' }),
    h('p', { class: 'muted', text: 'Replays the deliveries to this destination of the events that arrived in the window. Counted first; nothing runs until you confirm.' }),
    h('div', { class: 'filters' }, field('Since', since), field('Until', until),
      h('fieldset', { class: 'kinds' }, h('legend', { text: 'States' }),
        states.map((s) => h('label', { for: s.id, class: 'check' }, s, ` ${s.value}`))),
      h('button', { type: 'submit', id: 'recover-count', text: 'Count matching' })),
    result);
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    try {
      const answer = await api('POST', '/admin/deliveries/recover', { ...body(), dry_run: true });
      put(result, h('p', {}, h('strong', { id: 'recover-matched', text: `${num(answer.matched)} deliveries match.` }), ' '),
        answer.matched > 0 ? h('button', { type: 'button', class: 'primary', id: 'recover-run', text: `Replay ${num(answer.matched)} deliveries`, onclick: run }) : null);
    } catch (err) { put(result, h('p', { class: 'error', text: err.message })); }
  });
  return form;
}

