// The node's public HTTP API, with the API key the user gave (kept for this tab only).

const keyName = 'syn4pse.apiKey';

/** AuthError: the node wants an API key (401), or the one given is wrong. */
export class AuthError extends Error {}

export function setKey(key) {
  if (key) sessionStorage.setItem(keyName, key);
  else sessionStorage.removeItem(keyName);
}

export function hasKey() {
  return sessionStorage.getItem(keyName) !== null;
}

function headers(extra) {
  const h = new Headers(extra || {});
  const key = sessionStorage.getItem(keyName);
  if (key) h.set('Authorization', 'Bearer ' + key);
  return h;
}

// errorText reads the API's error body: {"error": {"message"}} or {"error": "..."}.
async function errorText(res) {
  try {
    const body = await res.json();
    return body?.error?.message || body?.error || res.statusText;
  } catch {
    return res.status + ' ' + res.statusText;
  }
}

/** request fetches path, throwing AuthError on 401 and Error with the API's message otherwise. */
export async function request(path, opts = {}) {
  const res = await fetch(path, { ...opts, headers: headers(opts.headers) });
  if (res.status === 401) throw new AuthError(await errorText(res));
  if (!res.ok) throw new Error(await errorText(res));
  return res;
}

export async function getJSON(path) {
  return (await request(path)).json();
}

export async function postJSON(path, body) {
  const res = await request(path, {
    method: 'POST', body: JSON.stringify(body || {}), headers: { 'Content-Type': 'application/json' },
  });
  return res.json();
}

/**
 * events reads the node's server-sent events (GET /api/events, or path) with fetch, as EventSource
 * cannot send an Authorization header, calling onEvent(name, data) for each until signal aborts.
 */
export async function events(onEvent, signal, path = '/api/events') {
  const res = await request(path, { signal });
  const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
  let buf = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buf += value;
    let end;
    while ((end = buf.indexOf('\n\n')) >= 0) {
      const block = buf.slice(0, end);
      buf = buf.slice(end + 2);
      let name = 'message';
      const data = [];
      for (const line of block.split('\n')) {
        if (line.startsWith('event: ')) name = line.slice(7);
        else if (line.startsWith('data: ')) data.push(line.slice(6));
      }
      if (data.length) onEvent(name, JSON.parse(data.join('\n')));
    }
  }
}

export async function deleteJSON(path) {
  return (await request(path, { method: 'DELETE' })).json();
}

/**
 * postNDJSON posts body and calls onLine with each line of the newline-delimited JSON answer as
 * it arrives (POST /api/models/pull streams its progress so); a last line {"error": {...}}, an
 * error after the stream began, is thrown as an Error with its message.
 */
export async function postNDJSON(path, body, onLine, signal) {
  const res = await request(path, {
    method: 'POST', body: JSON.stringify(body || {}), headers: { 'Content-Type': 'application/json' }, signal,
  });
  const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
  let buf = '';
  const line = (text) => {
    if (!text.trim()) return;
    const v = JSON.parse(text);
    if (v.error) throw new Error(v.error.message || String(v.error));
    onLine(v);
  };
  for (;;) {
    const { value, done } = await reader.read();
    if (done) { line(buf); return; }
    buf += value;
    let end;
    while ((end = buf.indexOf('\n')) >= 0) {
      line(buf.slice(0, end));
      buf = buf.slice(end + 1);
    }
  }
}
