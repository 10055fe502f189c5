// Models page: every model this node knows with its kind, state, size and digest, which peers
// also serve it, and load / unload through the native routes (POST /api/models/{name}/load|unload).
import { getJSON, postJSON } from './api.js';
import { badge, bytes, confirmAction, el, enumName, kind, table } from './dom.js';

export function render(main, live, onError) {
  const status = el('p', { class: 'muted', id: 'models-status', role: 'status' });
  const holder = el('div', { id: 'models' });
  main.append(el('h1', null, 'Models'), status, holder);
  const busy = new Set();

  const refresh = async () => {
    const res = await getJSON('/api/models');
    live.models = res.models || [];
    live.emit();
  };

  const act = async (m, verb) => {
    if (!(await confirmAction(`${verb === 'load' ? 'Load' : 'Unload'} ${m.name}?`))) return;
    busy.add(m.name);
    draw();
    status.textContent = `${verb === 'load' ? 'Loading' : 'Unloading'} ${m.name}…`;
    try {
      await postJSON(`/api/models/${encodeURIComponent(m.name)}/${verb}`);
      status.textContent = `${m.name} ${verb === 'load' ? 'loaded' : 'unloaded'}.`;
    } catch (err) {
      status.textContent = '';
      onError(err);
    } finally {
      busy.delete(m.name);
      await refresh().catch(onError);
    }
  };

  const elsewhere = (name) => (live.peers || []).filter((p) => (p.capability?.models || []).some((m) => m.name === name))
    .map((p) => p.node_name || p.capability?.node_name || p.peer_id);

  const draw = () => {
    if (live.models === null) return;
    if (!live.models.length) { holder.replaceChildren(el('p', { class: 'muted' }, 'No models on this node.')); return; }
    const rows = [...live.models].sort((a, b) => a.name.localeCompare(b.name)).map((m) => {
      const state = enumName(m.state, 'MODEL_STATE_');
      const loaded = m.state === 'MODEL_STATE_LOADED';
      const action = m.state === 'MODEL_STATE_UNAVAILABLE' ? el('span', { class: 'muted', title: m.unavailable_reason }, 'unavailable')
        : el('button', { class: 'act', 'data-action': loaded ? 'unload' : 'load', disabled: busy.has(m.name) || m.state === 'MODEL_STATE_LOADING',
          onclick: () => act(m, loaded ? 'unload' : 'load') }, loaded ? 'Unload' : 'Load');
      const digest = m.digest ? el('span', { class: 'mono', title: m.digest }, m.digest.replace('sha256:', '').slice(0, 12)) : '—';
      return { key: m.name, cells: [el('strong', null, m.name), kind(m.modality), badge(state, state.replace(' ', '-')),
        bytes(m.size_bytes), digest, elsewhere(m.name).join(', ') || '—', action] };
    });
    holder.replaceChildren(table(['Name', 'Kind', 'State', 'Size', 'Digest', 'Also on', ''], rows, [3, 4, 5]));
  };
  if (live.models === null) refresh().catch(onError);
  draw();
  return live.subscribe(draw);
}
