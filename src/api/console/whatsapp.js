// Switchboard console: WhatsApp decoding: a stored envelope into the stream's `summary` shape, and a
// summary into readable lines (message or status, wamid, from/to, Meta error codes).
import { h, badge } from './ui.js';

export function summarize(payload) {
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

export function describeSummary(summary) {
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

