// The Mesh page's map: this node and its peers on a ring, and a line for every connection
// between two of them that anyone reports: this node's own connections, and
// the links each peer announces in its capability (the mesh peers it is connected to, with the
// round trip it measured). Drawn as inline SVG in CSS pixels, so text stays readable at any
// width; the viewBox lets it shrink further where the page is narrower still.

const svgNS = 'http://www.w3.org/2000/svg';

/** svg builds an SVG element; every attribute is set as an attribute, text as a text node. */
function svg(tag, attrs, ...children) {
  const node = document.createElementNS(svgNS, tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v !== undefined && v !== null && v !== false) node.setAttribute(k, v);
  }
  for (const c of children.flat()) {
    if (c !== undefined && c !== null && c !== false) node.append(c instanceof Node ? c : String(c));
  }
  return node;
}

/** load sums the slots and queues of a node's loaded models: "3/4 free · 1 queued". */
export function loadText(models) {
  const loaded = models.filter((m) => m.loaded);
  if (!loaded.length) return 'no model loaded';
  const free = loaded.reduce((s, m) => s + m.free, 0);
  const slots = loaded.reduce((s, m) => s + m.parallel, 0);
  const queued = loaded.reduce((s, m) => s + m.queue, 0);
  return `${free}/${slots} free` + (queued ? ` · ${queued} queued` : '');
}

const ms = (v) => (v > 0 ? (v < 10 ? v.toFixed(1) : Math.round(v)) + ' ms' : '');

/**
 * graph turns this node and the live peers into what the map draws. self: {id, name, accel,
 * load}; peers: ListPeers' PeerInfo, each with its name, accel and load worked out by the
 * caller (p._name, p._accel, p._load). Links are undirected and counted once, keyed by the two
 * peer IDs sorted; a link to a node this one does not know is left out. The round trip shown
 * is this node's own measurement for its own links, else the least that either end announces.
 */
export function graph(self, peers) {
  const nodes = [{ id: self.id, name: self.name, accel: self.accel, load: self.load, state: 'self' }];
  for (const p of peers) {
    nodes.push({ id: p.peer_id, name: p._name, accel: p._accel, load: p._load,
      state: p.banned ? 'banned' : p.connected ? 'connected' : 'down' });
  }
  const known = new Set(nodes.map((n) => n.id));
  const links = new Map();
  const add = (a, b, rtt, own) => {
    if (!a || !b || a === b || !known.has(a) || !known.has(b)) return;
    const key = a < b ? `${a} ${b}` : `${b} ${a}`;
    const l = links.get(key) || { key, a, b, rtt: 0, own: false };
    if (own) { l.rtt = rtt || l.rtt; l.own = true; } else if (!l.own && rtt > 0 && (!l.rtt || rtt < l.rtt)) l.rtt = rtt;
    links.set(key, l);
  };
  for (const p of peers) {
    if (p.connected) add(self.id, p.peer_id, p.rtt_ms || 0, true);
  }
  for (const p of peers) {
    for (const l of p.capability?.links || []) add(p.peer_id, l.peer_id, l.rtt_ms || 0, false);
  }
  return { nodes, links: [...links.values()].sort((x, y) => x.key.localeCompare(y.key)) };
}

// layout places every node on one ring, this one first at the top and the rest clockwise (two
// nodes side by side), so that no link runs through a node. With few nodes each label (name,
// accelerator, load) sits outside the ring, anchored away from the centre; with many, or a few
// on a narrow screen, only the name shows, written along the node's ray so that neighbours
// never overlap (the rest is in the node's tooltip and its card). The viewBox frames the nodes
// and their labels; past the width given it scales the map down to fit.
function layout(nodes, width) {
  const n = nodes.length;
  const full = n <= (width < 560 ? 5 : 11);
  const labelW = full ? 112 : 84;
  // Full labels need the ring's arc; names along the rays need little, so the ring takes what
  // room a wide screen gives.
  const r = n < 2 ? 0 : full ? Math.max(60, 24 + n * 16) : Math.max(70, n * 4.8, Math.min(220, (width / 2 - labelW) * 0.6));
  const placed = nodes.map((node, i) => {
    const a = n === 2 ? Math.PI * (1 - i) : -Math.PI / 2 + (2 * Math.PI * i) / n;
    const ux = n < 2 ? 0 : Math.cos(a);
    const uy = n < 2 ? 1 : Math.sin(a);
    return { ...node, x: r * ux, y: r * uy, ux, uy, radius: node.state === 'self' ? 16 : full ? 11 : 8 };
  });
  let [minX, maxX, minY, maxY] = [0, 0, 0, 0];
  for (const p of placed) {
    const [left, right, up, down] = labelBox(p, full, labelW);
    minX = Math.min(minX, p.x - left);
    maxX = Math.max(maxX, p.x + right);
    minY = Math.min(minY, p.y - up);
    maxY = Math.max(maxY, p.y + down);
  }
  const w = Math.max(width, maxX - minX + 16);
  const x0 = (minX + maxX) / 2 - w / 2;
  return { viewBox: [x0, minY - 8, w, maxY - minY + 16].map((v) => v.toFixed(0)).join(' '), full, nodes: placed };
}

// labelBox is how far a node and its label reach left, right, up and down of its centre.
function labelBox(p, full, labelW) {
  const gap = p.radius + 5;
  if (!full && p.state !== 'self') {
    const reach = gap + labelW;
    return [Math.max(p.radius, -p.ux * reach), Math.max(p.radius, p.ux * reach),
      Math.max(p.radius, -p.uy * reach) + 6, Math.max(p.radius, p.uy * reach) + 6];
  }
  const lines = full ? 3 : 1;
  const textH = 13 * lines;
  const { anchor } = labelPlace(p, full ? 3 : 1);
  const left = anchor === 'middle' ? labelW / 2 : anchor === 'end' ? gap + labelW : p.radius;
  const right = anchor === 'middle' ? labelW / 2 : anchor === 'start' ? gap + labelW : p.radius;
  const above = p.uy < -0.7;
  const below = p.uy > 0.7;
  return [left, right, above ? gap + textH + 2 : below ? p.radius : textH / 2 + 4,
    below ? gap + textH + 2 : above ? p.radius : textH / 2 + 4];
}

