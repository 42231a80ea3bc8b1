// Switchboard console: the live tail: the admin stream (EventSource, with the session cookie), filtered,
// pausable (a bounded buffer while paused), decoded as WhatsApp.
import { TAIL_ROWS, TAIL_BUFFER, app, h, append, put, query, errorBox, num, ms, clock, badge, table, pageHeader, field } from './ui.js';
import { describeSummary } from './whatsapp.js';

export function tailPage(root) {
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

export function eventLink(id) {
  return id === null || id === undefined ? '' : h('a', { href: `#/events/${id}`, text: `#${id}` });
}

export function tailRow(kind, d) {
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

