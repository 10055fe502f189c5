// Small helpers to build the page from data without ever parsing it as HTML.

/** el builds an element: attrs set properties (class, onclick...) or data-/aria- attributes. */
export function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') node.className = v;
    else if (k.startsWith('data-') || k.startsWith('aria-') || k === 'title' || k === 'for') node.setAttribute(k, v);
    else node[k] = v;
  }
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    node.append(c instanceof Node ? c : String(c));
  }
  return node;
}

/** dl is a definition list of [term, value] pairs, leaving out empty values. */
export function dl(pairs) {
  return el('dl', null, pairs.filter(([, v]) => v !== undefined && v !== null && v !== '')
    .map(([k, v]) => [el('dt', null, k), el('dd', null, v)]));
}

export function table(head, rows, narrow = []) {
  const cls = (i) => (narrow.includes(i) ? 'hide-narrow' : undefined);
  return el('div', { class: 'table-wrap' }, el('table', null,
    el('thead', null, el('tr', null, head.map((h, i) => el('th', { class: cls(i) }, h)))),
    el('tbody', null, rows.map((r) => el('tr', { 'data-row': r.key }, r.cells.map((c, i) => el('td', { class: cls(i) }, c)))))));
}

export function bytes(n) {
  n = Number(n || 0);
  if (!n) return '—';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return (i ? n.toFixed(1) : n) + ' ' + units[i];
}

export function shortID(id) {
  return id && id.length > 16 ? id.slice(0, 8) + '…' + id.slice(-6) : id || '';
}

export function badge(text, kind) {
  return el('span', { class: 'badge ' + (kind || text) }, text);
}

/** enumName turns "MODEL_STATE_LOADED" into "loaded". */
export function enumName(v, prefix) {
  return String(v || '').replace(prefix, '').toLowerCase().replaceAll('_', ' ');
}

const kinds = { llm: 'llm', embedding: 'embeddings', 'speech to text': 'stt', 'text to speech': 'tts', rerank: 'rerank' };
export function kind(modality) {
  const k = enumName(modality, 'MODALITY_');
  return kinds[k] || k;
}

// answer resolves the question the confirmation dialog shows, until it is answered.
let answer = null;

// settle gives the question its answer once the dialog has closed. The dialog's close event
// comes a moment after it closes, and may come only after the next question is on screen:
// asking again settles the last question first, and a late event finds the dialog open.
function settle() {
  const dialog = document.getElementById('confirm');
  if (!answer || dialog.open) return;
  const resolve = answer;
  answer = null;
  resolve(dialog.returnValue === 'ok');
}

/** confirmAction asks in the page's own dialog; resolves true when the user confirms. */
export function confirmAction(text) {
  const dialog = document.getElementById('confirm');
  if (!dialog.dataset.wired) {
    dialog.addEventListener('close', settle);
    dialog.dataset.wired = 'true';
  }
  settle();
  document.getElementById('confirm-text').textContent = text;
  return new Promise((resolve) => {
    answer = resolve;
    dialog.returnValue = '';
    dialog.showModal();
  });
}
