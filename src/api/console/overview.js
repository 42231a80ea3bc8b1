// Switchboard console: the overview: counters polled every 2 s and turned into rates, the backlog, and the
// destinations that need attention.
import { POLL_MS, h, append, put, api, every, errorBox, num, rate, clock, pageHeader, card } from './ui.js';
import { destinationTable } from './destinations.js';

export function overviewPage(root) {
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


