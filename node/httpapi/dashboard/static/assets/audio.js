// Audio for the Playground: record the microphone as 16 kHz 16-bit mono WAV (a format the
// node decodes; MediaRecorder's webm/opus is not), play a streamed spoken answer, and read
// files as base64 for the API.

/** canRecord says whether this page may ask for the microphone (https or localhost only). */
export const canRecord = Boolean(navigator.mediaDevices?.getUserMedia && window.AudioWorkletNode);

/**
 * record opens the microphone and captures its samples until stop() resolves with the WAV
 * (a Blob) or cancel() drops them; so far() is the WAV of what it has heard yet, recording on;
 * onTick(seconds) follows the recording's length. It rejects (NotAllowedError...) when the
 * user or the browser refuses the microphone.
 */
export async function record(onTick) {
  const stream = await navigator.mediaDevices.getUserMedia({ audio: { channelCount: 1 } });
  const ctx = new AudioContext();
  const blocks = [];
  let frames = 0;
  const close = () => { for (const t of stream.getTracks()) t.stop(); return ctx.close(); };
  try {
    await ctx.audioWorklet.addModule('/assets/pcm-tap.js');
    const tap = new AudioWorkletNode(ctx, 'pcm-tap');
    tap.port.onmessage = (e) => {
      blocks.push(e.data);
      frames += e.data.length;
      onTick?.(frames / ctx.sampleRate);
    };
    // The tap writes nothing to its output: connected, it is pulled, and plays silence.
    ctx.createMediaStreamSource(stream).connect(tap).connect(ctx.destination);
  } catch (err) {
    await close();
    throw err;
  }
  const far = () => {
    const pcm = new Float32Array(frames);
    let at = 0;
    for (const b of blocks) { pcm.set(b, at); at += b.length; }
    const rate = Math.min(ctx.sampleRate, 16000);
    return wav(downsample(pcm, ctx.sampleRate, rate), rate);
  };
  return { async stop() { await close(); return far(); }, far, cancel: close };
}

/**
 * player plays a WAV stream as its base64 pieces arrive (a chat's delta.audio.data: the 44-byte
 * header with the rate, then 16-bit mono PCM), gaplessly: each piece an AudioBufferSourceNode
 * started where the one before ends. chunks and seconds count what it scheduled; ended()
 * resolves when the last piece has played; stop() silences it at once.
 */
export function player() {
  const ctx = new AudioContext();
  let rate = 0;
  let rest = new Uint8Array(0);
  let end = 0;
  let closed = false;
  const p = {
    chunks: 0,
    seconds: 0,
    push(b64) {
      if (closed) return;
      const bin = atob(b64);
      let bytes = new Uint8Array(rest.length + bin.length);
      bytes.set(rest);
      for (let i = 0; i < bin.length; i++) bytes[rest.length + i] = bin.charCodeAt(i);
      if (!rate) {
        if (bytes.length < 44) { rest = bytes; return; }
        const head = new DataView(bytes.buffer);
        if (head.getUint32(0) !== 0x52494646 || head.getUint32(36) !== 0x64617461) throw new Error('the speech is not a WAV stream');
        rate = head.getUint32(24, true);
        bytes = bytes.subarray(44);
      }
      const n = bytes.length >> 1;
      rest = bytes.slice(2 * n); // an odd byte waits for the next piece
      if (!n) return;
      const pcm = new DataView(bytes.buffer, bytes.byteOffset, 2 * n);
      const buf = ctx.createBuffer(1, n, rate);
      const out = buf.getChannelData(0);
      for (let i = 0; i < n; i++) out[i] = pcm.getInt16(2 * i, true) / 32768;
      const src = ctx.createBufferSource();
      src.buffer = buf;
      src.connect(ctx.destination);
      end = Math.max(end, ctx.currentTime);
      src.start(end);
      end += buf.duration;
      p.chunks++;
      p.seconds += buf.duration;
    },
    ended: () => new Promise((resolve) => setTimeout(resolve, Math.max(0, end - ctx.currentTime) * 1000)),
    stop() { if (!closed) { closed = true; ctx.close(); } },
  };
  return p;
}

/** downsample averages each window of the input that makes one output sample (from > to). */
export function downsample(pcm, from, to) {
  if (from <= to) return pcm;
  const ratio = from / to;
  const out = new Float32Array(Math.floor(pcm.length / ratio));
  for (let i = 0; i < out.length; i++) {
    const a = Math.floor(i * ratio);
    const b = Math.min(pcm.length, Math.floor((i + 1) * ratio));
    let sum = 0;
    for (let j = a; j < b; j++) sum += pcm[j];
    out[i] = sum / Math.max(1, b - a);
  }
  return out;
}

/** wav encodes mono samples in [-1, 1] as a 16-bit PCM WAV Blob. */
export function wav(samples, rate) {
  const view = new DataView(new ArrayBuffer(44 + samples.length * 2));
  const text = (at, s) => { for (let i = 0; i < s.length; i++) view.setUint8(at + i, s.charCodeAt(i)); };
  text(0, 'RIFF');
  view.setUint32(4, 36 + samples.length * 2, true);
  text(8, 'WAVEfmt ');
  view.setUint32(16, 16, true);
  view.setUint16(20, 1, true); // PCM
  view.setUint16(22, 1, true); // mono
  view.setUint32(24, rate, true);
  view.setUint32(28, rate * 2, true);
  view.setUint16(32, 2, true);
  view.setUint16(34, 16, true);
  text(36, 'data');
  view.setUint32(40, samples.length * 2, true);
  for (let i = 0; i < samples.length; i++) {
    const s = Math.max(-1, Math.min(1, samples[i]));
    view.setInt16(44 + i * 2, s < 0 ? s * 0x8000 : s * 0x7fff, true);
  }
  return new Blob([view], { type: 'audio/wav' });
}

/** dataURL reads a file or blob as a data: URL. */
export function dataURL(blob) {
  return new Promise((resolve, reject) => {
    const r = new FileReader();
    r.onload = () => resolve(r.result);
    r.onerror = () => reject(r.error);
    r.readAsDataURL(blob);
  });
}

/** audioFormat is the input_audio format of a file (wav, mp3 or flac), or '' for another. */
export function audioFormat(file) {
  const name = (file.name || '').toLowerCase();
  const type = file.type || '';
  if (/wav/.test(type) || name.endsWith('.wav')) return 'wav';
  if (/mpeg|mp3/.test(type) || name.endsWith('.mp3')) return 'mp3';
  if (/flac/.test(type) || name.endsWith('.flac')) return 'flac';
  return '';
}
