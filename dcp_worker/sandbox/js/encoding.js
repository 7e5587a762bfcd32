/*
 * encoding.js -- web-platform text and base64 globals for bare V8 isolates.
 *
 * Evaluated once, as a classic script at global scope, in a fresh isolate
 * before any other code runs.  V8 only provides the ECMAScript built-ins, so
 * this file installs the following on globalThis (non-enumerable, writable,
 * configurable -- the same shape as web-platform globals):
 *
 *   TextEncoder   WHATWG Encoding Standard, UTF-8 only (as the spec requires).
 *   TextDecoder   WHATWG Encoding Standard, restricted to the UTF-8 encoding.
 *   atob, btoa    HTML "forgiving-base64" decode / base64 encode.
 *   DOMException  minimal WebIDL DOMException (name, message, legacy code).
 *
 * Every built-in the implementation relies on is captured while this script
 * runs, so code that later monkey-patches String.prototype, the typed-array
 * prototypes, Function.prototype.call, etc. cannot break these objects.
 * Nothing besides the five names above is left on the global object.
 */
(function installEncodingGlobals(global) {
  'use strict';

  // ---------------------------------------------------------------------
  // Captured built-ins.
  // ---------------------------------------------------------------------
  const ObjectDefineProperty = Object.defineProperty;
  const ObjectGetPrototypeOf = Object.getPrototypeOf;
  const ObjectGetOwnPropertyDescriptor = Object.getOwnPropertyDescriptor;
  const ReflectApply = Reflect.apply;
  const FunctionCall = Function.prototype.call;
  const FunctionBind = Function.prototype.bind;
  const ErrorCtor = Error;
  const TypeErrorCtor = TypeError;
  const RangeErrorCtor = RangeError;
  const Uint8ArrayCtor = Uint8Array;
  const Uint16ArrayCtor = Uint16Array;
  const Int8ArrayCtor = Int8Array;
  const ArrayBufferCtor = ArrayBuffer;
  const ArrayBufferIsView = ArrayBuffer.isView;
  const StringFromCharCode = String.fromCharCode;
  const SymbolToStringTag = Symbol.toStringTag;

  // uncurryThis(f)(thisArg, ...args) === f.call(thisArg, ...args), immune to
  // later changes of Function.prototype.call (a bound function invokes its
  // target's internal [[Call]] directly).
  const uncurryThis = (fn) => ReflectApply(FunctionBind, FunctionCall, [fn]);
  const getterOf = (proto, key) => uncurryThis(ObjectGetOwnPropertyDescriptor(proto, key).get);

  const StringPrototypeCharCodeAt = uncurryThis(String.prototype.charCodeAt);
  const StringPrototypeSlice = uncurryThis(String.prototype.slice);

  const TypedArrayPrototype = ObjectGetPrototypeOf(Uint8ArrayCtor.prototype);
  const TypedArrayTag = getterOf(TypedArrayPrototype, SymbolToStringTag);
  const TypedArrayBuffer = getterOf(TypedArrayPrototype, 'buffer');
  const TypedArrayByteOffset = getterOf(TypedArrayPrototype, 'byteOffset');
  const TypedArrayByteLength = getterOf(TypedArrayPrototype, 'byteLength');
  const TypedArrayLength = getterOf(TypedArrayPrototype, 'length');
  const TypedArraySet = uncurryThis(TypedArrayPrototype.set);
  const DataViewBuffer = getterOf(DataView.prototype, 'buffer');
  const DataViewByteOffset = getterOf(DataView.prototype, 'byteOffset');
  const DataViewByteLength = getterOf(DataView.prototype, 'byteLength');
  const ArrayBufferByteLength = getterOf(ArrayBufferCtor.prototype, 'byteLength');
  const SharedArrayBufferByteLength = typeof SharedArrayBuffer === 'function'
    ? getterOf(SharedArrayBuffer.prototype, 'byteLength')
    : undefined;

  // ---------------------------------------------------------------------
  // Small helpers.
  // ---------------------------------------------------------------------

  // Strings are assembled from fixed-size chunks of UTF-16 code units so that
  // String.fromCharCode is applied to at most CHUNK (+ a few) arguments.
  const CHUNK = 8192;
  const SCRATCH_BUFFER = new ArrayBufferCtor((CHUNK + 8) * 2);
  const SCRATCH = new Uint16ArrayCtor(SCRATCH_BUFFER);

  // All users of SCRATCH run to completion without calling user code, so a
  // single shared scratch area is safe.
  function scratchToString(count) {
    return ReflectApply(StringFromCharCode, undefined,
      new Uint16ArrayCtor(SCRATCH_BUFFER, 0, count));
  }

  function isObjectLike(value) {
    return (typeof value === 'object' && value !== null) || typeof value === 'function';
  }

  // WebIDL DOMString / USVString conversion of the value itself (throws for
  // symbols, unlike String(value)).
  function toDOMString(value) {
    return `${value}`;
  }

  function requireArguments(count, required, what) {
    if (count < required) {
      throw new TypeErrorCtor(`${what}: ${required} argument${required === 1 ? '' : 's'} required, but only ${count} present.`);
    }
  }

  function isAsciiWhitespace(c) {
    return c === 0x09 || c === 0x0A || c === 0x0C || c === 0x0D || c === 0x20;
  }

  function defineGlobal(name, value) {
    ObjectDefineProperty(global, name, {
      value,
      writable: true,
      enumerable: false,
      configurable: true,
    });
  }

  function defineToStringTag(ctor, tag) {
    ObjectDefineProperty(ctor.prototype, SymbolToStringTag, {
      value: tag,
      writable: false,
      enumerable: false,
      configurable: true,
    });
  }

  // ---------------------------------------------------------------------
  // DOMException (minimal).
  // ---------------------------------------------------------------------
  // Legacy error codes from WebIDL's DOMException names table.
  const LEGACY_CODES = {
    __proto__: null,
    IndexSizeError: 1,
    HierarchyRequestError: 3,
    WrongDocumentError: 4,
    InvalidCharacterError: 5,
    NoModificationAllowedError: 7,
    NotFoundError: 8,
    NotSupportedError: 9,
    InvalidStateError: 11,
    SyntaxError: 12,
    InvalidModificationError: 13,
    NamespaceError: 14,
    InvalidAccessError: 15,
    TypeMismatchError: 17,
    SecurityError: 18,
    NetworkError: 19,
    AbortError: 20,
    URLMismatchError: 21,
    QuotaExceededError: 22,
    TimeoutError: 23,
    InvalidNodeTypeError: 24,
    DataCloneError: 25,
  };

  class DOMException extends ErrorCtor {
    #name;

    constructor(message = '', name = 'Error') {
      const messageString = toDOMString(message);
      const nameString = toDOMString(name);
      super(messageString);
      this.#name = nameString;
    }

    get name() {
      return this.#name;
    }

    get code() {
      const code = LEGACY_CODES[this.#name];
      return code === undefined ? 0 : code;
    }
  }
  defineToStringTag(DOMException, 'DOMException');

  function invalidCharacterError(message) {
    return new DOMException(message, 'InvalidCharacterError');
  }

  // ---------------------------------------------------------------------
  // TextEncoder.
  // ---------------------------------------------------------------------
  function isHighSurrogate(c) {
    return c >= 0xD800 && c <= 0xDBFF;
  }

  function isLowSurrogate(c) {
    return c >= 0xDC00 && c <= 0xDFFF;
  }

  /**
   * Encodes string[read, length) as UTF-8 into dest[written, capacity),
   * stopping before the first code point that does not fit entirely (so a
   * partial code point is never written).  Returns the new `read` position
   * (in UTF-16 code units); the new `written` position is left in
   * ENCODE_STATE.written.
   */
  const ENCODE_STATE = { written: 0 };
  function encodeUtf8Into(string, read, length, dest, written, capacity) {
    while (read < length) {
      let c = StringPrototypeCharCodeAt(string, read);
      if (c < 0x80) {
        if (written >= capacity) break;
        dest[written++] = c;
        read += 1;
      } else if (c < 0x800) {
        if (written + 2 > capacity) break;
        dest[written++] = 0xC0 | (c >> 6);
        dest[written++] = 0x80 | (c & 0x3F);
        read += 1;
      } else if (isHighSurrogate(c) && read + 1 < length
                 && isLowSurrogate(StringPrototypeCharCodeAt(string, read + 1))) {
        if (written + 4 > capacity) break;
        const cp = 0x10000 + ((c - 0xD800) << 10)
          + (StringPrototypeCharCodeAt(string, read + 1) - 0xDC00);
        dest[written++] = 0xF0 | (cp >> 18);
        dest[written++] = 0x80 | ((cp >> 12) & 0x3F);
        dest[written++] = 0x80 | ((cp >> 6) & 0x3F);
        dest[written++] = 0x80 | (cp & 0x3F);
        read += 2;
      } else {
        if (written + 3 > capacity) break;
        if (c >= 0xD800 && c <= 0xDFFF) c = 0xFFFD; // lone surrogate
        dest[written++] = 0xE0 | (c >> 12);
        dest[written++] = 0x80 | ((c >> 6) & 0x3F);
        dest[written++] = 0x80 | (c & 0x3F);
        read += 1;
      }
    }
    ENCODE_STATE.written = written;
    return read;
  }

  // Copies bytes[0, count) into a new, exactly sized Uint8Array.
  function copyPrefix(bytes, count) {
    const copy = new Uint8ArrayCtor(count);
    TypedArraySet(copy, new Uint8ArrayCtor(TypedArrayBuffer(bytes), 0, count));
    return copy;
  }

  class TextEncoder {
    #isTextEncoder = true;

    static #check(value) {
      if (!isObjectLike(value) || !(#isTextEncoder in value)) {
        throw new TypeErrorCtor('Illegal invocation: not a TextEncoder');
      }
    }

    get encoding() {
      TextEncoder.#check(this);
      return 'utf-8';
    }

    encode(input = '') {
      TextEncoder.#check(this);
      const string = toDOMString(input);
      const length = string.length;
      // Single pass.  Start with one byte per code unit (exact for ASCII) and
      // grow when a code point does not fit.
      let capacity = length;
      let bytes = new Uint8ArrayCtor(capacity);
      let read = encodeUtf8Into(string, 0, length, bytes, 0, capacity);
      let written = ENCODE_STATE.written;
      while (read < length) {
        const remaining = length - read;
        // Each remaining code unit needs at most 3 bytes; for long tails grow
        // geometrically instead of reserving the worst case up front.
        capacity = written + (remaining <= 0x10000 ? 3 * remaining : remaining + (remaining >> 1));
        const grown = new Uint8ArrayCtor(capacity);
        TypedArraySet(grown, new Uint8ArrayCtor(TypedArrayBuffer(bytes), 0, written));
        bytes = grown;
        read = encodeUtf8Into(string, read, length, bytes, written, capacity);
        written = ENCODE_STATE.written;
      }
      return written === capacity ? bytes : copyPrefix(bytes, written);
    }

    encodeInto(source, destination) {
      TextEncoder.#check(this);
      requireArguments(arguments.length, 2, "Failed to execute 'encodeInto' on 'TextEncoder'");
      const string = toDOMString(source);
      if (TypedArrayTag(destination) !== 'Uint8Array') {
        throw new TypeErrorCtor("Failed to execute 'encodeInto' on 'TextEncoder': parameter 2 is not of type 'Uint8Array'.");
      }
      const read = encodeUtf8Into(string, 0, string.length, destination, 0, TypedArrayLength(destination));
      const written = ENCODE_STATE.written;
      return { read, written };
    }
  }
  defineToStringTag(TextEncoder, 'TextEncoder');

  // ---------------------------------------------------------------------
  // TextDecoder (UTF-8 only).
  // ---------------------------------------------------------------------
  const UTF8_LABELS = ['utf-8', 'utf8', 'unicode-1-1-utf-8'];
  const EMPTY_BYTES = new Uint8ArrayCtor(0);

  // "Get an encoding": strip leading/trailing ASCII whitespace, ASCII-lowercase.
  function normalizeLabel(label) {
    let start = 0;
    let end = label.length;
    while (start < end && isAsciiWhitespace(StringPrototypeCharCodeAt(label, start))) start++;
    while (end > start && isAsciiWhitespace(StringPrototypeCharCodeAt(label, end - 1))) end--;
    let result = '';
    for (let i = start; i < end; i++) {
      let c = StringPrototypeCharCodeAt(label, i);
      if (c >= 0x41 && c <= 0x5A) c += 0x20;
      result += StringFromCharCode(c);
    }
    return result;
  }

  function isUtf8Label(label) {
    const normalized = normalizeLabel(label);
    for (let i = 0; i < UTF8_LABELS.length; i++) {
      if (UTF8_LABELS[i] === normalized) return true;
    }
    return false;
  }

  // Returns a Uint8Array viewing the bytes of an AllowSharedBufferSource.
  function viewBytes(input) {
    if (input === undefined) return EMPTY_BYTES;
    if (ArrayBufferIsView(input)) {
      let buffer;
      let offset;
      let length;
      if (TypedArrayTag(input) !== undefined) {
        length = TypedArrayByteLength(input);
        if (length === 0) return EMPTY_BYTES;
        buffer = TypedArrayBuffer(input);
        offset = TypedArrayByteOffset(input);
      } else {
        try {
          length = DataViewByteLength(input);
          offset = DataViewByteOffset(input);
        } catch {
          return EMPTY_BYTES; // detached (or out-of-bounds) buffer
        }
        if (length === 0) return EMPTY_BYTES;
        buffer = DataViewBuffer(input);
      }
      return new Uint8ArrayCtor(buffer, offset, length);
    }
    if (isObjectLike(input)) {
      let length = -1;
      try {
        length = ArrayBufferByteLength(input);
      } catch {
        if (SharedArrayBufferByteLength !== undefined) {
          try {
            length = SharedArrayBufferByteLength(input);
          } catch {
            // Not a SharedArrayBuffer either.
          }
        }
      }
      if (length === 0) return EMPTY_BYTES;
      if (length > 0) return new Uint8ArrayCtor(input, 0, length);
    }
    throw new TypeErrorCtor("Failed to execute 'decode' on 'TextDecoder': The provided value is not of type '(ArrayBuffer or ArrayBufferView)'.");
  }

  function readDecoderOptions(options) {
    if (options === undefined || options === null) return { fatal: false, ignoreBOM: false };
    if (!isObjectLike(options)) {
      throw new TypeErrorCtor("Failed to construct 'TextDecoder': The provided value is not of type 'TextDecoderOptions'.");
    }
    // WebIDL reads dictionary members in lexicographic order.
    const fatal = !!options.fatal;
    const ignoreBOM = !!options.ignoreBOM;
    return { fatal, ignoreBOM };
  }

  function readDecodeOptions(options) {
    if (options === undefined || options === null) return false;
    if (!isObjectLike(options)) {
      throw new TypeErrorCtor("Failed to execute 'decode' on 'TextDecoder': The provided value is not of type 'TextDecodeOptions'.");
    }
    return !!options.stream;
  }

  const DECODE_ERROR = "Failed to execute 'decode' on 'TextDecoder': The encoded data was not valid for encoding utf-8";

  class TextDecoder {
    #fatal;
    #ignoreBOM;
    #bomSeen = false;
    #doNotFlush = false;
    // UTF-8 decoder state (WHATWG Encoding Standard, section 8.1.1).
    #needed = 0;
    #seen = 0;
    #codePoint = 0;
    #lower = 0x80;
    #upper = 0xBF;

    constructor(label = 'utf-8', options = undefined) {
      const labelString = toDOMString(label);
      const { fatal, ignoreBOM } = readDecoderOptions(options);
      if (!isUtf8Label(labelString)) {
        throw new RangeErrorCtor(`Failed to construct 'TextDecoder': The encoding label provided ('${labelString}') is not supported; only UTF-8 is supported in this environment.`);
      }
      this.#fatal = fatal;
      this.#ignoreBOM = ignoreBOM;
    }

    get encoding() {
      this.#fatal; // brand check
      return 'utf-8';
    }

    get fatal() {
      return this.#fatal;
    }

    get ignoreBOM() {
      return this.#ignoreBOM;
    }

    decode(input = undefined, options = undefined) {
      this.#fatal; // brand check before touching the arguments
      const stream = readDecodeOptions(options);
      const bytes = viewBytes(input);

      if (!this.#doNotFlush) this.#reset();
      this.#doNotFlush = stream;

      let output = this.#run(bytes, TypedArrayLength(bytes), !stream);

      if (!this.#ignoreBOM && !this.#bomSeen && output.length > 0) {
        this.#bomSeen = true;
        if (StringPrototypeCharCodeAt(output, 0) === 0xFEFF) {
          output = StringPrototypeSlice(output, 1);
        }
      }
      return output;
    }

    #reset() {
      this.#needed = 0;
      this.#seen = 0;
      this.#codePoint = 0;
      this.#lower = 0x80;
      this.#upper = 0xBF;
      this.#bomSeen = false;
    }

    #fail() {
      // A fatal error leaves the decoder as good as new.
      this.#reset();
      this.#doNotFlush = false;
      throw new TypeErrorCtor(DECODE_ERROR);
    }

    // Runs the UTF-8 decoder over bytes[0, length); flushes at end if asked.
    #run(bytes, length, flush) {
      const fatal = this.#fatal;
      const out = SCRATCH;
      let needed = this.#needed;
      let seen = this.#seen;
      let codePoint = this.#codePoint;
      let lower = this.#lower;
      let upper = this.#upper;
      let result = '';
      let o = 0;
      let i = 0;

      while (i < length) {
        const byte = bytes[i];
        if (needed === 0) {
          i++;
          if (byte < 0x80) {
            out[o++] = byte;
          } else if (byte >= 0xC2 && byte <= 0xDF) {
            needed = 1;
            codePoint = byte & 0x1F;
            continue;
          } else if (byte >= 0xE0 && byte <= 0xEF) {
            if (byte === 0xE0) lower = 0xA0;
            else if (byte === 0xED) upper = 0x9F;
            needed = 2;
            codePoint = byte & 0x0F;
            continue;
          } else if (byte >= 0xF0 && byte <= 0xF4) {
            if (byte === 0xF0) lower = 0x90;
            else if (byte === 0xF4) upper = 0x8F;
            needed = 3;
            codePoint = byte & 0x07;
            continue;
          } else {
            // 80..C1 (continuation or overlong lead) and F5..FF.
            if (fatal) this.#fail();
            out[o++] = 0xFFFD;
          }
        } else if (byte < lower || byte > upper) {
          // End of a maximal subpart: emit one U+FFFD and reprocess `byte`
          // (i is not advanced).
          needed = 0;
          seen = 0;
          codePoint = 0;
          lower = 0x80;
          upper = 0xBF;
          if (fatal) this.#fail();
          out[o++] = 0xFFFD;
        } else {
          i++;
          lower = 0x80;
          upper = 0xBF;
          codePoint = (codePoint << 6) | (byte & 0x3F);
          if (++seen !== needed) continue;
          if (codePoint < 0x10000) {
            out[o++] = codePoint;
          } else {
            codePoint -= 0x10000;
            out[o++] = 0xD800 | (codePoint >> 10);
            out[o++] = 0xDC00 | (codePoint & 0x3FF);
          }
          needed = 0;
          seen = 0;
          codePoint = 0;
        }
        if (o >= CHUNK) {
          result += scratchToString(o);
          o = 0;
        }
      }

      if (flush && needed !== 0) {
        // Truncated sequence at the end of the stream.
        needed = 0;
        seen = 0;
        codePoint = 0;
        lower = 0x80;
        upper = 0xBF;
        if (fatal) this.#fail();
        out[o++] = 0xFFFD;
      }
      if (o > 0) result += scratchToString(o);

      this.#needed = needed;
      this.#seen = seen;
      this.#codePoint = codePoint;
      this.#lower = lower;
      this.#upper = upper;
      return result;
    }
  }
  defineToStringTag(TextDecoder, 'TextDecoder');

  // ---------------------------------------------------------------------
  // atob / btoa (HTML Standard, forgiving-base64).
  // ---------------------------------------------------------------------
  const BASE64_ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';
  const BASE64_ENCODE = new Uint8ArrayCtor(64);
  const BASE64_DECODE = new Int8ArrayCtor(128).fill(-1);
  const PAD = 64; // decoded value used for '='
  for (let i = 0; i < 64; i++) {
    const c = StringPrototypeCharCodeAt(BASE64_ALPHABET, i);
    BASE64_ENCODE[i] = c;
    BASE64_DECODE[c] = i;
  }
  BASE64_DECODE[0x3D] = PAD;

  function btoa(data) {
    requireArguments(arguments.length, 1, "Failed to execute 'btoa'");
    const string = toDOMString(data);
    const length = string.length;
    const notLatin1 = () => invalidCharacterError("Failed to execute 'btoa': The string to be encoded contains characters outside of the Latin1 range.");

    const out = SCRATCH;
    const enc = BASE64_ENCODE;
    let result = '';
    let o = 0;
    let i = 0;
    for (; i + 2 < length; i += 3) {
      const a = StringPrototypeCharCodeAt(string, i);
      const b = StringPrototypeCharCodeAt(string, i + 1);
      const c = StringPrototypeCharCodeAt(string, i + 2);
      if ((a | b | c) > 0xFF) throw notLatin1();
      const n = (a << 16) | (b << 8) | c;
      out[o++] = enc[n >> 18];
      out[o++] = enc[(n >> 12) & 0x3F];
      out[o++] = enc[(n >> 6) & 0x3F];
      out[o++] = enc[n & 0x3F];
      if (o >= CHUNK) {
        result += scratchToString(o);
        o = 0;
      }
    }
    const rest = length - i;
    if (rest === 1) {
      const n = StringPrototypeCharCodeAt(string, i);
      if (n > 0xFF) throw notLatin1();
      out[o++] = enc[n >> 2];
      out[o++] = enc[(n & 0x03) << 4];
      out[o++] = 0x3D;
      out[o++] = 0x3D;
    } else if (rest === 2) {
      const a = StringPrototypeCharCodeAt(string, i);
      const b = StringPrototypeCharCodeAt(string, i + 1);
      if ((a | b) > 0xFF) throw notLatin1();
      const n = (a << 8) | b;
      out[o++] = enc[n >> 10];
      out[o++] = enc[(n >> 4) & 0x3F];
      out[o++] = enc[(n & 0x0F) << 2];
      out[o++] = 0x3D;
    }
    if (o > 0) result += scratchToString(o);
    return result;
  }

  function atob(data) {
    requireArguments(arguments.length, 1, "Failed to execute 'atob'");
    const string = toDOMString(data);
    const length = string.length;
    const fail = () => invalidCharacterError("Failed to execute 'atob': The string to be decoded is not correctly encoded.");

    // 1. Remove ASCII whitespace, mapping the rest to 6-bit values ('=' -> PAD).
    //    A code point outside the alphabet and '=' can never be valid.
    const values = new Uint8ArrayCtor(length);
    let count = 0;
    for (let i = 0; i < length; i++) {
      const c = StringPrototypeCharCodeAt(string, i);
      if (isAsciiWhitespace(c)) continue;
      const v = c < 128 ? BASE64_DECODE[c] : -1;
      if (v < 0) throw fail();
      values[count++] = v;
    }
    // 2. If the length is a multiple of 4, drop one or two trailing '='.
    if (count % 4 === 0) {
      if (count > 0 && values[count - 1] === PAD) count--;
      if (count > 0 && values[count - 1] === PAD) count--;
    }
    // 3. A remainder of 1 can never be valid.
    if (count % 4 === 1) throw fail();
    // 4. Any remaining '=' is invalid.
    for (let i = 0; i < count; i++) {
      if (values[i] === PAD) throw fail();
    }

    // 5. Decode 24 bits at a time; a 12- or 18-bit tail yields 1 or 2 bytes
    //    (the leftover 4 or 2 bits are discarded).
    const out = SCRATCH;
    let result = '';
    let o = 0;
    let i = 0;
    for (; i + 3 < count; i += 4) {
      const n = (values[i] << 18) | (values[i + 1] << 12) | (values[i + 2] << 6) | values[i + 3];
      out[o++] = n >> 16;
      out[o++] = (n >> 8) & 0xFF;
      out[o++] = n & 0xFF;
      if (o >= CHUNK) {
        result += scratchToString(o);
        o = 0;
      }
    }
    const rest = count - i;
    if (rest === 2) {
      out[o++] = ((values[i] << 2) | (values[i + 1] >> 4)) & 0xFF;
    } else if (rest === 3) {
      const n = (values[i] << 12) | (values[i + 1] << 6) | values[i + 2];
      out[o++] = n >> 10;
      out[o++] = (n >> 2) & 0xFF;
    }
    if (o > 0) result += scratchToString(o);
    return result;
  }

  // ---------------------------------------------------------------------
  // Install.
  // ---------------------------------------------------------------------
  defineGlobal('DOMException', DOMException);
  defineGlobal('TextEncoder', TextEncoder);
  defineGlobal('TextDecoder', TextDecoder);
  defineGlobal('atob', atob);
  defineGlobal('btoa', btoa);
})(globalThis);
