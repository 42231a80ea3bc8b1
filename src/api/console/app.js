// Switchboard console: one page, hash routes, no framework, no other origin.
// Every element is built with h() (text nodes, never innerHTML), so no payload can inject
// markup. Reads and writes go to the admin API with the session cookie; every write sends
// the session's CSRF token in X-CSRF-Token.
'use strict';

const POLL_MS = 2000;
const REFRESH_MS = 3000;
const TAIL_ROWS = 500;
const TAIL_BUFFER = 1000;

const app = { csrf: null, timers: [], source: null, routeId: 0 };

// ---------- DOM and HTTP helpers ----------

function h(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === 'class') node.className = value;
    else if (key === 'text') node.textContent = value;
    else if (key.startsWith('on')) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? '' : value);
  }
  append(node, children);
  return node;
}

function append(node, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function $(id) { return document.getElementById(id); }

// Replaces a node's children (nested arrays flattened, null and false skipped).
function put(node, ...children) { node.replaceChildren(); return append(node, children); }

class ApiFailure extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

async function api(method, path, body) {
  const headers = { Accept: 'application/json' };
  if (method !== 'GET' && app.csrf) headers['X-CSRF-Token'] = app.csrf;
  const init = { method, headers, credentials: 'same-origin' };
  if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  const response = await fetch(path, init);
  let data = null;
  try { data = await response.json(); } catch (_) { data = null; }
  if (response.status === 401 && !path.startsWith('/console/login')) showLogin();
  if (!response.ok) {
    const message = (data && (data.error || data.message)) || response.statusText;
    throw new ApiFailure(response.status, message);
  }
  return data;
}

function query(params) {
  const parts = Object.entries(params)
    .filter(([, v]) => v !== undefined && v !== null && v !== '')
    .map(([k, v]) => `${encodeURIComponent(k)}=${encodeURIComponent(v)}`);
  return parts.length ? `?${parts.join('&')}` : '';
}

function every(ms, fn) {
  const id = app.routeId;
  const run = async () => {
    if (id !== app.routeId) return;
    try { await fn(); } catch (e) { /* shown by fn */ }
    if (id === app.routeId) app.timers.push(setTimeout(run, ms));
  };
  return run();
}

function flash(text, kind) {
  const box = $('flash');
  box.textContent = text;
  box.className = `flash ${kind || 'ok'}`;
  box.hidden = false;
  clearTimeout(app.flashTimer);
  app.flashTimer = setTimeout(() => { box.hidden = true; }, 6000);
}

function errorBox(error, what) {
  const status = error instanceof ApiFailure ? ` (HTTP ${error.status})` : '';
  return h('div', { class: 'empty error-state', role: 'alert' },
    h('strong', { text: `${what} is not available${status}.` }),
    h('p', { text: error.message || String(error) }));
}

// ---------- formatting ----------

const num = (n) => (n === null || n === undefined ? '–' : Number(n).toLocaleString('en-US'));
const ms = (n) => (n === null || n === undefined ? '–' : `${num(n)} ms`);
const pct = (x) => (x === null || x === undefined ? '–' : `${(x * 100).toFixed(x < 0.1 && x > 0 ? 2 : 1)} %`);
const rate = (x) => (x === null ? '–' : x < 10 ? x.toFixed(1) : num(Math.round(x)));

function when(text) {
  if (!text) return '–';
  const d = new Date(text);
  if (Number.isNaN(d.getTime())) return text;
  return d.toLocaleString('sv-SE', { hour12: false });
}

function clock(text) {
  const d = text ? new Date(text) : new Date();
  return d.toLocaleTimeString('en-GB', { hour12: false });
}

function badge(value, extra) {
  return h('span', { class: `badge b-${String(value).replace(/[^a-z0-9_-]/gi, '')} ${extra || ''}`, text: value });
}

function masked(headers) {
  const names = Object.keys(headers || {});
  if (!names.length) return h('span', { class: 'muted', text: 'none' });
  return names.map((n) => h('code', { class: 'hdr', text: `${n}: ***` }));
}

function table(columns, rows, empty) {
  if (!rows.length) return h('p', { class: 'empty', text: empty || 'Nothing to show.' });
  return h('table', {},
    h('thead', {}, h('tr', {}, columns.map((c) => h('th', { scope: 'col', class: c.num ? 'num' : '', text: c.title })))),
    h('tbody', {}, rows.map((row) => h('tr', {},
      columns.map((c) => h('td', { class: c.num ? 'num' : '' }, c.cell(row)))))));
}

function pageHeader(title, subtitle, ...actions) {
  document.title = `${title} · Switchboard`;
  return h('header', { class: 'page-head' },
    h('div', {}, h('h1', { text: title, tabindex: '-1', id: 'page-title' }),
      subtitle ? h('p', { class: 'muted', text: subtitle }) : null),
    h('div', { class: 'actions' }, actions));
}

function field(label, input) {
  const id = input.id || `f-${Math.random().toString(36).slice(2, 9)}`;
  input.id = id;
  return h('div', { class: 'field' }, h('label', { for: id, text: label }), input);
}

function pager(next, onNext, onFirst, atFirst) {
  return h('div', { class: 'pager' },
    h('button', { type: 'button', disabled: atFirst, onclick: onFirst, text: 'First page' }),
    h('button', { type: 'button', disabled: next === null || next === undefined, onclick: () => onNext(next), text: 'Next page' }));
}

// ---------- WhatsApp decoding (the shape of the stream's summary) ----------

function summarize(payload) {
  const out = { messages: [], statuses: [], fields: [] };
  if (!payload || !Array.isArray(payload.entry)) return out;
  for (const entry of payload.entry) {
    for (const change of entry.changes || []) {
      if (change.field && !out.fields.includes(change.field)) out.fields.push(change.field);
      const value = change.value || {};
      for (const m of value.messages || []) {
        const text = m.text && typeof m.text.body === 'string' ? m.text.body.slice(0, 200) : undefined;
        out.messages.push({ id: m.id, from: m.from, type: m.type, text });
      }
      for (const s of value.statuses || []) {
        out.statuses.push({ id: s.id, status: s.status, recipient_id: s.recipient_id,
          errors: (s.errors || []).map((e) => ({ code: e.code, title: e.title })) });
      }
    }
  }
  return out;
}

function describeSummary(summary) {
  if (!summary) return [];
  if (summary.type) return [h('span', {}, badge('partner'), ' ', h('code', { text: summary.type }))];
  const lines = [];
  for (const m of summary.messages || []) {
    lines.push(h('div', { class: 'wa' }, badge('message'), ' ', h('code', { text: m.id || '?' }),
      ` from ${m.from || '?'} · ${m.type || '?'}`, m.text ? h('q', { text: m.text }) : null));
  }
  for (const s of summary.statuses || []) {
    lines.push(h('div', { class: 'wa' }, badge(s.status || 'status'), ' ', h('code', { text: s.id || '?' }),
      ` to ${s.recipient_id || '?'}`,
      (s.errors || []).map((e) => h('span', { class: 'meta-error', text: `error ${e.code}: ${e.title || ''}` }))));
  }
  if (!lines.length && summary.fields && summary.fields.length) {
    lines.push(h('div', { class: 'wa' }, badge('update'), ' ', summary.fields.join(', ')));
  }
  return lines;
}

// ---------- session ----------

function showLogin(message) {
  stopPage();
  app.csrf = null;
  $('shell').hidden = true;
  $('login').hidden = false;
  const error = $('login-error');
  error.hidden = !message;
  error.textContent = message || '';
  $('login-token').focus();
}

function showShell() {
  $('login').hidden = true;
  $('shell').hidden = false;
  route();
}

async function login(event) {
  event.preventDefault();
  const input = $('login-token');
  try {
    const answer = await api('POST', '/console/login', { token: input.value });
    input.value = '';
    app.csrf = answer.csrf;
    showShell();
  } catch (e) {
    input.value = '';
    showLogin(e.status === 401 ? 'Wrong admin token: the login was refused.' : `Login failed: ${e.message}`);
  }
}

async function logout() {
  try { await api('POST', '/console/logout'); } catch (_) { /* gone already */ }
  showLogin('Logged out.');
}

async function boot() {
  $('login-form').addEventListener('submit', login);
  $('logout').addEventListener('click', logout);
  window.addEventListener('hashchange', () => { if (app.csrf) route(); });
  try {
    const session = await api('GET', '/console/session');
    app.csrf = session.csrf;
    showShell();
  } catch (_) {
    showLogin();
  }
}

// ---------- router ----------

const pages = {
  overview: overviewPage,
  tail: tailPage,
  destinations: destinationsPage,
  events: eventPage,
  failed: failedPage,
  channels: () => configPage('channels'),
  wabas: () => configPage('wabas'),
  partners: () => configPage('partners'),
};

function stopPage() {
  app.routeId += 1;
  app.timers.forEach(clearTimeout);
  app.timers = [];
  if (app.source) { app.source.close(); app.source = null; }
}

function route() {
  stopPage();
  const [name, ...args] = (location.hash.replace(/^#\/?/, '') || 'overview').split('/');
  const page = pages[name] ? name : 'overview';
  for (const link of document.querySelectorAll('.nav a')) {
    if (link.dataset.page === page) link.setAttribute('aria-current', 'page');
    else link.removeAttribute('aria-current');
  }
  const root = $('page');
  root.replaceChildren();
  pages[page](root, ...args.map(decodeURIComponent));
  const title = $('page-title');
  if (title && document.activeElement === document.body) title.focus();
}

// ---------- Overview ----------

function overviewPage(root) {
  const cards = h('div', { class: 'cards' });
  const troubled = h('section', { 'aria-labelledby': 'troubled-title' });
  const note = h('p', { class: 'muted small' });
  append(root, [pageHeader('Overview', 'This node, refreshed every 2 s.'), cards, troubled, note]);
  let last = null;
  every(POLL_MS, async () => {
    let now;
    try { now = await api('GET', '/admin/overview'); } catch (e) {
      put(cards, errorBox(e, 'The overview'));
      return;
    }
    const per = (key) => {
      if (!last || now.at_ms <= last.at_ms) return null;
      return Math.max(0, (now[key] - last[key]) * 1000 / (now.at_ms - last.at_ms));
    };
    put(cards, 
      card('Events in', rate(per('events_ingested')), '/s', `${num(now.events_ingested)} since start`),
      card('Delivered', rate(per('delivered')), '/s', `${num(now.delivered)} since start`),
      card('Attempts', rate(per('attempts')), '/s', `${num(now.attempts)} since start`),
      card('Backlog', num(now.backlog), '', 'deliveries pending', now.backlog > 0 ? 'warn' : ''),
      card('Failed', num(now.failed), '', `${rate(per('failed'))} /s · replay from Failed deliveries`, now.failed > 0 ? 'bad' : ''),
      card('Dropped', num(now.dropped), '', 'no route configured'));
    const list = now.unhealthy_destinations || [];
    put(troubled, 
      h('h2', { id: 'troubled-title', text: `Destinations needing attention (${list.length})` }),
      list.length ? destinationTable(list) : h('p', { class: 'empty', text: 'Every destination is healthy.' }));
    note.textContent = `Updated ${clock(now.at)}.`;
    last = now;
  });
}

function card(title, value, unit, detail, tone) {
  return h('div', { class: `card ${tone || ''}` },
    h('div', { class: 'card-title', text: title }),
    h('div', { class: 'card-value' }, value, unit ? h('span', { class: 'unit', text: ` ${unit}` }) : null),
    h('div', { class: 'card-detail muted', text: detail }));
}

// ---------- Live tail ----------

function tailPage(root) {
  const kinds = ['event', 'attempt', 'delivery', 'destination'];
  const channel = h('input', { type: 'text', placeholder: 'any', autocomplete: 'off' });
  const destination = h('input', { type: 'text', placeholder: 'any (16 hex digits)', autocomplete: 'off', pattern: '[0-9a-f]{16}' });
  const contains = h('input', { type: 'search', placeholder: 'wamid, number, text…', autocomplete: 'off' });
  const boxes = kinds.map((k) => h('input', { type: 'checkbox', checked: true, value: k, id: `kind-${k}` }));
  const status = h('span', { class: 'tail-status', role: 'status', 'aria-live': 'polite' });
  const pause = h('button', { type: 'button', 'aria-pressed': 'false', text: 'Pause' });
  const clear = h('button', { type: 'button', text: 'Clear' });
  const body = h('tbody', { id: 'tail-rows' });
  const grid = h('table', { class: 'tail' },
    h('thead', {}, h('tr', {}, ['Time', 'Kind', 'Channel', 'What'].map((t) => h('th', { scope: 'col', text: t })))), body);
  const form = h('form', { class: 'filters', 'aria-label': 'Stream filters' },
    field('Channel', channel), field('Destination', destination),
    h('fieldset', { class: 'kinds' }, h('legend', { text: 'Kinds' }),
      boxes.map((b) => h('label', { for: b.id, class: 'check' }, b, ` ${b.value}`))),
    field('Contains', contains),
    h('button', { type: 'submit', class: 'primary', text: 'Apply' }));
  append(root, [pageHeader('Live tail', 'Events and attempts as they happen.', status, pause, clear), form, grid]);

  let paused = false;
  let buffered = [];
  let dropped = 0;
  const show = (row) => {
    if (contains.value && !row.textContent.toLowerCase().includes(contains.value.toLowerCase())) return;
    body.prepend(row);
    while (body.children.length > TAIL_ROWS) body.lastChild.remove();
  };
  const setStatus = (text, tone) => { status.textContent = text; status.className = `tail-status ${tone || ''}`; };
  const receive = (kind, message) => {
    let data;
    try { data = JSON.parse(message.data); } catch (_) { return; }
    const row = tailRow(kind, data);
    if (!paused) { show(row); return; }
    buffered.push(row);
    if (buffered.length > TAIL_BUFFER) { buffered.shift(); dropped += 1; }
    setStatus(`Paused · ${buffered.length} buffered${dropped ? `, ${dropped} dropped` : ''}`, 'warn');
  };
  const connect = (after) => {
    if (app.source) app.source.close();
    const selected = boxes.filter((b) => b.checked).map((b) => b.value);
    const url = `/admin/stream${query({ channel: channel.value.trim(), destination: destination.value.trim(),
      kind: selected.length === kinds.length ? '' : selected.join(','), after })}`;
    const source = new EventSource(url, { withCredentials: true });
    app.source = source;
    setStatus('Connecting…');
    source.onopen = () => setStatus(paused ? 'Paused' : 'Live', paused ? 'warn' : 'ok');
    for (const k of kinds) source.addEventListener(k, (m) => receive(k, m));
    source.addEventListener('lagged', (m) => {
      let resume = '';
      try { resume = JSON.parse(m.data).resume; } catch (_) { resume = ''; }
      setStatus('Fell behind: catching up…', 'warn');
      connect(resume);
    });
    source.onerror = () => {
      if (source.readyState === EventSource.CLOSED) {
        setStatus('Stream unavailable', 'bad');
        put(body, h('tr', {}, h('td', { colspan: '4' },
          errorBox(new Error('GET /admin/stream refused the connection or is not served by this server.'), 'The live stream'),
          h('button', { type: 'button', text: 'Retry', onclick: () => connect() }))));
      } else {
        setStatus('Reconnecting…', 'warn');
      }
    };
  };
  form.addEventListener('submit', (e) => { e.preventDefault(); body.replaceChildren(); connect(); });
  pause.addEventListener('click', () => {
    paused = !paused;
    pause.textContent = paused ? 'Resume' : 'Pause';
    pause.setAttribute('aria-pressed', String(paused));
    if (!paused) {
      buffered.forEach(show);
      buffered = [];
      dropped = 0;
      setStatus('Live', 'ok');
    } else {
      setStatus('Paused · 0 buffered', 'warn');
    }
  });
  clear.addEventListener('click', () => body.replaceChildren());
  connect();
}

function eventLink(id) {
  return id === null || id === undefined ? '' : h('a', { href: `#/events/${id}`, text: `#${id}` });
}

function tailRow(kind, d) {
  let what;
  let at = d.received_at || d.at;
  if (kind === 'event') {
    what = [eventLink(d.event_id), ' ', badge(d.kind), ' ', describeSummary(d.summary)];
  } else if (kind === 'attempt') {
    const outcome = d.status !== null && d.status !== undefined ? badge(String(d.status), d.status === 200 ? 'b-ok' : 'b-failing') : badge(d.error || 'error', 'b-failing');
    what = [eventLink(d.event_id), ` attempt → `, h('a', { href: `#/destinations/${d.destination}` }, h('code', { text: d.url })),
      ' ', outcome, ` ${ms(d.duration_ms)}`, d.retry_after_ms ? ` · Retry-After ${ms(d.retry_after_ms)}` : ''];
  } else if (kind === 'delivery') {
    what = [eventLink(d.event_id), ' delivery ', h('code', { text: d.target }), ' ', badge(d.state)];
  } else {
    at = null;
    what = [h('a', { href: `#/destinations/${d.destination}` }, h('code', { text: d.url || d.destination })), ' ', badge(d.change)];
  }
  return h('tr', { class: `k-${kind}` },
    h('td', { class: 'num', text: clock(at) }), h('td', {}, badge(kind, 'kind')),
    h('td', {}, d.channel_id ? h('code', { text: d.channel_id }) : ''), h('td', {}, what));
}

// ---------- Destinations ----------

function destinationTable(list) {
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

function destinationsPage(root, id) {
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

function destinationDetail(root, id) {
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

function localInput(date) {
  const pad = (n) => String(n).padStart(2, '0');
  return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}T${pad(date.getHours())}:${pad(date.getMinutes())}`;
}

function recoverForm(destination) {
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

// ---------- Event story ----------

function eventPage(root, id) {
  const input = h('input', { type: 'text', inputmode: 'numeric', value: id || '', autocomplete: 'off' });
  const form = h('form', { class: 'filters', 'aria-label': 'Open an event' }, field('Event id', input),
    h('button', { type: 'submit', class: 'primary', text: 'Open' }));
  form.addEventListener('submit', (e) => { e.preventDefault(); if (input.value.trim()) location.hash = `#/events/${input.value.trim()}`; });
  const story = h('div', { id: 'story' });
  append(root, [pageHeader(id ? `Event #${id}` : 'Event story', 'Its payload, the route it took and why, every attempt.'), form, story]);
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

async function routeOf(event) {
  if (!event.channel_id) return { kind: event.kind, channel: null };
  try {
    return { kind: event.kind, channel: await api('GET', `/admin/channels/${encodeURIComponent(event.channel_id)}`) };
  } catch (e) { return { kind: event.kind, error: e }; }
}

function renderStory(event, routeView, reload) {
  const summary = summarize(event.payload);
  return [
    h('dl', { class: 'facts' },
      h('dt', { text: 'Kind' }), h('dd', {}, badge(event.kind)),
      h('dt', { text: 'Received' }), h('dd', { text: when(event.received_at) }),
      h('dt', { text: 'Channel' }), h('dd', {}, event.channel_id ? h('code', { text: event.channel_id }) : '–'),
      h('dt', { text: 'Phone number id' }), h('dd', { text: event.phone_number_id || '–' }),
      event.partner_id ? [h('dt', { text: 'Partner' }), h('dd', {}, h('code', { text: event.partner_id }))] : null),
    h('section', { class: 'panel' }, h('h2', { text: 'What it says' }),
      describeSummary(summary).length ? describeSummary(summary) : h('p', { class: 'muted', text: 'No message or status in this payload.' })),
    h('section', { class: 'panel' }, h('h2', { text: 'Route and why' }), routeExplanation(routeView)),
    h('h2', { text: 'Deliveries' }),
    event.deliveries.length ? event.deliveries.map((d) => deliveryStory(d, reload)) : h('p', { class: 'empty', text: 'No delivery (unroutable events are stored, never delivered).' }),
    h('details', { class: 'panel', open: true }, h('summary', { text: 'Payload' }),
      h('pre', { class: 'payload', text: JSON.stringify(event.payload, null, 2) })),
  ];
}

function routeExplanation(view) {
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

function deliveryStory(d, reload) {
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

// ---------- Failed deliveries ----------

function failedPage(root) {
  const state = h('select', {}, ['failed', 'dropped'].map((s) => h('option', { value: s, text: s })));
  const channel = h('input', { type: 'text', placeholder: 'any', autocomplete: 'off' });
  const holder = h('div');
  const confirmBox = h('div', { role: 'status', 'aria-live': 'polite' });
  const replayAll = h('button', { type: 'button', id: 'replay-all', text: 'Replay all matching' });
  const form = h('form', { class: 'filters', 'aria-label': 'Filters' }, field('State', state), field('Channel', channel),
    h('button', { type: 'submit', class: 'primary', text: 'Apply' }), replayAll);
  append(root, [pageHeader('Failed deliveries', 'Gave up after their age window (failed) or had no route (dropped); replay puts them back, due now.'), form, confirmBox, holder]);
  const cursors = [''];
  const load = async () => {
    try {
      const page = await api('GET', `/admin/deliveries${query({ state: state.value, channel: channel.value.trim(), after: cursors[cursors.length - 1], limit: 50 })}`);
      put(holder, table([
        { title: 'Delivery', num: true, cell: (d) => d.id },
        { title: 'Event', cell: (d) => eventLink(d.event_id) },
        { title: 'Channel', cell: (d) => (d.channel_id ? h('code', { text: d.channel_id }) : h('code', { text: d.partner_id || '–' })) },
        { title: 'Target', cell: (d) => h('code', { text: d.target }) },
        { title: 'Attempts', num: true, cell: (d) => d.attempts },
        { title: 'Last error', cell: (d) => d.last_error || '–' },
        { title: 'Updated', cell: (d) => when(d.updated_at) },
        { title: 'Replay', cell: (d) => h('button', { type: 'button', class: 'replay', 'data-delivery': d.id, 'aria-label': `Replay delivery ${d.id}`, text: 'Replay',
          onclick: async (e) => {
            try { await api('POST', `/admin/deliveries/${d.id}/retry`); e.target.replaceWith(badge('requeued')); flash(`Delivery ${d.id} requeued.`); } catch (err) { flash(`Replay failed: ${err.message}`, 'bad'); }
          } }) },
      ], page.deliveries, `No ${state.value} delivery${channel.value ? ' for this channel' : ''}.`),
      pager(page.next_after, (next) => { cursors.push(next); load(); }, () => { cursors.length = 1; load(); }, cursors.length === 1));
    } catch (e) { put(holder, errorBox(e, 'The delivery list')); }
  };
  form.addEventListener('submit', (e) => { e.preventDefault(); cursors.length = 1; load(); });
  replayAll.addEventListener('click', () => {
    const scope = `every ${state.value} delivery${channel.value.trim() ? ` of channel ${channel.value.trim()}` : ''}`;
    put(confirmBox, h('div', { class: 'confirm' }, `Replay ${scope}?`,
      h('button', { type: 'button', class: 'primary', id: 'replay-all-confirm', text: 'Confirm', onclick: async () => {
        try {
          const answer = await api('POST', '/admin/deliveries/retry', { state: state.value, channel: channel.value.trim() || undefined });
          put(confirmBox, h('p', { class: 'ok-text', text: `${num(answer.requeued)} deliveries requeued.` }));
          load();
        } catch (e) { put(confirmBox, h('p', { class: 'error', text: e.message })); }
      } }),
      h('button', { type: 'button', text: 'Cancel', onclick: () => confirmBox.replaceChildren() })));
  });
  load();
}

// ---------- Channels, WABAs, partners (read-only) ----------

const configLists = {
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

function signing(on) {
  return on ? badge('signed', 'b-ok') : h('span', { class: 'muted', text: 'unsigned' });
}

function configPage(kind, root) {
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

pages.channels = (root) => configPage('channels', root);
pages.wabas = (root) => configPage('wabas', root);
pages.partners = (root) => configPage('partners', root);

document.addEventListener('DOMContentLoaded', boot);
