#!/usr/bin/env node
/*
 * kvin_peer.js - a test peer for the Python KVIN codec: node running kvin@9.0.0.
 *
 * Speaks newline-delimited JSON on stdin/stdout: one request per line, one reply per line, in order.
 * The first line written, before any request is read, is a greeting:
 *   {"ok":true,"ready":true,"kvin":"9.0.0","node":"v20..."}
 *
 * Requests (field "op"):
 *   corpus       {seed, count}                -> {ok, items: [kvin text, ...]}
 *   check        {pairs: [[K, T], ...]}       -> {ok, results: [R, ...]}
 *   check_values {seed, count, texts: [T...]} -> {ok, results: [R + {kvinSelfEqual, tags}, ...]}
 *   serialize    {expr}                       -> {ok, text}
 *   deserialize  {text, expr}                 -> {ok, equal, inspect}
 *   json_corpus  {seed, count}                -> {ok, items: [JSON.stringify(value), ...]}
 *   restringify  {texts: [T, ...]}            -> {ok, items: [JSON.stringify(JSON.parse(T)), ...]}
 * where R is {equal: true}, or {equal: false, expected, actual} (util.inspect texts, depth 6), or
 * {equal: false, error, side: "K"|"T"} when kvin cannot deserialize that side. check compares
 * kvin.deserialize(K) with kvin.deserialize(T); check_values compares the original value v_i
 * (regenerated from the seed) with kvin.deserialize(T_i), and adds kvinSelfEqual (is kvin's own
 * round trip of v_i deep-strict-equal to v_i?), kvinSelfError (when kvin cannot read its own
 * text) and tags (the features v_i was built with). Comparisons use util.isDeepStrictEqual.
 * Any failure -> {ok: false, error}; the process keeps running. Exits when stdin closes.
 * Expressions are evaluated at global scope; `kvin` is a global there.
 *
 * json_corpus draws JSON-able values only (the numbers, strings and keys of the KVIN corpus, in
 * nested objects and arrays), for the tests of the JS-canonical JSON writer.
 * The corpus is drawn from a small seeded PRNG (mulberry32), one independent stream per item,
 * so corpus(seed, n)[i] is the same value for every n > i, in every process.
 */
'use strict';

const readline = require('readline');
const util = require('util');

const KVIN_VERSION = '9.0.0';
let kvin;
try {
  kvin = require('kvin');
  const version = require('kvin/package.json').version;
  if (version !== KVIN_VERSION)
    throw new Error(`found kvin ${version}, need exactly ${KVIN_VERSION}`);
} catch (error) {
  process.stderr.write(`kvin_peer: cannot load kvin@${KVIN_VERSION}: ${error.message}\n`
                       + 'Install it with: npm ci --prefix tests/node\n');
  process.exit(3);
}
globalThis.kvin = kvin; /* for expressions given to serialize/deserialize */

/* ------------------------------------------------------------------------------------------------
 * PRNG
 */

