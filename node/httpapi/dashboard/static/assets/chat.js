// Playground: a streaming chat with any LLM of the mesh (POST /v1/chat/completions with
// stream: true), showing which node served each answer (the Syn4pse-Served-By header). It sends
// the sampling settings the user set, may pin a node (Syn4pse-Node), attaches images and audio
// where the model takes them, records the microphone for the mesh's speech-to-text
// (/v1/audio/transcriptions, the words shown as they are spoken) and speaks answers with its
// text-to-speech (/v1/audio/speech), or reads them aloud as they stream (the audio chat).
// Answers show as markdown; the conversation and the settings are kept in localStorage.
import { AuthError, getJSON, request } from './api.js';
import { el, kind, shortID } from './dom.js';
import { audioFormat, canRecord, dataURL, player, record } from './audio.js';
import { markdown, spoken } from './markdown.js';

const chatKey = 'syn4pse.playground.conversation';
const settingsKey = 'syn4pse.playground.settings';
// maxSaved is the most characters the saved conversation takes of localStorage's ~5 MB with its
// images and audio: beyond it they are left out, oldest first, each for a placeholder.
const maxSaved = 2e6;

// saved is the value this page stored under key, or null for none, or for one it cannot read
// or did not write (valid says).
function saved(key, valid) {
  try {
    const v = JSON.parse(localStorage.getItem(key));
    return valid(v) ? v : null;
  } catch {
    return null;
  }
}

// store keeps value under key (null removes it); when storage is full or off, it is not kept.
function store(key, value) {
  try {
    localStorage.removeItem(key);
    if (value !== null) localStorage.setItem(key, value);
  } catch {
    // Not kept: the page works on without it.
  }
}

const part = (p) => (p?.type === 'text' ? typeof p.text === 'string'
  : p?.type === 'image_url' ? /^data:image\//.test(p.image_url?.url)
    : p?.type === 'input_audio' && typeof p.input_audio?.data === 'string' && ['wav', 'mp3', 'flac'].includes(p.input_audio.format));
const message = (m) => ['user', 'assistant'].includes(m?.role) && ['string', 'undefined'].includes(typeof m.meta)
  && (typeof m.content === 'string' || (m.role === 'user' && Array.isArray(m.content) && m.content.every(part)));
const bare = (p) => (p.type === 'image_url' ? { type: 'text', text: '[image]' }
  : p.type === 'input_audio' ? { type: 'text', text: `[audio (${p.input_audio.format})]` } : p);

// conversation outlives page switches within the tab, and reloads (saveConversation).
const conversation = saved(chatKey, (v) => Array.isArray(v) && v.every(message)) || [];

function saveConversation() {
  let copy = conversation;
  let json = JSON.stringify(copy);
  for (let i = 0; json.length > maxSaved && i < copy.length; i++) {
    copy = copy.map((m, j) => (j === i && Array.isArray(m.content) ? { ...m, content: m.content.map(bare) } : m));
    json = JSON.stringify(copy);
  }
  store(chatKey, copy.length ? json : null);
}

// knobs are the optional sampling fields of the API (samplingFields in node/httpapi/openai.go):
// JSON name, label, input attributes; int ones are sent as integers.
const knobs = [
  ['top_p', 'Top p', { min: 0, max: 1, step: 0.05 }],
  ['top_k', 'Top k', { min: 0, step: 1 }, true],
  ['min_p', 'Min p', { min: 0, max: 1, step: 0.01 }],
  ['repeat_penalty', 'Repeat penalty', { min: 0, step: 0.05 }],
  ['presence_penalty', 'Presence penalty', { min: -2, max: 2, step: 0.1 }],
  ['frequency_penalty', 'Frequency penalty', { min: -2, max: 2, step: 0.1 }],
  ['seed', 'Seed', { min: 0, step: 1 }, true],
];