// labelPlace anchors a stacked label of lines: above a node at the top of the ring, below one
// at the bottom (and below a node alone), beside one at the sides.
function labelPlace(p, lines) {
  const gap = p.radius + 5;
  const lineH = 13;
  const anchor = p.ux > 0.3 ? 'start' : p.ux < -0.3 ? 'end' : 'middle';
  const top = p.uy < -0.7 ? -gap - lineH * (lines - 1) - 3 : p.uy > 0.7 ? gap + 10 : 4 - (lineH * (lines - 1)) / 2;
  return { anchor, top, x: anchor === 'middle' ? 0 : anchor === 'start' ? gap : -gap };
}

function truncate(s, n) {
  s = String(s || '');
  return s.length > n ? s.slice(0, n - 1) + '…' : s;
}

// label writes a node's lines outside its circle: stacked and anchored away from the centre
// (full), or its name alone along its ray (compact).
function label(n, full) {
  const gap = n.radius + 5;
  if (!full && n.state !== 'self') {
    const deg = (Math.atan2(n.uy, n.ux) * 180) / Math.PI;
    const left = n.ux < -0.01;
    return svg('text', { class: 'name', x: left ? -gap : gap, y: 4, 'text-anchor': left ? 'end' : 'start',
      transform: `rotate(${(left ? deg + 180 : deg).toFixed(1)})` }, truncate(n.name, 12));
  }
  const lines = full ? [truncate(n.name, 18), n.accel, n.load] : [truncate(n.name, 18)];
  const { anchor, top, x } = labelPlace(n, lines.length);
  return svg('text', { 'text-anchor': anchor, y: top.toFixed(1) },
    lines.map((t, i) => svg('tspan', { x, dy: i ? 13 : 0, class: i ? 'sub' : 'name' }, t)));
}

const stateText = { self: 'this node', connected: 'connected', down: 'not connected', banned: 'banned' };

function nodeGroup(n, full, onPick) {
  const g = svg('g', { class: 'node ' + n.state, 'data-node': n.id, 'data-state': n.state,
    transform: `translate(${n.x.toFixed(1)} ${n.y.toFixed(1)})`, tabindex: 0, role: 'button',
    'aria-label': `${n.name}: ${stateText[n.state]}, ${n.accel}, ${n.load}` },
  svg('title', null, [n.name, n.id, n.accel, n.load, stateText[n.state]].join('\n')),
  svg('circle', { r: n.radius }),
  label(n, full));
  g.addEventListener('click', () => onPick(n.id));
  g.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' || e.key === ' ') { e.preventDefault(); onPick(n.id); }
  });
  return g;
}

function linkGroup(l, at, labelled) {
  const a = at.get(l.a);
  const b = at.get(l.b);
  const rtt = ms(l.rtt);
  return svg('g', { class: 'link', 'data-link': l.key, 'data-rtt': l.rtt || 0 },
    svg('title', null, `${a.name} – ${b.name}${rtt ? ': ' + rtt : ''}`),
    svg('line', { x1: a.x.toFixed(1), y1: a.y.toFixed(1), x2: b.x.toFixed(1), y2: b.y.toFixed(1) }),
    labelled && rtt ? svg('text', { x: ((a.x + b.x) / 2).toFixed(1), y: ((a.y + b.y) / 2 - 4).toFixed(1), 'text-anchor': 'middle' }, rtt) : null);
}

/**
 * meshMap returns the map's element and a draw(graph) that redraws it in place, only when what
 * it shows changed (the feed repeats itself every announcement). onPick(id) is called when a
 * node is clicked or chosen with the keyboard.
 */
export function meshMap(onPick) {
  const root = svg('svg', { class: 'mesh-map', id: 'mesh-map', role: 'group', 'aria-label': 'Map of the mesh' });
  const box = document.createElement('figure');
  box.className = 'mesh-map-box';
  box.append(root);
  let last = '';
  let current = null;
  const draw = (g) => {
    current = g || current;
    if (!current) return;
    const width = Math.round(box.clientWidth || 600);
    const key = width + '|' + JSON.stringify(current);
    if (key === last) return;
    last = key;
    const { viewBox, full, nodes } = layout(current.nodes, width);
    const at = new Map(nodes.map((n) => [n.id, n]));
    // Round trips written on the links while they stay legible; in each link's tooltip always.
    const labelled = full && current.links.length <= 20;
    root.setAttribute('viewBox', viewBox);
    root.setAttribute('data-nodes', nodes.length);
    root.setAttribute('data-links', current.links.length);
    // One swap in one task: the browser paints the old map or the new one, never a blank. A
    // node that had the keyboard's focus keeps it.
    const focused = root.contains(document.activeElement) ? document.activeElement.dataset.node : null;
    root.replaceChildren(
      svg('g', { class: 'links' }, current.links.map((l) => linkGroup(l, at, labelled))),
      svg('g', { class: 'nodes' }, nodes.map((n) => nodeGroup(n, full, onPick))));
    if (focused) [...root.querySelectorAll('[data-node]')].find((g) => g.dataset.node === focused)?.focus();
  };
  const onResize = () => draw();
  window.addEventListener('resize', onResize);
  return { element: box, draw, close: () => window.removeEventListener('resize', onResize) };
}
