// The dashboard's shell: hash routing between pages, the API key prompt, and the live feed of
// peers and models (GET /api/events) that the pages render from.
import { AuthError, events, hasKey, setKey } from './api.js';
import { el } from './dom.js';
import * as nodePage from './node.js';
import * as meshPage from './mesh.js';
import * as modelsPage from './models.js';
import * as chatPage from './chat.js';

const pages = { node: nodePage, mesh: meshPage, models: modelsPage, chat: chatPage };
const main = document.getElementById('main');

/** live holds the latest peers and models from the node's event stream. */
export const live = {
  peers: null,
  models: null,
  listeners: new Set(),
  subscribe(fn) { this.listeners.add(fn); return () => this.listeners.delete(fn); },
  emit() { for (const fn of this.listeners) fn(); },
};

let feed = null;

// startFeed keeps one event stream open, reconnecting after a pause when it breaks.
function startFeed() {
  if (feed) feed.abort();
  const ctrl = new AbortController();
  feed = ctrl;
  const dot = document.getElementById('live');
  (async () => {
    while (!ctrl.signal.aborted) {
      try {
        await events((name, data) => {
          dot.classList.add('on');
          if (name === 'peers') live.peers = data.peers || [];
          else if (name === 'models') live.models = data.models || [];
          else return;
          live.emit();
        }, ctrl.signal);
      } catch (err) {
        if (ctrl.signal.aborted) return;
        if (err instanceof AuthError) { dot.classList.remove('on'); askKey(err.message); return; }
      }
      dot.classList.remove('on');
      await new Promise((r) => setTimeout(r, 2000));
    }
  })();
}

let cleanup = null;

// route renders the page the location's hash names.
function route() {
  const name = (location.hash.replace(/^#\/?/, '') || 'node').split('/')[0];
  const page = pages[name] || nodePage;
  for (const a of document.querySelectorAll('nav a')) a.classList.toggle('active', a.dataset.page === name);
  if (cleanup) cleanup();
  cleanup = null;
  main.replaceChildren();
  main.dataset.page = name;
  cleanup = page.render(main, live, onError) || null;
}

// onError shows a page's failure: the key prompt for a 401, the message otherwise.
function onError(err) {
  if (err instanceof AuthError) { askKey(err.message); return; }
  main.append(el('p', { class: 'error', role: 'alert' }, String(err.message || err)));
}

// askKey replaces the page with a form for the node's API key, kept in sessionStorage.
function askKey(message) {
  if (document.getElementById('key-form')) return;
  if (cleanup) cleanup();
  cleanup = null;
  const input = el('input', { id: 'api-key', type: 'password', placeholder: 'sk-…', autocomplete: 'off', required: true });
  const form = el('form', { class: 'key', id: 'key-form' }, input, el('button', { class: 'primary', type: 'submit' }, 'Use key'));
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    setKey(input.value.trim());
    startFeed();
    route();
  });
  main.replaceChildren(...[
    el('h1', null, 'API key'),
    el('p', null, 'This node asks for an API key (server.api_keys). The key stays in this browser tab only.'),
    hasKey() ? el('p', { class: 'error', role: 'alert' }, message) : null,
    form].filter(Boolean));
  input.focus();
}

window.addEventListener('hashchange', route);
startFeed();
route();
