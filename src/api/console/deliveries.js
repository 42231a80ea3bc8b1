// Switchboard console: failed (or dropped) deliveries: the list, replay one, replay all that match.
import { h, append, put, api, query, every, flash, errorBox, num, when, badge, table, pageHeader, field, pager } from './ui.js';
import { eventLink } from './tail.js';

export function failedPage(root) {
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

