// Playground: a streaming chat with any LLM of the mesh (POST /v1/chat/completions with
// stream: true), showing which node served each answer (the Syn4pse-Served-By header).
import { getJSON, request } from './api.js';
import { el, shortID } from './dom.js';

// conversation outlives page switches within the tab.
const conversation = [];

export function render(main, live, onError) {
  const picker = el('select', { id: 'chat-model', 'aria-label': 'model' });
  const system = el('textarea', { id: 'chat-system', rows: 2, placeholder: 'System prompt (optional)' });
  const temperature = el('input', { id: 'chat-temperature', type: 'number', min: 0, max: 2, step: 0.1, value: 0.8, 'aria-label': 'temperature' });
  const maxTokens = el('input', { id: 'chat-max-tokens', type: 'number', min: 1, max: 8192, value: 256, 'aria-label': 'max tokens' });
  const input = el('textarea', { id: 'chat-input', rows: 2, placeholder: 'Message', required: true });
  const send = el('button', { id: 'chat-send', class: 'primary', type: 'submit' }, 'Send');
  const stop = el('button', { id: 'chat-stop', type: 'button', disabled: true }, 'Stop');
  const clear = el('button', { id: 'chat-clear', type: 'button' }, 'Clear');
  const log = el('div', { id: 'chat-log', class: 'chat-log' });
  const form = el('form', { id: 'chat-form', class: 'chat-form' }, input, el('div', { class: 'row' }, send, stop, clear));
  main.append(el('h1', null, 'Playground'),
    el('div', { class: 'row settings' }, el('label', null, 'Model ', picker), el('label', null, 'Temperature ', temperature),
      el('label', null, 'Max tokens ', maxTokens)),
    system, log, form);

  let local = [];
  let hostname = '';
  let selfID = '';
  const names = () => {
    const m = new Map((live.peers || []).map((p) => [p.peer_id, p.node_name || p.capability?.node_name]));
    if (selfID) m.set(selfID, hostname + ' (this node)');
    return m;
  };
  const fillPicker = () => {
    const chosen = picker.value;
    const options = new Map();
    for (const m of local) options.set(m.id, 'this node');
    for (const p of live.peers || []) {
      for (const m of p.capability?.models || []) {
        if (m.modality !== 'MODALITY_LLM' || options.has(m.name)) continue;
        options.set(m.name, p.node_name || p.capability?.node_name || shortID(p.peer_id));
      }
    }
    picker.replaceChildren(...[...options].map(([id, where]) => el('option', { value: id, selected: id === chosen }, `${id} — ${where}`)));
  };

  const bubble = (role, text) => {
    const body = el('div', { class: 'text' }, text);
    const meta = el('div', { class: 'meta muted' });
    const node = el('div', { class: 'msg ' + role, 'data-role': role }, body, meta);
    log.append(node);
    node.scrollIntoView({ block: 'end' });
    return { node, body, meta };
  };
  for (const m of conversation) bubble(m.role, m.content).meta.textContent = m.meta || '';

  let ctrl = null;
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const text = input.value.trim();
    if (!text || ctrl || !picker.value) return;
    input.value = '';
    conversation.push({ role: 'user', content: text });
    bubble('user', text);
    const answer = bubble('assistant', '');
    answer.node.classList.add('streaming');
    const messages = system.value.trim() ? [{ role: 'system', content: system.value.trim() }, ...conversation] : [...conversation];
    ctrl = new AbortController();
    send.disabled = true;
    stop.disabled = false;
    let content = '';
    let chunks = 0;
    let meta = '';
    try {
      const res = await request('/v1/chat/completions', {
        method: 'POST', signal: ctrl.signal, headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({ model: picker.value, messages, stream: true, stream_options: { include_usage: true },
          temperature: Number(temperature.value), max_tokens: Number(maxTokens.value) }),
      });
      const by = res.headers.get('Syn4pse-Served-By') || '';
      const served = el('span', { class: 'served-by', title: by }, 'served by ' + (names().get(by) || shortID(by) || 'unknown'));
      answer.meta.replaceChildren(served);
      meta = served.textContent;
      const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
      let buf = '';
      let usage = null;
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += value;
        let end;
        while ((end = buf.indexOf('\n\n')) >= 0) {
          const line = buf.slice(0, end).split('\n').find((l) => l.startsWith('data: '));
          buf = buf.slice(end + 2);
          if (!line || line === 'data: [DONE]') continue;
          const ev = JSON.parse(line.slice(6));
          if (ev.error) throw new Error(ev.error.message || String(ev.error));
          const delta = ev.choices?.[0]?.delta?.content;
          if (delta) { content += delta; chunks++; answer.body.textContent = content; }
          if (ev.usage) usage = ev.usage;
        }
      }
      if (usage) {
        meta += ` · ${usage.completion_tokens} tokens`;
        answer.meta.append(` · ${usage.completion_tokens} tokens`);
      }
    } catch (err) {
      if (err.name === 'AbortError') {
        answer.meta.append(' · stopped');
        meta += ' · stopped';
      } else {
        answer.node.remove();
        conversation.pop();
        ctrl = null;
        send.disabled = false;
        stop.disabled = true;
        onError(err);
        return;
      }
    }
    answer.node.dataset.chunks = String(chunks);
    answer.node.classList.remove('streaming');
    answer.node.classList.add('done');
    conversation.push({ role: 'assistant', content, meta });
    ctrl = null;
    send.disabled = false;
    stop.disabled = true;
  });
  stop.addEventListener('click', () => ctrl?.abort());
  clear.addEventListener('click', () => { conversation.length = 0; log.replaceChildren(); });
  input.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && !e.shiftKey) { e.preventDefault(); form.requestSubmit(); }
  });

  Promise.all([getJSON('/v1/models'), getJSON('/api/status'), getJSON('/api/mesh')]).then(([models, st, mesh]) => {
    local = (models.data || []).filter((m) => !m.kind || m.kind === 'llm');
    hostname = st.hostname;
    selfID = mesh.peer_id || st.node_id;
    fillPicker();
  }).catch(onError);
  const unsubscribe = live.subscribe(fillPicker);
  return () => { unsubscribe(); ctrl?.abort(); };
}
