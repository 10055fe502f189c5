// The Node page's Traffic card: what the node has served since it started, read from its
// Prometheus metrics (GET /metrics, the same figures a Prometheus server scrapes) every 5 s:
// HTTP requests by route, requests forwarded to peers by outcome, tokens by model, and model
// files sent to peers.
import { AuthError, request } from './api.js';
import { bytes, el, table } from './dom.js';

/** parseMetrics reads Prometheus' text format into samples {name, labels, value}. */
export function parseMetrics(text) {
  const out = [];
  for (const line of text.split('\n')) {
    const m = line.match(/^([a-zA-Z_:][\w:]*)(?:\{(.*)\})?\s+(\S+)/);
    if (!m) continue; // a comment (# HELP, # TYPE) or a blank line
    const labels = {};
    for (const [, k, v] of (m[2] || '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) {
      labels[k] = v.replace(/\\(.)/g, (_, c) => (c === 'n' ? '\n' : c));
    }
    out.push({ name: m[1], labels, value: Number(m[3]) });
  }
  return out;
}

// sums adds up the samples of one metric by the key of each.
function sums(samples, name, key) {
  const out = new Map();
  for (const s of samples) if (s.name === name) out.set(key(s.labels), (out.get(key(s.labels)) || 0) + s.value);
  return out;
}

const count = (n) => Math.round(n).toLocaleString();

// reported says whether a route's requests show: the work asked of the node, not the reads of
// this page, its files and of monitors (GET /api/..., /metrics, /healthz).
const reported = (route) => Boolean(route) && (!route.startsWith('GET ') || route.startsWith('GET /v1/'));

function draw(body, samples) {
  const routes = new Map();
  for (const s of samples) {
    if (s.name !== 'syn4pse_http_requests_total' || !reported(s.labels.route)) continue;
    const r = routes.get(s.labels.route) || { all: 0, failed: 0 };
    r.all += s.value;
    if (Number(s.labels.code) >= 400) r.failed += s.value;
    routes.set(s.labels.route, r);
  }
  const forwarded = [...sums(samples, 'syn4pse_forwarded_requests_total', (l) => l.outcome)].filter(([, n]) => n > 0);
  const generated = sums(samples, 'syn4pse_tokens_generated_total', (l) => l.model);
  const prompt = sums(samples, 'syn4pse_prompt_tokens_total', (l) => l.model);
  const served = samples.find((s) => s.name === 'syn4pse_peer_blob_bytes_served_total')?.value || 0;
  const transfers = samples.find((s) => s.name === 'syn4pse_peer_blob_transfers_total')?.value || 0;
  const none = (text) => el('p', { class: 'muted' }, text);
  body.replaceChildren(
    el('h3', null, 'HTTP requests (not counting reads like this page\'s)'),
    routes.size ? table(['Route', 'Requests', 'Failed'], [...routes].sort((a, b) => b[1].all - a[1].all)
      .map(([route, r]) => ({ key: 'http:' + route, cells: [el('span', { class: 'mono' }, route), count(r.all), r.failed ? count(r.failed) : '—'] })))
      : none('none yet'),
    el('h3', null, 'Forwarded to peers'),
    forwarded.length ? table(['Outcome', 'Requests'], forwarded.sort((a, b) => b[1] - a[1])
      .map(([outcome, n]) => ({ key: 'fwd:' + outcome, cells: [outcome.replaceAll('_', ' '), count(n)] })))
      : none('none yet'),
    el('h3', null, 'Tokens'),
    generated.size ? table(['Model', 'Prompt', 'Generated'], [...generated].sort((a, b) => a[0].localeCompare(b[0]))
      .map(([model, n]) => ({ key: 'tokens:' + model, cells: [model, count(prompt.get(model) || 0), count(n)] })))
      : none('none yet'),
    transfers ? el('p', { class: 'muted', id: 'node-traffic-blobs' }, `${count(transfers)} model transfer${transfers === 1 ? '' : 's'} to peers, ${bytes(served)} sent`) : null,
  );
}

/** trafficCard shows the node's traffic, refreshed every 5 s until signal aborts. */
export function trafficCard(signal, onError) {
  const body = el('div', null, el('p', { class: 'muted' }, 'Loading…'));
  const card = el('section', { class: 'card wide', id: 'node-traffic' }, el('h2', null, 'Traffic since start'), body);
  let timer = null;
  const refresh = async () => {
    try {
      const res = await request('/metrics', { signal });
      draw(body, parseMetrics(await res.text()));
      card.dataset.updated = String(Date.now());
    } catch (err) {
      if (signal.aborted) return;
      if (err instanceof AuthError) { onError(err); return; }
      body.replaceChildren(el('p', { class: 'muted' }, 'No metrics: ' + (err.message || err)));
    }
    if (!signal.aborted) timer = setTimeout(refresh, 5000);
  };
  signal.addEventListener('abort', () => clearTimeout(timer));
  refresh();
  return card;
}
