// Markdown for the Playground's answers, built with el(), never parsed as HTML: fenced code
// (with Copy), inline code, bold, italic, headings # to ###, lists (nested by indent), http(s)
// links, paragraphs and line breaks. Anything else stays literal text.
import { el } from './dom.js';

const fence = /^ {0,3}(`{3,}|~{3,})\s*([\w+#.-]*)/;
const heading = /^ {0,3}(#{1,3})\s+(.*)$/;
const item = /^( *)([-*+]|(\d{1,9})[.)])\s+/;
const span = new RegExp([/`([^`\n]+)`/, /\*\*(?=\S)(.+?)(?<=\S)\*\*/, /(?<!\w)__(?=\S)(.+?)(?<=\S)__(?!\w)/,
  /\*(?=[^\s*])(.+?)(?<=\S)\*/, /(?<!\w)_(?=[^\s_])(.+?)(?<=\S)_(?!\w)/, /\[([^\]\n]+)\]\((https?:\/\/[^\s()]+)\)/,
  /https?:\/\/[^\s<>()"'`]*[^\s<>()"'`.,;:!?*_]/].map((r) => r.source).join('|'), 'g');

// blocks splits text into blocks, each with src, its lines: a block's nodes depend on src
// alone, so a streaming answer rebuilds only the blocks whose src changed.
function blocks(text) {
  const lines = text.split('\n');
  const out = [];
  for (let i = 0; i < lines.length;) {
    const start = i;
    const line = lines[i];
    let m, b;
    if ((m = fence.exec(line))) {
      const close = new RegExp(`^ {0,3}${m[1][0]}{${m[1].length},}\\s*$`);
      while (++i < lines.length && !close.test(lines[i]));
      b = { code: lines.slice(start + 1, i++).join('\n'), lang: m[2] };
    } else if (!line.trim()) {
      i++;
      continue;
    } else if ((m = heading.exec(line))) {
      b = { h: m[1].length, text: m[2] };
      i++;
    } else if ((m = item.exec(line))) {
      b = list(lines, i, m);
      i = b.end;
    } else {
      while (++i < lines.length && lines[i].trim() && ![fence, heading, item].some((r) => r.test(lines[i])));
      b = { p: lines.slice(start, i) };
    }
    b.src = lines.slice(start, i).join('\n');
    out.push(b);
  }
  return out;
}

// list reads the list at lines[i]: each item is the text after its marker and the lines
// indented under it, dedented.
function list(lines, i, m) {
  const indent = m[1].length;
  const ordered = m[3] !== undefined;
  const items = [];
  const lead = (l) => l.length - l.trimStart().length;
  for (; i < lines.length; i++) {
    const l = lines[i];
    const n = item.exec(l);
    if (n && lead(l) < indent + 2) {
      if (!n[3] === ordered) break;
      items.push([l.slice(n[0].length)]);
      items.width = n[0].length;
    } else if (l.trim() && lead(l) >= indent + 2) {
      items.at(-1).push(l.slice(Math.min(lead(l), items.width)));
    } else {
      const next = lines.slice(i + 1).find((x) => x.trim());
      if (l.trim() || !next || (lead(next) < indent + 2 && !item.test(next))) break;
      items.at(-1).push('');
    }
  }
  return { items: items.map((x) => x.join('\n').trimEnd()), ordered, start: Number(m[3]), end: i };
}

function build(b) {
  if (b.code !== undefined) return code(b.code, b.lang);
  if (b.h) return el('h' + b.h, null, inline(b.text));
  if (b.items) return el(b.ordered ? 'ol' : 'ul', { start: b.ordered && b.start !== 1 && b.start }, b.items.map((x) => el('li', null, nodes(x, true))));
  return el('p', null, paragraph(b.p));
}

// nodes renders text; tight (a list item) leaves a lone paragraph unwrapped.
function nodes(text, tight) {
  const bs = blocks(text);
  return tight && bs.length === 1 && bs[0].p ? paragraph(bs[0].p) : bs.map(build);
}

const paragraph = (ls) => ls.flatMap((l, i) => (i ? [el('br'), inline(l.trim())] : inline(l.trim())));

function inline(s) {
  const out = [];
  let at = 0;
  for (const m of s.matchAll(span)) {
    out.push(s.slice(at, m.index));
    at = m.index + m[0].length;
    if (m[1]) out.push(el('code', null, m[1]));
    else if (m[2] || m[3]) out.push(el('strong', null, inline(m[2] || m[3])));
    else if (m[4] || m[5]) out.push(el('em', null, inline(m[4] || m[5])));
    else out.push(el('a', { href: m[7] || m[0], target: '_blank', rel: 'noopener noreferrer' }, m[6] || m[0]));
  }
  out.push(s.slice(at));
  return out;
}

function code(text, lang) {
  const body = el('code', { 'data-lang': lang || undefined }, text);
  const copy = el('button', { type: 'button', class: 'copy' }, 'Copy');
  copy.onclick = async () => {
    try {
      await navigator.clipboard.writeText(text);
      copy.textContent = 'Copied';
    } catch {
      // No clipboard (plain http to another host): selected, for Ctrl+C.
      getSelection().selectAllChildren(body);
      copy.textContent = 'Selected';
    }
    setTimeout(() => { copy.textContent = 'Copy'; }, 1500);
  };
  return el('div', { class: 'code' }, el('div', { class: 'code-bar' }, el('span', null, lang), copy), el('pre', null, body));
}

/** markdown returns a function that renders text into box, rebuilding the blocks that changed. */
export function markdown(box) {
  const shown = [];
  box.classList.add('md');
  return (text) => {
    const bs = blocks(text);
    let i = 0;
    while (i < shown.length && i < bs.length && shown[i].src === bs[i].src) i++;
    for (const b of shown.splice(i)) b.node.remove();
    for (const b of bs.slice(i)) {
      b.node = build(b);
      box.append(b.node);
      shown.push(b);
    }
  };
}

/**
 * spoken is what an answer says aloud: its words without markdown's marks (a link says its
 * label), code blocks and bare URLs left out, one line per block.
 */
export function spoken(text) {
  const words = (s) => s.replace(span, (all, c, b1, b2, i1, i2, label) => c ?? (b1 || b2 || i1 || i2 ? words(b1 || b2 || i1 || i2) : label ? words(label) : ''));
  const say = (b) => (b.code !== undefined ? [] : b.h ? [words(b.text)]
    : b.items ? b.items.flatMap((x) => blocks(x).flatMap(say)) : [b.p.map((l) => words(l.trim())).join(' ')]);
  return blocks(text).flatMap(say).filter((l) => l.trim()).join('\n');
}
