// Node page: who this node is, its hardware and its engines (GET /api/status, /api/mesh), its
// traffic since start (GET /metrics, traffic.js), its configuration in effect (GET /api/config,
// secrets hidden) and a live tail of its log (GET /api/logs?follow=1).
import { AuthError, events, getJSON } from './api.js';
import { bytes, dl, el, table } from './dom.js';
import { trafficCard } from './traffic.js';

export function render(main, live, onError) {
  main.append(el('h1', null, 'Node'));
  let stopped = false;
  const ctrl = new AbortController();
  Promise.all([getJSON('/api/status'), getJSON('/api/mesh')]).then(([st, mesh]) => {
    if (stopped) return;
    const hw = st.hardware || {};
    const started = Number(st.started_at_unix) ? new Date(Number(st.started_at_unix) * 1000) : null;
    const engines = Object.entries(st.engine_info || {}).sort(([a], [b]) => a.localeCompare(b));
    main.append(el('div', { class: 'grid' },
      el('section', { class: 'card', id: 'node-status' }, el('h2', null, st.node_name || st.hostname || 'this node'), dl([
        ['Node ID', el('span', { class: 'mono' }, st.node_id)],
        ['Hostname', st.hostname],
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
        engines.length ? dl(engines.map(([name, info]) => [name, engineInfo(info)])) : el('p', { class: 'muted' }, 'no engine information')),
    ));
    return getJSON('/api/config');
  }).then((cfg) => {
    if (stopped || !cfg) return;
    main.append(trafficCard(ctrl.signal, onError), configCard(cfg), logsCard(ctrl.signal, onError));
  }).catch(onError);
  return () => { stopped = true; ctrl.abort(); };
}

// engineInfo shows llama.cpp's system info ("CPU : SSE3 = 1 | AVX = 1 | ... | CUDA : ARCHS = 900
// | ...": a backend names the features after it) as each backend with the features it uses;
// text in another shape shows as it is.
function engineInfo(text) {
  const backends = new Map();
  let backend = '';
  for (const item of String(text).split('|').map((s) => s.trim()).filter(Boolean)) {
    const m = item.match(/^(?:([^:=]+?)\s*:\s*)?([^=]+?)\s*=\s*(.*)$/);
    if (!m || !(m[1] || backend)) return text;
    backend = m[1] || backend;
    const [, , feature, value] = m;
    if (!backends.has(backend)) backends.set(backend, new Set());
    if (value !== '0') backends.get(backend).add(value === '1' ? feature : `${feature}=${value}`);
  }
  return el('div', { class: 'features' }, [...backends].map(([name, features]) =>
    el('div', null, el('span', { class: 'muted' }, name + ' '), [...features].map((f) => el('span', { class: 'badge' }, f)))));
}

// flatten turns nested tables into [dotted.key, text] rows.
function flatten(obj, prefix = '') {
  return Object.entries(obj).sort(([a], [b]) => a.localeCompare(b)).flatMap(([k, v]) => {
    const key = prefix + k;
    if (v && typeof v === 'object' && !Array.isArray(v)) return flatten(v, key + '.');
    return [[key, Array.isArray(v) ? (v.length ? v.join(', ') : '—') : v === '' ? '—' : String(v)]];
  });
}

// configCard shows the configuration in effect, one collapsible section per table.
function configCard(cfg) {
  const section = (name, body, open) => el('details', { class: 'cfg', 'data-section': name, open }, el('summary', null, name), body);
  const scalars = Object.entries(cfg).filter(([, v]) => v === null || typeof v !== 'object');
  const tables = Object.entries(cfg).filter(([k, v]) => v && typeof v === 'object' && !Array.isArray(v));
  const declared = cfg.declared_models || [];
  return el('section', { class: 'card wide', id: 'node-config' }, el('h2', null, 'Configuration in effect'),
    el('p', { class: 'muted' }, 'Secrets (API keys) are hidden.'),
    scalars.length ? dl(scalars.map(([k, v]) => [k, v === '' ? '—' : String(v)])) : null,
    tables.map(([k, v]) => section(k, dl(flatten(v)), k === 'server')),
    section(`declared models (${declared.length})`, declared.length
      ? declared.map((m) => el('details', { class: 'cfg', 'data-model': m.name }, el('summary', { class: 'mono' }, m.name), dl(flatten(m))))
      : el('p', { class: 'muted' }, 'none'), true));
}

const levels = ['DEBUG', 'INFO', 'WARN', 'ERROR'];
const maxLines = 1000;

// logsCard follows the node's log, newest at the bottom, scrolling along unless the user scrolled up.
function logsCard(signal, onError) {
  const box = el('div', { class: 'logs mono', id: 'log-lines', role: 'log' });
  const filter = el('select', { id: 'log-level', 'aria-label': 'lowest level shown' },
    levels.map((l) => el('option', { value: l, selected: l === 'INFO' }, l.toLowerCase() + ' and up')));
  const state = el('span', { class: 'muted' }, 'connecting…');
  const rank = (level) => { const i = levels.indexOf(String(level).split(/[+-]/)[0]); return i < 0 ? 0 : i; };
  const apply = () => { for (const line of box.children) line.hidden = rank(line.dataset.level) < rank(filter.value); };
  filter.addEventListener('change', () => { apply(); box.scrollTop = box.scrollHeight; });
  const add = (l) => {
    const follow = box.scrollHeight - box.scrollTop - box.clientHeight < 24;
    const time = new Date(l.time).toLocaleTimeString();
    const line = el('div', { class: 'log ' + l.level.toLowerCase(), 'data-level': l.level, 'data-seq': l.seq },
      el('span', { class: 'muted' }, time), ' ', el('b', null, l.level), ' ', l.msg, l.attrs ? el('span', { class: 'muted' }, ' ' + l.attrs) : null);
    line.hidden = rank(l.level) < rank(filter.value);
    box.append(line);
    while (box.children.length > maxLines) box.firstChild.remove();
    if (follow) box.scrollTop = box.scrollHeight;
  };
  (async () => {
    while (!signal.aborted) {
      try {
        box.replaceChildren(); // the stream starts again with the records the node kept
        await events((name, data) => {
          if (name !== 'log') return;
          state.textContent = 'live';
          add(data);
        }, signal, '/api/logs?follow=1');
      } catch (err) {
        if (signal.aborted) return;
        if (err instanceof AuthError) { onError(err); return; }
      }
      state.textContent = 'reconnecting…';
      await new Promise((r) => setTimeout(r, 2000));
    }
  })();
  return el('section', { class: 'card wide', id: 'node-logs' },
    el('div', { class: 'row' }, el('h2', null, 'Log'), state, el('span', { style: 'flex:1' }), filter), box);
}
