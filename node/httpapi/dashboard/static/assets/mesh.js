// Mesh page: a map of the mesh (meshmap.js) above a card for this node and every peer it knows,
// with what each serves and how loaded it is. Both re-render from the live feed
// (GET /api/events) as peers join, leave and change load.
import { getJSON } from './api.js';
import { badge, bytes, dl, el, kind, shortID, table } from './dom.js';
import { graph, loadText, meshMap } from './meshmap.js';

function modelTable(rows) {
  if (!rows.length) return el('p', { class: 'muted' }, 'no models');
  return table(['Model', 'Kind', 'State', 'Slots free', 'Queue', 'Tokens/s'], rows.map((m) => ({
    key: m.name,
    cells: [m.name, m.kind, badge(m.loaded ? 'loaded' : 'on disk', m.loaded ? 'loaded' : ''),
      m.loaded ? `${m.free}/${m.parallel}` : '—', m.queue, m.tps ? m.tps.toFixed(1) : '—'],
  })), [1]);
}

// selfRows are this node's models as the cards and the map show them.
function selfRows(models) {
  return (models || []).filter((m) => m.state !== 'MODEL_STATE_UNAVAILABLE').map((m) => {
    const s = m.stats || {};
    return { name: m.name, kind: kind(m.modality), loaded: m.state === 'MODEL_STATE_LOADED',
      free: Math.max(0, (s.parallel || 0) - (s.active_requests || 0)), parallel: s.parallel || 0,
      queue: s.queued_requests || 0, tps: s.tokens_per_second || 0 };
  });
}

// peerRows are a peer's announced models as the cards and the map show them.
function peerRows(p) {
  return (p.capability?.models || []).map((m) => ({ name: m.name, kind: kind(m.modality), loaded: m.loaded,
    free: m.free_slots || 0, parallel: m.parallel || 0, queue: m.queue_depth || 0, tps: m.tokens_per_second || 0 }));
}

const peerName = (p) => p.node_name || p.capability?.node_name || shortID(p.peer_id);
const peerAccel = (p) => (p.capability?.hardware?.accelerators || []).join(', ') || 'CPU';

function selfCard(self, models) {
  const rows = selfRows(models);
  return el('section', { class: 'card self', 'data-peer': self.peer_id || 'self' },
    el('h2', null, (self.name || 'this node') + ' ', badge('this node', 'connected')),
    dl([['Peer ID', el('span', { class: 'mono', title: self.peer_id }, shortID(self.peer_id))],
      ['Accelerator', self.accel]]),
    modelTable(rows));
}

function peerCard(p) {
  const cap = p.capability || {};
  const hw = cap.hardware || {};
  const rows = peerRows(p);
  const state = p.banned ? badge('banned') : p.connected ? badge('connected') : badge('not connected', 'down');
  return el('section', { class: 'card', 'data-peer': p.peer_id },
    el('h2', null, peerName(p) + ' ', state),
    dl([
      ['Peer ID', el('span', { class: 'mono', title: p.peer_id }, shortID(p.peer_id))],
      ['Version', cap.version],
      ['Accelerator', peerAccel(p)],
      ['Memory', hw.memory_bytes ? bytes(hw.memory_bytes) : ''],
      ['Round trip', p.rtt_ms ? p.rtt_ms.toFixed(1) + ' ms' : '—'],
      ['Gossip score', typeof p.gossip_score === 'number' ? p.gossip_score.toFixed(2) : ''],
      ['Failures', p.recent_failures || ''],
      ['Last seen', Number(p.last_seen_unix_ms) ? new Date(Number(p.last_seen_unix_ms)).toLocaleTimeString() : ''],
    ]),
    modelTable(rows));
}

// markCard outlines the card of the node picked on the map (id), and no other.
function markCard(id) {
  for (const c of document.querySelectorAll('#mesh .card')) c.classList.toggle('picked', c.dataset.peer === id);
}

export function render(main, live, onError) {
  const grid = el('div', { class: 'grid', id: 'mesh' });
  const summary = el('p', { class: 'muted', id: 'mesh-summary' }, 'Waiting for the mesh…');
  // picked is the node last clicked on the map: its card stays outlined across redraws.
  let picked = null;
  const map = meshMap((id) => {
    picked = id;
    markCard(id);
    document.querySelector('#mesh .card.picked')?.scrollIntoView({ behavior: 'smooth', block: 'start' });
  });
  map.element.hidden = true;
  main.append(el('h1', null, 'Mesh'), summary, map.element, grid);
  let self = null;
  const draw = () => {
    if (!self || live.peers === null) return;
    const peers = [...live.peers].sort((a, b) => (a.node_name || a.peer_id).localeCompare(b.node_name || b.peer_id));
    const connected = peers.filter((p) => p.connected).length;
    summary.textContent = self.enabled
      ? `${peers.length} peer${peers.length === 1 ? '' : 's'} known, ${connected} connected · live`
      : 'The mesh is off on this node (mesh.enabled): it serves its own models only.';
    grid.replaceChildren(selfCard(self, live.models), ...peers.map(peerCard));
    markCard(picked);
    map.element.hidden = !self.enabled;
    if (self.enabled) {
      map.draw(graph({ id: self.peer_id, name: self.name || 'this node', accel: self.accel, load: loadText(selfRows(live.models)) },
        peers.map((p) => ({ ...p, _name: peerName(p), _accel: peerAccel(p), _load: loadText(peerRows(p)) }))));
    }
  };
  Promise.all([getJSON('/api/status'), getJSON('/api/mesh')]).then(([st, mesh]) => {
    const accel = (st.hardware?.accelerators || []).join(', ') || 'CPU';
    self = { name: st.node_name || st.hostname, peer_id: mesh.peer_id, enabled: mesh.enabled, accel };
    draw();
  }).catch(onError);
  const unsubscribe = live.subscribe(draw);
  return () => { unsubscribe(); map.close(); };
}