// view splits a message's content (a string or OpenAI parts) into what its bubble shows.
function view(content) {
  if (typeof content === 'string') return { text: content, images: [], audios: [] };
  return {
    text: content.filter((p) => p.type === 'text').map((p) => p.text).join('\n'),
    images: content.filter((p) => p.type === 'image_url').map((p) => p.image_url.url),
    audios: content.filter((p) => p.type === 'input_audio').map((p) => p.input_audio.format),
  };
}

export function render(main, live, onError) {
  const picker = el('select', { id: 'chat-model', 'aria-label': 'model' });
  const pin = el('select', { id: 'chat-node', 'aria-label': 'node' });
  const voice = el('select', { id: 'chat-voice', 'aria-label': 'voice' });
  const voiceLabel = el('label', { hidden: true }, 'Voice ', voice);
  const aloud = el('input', { id: 'chat-aloud', type: 'checkbox' });
  const aloudLabel = el('label', { hidden: true }, aloud, ' Read aloud');
  const system = el('textarea', { id: 'chat-system', rows: 2, placeholder: 'System prompt (optional)' });
  const temperature = el('input', { id: 'chat-temperature', type: 'number', min: 0, max: 2, step: 0.1, value: 0.8, 'aria-label': 'temperature' });
  const maxTokens = el('input', { id: 'chat-max-tokens', type: 'number', min: 1, max: 8192, value: 256, 'aria-label': 'max tokens' });
  const fields = knobs.map(([name, label, attrs]) => el('input', { id: 'chat-' + name.replaceAll('_', '-'), type: 'number', ...attrs, placeholder: 'default' }));
  const stopSeqs = el('textarea', { id: 'chat-stop-seq', rows: 2, placeholder: 'one a line' });
  const sampling = el('details', { id: 'chat-sampling', class: 'sampling' }, el('summary', null, 'Sampling'),
    el('div', { class: 'knobs' }, knobs.map(([, label], i) => el('label', null, label, fields[i])), el('label', null, 'Stop sequences', stopSeqs)));
  const input = el('textarea', { id: 'chat-input', rows: 2, placeholder: 'Message', required: true });
  const send = el('button', { id: 'chat-send', class: 'primary', type: 'submit' }, 'Send');
  const stop = el('button', { id: 'chat-stop', type: 'button', disabled: true }, 'Stop');
  const clear = el('button', { id: 'chat-clear', type: 'button' }, 'Clear');
  const imageFile = el('input', { id: 'chat-image', type: 'file', accept: 'image/*', multiple: true, hidden: true });
  const audioFile = el('input', { id: 'chat-audio', type: 'file', accept: '.wav,.mp3,.flac,audio/wav,audio/mpeg,audio/flac', hidden: true });
  // A label opens its file input; Enter or Space on it too.
  const picks = (text, id, file) => el('label', { id, class: 'button', hidden: true, tabIndex: 0,
    onkeydown: (e) => { if (e.key === 'Enter' || e.key === ' ') { e.preventDefault(); file.click(); } } }, text, file);
  const imageLabel = picks('Attach image', 'chat-attach-image', imageFile);
  const audioLabel = picks('Attach audio', 'chat-attach-audio', audioFile);
  const mic = el('button', { id: 'chat-mic', type: 'button', hidden: true, 'aria-pressed': 'false' }, 'Mic');
  const strip = el('div', { id: 'chat-attachments', class: 'attachments' });
  const note = el('p', { id: 'chat-note', class: 'muted', role: 'status' });
  const log = el('div', { id: 'chat-log', class: 'chat-log' });
  const say = (text) => { note.textContent = text; if (text) note.scrollIntoView({ block: 'nearest' }); };
  const form = el('form', { id: 'chat-form', class: 'chat-form' }, strip, input,
    el('div', { class: 'row' }, send, stop, clear, imageLabel, audioLabel, mic), note);
  main.append(el('h1', null, 'Playground'),
    el('div', { class: 'row settings' }, el('label', null, 'Model ', picker), el('label', null, 'Node ', pin),
      el('label', null, 'Temperature ', temperature), el('label', null, 'Max tokens ', maxTokens), voiceLabel, aloudLabel),
    sampling, system, log, form);

  // The settings are kept across reloads. A select's kept value waits in wanted until its option
  // shows (the mesh's models come with the live feed), or until the user picks another.
  const kept = { system, temperature, max_tokens: maxTokens, stop: stopSeqs, ...Object.fromEntries(knobs.map(([name], i) => [name, fields[i]])) };
  const settings = saved(settingsKey, (v) => typeof v === 'object' && v !== null) || {};
  for (const [k, e] of Object.entries(kept)) if (typeof settings[k] === 'string') e.value = settings[k];
  aloud.checked = settings.aloud === true;
  const wanted = new Map([[picker, settings.model], [pin, settings.node], [voice, settings.voice]].filter(([, v]) => typeof v === 'string'));
  const choice = (select) => wanted.get(select) ?? select.value;
  const saveSettings = () => store(settingsKey, JSON.stringify({ model: choice(picker), node: choice(pin), voice: choice(voice), aloud: aloud.checked,
    ...Object.fromEntries(Object.entries(kept).map(([k, e]) => [k, e.value])) }));
  for (const e of Object.values(kept)) e.addEventListener('input', saveSettings);
  for (const e of [picker, pin, voice, aloud]) e.addEventListener('change', () => { wanted.delete(e); saveSettings(); });

  let localModels = null;
  let hostname = '';
  let selfID = '';
  // models: every model of the mesh by name: kind, inputs, voices and the nodes that serve it.
  let models = new Map();
  const names = () => {
    const m = new Map((live.peers || []).map((p) => [p.peer_id, p.node_name || p.capability?.node_name]));
    if (selfID) m.set(selfID, hostname + ' (this node)');
    return m;
  };
  const collect = () => {
    const all = new Map();
    const add = (name, k, inputs, voices, id, where) => {
      let m = all.get(name);
      if (!m) all.set(name, m = { kind: k, inputs: new Set(), voices: [], nodes: new Map(), where });
      if (!m.voices.length && voices?.length) m.voices = voices;
      for (const i of inputs || []) m.inputs.add(i);
      m.nodes.set(id, { where, inputs: new Set(inputs || []) });
    };
    for (const m of live.models || localModels || []) {
      if (m.state !== 'MODEL_STATE_UNAVAILABLE') add(m.name, kind(m.modality), m.details?.inputs, m.details?.voices, selfID, 'this node');
    }
    for (const p of live.peers || []) {
      for (const m of p.capability?.models || []) {
        add(m.name, kind(m.modality), m.inputs, m.voices, p.peer_id, p.node_name || p.capability?.node_name || shortID(p.peer_id));
      }
    }
    return all;
  };
  const first = (k) => [...models].find(([, m]) => m.kind === k)?.[0];
  // inputs are what the picked model takes on the pinned node (or any node).
  const inputs = () => {
    const m = models.get(picker.value);
    return (m?.nodes.get(pin.value) || m)?.inputs || new Set();
  };
  const fill = (select, options) => {
    let chosen = select.value;
    if (options.some(([value]) => value === wanted.get(select))) {
      chosen = wanted.get(select);
      wanted.delete(select);
    }
    select.replaceChildren(...options.map(([value, text]) => el('option', { value, selected: value === chosen }, text)));
  };
  const update = () => {
    models = collect();
    fill(picker, [...models].filter(([, m]) => m.kind === 'llm').map(([id, m]) => [id, `${id} — ${m.where}`]));
    const nodes = models.get(picker.value)?.nodes || new Map();
    fill(pin, [['', 'any (the mesh routes)'], ...[...nodes].map(([id, n]) => [id, n.where])]);
    fill(voice, [...models].filter(([, m]) => m.kind === 'tts')
      .flatMap(([id, m]) => (m.voices.length ? m.voices : ['']).map((v) => [JSON.stringify([id, v]), `${v || 'default'} — ${id}`])));
    const takes = inputs();
    imageLabel.hidden = !takes.has('image');
    audioLabel.hidden = !takes.has('audio');
    mic.hidden = !canRecord || !(first('stt') || takes.has('audio'));
    voiceLabel.hidden = aloudLabel.hidden = !first('tts');
    log.classList.toggle('can-speak', !voiceLabel.hidden);
  };
  picker.addEventListener('change', update);
  pin.addEventListener('change', update);

  // attached: what goes with the next message, each an OpenAI content part and its chip.
  let attached = [];
  const attach = (part, chip) => {
    const item = { part };
    item.chip = el('span', { class: 'chip' }, chip,
      el('button', { type: 'button', class: 'remove', 'aria-label': 'remove', onclick: () => detach(item) }, '×'));
    attached.push(item);
    strip.append(item.chip);
    input.required = false;
    return item;
  };
  const detach = (item) => {
    attached = attached.filter((a) => a !== item);
    item.chip.remove();
    input.required = attached.length === 0;
  };
  const attachAudio = (data, format, label) => attach({ type: 'input_audio', input_audio: { data: data.slice(data.indexOf(',') + 1), format } },
    el('span', { class: 'audio-chip' }, label));
  imageFile.addEventListener('change', async () => {
    for (const f of imageFile.files) {
      if (!f.type.startsWith('image/')) { say(`${f.name} is not an image`); continue; }
      const url = await dataURL(f);
      attach({ type: 'image_url', image_url: { url } }, el('img', { class: 'thumb', src: url, alt: f.name, title: f.name }));
    }
    imageFile.value = '';
  });
  audioFile.addEventListener('change', async () => {
    for (const f of audioFile.files) {
      const format = audioFormat(f);
      if (!format) { say(`${f.name}: send WAV, MP3 or FLAC`); continue; }
      attachAudio(await dataURL(f), format, '♪ ' + f.name);
    }
    audioFile.value = '';
  });

  // The microphone: record, then transcribe into the message box (or attach, for a model that
  // takes audio, with the transcription a click away).
  let recording = null;
  const micState = (text, state) => {
    mic.textContent = text;
    mic.dataset.state = state;
    mic.setAttribute('aria-pressed', String(state === 'recording'));
  };
  micState('Mic', 'idle');
  // base is the message box's text before the recording: what is heard goes after it, interim
  // (muted) while the recording goes on.
  let base = '';
  const heard = (text, interim) => {
    input.value = [base, text].filter(Boolean).join(' ');
    input.classList.toggle('interim', interim);
    if (interim) input.dataset.interim = 'true';
    else delete input.dataset.interim;
  };
  const hear = async (wav, signal) => {
    const form = new FormData();
    form.append('model', first('stt'));
    form.append('file', wav, 'recording.wav');
    const res = await (await request('/v1/audio/transcriptions', { method: 'POST', body: form, signal })).json();
    return (res.text || '').trim();
  };
  // listen transcribes the whole recording so far every 1.75 s while it goes on; a tick is
  // skipped while the one before is still being heard.
  let interim = null;
  const listen = (r) => {
    let busy = false;
    let n = 0;
    const ctrl = new AbortController();
    const timer = setInterval(async () => {
      if (busy) return;
      busy = true;
      try {
        const text = await hear(r.far(), ctrl.signal);
        if (recording === r && text) { heard(text, true); mic.dataset.interims = String(++n); }
      } catch {
        // An interim guess may fail (or be cancelled); the final transcription says what failed.
      }
      busy = false;
    }, 1750);
    interim = () => { clearInterval(timer); ctrl.abort(); };
  };
  const transcribe = async (wav) => {
    micState('Transcribing…', 'busy');
    mic.disabled = true;
    try {
      const text = await hear(wav);
      heard(text, false);
      say(text ? '' : 'Nothing heard.');
    } catch (err) {
      heard('', false);
      if (err instanceof AuthError) onError(err);
      else say('Transcription failed: ' + err.message);
    } finally {
      mic.disabled = false;
      micState('Mic', 'idle');
    }
  };
  mic.addEventListener('click', async () => {
    if (recording) {
      const r = recording;
      recording = null;
      interim?.();
      interim = null;
      micState('…', 'busy');
      const wav = await r.stop();
      if (!inputs().has('audio')) { await transcribe(wav); return; }
      micState('Mic', 'idle');
      const item = attachAudio(await dataURL(wav), 'wav', '♪ recording');
      if (first('stt')) {
        item.chip.firstChild.append(' ', el('button', { type: 'button', onclick: () => { detach(item); base = input.value.trim(); transcribe(wav); } }, 'to text'));
      }
      return;
    }
    say('');
    delete mic.dataset.seconds;
    delete mic.dataset.interims;
    base = input.value.trim();
    micState('Starting…', 'busy');
    mic.disabled = true;
    try {
      let shown = -1;
      recording = await record((s) => {
        if (Math.round(s * 10) === shown || !recording) return;
        shown = Math.round(s * 10);
        mic.dataset.seconds = s.toFixed(1);
        micState(`■ Stop ${s.toFixed(1)} s`, 'recording');
      });
      micState('■ Stop', 'recording');
      if (first('stt') && !inputs().has('audio')) listen(recording);
    } catch (err) {
      recording = null;
      micState('Mic', 'idle');
      say(err.name === 'NotAllowedError'
        ? 'The microphone was refused: allow it for this page in the browser\'s site settings.'
        : 'No microphone: ' + err.message);
    } finally {
      mic.disabled = false;
    }
  });

  const speak = async (button, text, bubble) => {
    const [model, v] = JSON.parse(voice.value || '[]');
    if (!model || !text.trim()) return; // nothing but code: nothing to say
    button.disabled = true;
    try {
      const res = await request('/v1/audio/speech', { method: 'POST', headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({ model, input: text, voice: v || undefined, response_format: 'wav' }) });
      const player = el('audio', { controls: true, src: URL.createObjectURL(await res.blob()) });
      const old = bubble.querySelector('audio');
      if (old) { URL.revokeObjectURL(old.src); old.remove(); }
      bubble.append(player);
    } catch (err) {
      onError(err);
    } finally {
      button.disabled = false;
    }
  };
  const bubble = (role, content) => {
    const { text, images, audios } = view(content);
    const body = el('div', { class: 'text' }, role === 'user' ? text : null);
    const meta = el('div', { class: 'meta muted' });
    const extra = images.length || audios.length
      ? el('div', { class: 'thumbs' }, images.map((src) => el('img', { class: 'thumb', src, alt: 'image' })), audios.map((f) => el('span', { class: 'audio-chip' }, `♪ audio (${f})`)))
      : null;
    const node = el('div', { class: 'msg ' + role, 'data-role': role }, extra, body, meta);
    log.append(node);
    node.scrollIntoView({ block: 'end' });
    const draw = role === 'user' ? null : markdown(body);
    draw?.(text);
    return { node, body, meta, draw };
  };
  const finished = (answer, content) => {
    const button = el('button', { type: 'button', class: 'speak' }, 'Speak');
    button.addEventListener('click', () => speak(button, spoken(content), answer.node));
    answer.node.append(button);
  };
  for (const m of conversation) {
    const b = bubble(m.role, m.content);
    b.meta.textContent = m.meta || '';
    if (m.role === 'assistant') finished(b, m.content);
  }

  // options are the request's settings beyond the messages: only those the user set.
  const options = () => {
    const o = { temperature: Number(temperature.value), max_tokens: Number(maxTokens.value) };
    knobs.forEach(([name, , , int], i) => {
      if (fields[i].value !== '') o[name] = int ? Math.trunc(Number(fields[i].value)) : Number(fields[i].value);
    });
    const stops = stopSeqs.value.split('\n').filter((s) => s !== '');
    if (stops.length) o.stop = stops;
    return o;
  };

  let ctrl = null;
  // speaking plays the answer read aloud, which may go on after its text has ended.
  let speaking = null;
  const quiet = () => { speaking?.stop(); speaking = null; stop.disabled = !ctrl; };
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const text = input.value.trim();
    if ((!text && !attached.length) || ctrl || !picker.value) return;
    saveSettings();
    const sent = attached;
    const content = sent.length ? [...(text ? [{ type: 'text', text }] : []), ...sent.map((a) => a.part)] : text;
    input.value = '';
    for (const a of sent) a.chip.remove();
    attached = [];
    input.required = true;
    conversation.push({ role: 'user', content });
    const question = bubble('user', content);
    const answer = bubble('assistant', '');
    answer.node.classList.add('streaming');
    const messages = system.value.trim() ? [{ role: 'system', content: system.value.trim() }, ...conversation] : [...conversation];
    ctrl = new AbortController();
    send.disabled = true;
    stop.disabled = false;
    let reply = '';
    let chunks = 0;
    let meta = '';
    // Read aloud: the audio chat speaks each sentence as it is written. It asks for WAV, whose
    // header gives the rate of the PCM after it (peers do not announce their voices' rates).
    const [tts, v] = aloud.checked && !aloudLabel.hidden ? JSON.parse(voice.value || '[]') : [];
    quiet();
    const voicer = tts ? (speaking = player()) : null;
    const spoken = voicer ? { modalities: ['text', 'audio'], audio: { model: tts, voice: v || undefined, format: 'wav' } } : {};
    const sentAt = performance.now();
    const since = () => String(Math.round(performance.now() - sentAt));
    try {
      const headers = { 'Content-Type': 'application/json' };
      if (pin.value) headers['Syn4pse-Node'] = pin.value;
      const res = await request('/v1/chat/completions', {
        method: 'POST', signal: ctrl.signal, headers,
        body: JSON.stringify({ model: picker.value, messages, stream: true, stream_options: { include_usage: true }, ...options(), ...spoken }),
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
          const d = ev.choices?.[0]?.delta;
          const piece = d?.content || d?.audio?.transcript;
          if (piece) {
            if (!chunks) answer.node.dataset.firstTextMs = since();
            reply += piece;
            chunks++;
            answer.draw(reply);
          }
          if (d?.audio?.data && voicer) {
            voicer.push(d.audio.data);
            if (voicer.chunks && !answer.node.dataset.firstAudioMs) answer.node.dataset.firstAudioMs = since();
            answer.node.dataset.audioChunks = String(voicer.chunks);
            answer.node.dataset.audioSeconds = voicer.seconds.toFixed(2);
          }
          if (ev.usage) usage = ev.usage;
        }
      }
      if (usage) {
        const u = ` · ${usage.prompt_tokens} prompt · ${usage.completion_tokens} tokens`;
        meta += u;
        answer.meta.append(u);
        answer.node.dataset.promptTokens = String(usage.prompt_tokens);
      }
    } catch (err) {
      if (voicer === speaking) quiet();
      if (err.name === 'AbortError') {
        answer.meta.append(' · stopped');
        meta += ' · stopped';
      } else {
        // The message goes back to the box, with its attachments, to fix and send again.
        answer.node.remove();
        question.node.remove();
        conversation.pop();
        input.value = text;
        for (const a of sent) attach(a.part, a.chip.firstChild);
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
    finished(answer, reply);
    conversation.push({ role: 'assistant', content: reply, meta });
    saveConversation();
    ctrl = null;
    send.disabled = false;
    stop.disabled = !speaking;
    voicer?.ended().then(() => { if (voicer === speaking) quiet(); else voicer.stop(); });
  });
  stop.addEventListener('click', () => { ctrl?.abort(); quiet(); });
  clear.addEventListener('click', () => { conversation.length = 0; log.replaceChildren(); saveConversation(); });
  input.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && !e.shiftKey) { e.preventDefault(); form.requestSubmit(); }
  });

  Promise.all([live.models ? null : getJSON('/api/models'), getJSON('/api/status'), getJSON('/api/mesh')]).then(([list, st, mesh]) => {
    localModels = list?.models || null;
    hostname = st.node_name || st.hostname;
    selfID = mesh.peer_id || st.node_id;
    update();
  }).catch(onError);
  const unsubscribe = live.subscribe(() => { if (selfID) update(); });
  return () => { unsubscribe(); ctrl?.abort(); speaking?.stop(); interim?.(); recording?.cancel(); };
}
