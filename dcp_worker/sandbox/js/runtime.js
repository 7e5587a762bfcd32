// The world a DCP work function sees (DCP's map-basic worktime), written for a bare V8 isolate.
// Evaluated once per isolate, after encoding.js. It installs the job-facing globals (console,
// progress, work, require, module, timers, queueMicrotask) and one entry point for the sandbox
// host, `__dcpHost`. Everything the harness relies on is captured here, before job code runs, so
// a work function that rewrites built-ins can only spoil its own results.
(function () {
  'use strict';

  const global = globalThis;
  const { defineProperty, freeze, keys: objectKeys, is: sameValue } = Object;
  const { apply } = Reflect;
  const { isArray } = Array;
  const { isView } = ArrayBuffer;
  const JSONparse = JSON.parse;
  const JSONstringify = JSON.stringify;
  const hasOwnProperty = Object.prototype.hasOwnProperty;
  const getPrototypeOf = Object.getPrototypeOf;
  const ObjectPrototype = Object.prototype;
  const ArrayPrototype = Array.prototype;
  const dateNow = Date.now;
  const dateGetTime = Date.prototype.getTime;
  const dateToISOString = Date.prototype.toISOString;
  const stackOf = (error) => (typeof error.stack === 'string' ? error.stack : undefined);
  const numberIsNaN = Number.isNaN;
  const mathMin = Math.min;
  const numberIsFinite = Number.isFinite;
  const StringCtor = String;
  const SymbolCtor = Symbol;
  const BigIntCtor = BigInt;
  const MapCtor = Map;
  const SetCtor = Set;
  const mapEntries = Map.prototype.entries;
  const setValues = Set.prototype.values;
  const arrayPush = Array.prototype.push;
  const arrayMap = Array.prototype.map;
  const arrayJoin = Array.prototype.join;
  const stringSlice = String.prototype.slice;
  const stringEndsWith = String.prototype.endsWith;
  const stringStartsWith = String.prototype.startsWith;
  const regexpTest = RegExp.prototype.test;
  const promiseResolve = Promise.resolve.bind(Promise);
  const promiseThen = Promise.prototype.then;
  const waitAsync = Atomics.waitAsync;
  const PromiseCtor = Promise;
  const ErrorCtor = Error;
  const TypeErrorCtor = TypeError;
  const TextEncoderCtor = global.TextEncoder;
  const TextDecoderCtor = global.TextDecoder;
  const ArrayBufferCtor = ArrayBuffer;
  const Uint8ArrayCtor = Uint8Array;
  const stringToLowerCase = String.prototype.toLowerCase;
  const stringToUpperCase = String.prototype.toUpperCase;
  const stringSplit = String.prototype.split;
  const atomicsLoad = Atomics.load;
  const atomicsStore = Atomics.store;
  const SharedArrayBufferCtor = SharedArrayBuffer;
  const Int32ArrayCtor = Int32Array;
  const Uint16ArrayCtor = Uint16Array;
  const indirectEval = eval;
  const base64Encode = global.btoa;
  const base64Decode = global.atob;
  const fromCharCode = String.fromCharCode;
  const charCodeAt = String.prototype.charCodeAt;
  const typedArrayGetter = (name) => Object.getOwnPropertyDescriptor(
    Object.getPrototypeOf(Int8Array.prototype), name).get;
  const typedArrayTag = typedArrayGetter(Symbol.toStringTag);
  const typedArraySubarray = Object.getPrototypeOf(Int8Array.prototype).subarray;
  const typedArrayBuffer = typedArrayGetter('buffer');
  const typedArrayByteOffset = typedArrayGetter('byteOffset');
  const typedArrayByteLength = typedArrayGetter('byteLength');
  // By name, with no prototype, so that a tag such as "constructor" finds nothing.
  const TYPED_ARRAYS = Object.assign(Object.create(null), {
    Int8Array, Uint8Array, Uint8ClampedArray, Int16Array, Uint16Array, Int32Array, Uint32Array,
    Float32Array, Float64Array, BigInt64Array, BigUint64Array,
  });
  if (typeof global.Float16Array === 'function') TYPED_ARRAYS.Float16Array = global.Float16Array;
  const MEMORY_ERROR = /Array buffer allocation failed|Unable to grow instance memory|Cannot allocate Wasm memory|could not allocate memory|Out of memory/i;
  const TAG = '$dcp';

  // Installs a global as the web platform does: writable, configurable, not enumerable. A few
  // names (mini-racer's own setTimeout) were declared with `var` and can only be overwritten.
  function hide(name, value) {
    const existing = Object.getOwnPropertyDescriptor(global, name);
    if (existing !== undefined && !existing.configurable) global[name] = value;
    else defineProperty(global, name, { value, writable: true, enumerable: false, configurable: true });
  }

  // ---- tagged JSON: JS values JSON cannot hold (see README, "Values that JSON cannot hold") ----

  function bytesToBase64(bytes) {
    const parts = [];
    for (let i = 0; i < bytes.length; i += 8192) {
      const end = i + 8192 < bytes.length ? i + 8192 : bytes.length;
      let chunk = '';
      for (let j = i; j < end; j++) chunk += fromCharCode(bytes[j]);
      arrayPush.call(parts, chunk);
    }
    return base64Encode(apply(arrayJoin, parts, ['']));
  }

  function base64ToBytes(text) {
    const binary = base64Decode(text);
    const bytes = new Uint8Array(binary.length);
    for (let i = 0; i < binary.length; i++) bytes[i] = apply(charCodeAt, binary, [i]);
    return bytes;
  }

  function viewBytes(view) {
    return new Uint8Array(typedArrayBuffer.call(view), typedArrayByteOffset.call(view),
      typedArrayByteLength.call(view));
  }

  function encode(value, ancestors) {
    switch (typeof value) {
      case 'string': case 'boolean': return value;
      case 'number':
        if (numberIsFinite(value)) return sameValue(value, -0) ? { [TAG]: '-0' } : value;
        return { [TAG]: numberIsNaN(value) ? 'NaN' : (value > 0 ? 'Infinity' : '-Infinity') };
      case 'undefined': return { [TAG]: 'undefined' };
      case 'bigint': return { [TAG]: 'bigint', value: StringCtor(value) };
      case 'symbol': return { [TAG]: 'Symbol', description: value.description ?? null };
      case 'function': return { [TAG]: 'Function', name: StringCtor(value.name) };
    }
    if (value === null) return null;
    if (ancestors === null) ancestors = new SetCtor();
    if (ancestors.has(value)) throw new TypeError('the value contains a circular reference');
    ancestors.add(value);
    try {
      return encodeObject(value, ancestors);
    } finally {
      ancestors.delete(value);
    }
  }

  function encodeObject(value, ancestors) {
    if (isArray(value)) {
      const out = new Array(value.length);
      for (let i = 0; i < value.length; i++) {
        out[i] = i in value ? encode(value[i], ancestors) : { [TAG]: 'undefined' };
      }
      return out;
    }
    if (isView(value)) {
      if (value instanceof DataView) {
        return { [TAG]: 'DataView', base64: bytesToBase64(new Uint8Array(value.buffer, value.byteOffset, value.byteLength)) };
      }
      return { [TAG]: typedArrayTag.call(value), base64: bytesToBase64(viewBytes(value)) };
    }
    if (value instanceof ArrayBuffer || value instanceof SharedArrayBuffer) {
      return { [TAG]: 'ArrayBuffer', base64: bytesToBase64(new Uint8Array(value)) };
    }
    if (value instanceof Date) {
      const time = dateGetTime.call(value);
      return { [TAG]: 'Date', value: numberIsNaN(time) ? null : dateToISOString.call(value) };
    }
    if (value instanceof RegExp) return { [TAG]: 'RegExp', source: value.source, flags: value.flags };
    if (value instanceof MapCtor) {
      const entries = [];
      for (const [k, v] of apply(mapEntries, value, [])) {
        arrayPush.call(entries, [encode(k, ancestors), encode(v, ancestors)]);
      }
      return { [TAG]: 'Map', entries };
    }
    if (value instanceof SetCtor) {
      const values = [];
      for (const v of apply(setValues, value, [])) arrayPush.call(values, encode(v, ancestors));
      return { [TAG]: 'Set', values };
    }
    if (value instanceof Error) return { [TAG]: 'Error', ...describeError(value) };
    if (value instanceof Number || value instanceof String || value instanceof Boolean
        || value instanceof BigIntCtor) {
      return encode(value.valueOf(), ancestors);
    }
    if (typeof value.toJSON === 'function') return encode(value.toJSON(), ancestors);
    const out = {};
    for (const key of objectKeys(value)) {
      defineProperty(out, key, { value: encode(value[key], ancestors), enumerable: true, writable: true, configurable: true });
    }
    return TAG in out ? { [TAG]: 'object', value: out } : out;
  }

  function decode(value) {
    if (value === null || typeof value !== 'object') return value;
    if (isArray(value)) {
      for (let i = 0; i < value.length; i++) value[i] = decode(value[i]);
      return value;
    }
    if (!(TAG in value)) return decodeProperties(value);
    const tag = value[TAG];
    switch (tag) {
      case 'undefined': return undefined;
      case 'NaN': return NaN;
      case 'Infinity': return Infinity;
      case '-Infinity': return -Infinity;
      case '-0': return -0;
      case 'bigint': return BigIntCtor(value.value);
      case 'Symbol': return SymbolCtor(value.description ?? undefined);
      case 'Function': return undefined;
      case 'ArrayBuffer': return base64ToBytes(value.base64).buffer;
      case 'DataView': return new DataView(base64ToBytes(value.base64).buffer);
      case 'Date': return new Date(value.value === null ? NaN : value.value);
      case 'RegExp': return new RegExp(value.source, value.flags);
      case 'Map': return new MapCtor(decode(value.entries));
      case 'Set': return new SetCtor(decode(value.values));
      case 'Error': {
        const error = new Error(value.message);
        if (value.name !== undefined) error.name = value.name;
        if (value.stack !== undefined) error.stack = value.stack;
        return error;
      }
      case 'object': return decodeProperties(value.value);
    }
    const Ctor = TYPED_ARRAYS[tag];
    if (Ctor !== undefined) {
      const bytes = base64ToBytes(value.base64);
      if (bytes.length % Ctor.BYTES_PER_ELEMENT !== 0) {
        throw new TypeError(`${tag} data is ${bytes.length} bytes, not a multiple of ${Ctor.BYTES_PER_ELEMENT}`);
      }
      return new Ctor(bytes.buffer);
    }
    throw new TypeError(`unknown ${TAG} tag ${JSONstringify(tag)}`);
  }

  function decodeProperties(object) {
    for (const key of objectKeys(object)) {
      const before = object[key];
      const after = decode(before);
      if (after !== before) {
        defineProperty(object, key, { value: after, enumerable: true, writable: true, configurable: true });
      }
    }
    return object;
  }

  // ---- console formatting (what a developer reads on stderr) ----

  const IDENTIFIER = /^[A-Za-z_$][A-Za-z0-9_$]*$/;
  const MAX_ITEMS = 100;

  function inspect(value, depth, seen) {
    switch (typeof value) {
      case 'string': return `'${value}'`;
      case 'number': return sameValue(value, -0) ? '-0' : StringCtor(value);
      case 'bigint': return `${value}n`;
      case 'undefined': case 'boolean': return StringCtor(value);
      case 'symbol': return value.toString();
      case 'function': return `[Function: ${value.name || '(anonymous)'}]`;
    }
    if (value === null) return 'null';
    if (seen.has(value)) return '[Circular]';
    if (value instanceof Error) return stackOf(value) ?? `${value.name}: ${value.message}`;
    if (value instanceof Date) {
      return numberIsNaN(dateGetTime.call(value)) ? 'Invalid Date' : dateToISOString.call(value);
    }
    if (value instanceof RegExp) return StringCtor(value);
    if (depth < 0) return isArray(value) ? '[Array]' : '[Object]';
    seen.add(value);
    try {
      return inspectContainer(value, depth, seen);
    } finally {
      seen.delete(value);
    }
  }

  function listItems(iterable, render) {
    const items = [];
    let count = 0;
    for (const item of iterable) {
      if (count++ < MAX_ITEMS) arrayPush.call(items, render(item));
    }
    if (count > MAX_ITEMS) arrayPush.call(items, `... ${count - MAX_ITEMS} more items`);
    return items.length ? ` ${apply(arrayJoin, items, [', '])} ` : '';
  }

  function inspectContainer(value, depth, seen) {
    const inner = (v) => inspect(v, depth - 1, seen);
    if (isArray(value)) return `[${listItems(value, inner)}]`;
    if (isView(value) && !(value instanceof DataView)) {
      return `${typedArrayTag.call(value)}(${value.length}) [${listItems(value, inner)}]`;
    }
    if (value instanceof MapCtor) {
      return `Map(${value.size}) {${listItems(apply(mapEntries, value, []), ([k, v]) => `${inner(k)} => ${inner(v)}`)}}`;
    }
    if (value instanceof SetCtor) return `Set(${value.size}) {${listItems(apply(setValues, value, []), inner)}}`;
    const keys = objectKeys(value);
    const render = (key) => `${apply(regexpTest, IDENTIFIER, [key]) ? key : `'${key}'`}: ${inner(value[key])}`;
    return `{${listItems(keys, render)}}`;
  }

  function formatArguments(args) {
    const parts = [];
    for (const arg of args) {
      let text;
      try {
        text = typeof arg === 'string' ? arg : inspect(arg, 2, new SetCtor());
      } catch (e) {
        text = '[uninspectable value]';
      }
      arrayPush.call(parts, text);
    }
    return apply(arrayJoin, parts, [' ']);
  }

  // ---- the runtime's own JSON ----
  // What the runtime writes for the host (reports, live records, verdicts) is plain data it
  // built itself, but JSON.stringify asks every object for a toJSON, inherited ones too: a job
  // that sets Object.prototype.toJSON (or Array's, or gives Array.prototype a prototype of its
  // own) would rewrite it. Then the data is written here by hand, slower but as it is.
  function stringifyData(value) {
    const untouched = !apply(hasOwnProperty, ObjectPrototype, ['toJSON'])
      && !apply(hasOwnProperty, ArrayPrototype, ['toJSON'])
      && getPrototypeOf(ArrayPrototype) === ObjectPrototype;
    return untouched ? JSONstringify(value) : writeData(value);
  }

  function writeData(value) {
    if (value === null || typeof value !== 'object') {
      return typeof value === 'number' && !numberIsFinite(value) ? 'null' : JSONstringify(value);
    }
    const parts = [];
    if (isArray(value)) {
      for (let i = 0; i < value.length; i++) {
        arrayPush.call(parts, value[i] === undefined ? 'null' : writeData(value[i]));
      }
      return `[${apply(arrayJoin, parts, [','])}]`;
    }
    for (const key of objectKeys(value)) {
      if (value[key] !== undefined) arrayPush.call(parts, `${JSONstringify(key)}:${writeData(value[key])}`);
    }
    return `{${apply(arrayJoin, parts, [','])}}`;
  }

  // ---- per-slice state ----

  let current = null;          // the slice now running, or null
  let consoleOutsideSlice = [];  // console lines logged between slices; they go to the next one

  // ---- live reports ----
  // While a slice runs, the host cannot call in, but it can read and write a SharedArrayBuffer:
  // when it opens one (openLive), console lines, events, progress and fetch requests go out
  // through it as they happen, and fetch answers come in. It holds two rings of UTF-16 code
  // units, out (written here) and in (written by the host), after four Int32 counters: units
  // written and read of the out ring, then of the in ring. A ring holds records, each a JSON text
  // and a newline. A report that does not fit stalls the out ring for the rest of the slice,
  // whose later reports wait for its end, in order. The counters stay below 2^30, far from Int32
  // overflow; past that, reports wait for the slice's end too.
  const RING_LIMIT = 0x40000000;
  let live = null;

  // `supervised`: a supervisor answers (the evaluator's); progress goes out too, and fetch exists.
  function openLive(units, supervised) {
    if (supervised) {
      hide('fetch', fetch);
      hide('Headers', Headers);
      hide('Response', Response);
    }
    const buffer = new SharedArrayBufferCtor(16 + 4 * units);
    live = {
      head: new Int32ArrayCtor(buffer, 0, 4),
      out: new Uint16ArrayCtor(buffer, 16, units),
      in: new Uint16ArrayCtor(buffer, 16 + 2 * units, units),
      size: units,
      partial: '',
      supervised,
    };
    return buffer;
  }

  function sendLive(slice, liveRecord) {
    if (live === null || slice.liveStalled) return false;
    const text = stringifyData(liveRecord) + '\n';
    const { head, out, size } = live;
    const written = atomicsLoad(head, 0);
    if (text.length > size - (written - atomicsLoad(head, 1)) || written + text.length >= RING_LIMIT) {
      slice.liveStalled = true;
      return false;
    }
    for (let i = 0; i < text.length; i++) out[(written + i) % size] = apply(charCodeAt, text, [i]);
    atomicsStore(head, 0, written + text.length);
    return true;
  }

  // The records the host has written since the last call, parsed; a record not yet whole is
  // kept for the next call (the host writes a large one as room frees).
  function takeInbound() {
    const { head, size } = live;
    const written = atomicsLoad(head, 2);
    let read = atomicsLoad(head, 3);
    if (written === read) return [];
    const parts = [live.partial];
    while (read < written) {
      const start = read % size;
      const count = mathMin(written - read, size - start, 8192);
      arrayPush.call(parts, apply(fromCharCode, null, typedArraySubarray.call(live.in, start, start + count)));
      read += count;
    }
    atomicsStore(head, 3, written);
    const lines = apply(stringSplit, apply(arrayJoin, parts, ['']), ['\n']);
    live.partial = lines[lines.length - 1];
    const records = [];
    for (let i = 0; i < lines.length - 1; i++) arrayPush.call(records, JSONparse(lines[i]));
    return records;
  }

  function record(level, text) {
    if (current === null) {
      arrayPush.call(consoleOutsideSlice, [level, text]);
    } else if (!sendLive(current, { kind: 'console', n: current.number, level, text })) {
      arrayPush.call(current.console, [level, text]);
    }
  }

  function reportUncaught(error) {
    record('error', `Uncaught ${formatArguments([error])}`);
  }

  const consoleObject = {};
  for (const level of ['log', 'info', 'warn', 'error', 'debug']) {
    consoleObject[level] = function (...args) { record(level, formatArguments(args)); };
  }
  hide('console', freeze(consoleObject));

  function describeError(error) {
    if (error !== null && typeof error === 'object') {
      let name, message, stack;
      try {
        name = StringCtor(error.name ?? 'Error');
        message = StringCtor(error.message ?? '');
        stack = stackOf(error);
      } catch (e) {
        return { name: 'Error', message: '[an error whose properties cannot be read]' };
      }
      return stack === undefined ? { name, message } : { name, message, stack };
    }
    return { name: 'Error', message: `Uncaught ${inspect(error, 2, new SetCtor())}` };
  }

  // ---- progress() and work ----

  // Live progress reports go out at most this often, as DCP's sandbox throttles them.
  const LIVE_PROGRESS_MS = 100;

  function progress(value) {
    const slice = current;
    if (slice === null) return true;
    slice.progressCalls++;
    let percent = null;
    if (value !== undefined) {
      percent = typeof value === 'string' && apply(stringEndsWith, value, ['%'])
        ? Number(apply(stringSlice, value, [0, -1]))
        : Number(value) * 100;
      if (numberIsNaN(percent) || percent < 0 || percent > 100) {
        record('warn', `progress(${formatArguments([value])}): expected a number from 0 to 1, or nothing`);
        percent = null;
      }
    }
    if (live !== null && live.supervised) reportProgressLive(slice, value, percent);
    return true;
  }

  function reportProgressLive(slice, value, percent) {
    const now = dateNow();
    if (now - slice.liveProgressAt < LIVE_PROGRESS_MS) return;
    const calls = slice.progressCalls - slice.progressSent;
    const raw = typeof value === 'number' || typeof value === 'string' ? value : null;
    if (sendLive(slice, { kind: 'progress', calls, percent, value: raw })) {
      slice.progressSent = slice.progressCalls;
      slice.liveProgressAt = now;
    }
  }
  hide('progress', progress);

  const jobPublic = {
    name: 'Ad-Hoc Job',
    description: 'Discreetly making the world smarter',
    link: 'https://distributed.computer/about',
  };
  const work = {
    emit(name, payload) {
      if (typeof name !== 'string') throw new TypeError('work.emit(name, payload): name must be a string');
      if (current === null) return;
      const encoded = encode(payload, null);
      if (!sendLive(current, { kind: 'event', n: current.number, name, payload: encoded })) {
        arrayPush.call(current.events, [name, encoded]);
      }
    },
    reject(reason) {
      if (current !== null && current.rejected === null) {
        current.rejected = reason === false ? 'false' : StringCtor(reason ?? '');
      }
    },
    job: freeze({ public: jobPublic }),
  };
  hide('work', freeze(work));

  // ---- CommonJS modules supplied with the job ----

  const moduleFactories = new MapCtor();
  const moduleRecords = new MapCtor();

  function moduleName(id) {
    let name = StringCtor(id);
    while (apply(stringStartsWith, name, ['./'])) name = apply(stringSlice, name, [2]);
    if (apply(stringEndsWith, name, ['.js'])) name = apply(stringSlice, name, [0, -3]);
    return name;
  }

  function require(id) {
    const name = moduleName(id);
    const existing = moduleRecords.get(name);
    if (existing !== undefined) return existing.exports;
    const factory = moduleFactories.get(name);
    if (factory === undefined) throw new Error(`Module '${id}' is not available.`);
    const module = { id: name, exports: {} };
    module.declare = function (dependencies, declared) {
      apply(typeof dependencies === 'function' ? dependencies : declared, null, [require, module.exports, module]);
    };
    moduleRecords.set(name, module);
    try {
      apply(factory, module.exports, [module.exports, require, module]);
    } catch (e) {
      moduleRecords.delete(name);
      throw e;
    }
    return module.exports;
  }
  hide('require', require);
  hide('module', freeze({ id: '.', exports: {}, declare() {
    throw new Error('module.declare is only available inside a module supplied with the job');
  } }));

  // ---- timers on a virtual event loop ----
  // V8 alone has no macrotasks. Atomics.waitAsync resolves from a platform task, after the
  // microtask queue has drained, so it serves as the loop's "next turn" and as its sleep.

  const turnCell = new Int32Array(new SharedArrayBuffer(4));
  const timers = new MapCtor();
  let nextTimerId = 1;
  let timerSequence = 0;

  function nextTurn(ms) {
    const wait = waitAsync(turnCell, 0, 0, ms > 0.001 ? ms : 0.001);
    return wait.async ? wait.value : promiseResolve();
  }

  function addTimer(callback, delay, args, repeat) {
    if (typeof callback === 'string') {
      const code = callback;
      callback = () => indirectEval(code);
    } else if (typeof callback !== 'function') {
      throw new TypeError('timer callback must be a function');
    }
    const ms = Number(delay) > 0 ? Number(delay) : 0;
    const id = nextTimerId++;
    timers.set(id, { callback, args, ms, repeat, due: dateNow() + ms, order: timerSequence++ });
    return id;
  }

  function earliestTimer() {
    let best = null;
    for (const timer of timers.values()) {
      if (best === null || timer.due < best.due || (timer.due === best.due && timer.order < best.order)) best = timer;
    }
    return best;
  }

  function fire(id, timer) {
    if (timer.repeat) {
      timer.due = dateNow() + (timer.ms > 1 ? timer.ms : 1);
      timer.order = timerSequence++;
    } else {
      timers.delete(id);
    }
    try {
      apply(timer.callback, global, timer.args);
    } catch (e) {
      reportUncaught(e);
    }
  }

  function fireEarliestDue() {
    const timer = earliestTimer();
    if (timer === null || timer.due > dateNow()) return false;
    for (const [id, candidate] of timers) {
      if (candidate === timer) fire(id, timer);
    }
    return true;
  }

  // Timers left over from the previous slice run at the start of the next one, as in DCP.
  function fireLeftoverTimers() {
    if (timers.size === 0) return;
    const now = dateNow();
    for (const [id, timer] of [...timers]) {
      if (timer.due <= now && timers.get(id) === timer) fire(id, timer);
    }
  }

  hide('setTimeout', (callback, delay, ...args) => addTimer(callback, delay, args, false));
  hide('setInterval', (callback, delay, ...args) => addTimer(callback, delay, args, true));
  hide('setImmediate', (callback, ...args) => addTimer(callback, 0, args, false));
  hide('clearTimeout', (id) => { timers.delete(id); });
  hide('clearInterval', (id) => { timers.delete(id); });
  hide('clearImmediate', (id) => { timers.delete(id); });
  hide('queueMicrotask', (callback) => {
    if (typeof callback !== 'function') throw new TypeError('queueMicrotask: callback must be a function');
    apply(promiseThen, promiseResolve(), [() => {
      try {
        callback();
      } catch (e) {
        reportUncaught(e);
      }
    }]);
  });
  if ('__timer_manager' in global) global.__timer_manager = undefined;

  // Runs the event loop until `promise` settles: microtasks, then due timers, then sleep.
  async function settle(promise) {
    let state = 0;
    let outcome;
    apply(promiseThen, promiseResolve(promise), [
      (value) => { state = 1; outcome = value; },
      (error) => { state = 2; outcome = error; },
    ]);
    let idleTurns = 0;
    for (;;) {
      receiveFetched();
      await nextTurn(0);
      if (state !== 0) return [state === 1, outcome];
      if (fireEarliestDue()) {
        idleTurns = 0;
        continue;
      }
      const timer = earliestTimer();
      // Sleep until the next timer, but briefly, since engine work (WebAssembly compilation)
      // may settle the promise without any timer.
      const quiet = idleTurns < 10 ? 2 ** idleTurns++ / 8 : 10;
      const wait = timer === null ? quiet : timer.due - dateNow();
      if (wait > 0) await nextTurn(wait < 10 ? wait : 10);
    }
  }

  // ---- fetch, through the supervisor ----
  // In a live sandbox (an evaluator's), fetch() is DCP's: the supervisor checks the URL against
  // its allowed origins, fetches, and answers; the answer comes in through the in ring while
  // the slice awaits it. Elsewhere there is no fetch.

  const pendingFetches = new MapCtor();
  let fetchCount = 0;

  class Headers {
    #entries = [];
    constructor(init) {
      if (init === undefined || init === null) return;
      const pairs = init instanceof Headers ? init.#entries
        : isArray(init) ? init
        : apply(arrayMap, objectKeys(init), [(name) => [name, init[name]]]);
      for (const [name, value] of pairs) this.append(name, value);
    }
    append(name, value) {
      arrayPush.call(this.#entries, [apply(stringToLowerCase, StringCtor(name), []), StringCtor(value)]);
    }
    get(name) {
      const wanted = apply(stringToLowerCase, StringCtor(name), []);
      const values = [];
      for (const [key, value] of this.#entries) if (key === wanted) arrayPush.call(values, value);
      return values.length ? apply(arrayJoin, values, [', ']) : null;
    }
    has(name) { return this.get(name) !== null; }
    *entries() { for (const [name, value] of this.#entries) yield [name, value]; }
    *keys() { for (const [name] of this.#entries) yield name; }
    *values() { for (const [, value] of this.#entries) yield value; }
    forEach(callback) { for (const [name, value] of this.#entries) callback(value, name, this); }
    [SymbolCtor.iterator]() { return this.entries(); }
  }

  class Response {
    #body;
    #used = false;
    constructor(body, { status = 200, statusText = '', headers, url = '' } = {}) {
      this.#body = body;
      this.status = status;
      this.statusText = statusText;
      this.ok = status >= 200 && status < 300;
      this.headers = new Headers(headers);
      this.url = url;
    }
    get bodyUsed() { return this.#used; }
    async bytes() {
      if (this.#used) throw new TypeErrorCtor('Body has already been consumed');
      this.#used = true;
      return this.#body === null ? new Uint8ArrayCtor(0) : this.#body;
    }
    async arrayBuffer() {
      const bytes = await this.bytes();
      return typedArrayBuffer.call(bytes);
    }
    async text() { return new TextDecoderCtor().decode(await this.bytes()); }
    async json() { return JSONparse(await this.text()); }
  }

  function requestBody(body) {
    if (body === undefined || body === null) return null;
    if (body instanceof ArrayBufferCtor) return new Uint8ArrayCtor(body);
    if (isView(body)) return viewBytes(body);
    return new TextEncoderCtor().encode(StringCtor(body));
  }

  function fetch(input, init = {}) {
    const slice = current;
    return new PromiseCtor((resolve, reject) => {
      const url = typeof input === 'object' && input !== null && 'url' in input
        ? StringCtor(input.url) : StringCtor(input);
      const method = init.method === undefined ? 'GET' : apply(stringToUpperCase, StringCtor(init.method), []);
      const body = requestBody(init.body);
      const id = ++fetchCount;
      const request = {
        kind: 'fetch', id, url, method, headers: [...new Headers(init.headers)],
        body: body === null ? null : bytesToBase64(body),
      };
      if (slice === null || !sendLive(slice, request)) {
        reject(new TypeErrorCtor('fetch() works only while a slice runs, and its reports are not held up'));
        return;
      }
      pendingFetches.set(id, { resolve, reject });
    });
  }

  function receiveFetched() {
    if (live === null) return;
    for (const answer of takeInbound()) {
      const waiting = pendingFetches.get(answer.id);
      if (waiting === undefined) continue;
      pendingFetches.delete(answer.id);
      if (answer.ok) {
        const { body, status, statusText, headers, url } = answer.response;
        waiting.resolve(new Response(body === null ? null : base64ToBytes(body), { status, statusText, headers, url }));
      } else {
        const error = new ErrorCtor(StringCtor(answer.error.message));
        error.name = StringCtor(answer.error.name);
        if (answer.error.code !== undefined) error.code = answer.error.code;
        waiting.reject(error);
      }
    }
  }

  // ---- running slices ----

  let workFunction = null;
  let workArguments = [];

  // Only a slice alone in its batch reports live: a batch that breaks a limit runs again slice
  // by slice, and its slices must not say twice what they said.
  function beginSlice(number, alone) {
    current = {
      number, console: consoleOutsideSlice, events: [], progressCalls: 0, rejected: null,
      progressSent: 0, liveProgressAt: -Infinity, liveStalled: !alone,
    };
    consoleOutsideSlice = [];
    receiveFetched();
    fireLeftoverTimers();
  }

  // A batch's report, in columns so that the supervisor handles fast slices in bulk:
  //   values:  the i-th slice's result (tagged JSON), or null for a slice in details;
  //   details: one object per slice with more to say (console output, events, an error, no
  //            progress() call, or live reports): {n, ok, progress, value | error + kind,
  //            console?, events?}, where progress counts the calls not reported live;
  //   tagged:  whether any value is an object or array, which may hold tags to decode;
  //   retire:  whether a slice ended its sandbox (work.reject, or the memory cap).
  function newReport() {
    return { values: [], details: [], tagged: false, retire: false };
  }

  function finishSlice(report, ok, value) {
    const slice = current;
    current = null;
    if (ok && slice.progressCalls > 0 && slice.progressSent === 0 && slice.rejected === null
        && slice.console.length === 0 && slice.events.length === 0) {
      let encoded;
      try {
        encoded = encode(value, null);
      } catch (e) {
        ok = false;
        value = new TypeError(`the result cannot be written: ${StringCtor(e.message)}`);
      }
      if (ok) {
        if (encoded !== null && typeof encoded === 'object') report.tagged = true;
        arrayPush.call(report.values, encoded);
        return;
      }
    }
    arrayPush.call(report.values, null);
    arrayPush.call(report.details, sliceDetails(slice, ok, value, report));
  }

  function sliceDetails(slice, ok, value, report) {
    const details = { n: slice.number, ok: true, progress: slice.progressCalls - slice.progressSent };
    if (slice.rejected !== null) {
      details.ok = false;
      details.kind = 'reject';
      details.error = { name: 'WorkReject', message: slice.rejected };
    } else if (ok) {
      try {
        details.value = encode(value, null);
      } catch (e) {
        details.ok = false;
        details.kind = 'error';
        details.error = { name: 'TypeError', message: `the result cannot be written: ${StringCtor(e.message)}` };
      }
    } else {
      details.ok = false;
      details.error = describeError(value);
      const memory = value instanceof RangeError && apply(regexpTest, MEMORY_ERROR, [details.error.message]);
      details.kind = memory ? 'memory' : 'error';
    }
    if (details.kind === 'reject' || details.kind === 'memory') report.retire = true;
    if (slice.console.length) details.console = slice.console;
    if (slice.events.length) details.events = slice.events;
    return details;
  }

  function isThenable(value) {
    return value !== null && (typeof value === 'object' || typeof value === 'function')
      && typeof value.then === 'function';
  }

  // Runs slices [index..] of `batch` ({first | numbers, data | from, step, count}: the data as a
  // list, or the count integers from, from + step, ...); returns the JSON report, or a promise of
  // it as soon as one slice turns out to be asynchronous.
  function runFrom(batch, index, report) {
    const { data, numbers, first } = batch;
    const count = data === undefined ? batch.count : data.length;
    for (; index < count; index++) {
      beginSlice(numbers === undefined ? first + index : numbers[index], count === 1);
      let result;
      try {
        const datum = data === undefined ? batch.from + index * batch.step : decode(data[index]);
        result = apply(workFunction, null, [datum, ...workArguments]);
        if (isThenable(result)) return finishAsync(batch, index, report, result);
      } catch (e) {
        finishSlice(report, false, e);
        continue;
      }
      finishSlice(report, true, result);
    }
    return stringifyData(report);
  }

  async function finishAsync(batch, index, report, pending) {
    const [ok, value] = await settle(pending);
    finishSlice(report, ok, value);
    return runFrom(batch, index + 1, report);
  }

  function evaluation(ok, value) {
    if (ok) {
      try {
        return stringifyData({ ok: true, value: encode(value, null) });
      } catch (e) {
        value = new TypeError(`the value cannot be written: ${StringCtor(e.message)}`);
      }
    }
    return stringifyData({ ok: false, error: describeError(value) });
  }

  defineProperty(global, '__dcpHost', {
    value: freeze({
      setWorkFunction(fn) {
        if (typeof fn !== 'function') {
          throw new TypeError(`the work function must be a function expression, not ${typeof fn}`);
        }
        workFunction = fn;
      },
      defineModule(name, factory) { moduleFactories.set(moduleName(name), factory); },
      configure(json) {
        const config = JSONparse(json);
        workArguments = decode(config.arguments);
        if (config.public) {
          for (const key of objectKeys(config.public)) jobPublic[key] = config.public[key];
        }
        freeze(jobPublic);
      },
      runBatch(json) { return runFrom(JSONparse(json), 0, newReport()); },
      openLive,
      // Evaluates `code` as a global script, awaits its value when it is a promise (running the
      // event loop meanwhile), and returns {ok, value} or {ok: false, error} as JSON text.
      evaluate(code) {
        let value;
        try {
          value = indirectEval(code);
        } catch (e) {
          return evaluation(false, e);
        }
        if (!isThenable(value)) return evaluation(true, value);
        return apply(promiseThen, settle(value), [([ok, outcome]) => evaluation(ok, outcome)]);
      },
    }),
  });
})();
