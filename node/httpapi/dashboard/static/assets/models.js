// Models page: every model this node knows with its kind, state, size and digest, which peers
// also serve it; the models only peers have, each with the nodes that hold it and a "pull here"
// that copies it over the mesh; pull by name and source with a live progress bar (POST
// /api/models/pull, read as it streams); load / unload / delete with confirmation (POST
// /api/models/{name}/load|unload, DELETE /api/models/{name}); and the `syn4pse ps` view of what
// runs (GET /api/ps).
import { AuthError, deleteJSON, getJSON, postJSON, postNDJSON } from './api.js';
import { badge, bytes, confirmAction, el, enumName, kind, shortID, table } from './dom.js';

export function render(main, live, onError) {
  const status = el('p', { class: 'muted', id: 'models-status', role: 'status' });
  const holder = el('div', { id: 'models' });
  const meshHolder = el('div', { id: 'mesh-models' });
  const meshSection = el('section', { id: 'mesh-section', hidden: true },
    el('h2', { class: 'section' }, 'In the mesh'),
    el('p', { class: 'muted' }, 'Models that only peers have. Pull one here to serve it from this node too (it is copied over the mesh and verified).'),
    meshHolder);
  const running = el('div', { id: 'running' });
  const progress = pullProgress();
  main.append(el('h1', null, 'Models'), pullForm(), status, holder, meshSection,
    el('h2', { class: 'section' }, 'Running'), running);
  const busy = new Set();
  let pulling = false; // a pull runs: the pull buttons wait
  let ps = null;

  const refresh = async () => {
    const res = await getJSON('/api/models');
    live.models = res.models || [];
    live.emit();
  };

  const refreshPS = async () => {
    ps = (await getJSON('/api/ps')).models || [];
    drawPS();
  };

  const verbs = {
    load: ['Load', 'Loading', 'loaded'], unload: ['Unload', 'Unloading', 'unloaded'], delete: ['Delete', 'Deleting', 'deleted'],
  };

  const act = async (m, verb) => {
    const [Verb, doing, done] = verbs[verb];
    const loaded = m.state === 'MODEL_STATE_LOADED';
    const question = verb === 'delete'
      ? `Delete ${m.name} and its files from this node's store${loaded ? ' (it is loaded: it is unloaded first)' : ''}? This cannot be undone.`
      : `${Verb} ${m.name}?`;
    if (!(await confirmAction(question))) return;
    busy.add(m.name);
    draw();
    status.className = 'muted';
    status.textContent = `${doing} ${m.name}…`;
    try {
      if (verb === 'delete') {
        const res = await deleteJSON(`/api/models/${encodeURIComponent(m.name)}${loaded ? '?force=true' : ''}`);
        status.textContent = `${m.name} deleted, ${bytes(res.freed_bytes)} freed.`;
      } else {
        await postJSON(`/api/models/${encodeURIComponent(m.name)}/${verb}`);
        status.textContent = `${m.name} ${done}.`;
      }
    } catch (err) {
      // The refusal shows by the table it is about; a 401 brings the key prompt.
      status.textContent = '';
      if (err instanceof AuthError) onError(err);
      else { status.className = 'error'; status.textContent = `${Verb} ${m.name} failed: ${err.message || err}`; }
    } finally {
      busy.delete(m.name);
      await refresh().catch(onError);
    }
  };

  const elsewhere = (name) => (live.peers || []).filter((p) => (p.capability?.models || []).some((m) => m.name === name))
    .map((p) => p.node_name || p.capability?.node_name || p.peer_id);

  // drawMesh lists the models peers announce that this node lacks, by name, with the nodes
  // holding each; only those with a digest can be pulled (the blob is fetched by its digest).
  const drawMesh = () => {
    if (live.models === null || live.peers === null) return;
    const here = new Set(live.models.map((m) => m.name));
    const found = new Map();
    for (const p of live.peers) {
      if (p.banned) continue;
      for (const m of p.capability?.models || []) {
        if (here.has(m.name)) continue;
        const e = found.get(m.name) || { m, nodes: [] };
        e.nodes.push({ name: p.node_name || p.capability?.node_name || shortID(p.peer_id), loaded: m.loaded });
        if (!e.m.digest && m.digest) e.m = m;
        found.set(m.name, e);
      }
    }
    meshSection.hidden = found.size === 0;
    if (same('mesh', [pulling, [...found.values()].map(({ m, nodes }) => [m.name, m.modality, m.size_bytes, m.digest, nodes])])) return;
    const rows = [...found.values()].sort((a, b) => a.m.name.localeCompare(b.m.name)).map(({ m, nodes }) => {
      const pullable = Boolean(m.digest && Number(m.size_bytes) > 0);
      const digest = m.digest ? el('span', { class: 'mono', title: m.digest }, m.digest.replace('sha256:', '').slice(0, 12)) : '—';
      const on = el('span', { class: 'nodes' }, nodes.map((n, i) => [i ? ', ' : '', n.name, n.loaded ? ' ' : '', n.loaded ? badge('loaded') : '']));
      const action = el('button', { class: 'act', 'data-action': 'pull', disabled: !pullable || pulling,
        title: pullable ? undefined : 'its node announces no digest (an engine voice, or a file not hashed yet): it cannot be copied',
        onclick: () => pullHere(m) }, 'Pull here');
      return { key: m.name, cells: [el('strong', null, m.name), kind(m.modality), bytes(m.size_bytes), digest, on, action] };
    });
    meshHolder.replaceChildren(table(['Name', 'Kind', 'Size', 'Digest', 'On', ''], rows, [2, 3]));
  };

  // source names a pull's source: a URL, or "peer <ID>" as the peer's node name.
  const source = (from) => {
    if (!from.startsWith('peer ')) return from;
    const p = (live.peers || []).find((x) => x.peer_id === from.slice(5));
    return p ? `peer ${p.node_name || p.capability?.node_name || shortID(p.peer_id)}` : `peer ${shortID(from.slice(5))}`;
  };

  const pullHere = async (m) => {
    if (!(await confirmAction(`Copy ${m.name} (${bytes(m.size_bytes)}) from the mesh to this node's store?`))) return;
    await pull({ name: m.name, sha256: m.digest });
  };

  // pull runs one pull, showing its progress in the bar, and reports whether it succeeded.
  const pull = async (body) => {
    const { box, bar, text } = progress;
    pulling = true;
    drawMesh();
    document.getElementById('pull-submit').disabled = true;
    box.hidden = false;
    box.classList.remove('failed', 'done');
    bar.removeAttribute('value');
    box.dataset.percent = '';
    box.dataset.name = body.name;
    text.textContent = `${body.name}: starting…`;
    box.scrollIntoView({ block: 'nearest' });
    try {
      await postNDJSON('/api/models/pull', body, (p) => {
        const total = Number(p.total_bytes || 0), got = Number(p.completed_bytes || 0);
        const pct = total ? Math.min(100, Math.floor((got * 100) / total)) : null;
        if (pct !== null) bar.value = pct;
        if (p.done) bar.value = 100;
        box.dataset.percent = p.done ? 100 : pct ?? '';
        const parts = [`${body.name}: ${p.status}`, pct !== null && !p.done ? `${pct}%` : null, total ? `${bytes(got)} / ${bytes(total)}` : null,
          p.bytes_per_second > 0 && !p.done ? `${bytes(p.bytes_per_second)}/s` : null, p.from ? `from ${source(p.from)}` : null];
        text.textContent = parts.filter(Boolean).join(' · ');
        if (p.from) box.dataset.from = p.from;
      });
      bar.value = 100;
      box.dataset.percent = 100;
      box.classList.add('done');
      text.textContent = `Pulled “${body.name}” · 100%` + (box.dataset.from ? ` · from ${source(box.dataset.from)}` : '');
      return true;
    } catch (err) {
      box.classList.add('failed');
      bar.value = 0;
      text.textContent = `Pull of ${body.name} failed: ${err.message || err}`;
      if (err instanceof AuthError) onError(err);
      return false;
    } finally {
      pulling = false;
      document.getElementById('pull-submit').disabled = false;
      await refresh().catch(onError);
    }
  };

  // drawn holds what each table shows, so a live event that changes nothing shown (peers'
  // load, a model's counters) leaves the table as it is: no flicker, and no button replaced
  // under a click.
  const drawn = {};
  const same = (table, shown) => {
    const key = JSON.stringify(shown);
    if (drawn[table] === key) return true;
    drawn[table] = key;
    return false;
  };

  const draw = () => {
    if (live.models === null) return;
    if (same('models', [[...busy], live.models.map((m) => [m.name, m.modality, m.state, m.size_bytes, m.digest, m.unavailable_reason, elsewhere(m.name)])])) return;
    if (!live.models.length) { holder.replaceChildren(el('p', { class: 'muted' }, 'No models on this node.')); return; }
    const rows = [...live.models].sort((a, b) => a.name.localeCompare(b.name)).map((m) => {
      const state = enumName(m.state, 'MODEL_STATE_');
      const loaded = m.state === 'MODEL_STATE_LOADED';
      const off = busy.has(m.name) || m.state === 'MODEL_STATE_LOADING';
      const action = m.state === 'MODEL_STATE_UNAVAILABLE' ? el('span', { class: 'muted', title: m.unavailable_reason }, 'unavailable')
        : el('button', { class: 'act', 'data-action': loaded ? 'unload' : 'load', disabled: off,
          onclick: () => act(m, loaded ? 'unload' : 'load') }, loaded ? 'Unload' : 'Load');
      const remove = el('button', { class: 'act danger', 'data-action': 'delete', disabled: off, onclick: () => act(m, 'delete') }, 'Delete');
      const digest = m.digest ? el('span', { class: 'mono', title: m.digest }, m.digest.replace('sha256:', '').slice(0, 12)) : '—';
      return { key: m.name, cells: [el('strong', null, m.name), kind(m.modality), badge(state, state.replace(' ', '-')),
        bytes(m.size_bytes), digest, elsewhere(m.name).join(', ') || '—', el('span', { class: 'row' }, action, remove)] };
    });
    holder.replaceChildren(table(['Name', 'Kind', 'State', 'Size', 'Digest', 'Also on', ''], rows, [3, 4, 5]));
  };

  const drawPS = () => {
    if (ps === null) return;
    if (!ps.length) { running.replaceChildren(el('p', { class: 'muted' }, 'No model is loaded.')); return; }
    const rows = ps.map((r) => ({ key: r.name, cells: [el('strong', null, r.name), el('span', { class: 'mem' }, bytes(r.memory_bytes)),
      String(r.active_requests || 0), r.keep_alive, el('span', { class: 'until' }, until(r))] }));
    running.replaceChildren(table(['Name', 'Memory', 'Requests', 'Keep alive', 'Unloads'], rows, [2, 3]));
  };

  // pullProgress is the bar every pull shows its progress in.
  function pullProgress() {
    const bar = el('progress', { id: 'pull-bar', max: 100 });
    const text = el('span', { id: 'pull-text', class: 'muted', role: 'status' });
    const box = el('div', { id: 'pull-progress', class: 'pull-progress', hidden: true }, bar, text);
    return { box, bar, text };
  }

  // pullForm is the pull by name and source, with the progress bar.
  function pullForm() {
    const name = el('input', { id: 'pull-name', placeholder: 'name', required: true, autocomplete: 'off' });
    const source = el('input', { id: 'pull-source', placeholder: 'https://…/model.gguf or hf://owner/repo/file.gguf', autocomplete: 'off' });
    const sha = el('input', { id: 'pull-sha256', placeholder: 'sha256 (optional)', autocomplete: 'off', pattern: '(sha256:)?[0-9a-fA-F]{64}' });
    const go = el('button', { class: 'primary', type: 'submit', id: 'pull-submit' }, 'Pull');
    const form = el('form', { id: 'pull-form', class: 'pull card' }, el('h2', null, 'Pull a model'),
      el('div', { class: 'row' }, name, source, sha, go), progress.box);
    form.addEventListener('submit', async (e) => {
      e.preventDefault();
      if (await pull({ name: name.value.trim(), source: source.value.trim(), sha256: sha.value.trim() })) form.reset();
    });
    return form;
  }

  if (live.models === null) refresh().catch(onError);
  draw();
  drawMesh();
  refreshPS().catch(onError);
  // The countdowns tick, and the table follows loads and unloads the live feed reports.
  const tick = setInterval(() => refreshPS().catch(() => {}), 5000);
  const off = live.subscribe(() => { draw(); drawMesh(); refreshPS().catch(() => {}); });
  return () => { clearInterval(tick); off(); };
}

// until says when keep_alive unloads a running model.
function until(r) {
  if (Number(r.active_requests) > 0) return 'in use';
  if (r.keep_alive === '-1') return 'never (pinned)';
  const at = Number(r.expires_at_unix_ms || 0);
  if (!at) return '—';
  const s = Math.max(0, Math.round((at - Date.now()) / 1000));
  const left = s >= 3600 ? `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m` : s >= 60 ? `${Math.floor(s / 60)}m ${s % 60}s` : `${s}s`;
  return `in ${left} (${new Date(at).toLocaleTimeString()})`;
}