/** mulberry32: a tiny 32-bit-state PRNG; returns floats in [0, 1). */
function mulberry32(state) {
  let a = state >>> 0;
  return function next() {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** A 32-bit finalizer (from murmur3) to derive independent per-item states. */
function fmix32(h) {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

function itemState(seed, index) {
  const lo = seed % 4294967296 >>> 0;
  const hi = Math.floor(seed / 4294967296) >>> 0;
  return fmix32(fmix32(fmix32(lo ^ 0x9e3779b9) ^ hi) ^ Math.imul(index + 1, 0x27d4eb2f));
}

/* ------------------------------------------------------------------------------------------------
 * Value generator
 */

const MAX_DEPTH = 4;

const TYPED_ARRAYS = [
  Int8Array, Uint8Array, Uint8ClampedArray, Int16Array, Uint16Array, Int32Array, Uint32Array,
  Float32Array, Float64Array, BigInt64Array, BigUint64Array,
];

const ERROR_CLASSES = [
  Error, TypeError, RangeError, SyntaxError, ReferenceError, EvalError, URIError, AggregateError,
];

/* Keys that collide with KVIN's own vocabulary, or that JS orders specially (integer-like). */
const SPECIAL_KEYS = [
  '0', '1', '10', '7', '4294967294', '4294967295', '-1', '1.5', '01', '',
  'ctr', 'raw', 'arr', 'seen', 'lst', 'ps', 'len', 'isl', '@', 'arg', 'args', 'json', 'number',
  'bigint', 'undefined', 'mapKeys', 'mapVals', 'set', 'ab8', 'isl8', 'ab16', 'isl16', 'eb',
  'fnName', 'symbol', 'used', 'what', '_serializeVerId', 'resolve', 'reject', 'ptv', 'code',
  'message', 'stack', 'name', 'length', 'size', 'null', 'true', 'NaN',
];

const SPECIAL_NUMBERS = [
  0, 1, -1, 2, 7, 8, 255, 256, -128, 65535, 2147483647, -2147483648, 4294967295, 4294967296,
  9007199254740991, -9007199254740991, 9007199254740992, 9007199254740994, 1e21, 1e20, -1e21,
  123456789012345680000, 0.1, 0.2, 0.30000000000000004, 1.5, -2.25, 1 / 3, Math.PI, Math.E,
  5e-324, -5e-324, 2.2250738585072014e-308, 2.225073858507201e-308, 1.7976931348623157e308,
  -1.7976931348623157e308, 1e-7, 1e-6, 0.000001, 1e300, 1e-300, 1e308, 1.0000000000000002,
  0.9999999999999999, 4.35, 100, 1e16, 12345678.9,
];

const REGEXP_SOURCES = [
  'a', 'a\\/b', '/', '^\\d+$', '(?<year>\\d{4})-(?<mon>\\d{2})', '[a-z]+\\s*', '.*?', '\\n\\t\\0',
  'ünï©ødé', '\\u{1F600}', '😀+', '\\\\', '"quoted"', '(a|b)*c', '[^\\]]', '', '\\bword\\b',
  '\\u2028', 'x{2,5}?', '(?=look)ahead', '(?<!x)y',
];

class Generator {
  constructor(rng) {
    this.rng = rng;
    this.ancestors = []; /* containers being filled: targets for cycles */
    this.made = [];      /* objects created so far: targets for shared references */
    this.tags = new Set();
  }

  /* --- primitives of chance --- */
  float() { return this.rng(); }
  int(n) { return Math.floor(this.rng() * n); }            /* 0 .. n-1 */
  range(lo, hi) { return lo + this.int(hi - lo + 1); }      /* lo .. hi inclusive */
  chance(p) { return this.rng() < p; }
  pick(list) { return list[this.int(list.length)]; }
  /** choices: [[weight, fn], ...]; calls the chosen fn */
  weighted(choices) {
    let total = 0;
    for (const [w] of choices) total += w;
    let r = this.rng() * total;
    for (const [w, fn] of choices) {
      if (r < w) return fn();
      r -= w;
    }
    return choices[choices.length - 1][1]();
  }
  tag(name) { this.tags.add(name); }
  remember(obj) { this.made.push(obj); return obj; }

  /* --- numbers --- */
  number() {
    return this.weighted([
      [30, () => this.range(-1000, 1000)],
      [10, () => this.pick(SPECIAL_NUMBERS) * (this.chance(0.3) ? -1 : 1)],
      [12, () => (this.float() - 0.5) * 10 ** this.range(-12, 12)],
      [8, () => this.extremeExponent()],
      [6, () => this.randomDouble()],
      [4, () => { this.tag('neg0'); return -0; }],
      [4, () => { this.tag('NaN'); return NaN; }],
      [3, () => { this.tag('Infinity'); return this.chance(0.5) ? Infinity : -Infinity; }],
      [5, () => this.range(-(2 ** 31), 2 ** 31) * this.range(1, 2 ** 21)],
    ]);
  }

  extremeExponent() {
    const exp = this.chance(0.5) ? this.range(-324, -280) : this.range(280, 308);
    const digits = this.range(1, 17);
    let mantissa = String(this.range(1, 9));
    for (let i = 1; i < digits; i++) mantissa += String(this.int(10));
    const text = (this.chance(0.5) ? '-' : '') + mantissa[0] + '.' + (mantissa.slice(1) || '0') + 'e' + exp;
    this.tag('extreme-exponent');
    return Number(text);
  }

  /** Any double at all, from 64 random bits (so also subnormals, and NaN now and then). */
  randomDouble() {
    const dv = new DataView(new ArrayBuffer(8));
    dv.setUint32(0, Math.floor(this.float() * 4294967296));
    dv.setUint32(4, Math.floor(this.float() * 4294967296));
    const n = dv.getFloat64(0);
    if (Number.isNaN(n)) this.tag('NaN');
    return n;
  }

  /* --- strings --- */
  codePoint(kind) {
    switch (kind) {
      case 'ascii': return this.range(0x20, 0x7e);
      case 'control': return this.pick([0, 1, 7, 8, 9, 10, 11, 12, 13, 27, 31, 0x7f, 0x80, 0x85, 0x9f]);
      case 'latin1': return this.range(0xa0, 0xff);
      case 'bmp': {
        const cp = this.range(0x100, 0xfffd);
        return cp >= 0xd800 && cp <= 0xdfff ? cp - 0x800 : cp;
      }
      case 'astral': return this.range(0x10000, 0x10ffff);
      case 'json': return this.pick([0x22, 0x5c, 0x2f, 0x2028, 0x2029, 0xfeff, 0xfffe, 0xffff, 0x3c, 0x26]);
      default: throw new Error('bad code point kind ' + kind);
    }
  }

  stringOf(kinds, length) {
    let s = '';
    for (let i = 0; i < length; i++) s += String.fromCodePoint(this.codePoint(this.pick(kinds)));
    return s;
  }

  string() {
    const s = this.weighted([
      [6, () => ''],
      [25, () => this.stringOf(['ascii'], this.range(1, 16))],
      [6, () => this.pick(['0', '-0', '1e3', 'NaN', 'null', 'undefined', 'true', '[object Object]',
                           '{"raw":1}', 'ctr', '\u0000', ' ', 'é', 'e\u0301', '👨‍👩‍👧', '\ud83d\ude00'])],
      [8, () => this.stringOf(['ascii', 'control', 'json'], this.range(1, 12))],
      [8, () => this.stringOf(['latin1', 'bmp'], this.range(1, 12))],
      [8, () => this.stringOf(['astral', 'ascii'], this.range(1, 10))],
      [10, () => this.stringOf(['ascii', 'control', 'latin1', 'bmp', 'astral', 'json'], this.range(1, 24))],
      [3, () => this.stringOf(['ascii', 'bmp', 'astral', 'control'], this.range(200, 1500))],
      [2, () => this.pick(['ab', 'xyz', 'zz']).repeat(this.range(50, 400))],
      [3, () => this.loneSurrogateString()],
    ]);
    if (s.includes('\u0000')) this.tag('string-NUL');
    if (/[\ud800-\udbff][\udc00-\udfff]/.test(s)) this.tag('string-astral');
    return s;
  }

  loneSurrogateString() {
    this.tag('string-lone-surrogate');
    const lone = this.pick(['\ud800', '\udbff', '\udc00', '\udfff', '\ude00\ud83d']);
    const before = this.stringOf(['ascii', 'astral'], this.int(4));
    const after = this.stringOf(['ascii', 'bmp'], this.int(4));
    return before + lone + after;
  }

  key() {
    return this.weighted([
      [10, () => this.stringOf(['ascii'], this.range(1, 8))],
      [6, () => this.pick(SPECIAL_KEYS)],
      [2, () => String(this.range(0, 40))],
      [2, () => this.stringOf(['bmp', 'astral', 'latin1'], this.range(1, 4))],
      [1, () => this.stringOf(['control', 'json', 'ascii'], this.range(1, 4))],
    ]);
  }

  bigint() {
    this.tag('bigint');
    return this.weighted([
      [3, () => BigInt(this.range(-1000, 1000))],
      [2, () => this.pick([0n, -1n, 2n ** 53n, 2n ** 63n - 1n, -(2n ** 63n), 2n ** 64n - 1n, 2n ** 64n, -(2n ** 64n)])],
      [3, () => {
        let hex = '';
        const digits = this.range(1, 60);
        for (let i = 0; i < digits; i++) hex += '0123456789abcdef'[this.int(16)];
        const n = BigInt('0x' + hex);
        return this.chance(0.4) ? -n : n;
      }],
    ]);
  }

  primitive() {
    return this.weighted([
      [30, () => this.number()],
      [30, () => this.string()],
      [5, () => { this.tag('null'); return null; }],
      [5, () => { this.tag('undefined'); return undefined; }],
      [6, () => this.chance(0.5)],
      [6, () => this.bigint()],
    ]);
  }

  /* --- leaf objects (no children that the generator recurses into) --- */
  date() {
    this.tag('Date');
    const t = this.weighted([
      [5, () => this.range(0, 2e12)],
      [3, () => this.range(-8.64e15, 8.64e15)],
      [1, () => this.pick([0, -1, 1, 8.64e15, -8.64e15, 253402300799999, 253402300800000, -62167219200001])],
    ]);
    const d = new Date(t);
    if (this.chance(0.05)) {
      d.note = this.string();
      this.tag('Date-props');
    }
    return this.remember(d);
  }

  regexp() {
    this.tag('RegExp');
    let flags = '';
    for (const f of 'dgimsy') if (this.chance(0.3)) flags += f;
    const unicode = this.float();
    if (unicode < 0.3) flags += 'u';
    else if (unicode < 0.4) flags += 'v';
    let re;
    try {
      re = new RegExp(this.pick(REGEXP_SOURCES), flags);
    } catch (_) {
      re = new RegExp('fallback', flags.replace('v', 'u'));
    }
    return this.remember(re);
  }

  boxed() {
    return this.remember(this.weighted([
      [3, () => { this.tag('boxed-Number'); return new Number(this.number()); }],
      [3, () => { this.tag('boxed-String'); return new String(this.string()); }],
      [2, () => { this.tag('boxed-Boolean-true'); return new Boolean(true); }],
      [1, () => { this.tag('boxed-Boolean-false'); return new Boolean(false); }],
    ]));
  }

  /** Bytes for a buffer: random, mostly zero (islands), all zero, or runs. */
  fillBytes(u8) {
    const mode = this.weighted([
      [4, () => 'random'],
      [4, () => 'mostly-zero'],
      [1, () => 'zero'],
      [2, () => 'runs'],
      [2, () => 'small-values'],
    ]);
    this.tag('bytes-' + mode);
    switch (mode) {
      case 'random':
        for (let i = 0; i < u8.length; i++) u8[i] = this.int(256);
        break;
      case 'mostly-zero': {
        const islands = this.range(0, 4);
        for (let k = 0; k < islands; k++) {
          const at = this.int(Math.max(1, u8.length));
          const len = this.range(1, 12);
          for (let i = at; i < Math.min(u8.length, at + len); i++)
            u8[i] = this.chance(0.8) ? this.range(1, 255) : 0;
        }
        break;
      }
      case 'zero':
        break;
      case 'runs': {
        let i = 0;
        while (i < u8.length) {
          const v = this.chance(0.4) ? 0 : this.int(256);
          const len = this.range(1, 20);
          for (let j = 0; j < len && i < u8.length; j++, i++) u8[i] = v;
        }
        break;
      }
      case 'small-values':
        for (let i = 0; i < u8.length; i++) u8[i] = this.chance(0.5) ? this.range(1, 127) : 0;
        break;
    }
  }

  typedArray() {
    const Ctor = this.pick(TYPED_ARRAYS);
    this.tag('typed-' + Ctor.name);
    const n = this.weighted([
      [4, () => this.range(0, 7)],
      [4, () => this.range(8, 64)],
      [1, () => this.range(200, 2000)],
    ]);
    const size = Ctor.BYTES_PER_ELEMENT;
    /* Sometimes a view into a bigger buffer, at an offset, to catch codecs that send the whole buffer. */
    const view = this.chance(0.15);
    const before = view ? this.range(0, 3) : 0;
    const after = view ? this.range(0, 3) : 0;
    const whole = new Ctor(before + n + after);
    this.fillBytes(new Uint8Array(whole.buffer));
    const ta = view ? whole.subarray(before, before + n) : whole;
    if (view) this.tag('typed-subarray');
    if ((Ctor === Float32Array || Ctor === Float64Array) && n > 0 && this.chance(0.5))
      this.sprinkleFloats(ta);
    if (Ctor === Uint8ClampedArray && n > 0 && this.chance(0.3)) {
      ta[0] = 300; /* clamps to 255 */
      ta[ta.length - 1] = -5; /* clamps to 0 */
    }
    return this.remember(ta);
  }

  /** Put special floats, including NaNs with payloads, into a Float32Array or Float64Array. */
  sprinkleFloats(ta) {
    const dv = new DataView(ta.buffer, ta.byteOffset, ta.byteLength);
    const wide = ta instanceof Float64Array;
    const count = this.range(1, Math.min(ta.length, 6));
    for (let k = 0; k < count; k++) {
      const i = this.int(ta.length);
      const pos = i * ta.BYTES_PER_ELEMENT;
      const what = this.int(6);
      if (what === 0) {
        this.tag('NaN-payload');
        if (wide) {
          dv.setUint32(pos + 4, this.pick([0x7ff80000, 0x7ff00000, 0xfff80000, 0x7fffffff]), true);
          dv.setUint32(pos, this.range(1, 0xffffffff), true);
        } else {
          dv.setUint32(pos, this.pick([0x7fc00001, 0x7f800001, 0xffc00000, 0x7fffffff, 0x7fa5a5a5]), true);
        }
      } else if (what === 1) {
        ta[i] = -0;
      } else if (what === 2) {
        ta[i] = this.chance(0.5) ? Infinity : -Infinity;
      } else if (what === 3) {
        ta[i] = NaN;
      } else if (what === 4) {
        ta[i] = wide ? 5e-324 : 1.401298464324817e-45;
      } else {
        ta[i] = this.number();
      }
    }
  }

  dataView() {
    this.tag('DataView');
    const n = this.weighted([[3, () => this.range(0, 7)], [3, () => this.range(8, 64)], [1, () => this.range(200, 1200)]]);
    const buf = new ArrayBuffer(n + 4);
    this.fillBytes(new Uint8Array(buf));
    if (this.chance(0.2)) {
      this.tag('DataView-window');
      return this.remember(new DataView(buf, this.range(0, 4), n));
    }
    return this.remember(new DataView(buf));
  }

  buffer() {
    this.tag('Buffer');
    const n = this.weighted([[3, () => this.range(0, 7)], [3, () => this.range(8, 64)], [1, () => this.range(200, 1200)]]);
    const bytes = new Uint8Array(n);
    this.fillBytes(bytes);
    /* Buffer.from(array) takes small buffers from the shared pool, so byteOffset is usually not 0. */
    const b = this.chance(0.5) ? Buffer.from(bytes) : Buffer.from(Array.from(bytes));
    return this.remember(b);
  }

  error() {
    const Ctor = this.pick(ERROR_CLASSES);
    this.tag('Error-' + Ctor.name);
    const message = this.chance(0.8) ? this.string() : '';
    const e = Ctor === AggregateError ? new AggregateError([], message) : new Ctor(message);
    /* Deterministic stacks: a real one names this file's lines and the request that made it. */
    if (this.chance(0.3)) {
      delete e.stack;
      this.tag('Error-no-stack');
    } else {
      e.stack = `${Ctor.name}: ${message}\n    at synthetic (kvin_peer.js:${this.range(1, 999)}:${this.range(1, 80)})`;
    }
    if (this.chance(0.4)) {
      e.code = this.chance(0.7) ? 'ERR_' + this.stringOf(['ascii'], this.range(1, 8)).toUpperCase() : this.range(-5, 500);
      this.tag('Error-code');
    }
    if (this.chance(0.3)) {
      this.tag('Error-props');
      const n = this.range(1, 3);
      for (let i = 0; i < n; i++) {
        e[this.key()] = this.weighted([
          [4, () => this.string()],
          [3, () => this.range(-100, 100)],
          [1, () => this.chance(0.5)],
          /* kvin@9 copies Error properties into "ps" unprepared, so it cannot read back null
           * (NaN, ±Infinity) or an object there: keep these rare. */
          [0.2, () => { this.tag('Error-props-null'); return null; }],
          [0.2, () => { this.tag('Error-props-object'); return { x: this.range(0, 9) }; }],
        ]);
      }
    }
    return this.remember(e);
  }

  leafObject() {
    return this.weighted([
      [3, () => this.date()],
      [2, () => this.regexp()],
      [3, () => this.boxed()],
      [5, () => this.typedArray()],
      [1, () => this.dataView()],
      [1, () => this.buffer()],
      [3, () => this.error()],
    ]);
  }

  /* --- containers --- */

  /** A value inside a container at the given depth: sometimes a cycle or a shared reference. */
  child(depth) {
    if (this.ancestors.length && this.chance(0.03)) {
      this.tag('cycle');
      return this.pick(this.ancestors);
    }
    if (this.made.length && this.chance(0.04)) {
      this.tag('shared');
      return this.pick(this.made);
    }
    return this.value(depth);
  }

  /** Any value; containers only while depth < MAX_DEPTH. */
  value(depth) {
    const containers = depth < MAX_DEPTH ? 1 : 0;
    return this.weighted([
      [45, () => this.primitive()],
      [15, () => this.leafObject()],
      [14 * containers, () => this.array(depth)],
      [14 * containers, () => this.object(depth)],
      [4 * containers, () => this.map(depth)],
      [4 * containers, () => this.set(depth)],
    ]);
  }

  enter(container) {
    this.remember(container);
    this.ancestors.push(container);
  }

  leave() {
    this.ancestors.pop();
  }

  object(depth) {
    this.tag('object');
    const o = {};
    this.enter(o);
    const n = this.weighted([[1, () => 0], [6, () => this.range(1, 4)], [2, () => this.range(5, 12)]]);
    for (let i = 0; i < n; i++) {
      const k = this.key();
      if (k === '__proto__') continue;
      o[k] = this.child(depth + 1);
    }
    this.leave();
    return o;
  }

  array(depth) {
    const kind = this.weighted([
      [6, () => 'short'],
      [4, () => 'dense8'],
      [4, () => 'runs'],
      [1, () => 'long-repeats'],
      [4, () => 'sparse'],
      [3, () => 'named-props'],
      [1, () => 'huge-sparse'],
    ]);
    this.tag('array-' + kind);
    const a = [];
    this.enter(a);
    switch (kind) {
      case 'short': {
        const n = this.range(0, 7);
        for (let i = 0; i < n; i++) a.push(this.child(depth + 1));
        break;
      }
      case 'dense8': {
        const n = this.range(8, 30);
        for (let i = 0; i < n; i++) a.push(this.child(depth + 1));
        break;
      }
      case 'runs': {
        const runs = this.range(1, 6);
        for (let r = 0; r < runs; r++) this.pushRun(a, depth, this.range(1, 12));
        break;
      }
      case 'long-repeats': {
        const n = this.range(100, 3000);
        while (a.length < n) this.pushRun(a, depth, this.range(1, 200), true);
        break;
      }
      case 'sparse': {
        const n = this.range(1, 40);
        const fill = this.float();
        for (let i = 0; i < n; i++)
          if (this.chance(fill)) a[i] = this.child(depth + 1);
        a.length = n; /* trailing holes too */
        if (this.chance(0.2)) a[this.range(0, n)] = undefined; /* undefined is not a hole */
        break;
      }
      case 'named-props': {
        const n = this.range(0, 10);
        for (let i = 0; i < n; i++) a.push(this.child(depth + 1));
        const props = this.range(1, 3);
        for (let i = 0; i < props; i++) {
          const k = this.key();
          if (k === '__proto__' || k === 'length' || /^(0|[1-9][0-9]*)$/.test(k)) continue;
          /* kvin@9 loops forever (until V8 dies, uncatchably) on an array with a named property
           * "NaN" or "Infinity": it takes +key as an index and counts up while hasOwnProperty(k). */
          if (k === 'NaN' || k === 'Infinity' || k === '-Infinity') continue;
          a[k] = this.child(depth + 1);
        }
        break;
      }
      case 'huge-sparse': {
        const n = this.pick([1000, 65536, 1000000, 4294967295]);
        const m = this.range(0, 5);
        for (let i = 0; i < m; i++) a[this.int(n)] = this.child(depth + 1);
        a.length = n;
        break;
      }
    }
    this.leave();
    return a;
  }

  /** Push `count` equal values: a repeated primitive, or equal-looking fresh objects. */
  pushRun(a, depth, count, simple) {
    const what = simple ? this.int(3) : this.int(6);
    if (what <= 1) {
      const v = what === 0 ? this.pick([0, 1, -1, 7, 1.5, 'x', '', true, false, null]) : this.primitive();
      for (let i = 0; i < count; i++) a.push(v);
    } else if (what === 2) {
      const v = this.pick([NaN, -0, undefined, Infinity, 12345678901234567890n]);
      for (let i = 0; i < count; i++) a.push(v);
    } else if (what === 3) {
      for (let i = 0; i < count; i++) a.push({});
    } else if (what === 4) {
      const t = this.range(0, 2e12);
      for (let i = 0; i < count; i++) a.push(this.remember(new Date(t)));
    } else {
      const shared = this.child(depth + 1);
      for (let i = 0; i < count; i++) a.push(shared);
    }
  }

  map(depth) {
    this.tag('Map');
    const m = new Map();
    this.enter(m);
    const n = this.weighted([[1, () => 0], [5, () => this.range(1, 4)], [2, () => this.range(5, 10)]]);
    for (let i = 0; i < n; i++) {
      const objectKey = this.chance(0.3);
      if (objectKey) this.tag('Map-object-key');
      const k = objectKey ? this.child(depth + 1) : this.primitive();
      m.set(k, this.child(depth + 1));
    }
    if (this.chance(0.05)) {
      m.extra = this.string();
      this.tag('Map-props');
    }
    this.leave();
    return m;
  }

  set(depth) {
    this.tag('Set');
    const s = new Set();
    this.enter(s);
    const n = this.weighted([[1, () => 0], [5, () => this.range(1, 5)], [2, () => this.range(6, 12)]]);
    for (let i = 0; i < n; i++) s.add(this.chance(0.6) ? this.primitive() : this.child(depth + 1));
    this.leave();
    return s;
  }

  /* --- deliberate sharing and cycles, so that every corpus has plenty of both --- */
  structure() {
    return this.weighted([
      [2, () => { /* object containing itself */
        this.tag('cycle');
        const o = this.object(1);
        o[this.pick(['self', 'me', '0', 'ctr'])] = o;
        return o;
      }],
      [2, () => { /* array containing itself */
        this.tag('cycle');
        const a = this.array(1);
        a[a.length < 4294967295 ? a.length : this.int(a.length)] = a;
        return a;
      }],
      [2, () => { /* cycle through Map values */
        this.tag('cycle');
        this.tag('Map');
        const m = new Map();
        this.remember(m);
        m.set(this.primitive(), this.chance(0.5) ? m : { back: m, n: this.range(0, 9) });
        if (this.chance(0.5)) m.set(this.primitive(), this.value(2));
        return m;
      }],
      [2, () => { /* child pointing to its parent */
        this.tag('cycle');
        const parent = { name: this.string(), children: [] };
        const n = this.range(1, 4);
        for (let i = 0; i < n; i++) parent.children.push({ parent, i, when: new Date(this.range(0, 2e12)) });
        return parent;
      }],
      [3, () => { /* the same object twice */
        this.tag('shared');
        const x = this.weighted([
          [2, () => this.object(2)],
          [2, () => this.array(2)],
          [3, () => this.leafObject()],
          [1, () => this.map(2)],
          [1, () => this.set(2)],
        ]);
        return this.weighted([
          [3, () => ({ a: x, b: x })],
          [2, () => [x, x, this.primitive(), x]],
          [1, () => ({ first: x, list: [1, x], m: new Map([['k', x]]) })],
          [1, () => new Map([[x, x]])],
        ]);
      }],
    ]);
  }

  top() {
    return this.weighted([
      [12, () => this.primitive()],
      [14, () => this.leafObject()],
      [16, () => this.array(0)],
      [16, () => this.object(0)],
      [6, () => this.map(0)],
      [5, () => this.set(0)],
      [8, () => this.structure()],
    ]);
  }
}

/**
 * The i-th value of the corpus for a seed, with its kvin text and feature tags. Values that kvin
 * cannot serialize are drawn again from the same stream (so are the very rare ones that the
 * generator itself cannot build, such as a push onto an array of length 2**32-1).
 */
function corpusItem(seed, index) {
  const rng = mulberry32(itemState(seed, index));
  let lastError;
  for (let attempt = 0; attempt < 100; attempt++) {
    const gen = new Generator(rng);
    try {
      const value = gen.top();
      const text = kvin.serialize(value);
      return { value, text, tags: Array.from(gen.tags).sort() };
    } catch (error) {
      lastError = error;
    }
  }
  throw new Error(`seed ${seed} item ${index}: 100 draws that kvin cannot serialize; last: ${lastError}`);
}

/** The i-th JSON-able value for a seed, from the same primitives as the KVIN corpus. */
function jsonCorpusItem(seed, index) {
  const gen = new Generator(mulberry32(itemState(seed, index)));
  const value = (depth) => gen.weighted([
    [5, () => gen.number()],
    [5, () => gen.string()],
    [1, () => gen.pick([null, true, false])],
    [depth < MAX_DEPTH ? 3 : 0, () => Array.from({ length: gen.int(6) }, () => value(depth + 1))],
    [depth < MAX_DEPTH ? 4 : 0, () => {
      const obj = {};
      for (let i = gen.int(7); i > 0; i--) obj[gen.key()] = gen.chance(0.1) ? undefined : value(depth + 1);
      return obj;
    }],
  ]);
  return JSON.stringify(value(0));
}

/* ------------------------------------------------------------------------------------------------
 * Requests
 */

function inspect(value) {
  return util.inspect(value, { depth: 6 });
}

function message(error) {
  return error instanceof Error ? `${error.name}: ${error.message}` : String(error);
}

function evalExpr(expr) {
  if (typeof expr !== 'string')
    throw new TypeError('expr must be a string');
  return (0, eval)('(' + expr + '\n)'); // eslint-disable-line no-eval
}

function needSeedCount(req) {
  if (!Number.isSafeInteger(req.seed) || req.seed < 0)
    throw new TypeError('seed must be a non-negative safe integer');
  if (!Number.isSafeInteger(req.count) || req.count < 0 || req.count > 1000000)
    throw new TypeError('count must be an integer in 0..1000000');
}

function needString(v, what) {
  if (typeof v !== 'string')
    throw new TypeError(`${what} must be a string, not ${v === null ? 'null' : typeof v}`);
}

/** Compare an expected value with kvin.deserialize(text). */
function compareWith(expected, text) {
  let actual;
  try {
    needString(text, 'text');
    actual = kvin.deserialize(text);
  } catch (error) {
    return { equal: false, error: message(error), side: 'T' };
  }
  if (util.isDeepStrictEqual(expected, actual))
    return { equal: true };
  return { equal: false, expected: inspect(expected), actual: inspect(actual) };
}

const handlers = {
  corpus(req) {
    needSeedCount(req);
    const items = [];
    for (let i = 0; i < req.count; i++) items.push(corpusItem(req.seed, i).text);
    return { items };
  },

  check(req) {
    if (!Array.isArray(req.pairs))
      throw new TypeError('pairs must be an array of [K, T] pairs');
    const results = req.pairs.map((pair, i) => {
      if (!Array.isArray(pair) || pair.length !== 2)
        throw new TypeError(`pairs[${i}] must be a [K, T] pair`);
      let expected;
      try {
        needString(pair[0], 'K');
        expected = kvin.deserialize(pair[0]);
      } catch (error) {
        return { equal: false, error: message(error), side: 'K' };
      }
      return compareWith(expected, pair[1]);
    });
    return { results };
  },

  check_values(req) {
    needSeedCount(req);
    if (!Array.isArray(req.texts) || req.texts.length !== req.count)
      throw new TypeError('texts must be an array of count strings');
    const results = [];
    for (let i = 0; i < req.count; i++) {
      const item = corpusItem(req.seed, i);
      const result = compareWith(item.value, req.texts[i]);
      try {
        result.kvinSelfEqual = util.isDeepStrictEqual(item.value, kvin.deserialize(item.text));
      } catch (error) {
        result.kvinSelfEqual = false;
        result.kvinSelfError = message(error);
      }
      result.tags = item.tags;
      results.push(result);
    }
    return { results };
  },

  json_corpus(req) {
    needSeedCount(req);
    return { items: Array.from({ length: req.count }, (_, i) => jsonCorpusItem(req.seed, i)) };
  },

  restringify(req) {
    if (!Array.isArray(req.texts))
      throw new TypeError('texts must be an array of strings');
    return { items: req.texts.map((text) => { needString(text, 'text'); return JSON.stringify(JSON.parse(text)); }) };
  },

  serialize(req) {
    return { text: kvin.serialize(evalExpr(req.expr)) };
  },

  deserialize(req) {
    needString(req.text, 'text');
    const actual = kvin.deserialize(req.text);
    const expected = evalExpr(req.expr);
    return { equal: util.isDeepStrictEqual(actual, expected), inspect: inspect(actual) };
  },
};

function handle(line) {
  let req;
  try {
    req = JSON.parse(line);
  } catch (error) {
    return { ok: false, error: 'malformed request: ' + message(error) };
  }
  try {
    if (typeof req !== 'object' || req === null || Array.isArray(req))
      throw new TypeError('request must be a JSON object');
    if (!Object.prototype.hasOwnProperty.call(handlers, req.op))
      throw new TypeError('unknown op: ' + JSON.stringify(req.op));
    return Object.assign({ ok: true }, handlers[req.op](req));
  } catch (error) {
    return { ok: false, error: message(error) };
  }
}

function reply(obj) {
  let text;
  try {
    text = JSON.stringify(obj);
  } catch (error) {
    text = JSON.stringify({ ok: false, error: 'cannot encode reply: ' + message(error) });
  }
  process.stdout.write(text + '\n');
}

reply({ ok: true, ready: true, kvin: KVIN_VERSION, node: process.version });
const rl = readline.createInterface({ input: process.stdin, crlfDelay: Infinity, terminal: false });
rl.on('line', (line) => reply(handle(line)));
/* When stdin closes, node exits by itself once stdout has drained; process.exit() here could cut a reply. */
