// Node page: who this node is, its hardware and its engines (GET /api/status, /api/mesh).
import { getJSON } from './api.js';
import { bytes, dl, el, table } from './dom.js';

export function render(main, live, onError) {
  main.append(el('h1', null, 'Node'));
  let stopped = false;
  Promise.all([getJSON('/api/status'), getJSON('/api/mesh')]).then(([st, mesh]) => {
    if (stopped) return;
    const hw = st.hardware || {};
    const started = Number(st.started_at_unix) ? new Date(Number(st.started_at_unix) * 1000) : null;
    const engines = Object.entries(st.engine_info || {}).sort(([a], [b]) => a.localeCompare(b));
    main.append(el('div', { class: 'grid' },
      el('section', { class: 'card', id: 'node-status' }, el('h2', null, st.hostname || 'this node'), dl([
        ['Node ID', el('span', { class: 'mono' }, st.node_id)],
        ['Version', st.version],
        ['HTTP', st.http_addr],
        ['gRPC', st.grpc_addr],
        ['Started', started ? started.toLocaleString() : ''],
        ['Mesh', mesh.enabled ? `on · ${mesh.connected_peers} connected, ${mesh.known_peers} known` : 'off'],
        ['Peer ID', mesh.peer_id ? el('span', { class: 'mono' }, mesh.peer_id) : ''],
      ])),
      el('section', { class: 'card', id: 'node-hardware' }, el('h2', null, 'Hardware'), dl([
        ['CPU cores', hw.cpu_cores],
        ['CPU variant', hw.cpu_variant],
        ['Memory', bytes(hw.memory_bytes)],
        ['Accelerators', (hw.accelerators || []).join(', ') || 'none'],
      ]), (hw.devices || []).length ? table(['Device', 'Kind', 'Memory free / total'],
        hw.devices.map((d) => ({ key: d.name, cells: [el('span', { title: d.description }, d.name), d.kind,
          `${bytes(d.memory_free_bytes)} / ${bytes(d.memory_total_bytes)}`] }))) : null),
      el('section', { class: 'card', id: 'node-engines' }, el('h2', null, 'Engines'),
        engines.length ? dl(engines) : el('p', { class: 'muted' }, 'no engine information')),
    ));
  }).catch(onError);
  return () => { stopped = true; };
}
