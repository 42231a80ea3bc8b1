// Switchboard console: the helpers every page uses: DOM building (text nodes, never innerHTML, so no
// payload can inject markup), the admin API with the CSRF token on writes, formatting.
export const POLL_MS = 2000;
export const REFRESH_MS = 3000;
export const TAIL_ROWS = 500;
export const TAIL_BUFFER = 1000;

export const app = { csrf: null, timers: [], source: null, routeId: 0, unauthorized: () => {} };

// ---------- DOM and HTTP helpers ----------

export function h(tag, attrs, ...children) {
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

export function append(node, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

export function $(id) { return document.getElementById(id); }

// Replaces a node's children (nested arrays flattened, null and false skipped).
export function put(node, ...children) { node.replaceChildren(); return append(node, children); }

export class ApiFailure extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

export async function api(method, path, body) {
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
  if (response.status === 401 && !path.startsWith('/console/login')) app.unauthorized();
  if (!response.ok) {
    const message = (data && (data.error || data.message)) || response.statusText;
    throw new ApiFailure(response.status, message);
  }
  return data;
}

export function query(params) {
  const parts = Object.entries(params)
    .filter(([, v]) => v !== undefined && v !== null && v !== '')
    .map(([k, v]) => `${encodeURIComponent(k)}=${encodeURIComponent(v)}`);
  return parts.length ? `?${parts.join('&')}` : '';
}

export function every(ms, fn) {
  const id = app.routeId;
  const run = async () => {
    if (id !== app.routeId) return;
    try { await fn(); } catch (e) { /* shown by fn */ }
    if (id === app.routeId) app.timers.push(setTimeout(run, ms));
  };
  return run();
}

export function flash(text, kind) {
  const box = $('flash');
  box.textContent = text;
  box.className = `flash ${kind || 'ok'}`;
  box.hidden = false;
  clearTimeout(app.flashTimer);
  app.flashTimer = setTimeout(() => { box.hidden = true; }, 6000);
}

export function errorBox(error, what) {
  const status = error instanceof ApiFailure ? ` (HTTP ${error.status})` : '';
  return h('div', { class: 'empty error-state', role: 'alert' },
    h('strong', { text: `${what} is not available${status}.` }),
    h('p', { text: error.message || String(error) }));
}

// ---------- formatting ----------

export const num = (n) => (n === null || n === undefined ? '–' : Number(n).toLocaleString('en-US'));
export const ms = (n) => (n === null || n === undefined ? '–' : `${num(n)} ms`);
export const pct = (x) => (x === null || x === undefined ? '–' : `${(x * 100).toFixed(x < 0.1 && x > 0 ? 2 : 1)} %`);
export const rate = (x) => (x === null ? '–' : x < 10 ? x.toFixed(1) : num(Math.round(x)));

export function when(text) {
  if (!text) return '–';
  const d = new Date(text);
  if (Number.isNaN(d.getTime())) return text;
  return d.toLocaleString('sv-SE', { hour12: false });
}

export function clock(text) {
  const d = text ? new Date(text) : new Date();
  return d.toLocaleTimeString('en-GB', { hour12: false });
}

export function badge(value, extra) {
  return h('span', { class: `badge b-${String(value).replace(/[^a-z0-9_-]/gi, '')} ${extra || ''}`, text: value });
}

export function masked(headers) {
  const names = Object.keys(headers || {});
  if (!names.length) return h('span', { class: 'muted', text: 'none' });
  return names.map((n) => h('code', { class: 'hdr', text: `${n}: ***` }));
}

export function table(columns, rows, empty) {
  if (!rows.length) return h('p', { class: 'empty', text: empty || 'Nothing to show.' });
  return h('table', {},
    h('thead', {}, h('tr', {}, columns.map((c) => h('th', { scope: 'col', class: c.num ? 'num' : '', text: c.title })))),
    h('tbody', {}, rows.map((row) => h('tr', {},
      columns.map((c) => h('td', { class: c.num ? 'num' : '' }, c.cell(row)))))));
}

export function pageHeader(title, subtitle, ...actions) {
  document.title = `${title} · Switchboard`;
  return h('header', { class: 'page-head' },
    h('div', {}, h('h1', { text: title, tabindex: '-1', id: 'page-title' }),
      subtitle ? h('p', { class: 'muted', text: subtitle }) : null),
    h('div', { class: 'actions' }, actions));
}

export function field(label, input) {
  const id = input.id || `f-${Math.random().toString(36).slice(2, 9)}`;
  input.id = id;
  return h('div', { class: 'field' }, h('label', { for: id, text: label }), input);
}

export function pager(next, onNext, onFirst, atFirst) {
  return h('div', { class: 'pager' },
    h('button', { type: 'button', disabled: atFirst, onclick: onFirst, text: 'First page' }),
    h('button', { type: 'button', disabled: next === null || next === undefined, onclick: () => onNext(next), text: 'Next page' }));
}

export function card(title, value, unit, detail, tone) {
  return h('div', { class: `card ${tone || ''}` },
    h('div', { class: 'card-title', text: title }),
    h('div', { class: 'card-value' }, value, unit ? h('span', { class: 'unit', text: ` ${unit}` }) : null),
    h('div', { class: 'card-detail muted', text: detail }));
}
