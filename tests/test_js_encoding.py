"""Tests for the sandbox's JavaScript encoding polyfills.

``dcp_worker/sandbox/js/encoding.js`` is evaluated in a fresh mini-racer
isolate (which has only the ECMAScript built-ins) and must provide
``TextEncoder``, ``TextDecoder``, ``atob``, ``btoa`` and ``DOMException``
behaving like the WHATWG Encoding Standard and the HTML Standard.

Expected values are known answers (hand-written byte sequences, the
examples from the Unicode Standard / WHATWG Encoding Standard) or come
from Python's own codecs, which implement the same "maximal subpart"
replacement rule for UTF-8.
"""

from __future__ import annotations

import base64
import json
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from py_mini_racer import MiniRacer

REPO_ROOT = Path(__file__).parents[1]
ENCODING_JS = REPO_ROOT / "dcp_worker" / "sandbox" / "js" / "encoding.js"

INSTALLED_GLOBALS = {"TextEncoder", "TextDecoder", "atob", "btoa", "DOMException"}

FFFD = "\ufffd"


# ---------------------------------------------------------------------------
# Fixtures and helpers
# ---------------------------------------------------------------------------


@pytest.fixture(scope="session")
def encoding_source() -> str:
    return ENCODING_JS.read_text(encoding="utf-8")


@pytest.fixture
def bare_racer() -> Iterator[MiniRacer]:
    """A fresh isolate without the polyfills."""
    racer = MiniRacer()
    try:
        yield racer
    finally:
        racer.close()


@pytest.fixture
def mr(bare_racer: MiniRacer, encoding_source: str) -> MiniRacer:
    """A fresh isolate with encoding.js loaded."""
    bare_racer.eval(encoding_source)
    return bare_racer


def js(value: object) -> str:
    """Render a JSON-compatible Python value as a JavaScript literal."""
    return json.dumps(value)


def u8(data: bytes) -> str:
    """A JavaScript expression creating a Uint8Array holding ``data``."""
    return f"new Uint8Array({list(data)})"


def decode(mr: MiniRacer, data: bytes, options: str = "{}") -> str:
    result = mr.execute(f"new TextDecoder('utf-8', {options}).decode({u8(data)})")
    assert isinstance(result, str)
    return result


def encode(mr: MiniRacer, text: str) -> list[int]:
    result = mr.execute(f"Array.from(new TextEncoder().encode({js(text)}))")
    assert isinstance(result, list)
    return result


def thrown(mr: MiniRacer, expression: str) -> dict[str, Any] | None:
    """Evaluate ``expression``; describe the exception it throws, or None."""
    result = mr.execute(
        f"""(() => {{
            try {{
                ({expression});
                return null;
            }} catch (e) {{
                return {{
                    type: e.constructor.name,
                    name: e.name,
                    message: String(e.message),
                    code: e.code === undefined ? null : e.code,
                    isError: e instanceof Error,
                    isTypeError: e instanceof TypeError,
                    isRangeError: e instanceof RangeError,
                    isDOMException: typeof DOMException === 'function'
                        && e instanceof DOMException,
                }};
            }}
        }})()"""
    )
    assert result is None or isinstance(result, dict)
    return result


def assert_type_error(mr: MiniRacer, expression: str) -> None:
    error = thrown(mr, expression)
    assert error is not None, f"{expression} did not throw"
    assert error["isTypeError"], error


def assert_invalid_character(mr: MiniRacer, expression: str) -> None:
    error = thrown(mr, expression)
    assert error is not None, f"{expression} did not throw"
    assert error["isDOMException"], error
    assert error["isError"], error
    assert error["name"] == "InvalidCharacterError"
    assert error["code"] == 5


# ---------------------------------------------------------------------------
# Installation
# ---------------------------------------------------------------------------


def test_bare_isolate_lacks_the_globals(bare_racer: MiniRacer) -> None:
    # Guards the premise of this module: V8 alone provides none of these.
    for name in sorted(INSTALLED_GLOBALS):
        assert bare_racer.eval(f"typeof globalThis[{js(name)}]") == "undefined"


def test_only_expected_globals_are_added(bare_racer: MiniRacer, encoding_source: str) -> None:
    names = "Object.getOwnPropertyNames(globalThis)"
    symbols = "Object.getOwnPropertySymbols(globalThis).map(String)"
    before = set(bare_racer.execute(names))
    symbols_before = bare_racer.execute(symbols)
    bare_racer.eval(encoding_source)
    after = set(bare_racer.execute(names))
    assert after - before == INSTALLED_GLOBALS
    assert before - after == set()
    assert bare_racer.execute(symbols) == symbols_before


@pytest.mark.parametrize("name", sorted(INSTALLED_GLOBALS))
def test_globals_are_web_style_properties(mr: MiniRacer, name: str) -> None:
    descriptor = mr.execute(
        f"""(() => {{
            const d = Object.getOwnPropertyDescriptor(globalThis, {js(name)});
            return {{
                type: typeof d.value,
                enumerable: d.enumerable,
                writable: d.writable,
                configurable: d.configurable,
            }};
        }})()"""
    )
    assert descriptor == {
        "type": "function",
        "enumerable": False,
        "writable": True,
        "configurable": True,
    }
    assert mr.execute(f"Object.keys(globalThis).includes({js(name)})") is False


def test_constructors_require_new(mr: MiniRacer) -> None:
    assert_type_error(mr, "TextEncoder()")
    assert_type_error(mr, "TextDecoder()")
    assert_type_error(mr, "DOMException()")


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("Object.prototype.toString.call(new TextEncoder())", "[object TextEncoder]"),
        ("Object.prototype.toString.call(new TextDecoder())", "[object TextDecoder]"),
        ("Object.prototype.toString.call(new DOMException())", "[object DOMException]"),
        ("atob.length", 1),
        ("btoa.length", 1),
        ("TextEncoder.prototype.encodeInto.length", 2),
    ],
)
def test_interface_details(mr: MiniRacer, expression: str, expected: object) -> None:
    assert mr.execute(expression) == expected


@pytest.mark.parametrize(
    "expression",
    [
        "Object.getOwnPropertyDescriptor(TextEncoder.prototype, 'encoding').get.call({})",
        "TextEncoder.prototype.encode.call({}, 'x')",
        "TextEncoder.prototype.encodeInto.call({}, 'x', new Uint8Array(4))",
        "Object.getOwnPropertyDescriptor(TextEncoder.prototype, 'encoding').get.call(1)",
        "Object.getOwnPropertyDescriptor(TextDecoder.prototype, 'encoding').get.call({})",
        "Object.getOwnPropertyDescriptor(TextDecoder.prototype, 'fatal').get.call({})",
        "TextDecoder.prototype.decode.call({}, new Uint8Array(1))",
        "Object.getOwnPropertyDescriptor(DOMException.prototype, 'name').get.call({})",
    ],
)
def test_brand_checks(mr: MiniRacer, expression: str) -> None:
    assert_type_error(mr, expression)


# ---------------------------------------------------------------------------
# TextEncoder
# ---------------------------------------------------------------------------


def test_encoder_encoding(mr: MiniRacer) -> None:
    assert mr.execute("new TextEncoder().encoding") == "utf-8"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", []),
        ("A", [0x41]),
        ("Hello", [0x48, 0x65, 0x6C, 0x6C, 0x6F]),
        ("\x00", [0x00]),
        ("\x7f", [0x7F]),
        ("\x80", [0xC2, 0x80]),
        ("\u00e9", [0xC3, 0xA9]),
        ("\u07ff", [0xDF, 0xBF]),
        ("\u0800", [0xE0, 0xA0, 0x80]),
        ("\u20ac", [0xE2, 0x82, 0xAC]),
        ("\ud7ff", [0xED, 0x9F, 0xBF]),
        ("\ue000", [0xEE, 0x80, 0x80]),
        ("\ufeff", [0xEF, 0xBB, 0xBF]),
        ("\uffff", [0xEF, 0xBF, 0xBF]),
        ("\U00010000", [0xF0, 0x90, 0x80, 0x80]),
        ("\U0001f600", [0xF0, 0x9F, 0x98, 0x80]),
        ("\U0010ffff", [0xF4, 0x8F, 0xBF, 0xBF]),
        ("a\u00e9\u20ac\U0001f600", [0x61, 0xC3, 0xA9, 0xE2, 0x82, 0xAC, 0xF0, 0x9F, 0x98, 0x80]),
        # Lone surrogates become U+FFFD (EF BF BD).
        ("\ud800", [0xEF, 0xBF, 0xBD]),
        ("\udbff", [0xEF, 0xBF, 0xBD]),
        ("\udc00", [0xEF, 0xBF, 0xBD]),
        ("\udfff", [0xEF, 0xBF, 0xBD]),
        ("a\ud800b", [0x61, 0xEF, 0xBF, 0xBD, 0x62]),
        ("\udc00\ud800", [0xEF, 0xBF, 0xBD, 0xEF, 0xBF, 0xBD]),
        ("\ud800\ud800\udc00", [0xEF, 0xBF, 0xBD, 0xF0, 0x90, 0x80, 0x80]),
        ("\ud83d", [0xEF, 0xBF, 0xBD]),
    ],
)
def test_encode_known_answers(mr: MiniRacer, text: str, expected: list[int]) -> None:
    assert encode(mr, text) == expected


@pytest.mark.parametrize(
    ("argument", "expected"),
    [
        ("", []),
        ("undefined", []),
        ("null", list(b"null")),
        ("123", list(b"123")),
        ("{ toString() { return 'x\u00e9'; } }", [0x78, 0xC3, 0xA9]),
    ],
)
def test_encode_argument_conversion(mr: MiniRacer, argument: str, expected: list[int]) -> None:
    assert mr.execute(f"Array.from(new TextEncoder().encode({argument}))") == expected


def test_encode_symbol_throws_type_error(mr: MiniRacer) -> None:
    assert_type_error(mr, "new TextEncoder().encode(Symbol('s'))")


def test_encode_returns_exactly_sized_uint8array(mr: MiniRacer) -> None:
    result = mr.execute(
        """(() => {
            const e = new TextEncoder();
            return [
                e.encode('h\\u00e9llo') instanceof Uint8Array,
                e.encode('h\\u00e9llo').buffer.byteLength,
                e.encode('abc').buffer.byteLength,
                e.encode('\\u20ac'.repeat(100000)).buffer.byteLength,
                e.encode('') instanceof Uint8Array,
                e.encode('') !== e.encode(''),
            ];
        })()"""
    )
    assert result == [True, 6, 3, 300000, True, True]


@pytest.mark.parametrize(
    ("source", "size", "read", "written"),
    [
        ("", 0, 0, 0),
        ("", 4, 0, 0),
        ("abc", 0, 0, 0),
        ("abc", 2, 2, 2),
        ("abc", 3, 3, 3),
        ("abc", 10, 3, 3),
        ("\u00e9", 1, 0, 0),
        ("\u00e9", 2, 1, 2),
        ("a\u00e9", 2, 1, 1),
        ("\u20ac", 2, 0, 0),
        ("\u20ac", 3, 1, 3),
        ("a\u20acb", 4, 2, 4),
        ("a\u20acb", 3, 1, 1),
        # A 4-byte character never gets split, and `read` counts UTF-16 units.
        ("\U0001f600", 3, 0, 0),
        ("\U0001f600", 4, 2, 4),
        ("a\U0001f600", 4, 1, 1),
        ("a\U0001f600", 5, 3, 5),
        ("\U0001f600\U0001f600", 7, 2, 4),
        ("\U0001f600\U0001f600", 8, 4, 8),
        # Lone surrogates are encoded as U+FFFD (3 bytes).
        ("\ud800", 2, 0, 0),
        ("\ud800", 3, 1, 3),
        ("\ud800x", 4, 2, 4),
        ("x\udc00\U0001f600", 7, 2, 4),
        ("x\udc00\U0001f600", 8, 4, 8),
    ],
)
def test_encode_into(mr: MiniRacer, source: str, size: int, read: int, written: int) -> None:
    result = mr.execute(
        f"""(() => {{
            const dest = new Uint8Array({size}).fill(0xAA);
            const r = new TextEncoder().encodeInto({js(source)}, dest);
            return {{ keys: Object.keys(r), read: r.read, written: r.written,
                      bytes: Array.from(dest) }};
        }})()"""
    )
    full = encode(mr, source)
    assert result["keys"] == ["read", "written"]
    assert (result["read"], result["written"]) == (read, written)
    assert result["bytes"][:written] == full[:written]
    # Bytes past `written` are left untouched.
    assert result["bytes"][written:] == [0xAA] * (size - written)


def test_encode_into_respects_view_offset(mr: MiniRacer) -> None:
    result = mr.execute(
        """(() => {
            const backing = new Uint8Array(8);
            const view = backing.subarray(2, 6);
            const r = new TextEncoder().encodeInto('\\u00e9\\u20ac', view);
            return [r.read, r.written, Array.from(backing)];
        })()"""
    )
    assert result == [1, 2, [0, 0, 0xC3, 0xA9, 0, 0, 0, 0]]


def test_encode_into_shared_memory(mr: MiniRacer) -> None:
    result = mr.execute(
        """(() => {
            const dest = new Uint8Array(new SharedArrayBuffer(4));
            const r = new TextEncoder().encodeInto('hi', dest);
            return [r.read, r.written, Array.from(dest)];
        })()"""
    )
    assert result == [2, 2, [0x68, 0x69, 0, 0]]


@pytest.mark.parametrize(
    "destination",
    [
        "new Uint16Array(4)",
        "new Int8Array(4)",
        "new Uint8ClampedArray(4)",
        "new ArrayBuffer(4)",
        "new DataView(new ArrayBuffer(4))",
        "[0, 0, 0, 0]",
        "null",
        "undefined",
    ],
)
def test_encode_into_requires_uint8array(mr: MiniRacer, destination: str) -> None:
    assert_type_error(mr, f"new TextEncoder().encodeInto('abc', {destination})")


def test_encode_into_requires_two_arguments(mr: MiniRacer) -> None:
    assert_type_error(mr, "new TextEncoder().encodeInto('abc')")


def test_encode_random_strings_match_python(mr: MiniRacer) -> None:
    rng = random.Random(20240611)
    palette = [
        0x41,
        0x7F,
        0x80,
        0x7FF,
        0x800,
        0xD7FF,
        0xD800,
        0xDBFF,
        0xDC00,
        0xDFFF,
        0xE000,
        0xFFFD,
        0xFFFF,
        0x10000,
        0x1F600,
        0x10FFFF,
    ]
    texts = ["".join(chr(rng.choice(palette)) for _ in range(rng.randint(0, 12))) for _ in range(500)]
    results = mr.execute(f"{js(texts)}.map((s) => Array.from(new TextEncoder().encode(s)))")
    for text, result in zip(texts, results, strict=True):
        # JavaScript joins adjacent surrogate halves into one code point; do
        # the same, then replace what is left unpaired with U+FFFD.
        normalized = text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")
        assert result == list(normalized.encode("utf-8")), repr(text)


# ---------------------------------------------------------------------------
# TextDecoder: construction
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "label",
    [
        "utf-8",
        "UTF-8",
        "Utf-8",
        "utf8",
        "UTF8",
        "unicode-1-1-utf-8",
        "Unicode-1-1-UTF-8",
        " utf-8 ",
        "\t\n\f\r utf8 \r\n",
    ],
)
def test_decoder_accepts_utf8_labels(mr: MiniRacer, label: str) -> None:
    assert mr.execute(f"new TextDecoder({js(label)}).encoding") == "utf-8"


@pytest.mark.parametrize(
    "label",
    [
        "",
        "utf-16le",
        "utf-16",
        "latin1",
        "iso-8859-1",
        "ascii",
        "windows-1252",
        "utf-8x",
        "utf 8",
        "\u00a0utf-8",  # NBSP is not ASCII whitespace
        "\vutf-8",  # neither is VT
        "utf-\u0138",
        "null",
    ],
)
def test_decoder_rejects_other_labels(mr: MiniRacer, label: str) -> None:
    error = thrown(mr, f"new TextDecoder({js(label)})")
    assert error is not None
    assert error["isRangeError"], error
    assert "UTF-8" in error["message"]


def test_decoder_label_conversion(mr: MiniRacer) -> None:
    assert mr.execute("new TextDecoder(undefined).encoding") == "utf-8"
    assert mr.execute("new TextDecoder({ toString: () => 'UTF8' }).encoding") == "utf-8"
    error = thrown(mr, "new TextDecoder(null)")
    assert error is not None
    assert error["isRangeError"], error
    assert_type_error(mr, "new TextDecoder(Symbol())")


@pytest.mark.parametrize(
    ("options", "fatal", "ignore_bom"),
    [
        ("", False, False),
        ("undefined", False, False),
        ("null", False, False),
        ("{}", False, False),
        ("{ fatal: true }", True, False),
        ("{ ignoreBOM: true }", False, True),
        ("{ fatal: 1, ignoreBOM: 'yes' }", True, True),
        ("{ fatal: 0, ignoreBOM: '' }", False, False),
    ],
)
def test_decoder_options(mr: MiniRacer, options: str, fatal: bool, ignore_bom: bool) -> None:
    args = f"'utf-8', {options}" if options else ""
    result = mr.execute(
        f"(() => {{ const d = new TextDecoder({args}); return [d.encoding, d.fatal, d.ignoreBOM]; }})()"
    )
    assert result == ["utf-8", fatal, ignore_bom]


@pytest.mark.parametrize("options", ["5", "'fatal'", "true"])
def test_decoder_rejects_non_object_options(mr: MiniRacer, options: str) -> None:
    assert_type_error(mr, f"new TextDecoder('utf-8', {options})")


# ---------------------------------------------------------------------------
# TextDecoder: decoding
# ---------------------------------------------------------------------------

VALID_UTF8 = [
    (b"", ""),
    (b"hello", "hello"),
    (b"\x00", "\x00"),
    (b"\x7f", "\x7f"),
    (b"\xc2\x80", "\x80"),
    (b"\xc3\xa9", "\u00e9"),
    (b"\xdf\xbf", "\u07ff"),
    (b"\xe0\xa0\x80", "\u0800"),
    (b"\xe2\x82\xac", "\u20ac"),
    (b"\xed\x9f\xbf", "\ud7ff"),
    (b"\xee\x80\x80", "\ue000"),
    (b"\xef\xbf\xbe", "\ufffe"),
    (b"\xef\xbf\xbf", "\uffff"),
    (b"\xf0\x90\x80\x80", "\U00010000"),
    (b"\xf0\x9f\x98\x80", "\U0001f600"),
    (b"\xf4\x8f\xbf\xbf", "\U0010ffff"),
    (b"a\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80z", "a\u00e9\u20ac\U0001f600z"),
]

MALFORMED_UTF8 = [
    # Unexpected continuation bytes: one U+FFFD each.
    (b"\x80", FFFD),
    (b"\xbf", FFFD),
    (b"\x80\xbf\x80", FFFD * 3),
    (b"a\x80b", f"a{FFFD}b"),
    # Overlong encodings: the lead byte is never part of a valid prefix.
    (b"\xc0\x80", FFFD * 2),
    (b"\xc1\xbf", FFFD * 2),
    (b"\xe0\x80\x80", FFFD * 3),
    (b"\xe0\x9f\xbf", FFFD * 3),
    (b"\xf0\x80\x80\x80", FFFD * 4),
    (b"\xf0\x8f\xbf\xbf", FFFD * 4),
    # UTF-16 surrogates encoded in UTF-8 (incl. a CESU-8 pair).
    (b"\xed\xa0\x80", FFFD * 3),
    (b"\xed\xbf\xbf", FFFD * 3),
    (b"\xed\xa0\xbd\xed\xb8\x80", FFFD * 6),
    # Beyond U+10FFFF.
    (b"\xf4\x90\x80\x80", FFFD * 4),
    (b"\xf7\xbf\xbf\xbf", FFFD * 4),
    # Bytes that never appear in UTF-8.
    (b"\xf5", FFFD),
    (b"\xfe\xff", FFFD * 2),
    (b"\xf8\x88\x80\x80\x80", FFFD * 5),
    (b"\xfc\x84\x80\x80\x80\x80", FFFD * 6),
    # Truncated sequences: one U+FFFD per maximal subpart.
    (b"\xc3", FFFD),
    (b"\xe2", FFFD),
    (b"\xe2\x82", FFFD),
    (b"\xf0", FFFD),
    (b"\xf0\x9f", FFFD),
    (b"\xf0\x9f\x98", FFFD),
    (b"A\xc3", f"A{FFFD}"),
    (b"\xe2\x82A", f"{FFFD}A"),
    (b"\xf0\x9f\x98A", f"{FFFD}A"),
    (b"\xc3\xc3\xa9", f"{FFFD}\u00e9"),
    (b"\xe2\x82\xe2\x82\xac", f"{FFFD}\u20ac"),
    (b"\xf0\x9f\x98\xf0\x9f\x98\x80", f"{FFFD}\U0001f600"),
    (b"\xe2\x82\x80\x80", f"\u2080{FFFD}"),
    # Example from the Unicode Standard (Table 3-8) / WHATWG Encoding.
    (
        b"\x61\xf1\x80\x80\xe1\x80\xc2\x62\x80\x63\x80\xbf\x64",
        f"a{FFFD}{FFFD}{FFFD}b{FFFD}c{FFFD}{FFFD}d",
    ),
]


@pytest.mark.parametrize(("data", "expected"), VALID_UTF8)
def test_decode_valid(mr: MiniRacer, data: bytes, expected: str) -> None:
    assert decode(mr, data) == expected
    assert decode(mr, data, "{ fatal: true }") == expected


@pytest.mark.parametrize(("data", "expected"), MALFORMED_UTF8)
def test_decode_malformed_replacement(mr: MiniRacer, data: bytes, expected: str) -> None:
    assert decode(mr, data) == expected
    # Cross-check the table itself against Python's codec.
    assert data.decode("utf-8", "replace") == expected


@pytest.mark.parametrize("byte", range(0xF5, 0x100))
def test_decode_never_valid_bytes(mr: MiniRacer, byte: int) -> None:
    assert decode(mr, bytes([byte])) == FFFD
    assert decode(mr, bytes([0x41, byte, byte, 0x42])) == f"A{FFFD}{FFFD}B"


@pytest.mark.parametrize("data", [case[0] for case in MALFORMED_UTF8])
def test_decode_fatal_throws_type_error(mr: MiniRacer, data: bytes) -> None:
    assert_type_error(mr, f"new TextDecoder('utf-8', {{ fatal: true }}).decode({u8(data)})")


def test_fatal_decoder_is_reusable_after_error(mr: MiniRacer) -> None:
    result = mr.execute(
        """(() => {
            const d = new TextDecoder('utf-8', { fatal: true });
            const out = [];
            try { d.decode(new Uint8Array([0xE2, 0x82]), { stream: true });
                  d.decode(new Uint8Array([0x41])); out.push('no error'); }
            catch (e) { out.push(e instanceof TypeError); }
            out.push(d.decode(new Uint8Array([0xE2, 0x82, 0xAC])));
            try { d.decode(new Uint8Array([0xE2]), { stream: true }); out.push('ok');
                  d.decode(); out.push('no error'); }
            catch (e) { out.push(e instanceof TypeError); }
            out.push(d.decode(new Uint8Array([0x68, 0x69])));
            return out;
        })()"""
    )
    assert result == [True, "\u20ac", "ok", True, "hi"]


def test_decode_random_bytes_match_python(mr: MiniRacer) -> None:
    rng = random.Random(8271)
    palette = [
        0x00,
        0x41,
        0x7F,
        0x80,
        0x8F,
        0x90,
        0x9F,
        0xA0,
        0xBF,
        0xC0,
        0xC1,
        0xC2,
        0xDF,
        0xE0,
        0xE1,
        0xEC,
        0xED,
        0xEE,
        0xEF,
        0xF0,
        0xF1,
        0xF3,
        0xF4,
        0xF5,
        0xFE,
        0xFF,
    ]
    samples = [bytes(rng.choice(palette) for _ in range(rng.randint(0, 10))) for _ in range(1000)]
    lists = js([list(sample) for sample in samples])
    replaced = mr.execute(f"{lists}.map((b) => new TextDecoder().decode(new Uint8Array(b)))")
    byte_by_byte = mr.execute(
        f"""{lists}.map((b) => {{
            const d = new TextDecoder();
            let s = '';
            for (const x of b) s += d.decode(new Uint8Array([x]), {{ stream: true }});
            return s + d.decode();
        }})"""
    )
    fatal_ok = mr.execute(
        f"""{lists}.map((b) => {{
            try {{
                new TextDecoder('utf-8', {{ fatal: true }}).decode(new Uint8Array(b));
                return true;
            }} catch (e) {{
                return e instanceof TypeError ? false : String(e);
            }}
        }})"""
    )
    for sample, got, streamed, ok in zip(samples, replaced, byte_by_byte, fatal_ok, strict=True):
        expected = sample.decode("utf-8", "replace")
        assert got == expected, sample.hex()
        assert streamed == expected, sample.hex()
        assert ok is (expected == sample.decode("utf-8", "ignore")), sample.hex()


# ---------------------------------------------------------------------------
# TextDecoder: BOM handling
# ---------------------------------------------------------------------------

BOM = b"\xef\xbb\xbf"


@pytest.mark.parametrize(
    ("data", "options", "expected"),
    [
        (BOM + b"A", "{}", "A"),
        (BOM, "{}", ""),
        (BOM + BOM, "{}", "\ufeff"),
        (b"A" + BOM, "{}", "A\ufeff"),
        (BOM + b"A", "{ ignoreBOM: true }", "\ufeffA"),
        (BOM, "{ ignoreBOM: true }", "\ufeff"),
        (b"\xef\xbb", "{}", FFFD),
        (b"\xef\xbb\xbf", "{ fatal: true }", ""),
        # A replacement character is the first code point, so a later BOM stays.
        (b"\xff" + BOM, "{}", f"{FFFD}\ufeff"),
    ],
)
def test_decode_bom(mr: MiniRacer, data: bytes, options: str, expected: str) -> None:
    assert decode(mr, data, options) == expected


def test_decode_bom_across_calls(mr: MiniRacer) -> None:
    result = mr.execute(
        """(() => {
            const d = new TextDecoder();
            const out = [];
            // Split BOM in streaming mode is still stripped.
            out.push(d.decode(new Uint8Array([0xEF]), { stream: true }));
            out.push(d.decode(new Uint8Array([0xBB, 0xBF, 0x41]), { stream: true }));
            // A BOM later in the same stream is content.
            out.push(d.decode(new Uint8Array([0xEF, 0xBB, 0xBF])));
            // A new (non-streaming) call starts a new stream.
            out.push(d.decode(new Uint8Array([0xEF, 0xBB, 0xBF, 0x42])));
            out.push(d.decode(new Uint8Array([0xEF, 0xBB, 0xBF, 0x43])));
            const k = new TextDecoder('utf-8', { ignoreBOM: true });
            out.push(k.decode(new Uint8Array([0xEF, 0xBB]), { stream: true }));
            out.push(k.decode(new Uint8Array([0xBF])));
            return out;
        })()"""
    )
    assert result == ["", "A", "\ufeff", "B", "C", "", "\ufeff"]


# ---------------------------------------------------------------------------
# TextDecoder: streaming
# ---------------------------------------------------------------------------

STREAM_SAMPLE = "a\u00e9\u20ac\U0001f600z\U0010ffff".encode()


@pytest.mark.parametrize("split", range(len(STREAM_SAMPLE) + 1))
def test_decode_stream_split_anywhere(mr: MiniRacer, split: int) -> None:
    head, tail = STREAM_SAMPLE[:split], STREAM_SAMPLE[split:]
    result = mr.execute(
        f"""(() => {{
            const d = new TextDecoder('utf-8', {{ fatal: true }});
            return [d.decode({u8(head)}, {{ stream: true }}), d.decode({u8(tail)})];
        }})()"""
    )
    first, second = result
    assert first + second == STREAM_SAMPLE.decode()
    # Only whole characters are emitted by the first call.
    assert first == head.decode("utf-8", "ignore")


def test_decode_stream_one_byte_at_a_time(mr: MiniRacer) -> None:
    data = u8("\u20ac\U0001f600".encode())
    result = mr.execute(
        f"""(() => {{
            const d = new TextDecoder();
            return Array.from({data},
                              (b) => d.decode(new Uint8Array([b]), {{ stream: true }}))
                .concat([d.decode()]);
        }})()"""
    )
    assert result == ["", "", "\u20ac", "", "", "", "\U0001f600", ""]


@pytest.mark.parametrize(
    ("chunks", "expected"),
    [
        # Incomplete sequence at end of stream is flushed as one U+FFFD.
        ([b"\xe2\x82"], FFFD),
        ([b"\xe2", b"\x82"], FFFD),
        ([b"\xf0\x9f\x98"], FFFD),
        # Sequence interrupted in the next chunk.
        ([b"\xe2", b"A"], f"{FFFD}A"),
        ([b"\xe2\x82", b"\xe2\x82\xac"], f"{FFFD}\u20ac"),
        ([b"\xe0", b"\x80"], FFFD * 2),
        ([b"\xed", b"\xa0\x80"], FFFD * 3),
        ([b"\xf4", b"\x90"], FFFD * 2),
        ([b"", b"\xc3", b"", b"\xa9"], "\u00e9"),
    ],
)
def test_decode_stream_chunks(mr: MiniRacer, chunks: list[bytes], expected: str) -> None:
    calls = " + ".join(f"d.decode({u8(chunk)}, {{ stream: true }})" for chunk in chunks)
    result = mr.execute(f"(() => {{ const d = new TextDecoder(); return {calls} + d.decode(); }})()")
    assert result == expected


def test_decode_non_stream_call_resets_pending_bytes(mr: MiniRacer) -> None:
    result = mr.execute(
        """(() => {
            const d = new TextDecoder();
            const a = d.decode(new Uint8Array([0xE2, 0x82]), { stream: true });
            const b = d.decode(new Uint8Array([0x41]));
            const c = d.decode(new Uint8Array([0xAC]));
            return [a, b, c];
        })()"""
    )
    assert result == ["", f"{FFFD}A", FFFD]


@pytest.mark.parametrize("options", ["{ stream: 1 }", "{ stream: 'yes' }"])
def test_decode_stream_option_is_boolean_converted(mr: MiniRacer, options: str) -> None:
    head, tail = u8(b"\xc3"), u8(b"\xa9")
    result = mr.execute(
        f"(() => {{ const d = new TextDecoder();"
        f" return [d.decode({head}, {options}), d.decode({tail})]; }})()"
    )
    assert result == ["", "\u00e9"]


def test_decode_rejects_non_object_options(mr: MiniRacer) -> None:
    assert_type_error(mr, "new TextDecoder().decode(new Uint8Array(1), 1)")


# ---------------------------------------------------------------------------
# TextDecoder: input types
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("undefined", ""),
        ("new Uint8Array([104, 105]).buffer", "hi"),
        ("new ArrayBuffer(0)", ""),
        (
            "(() => { const s = new SharedArrayBuffer(3);"
            " new Uint8Array(s).set([0xE2, 0x82, 0xAC]); return s; })()",
            "\u20ac",
        ),
        (
            "(() => { const s = new SharedArrayBuffer(4);"
            " new Uint8Array(s).set([1, 104, 105, 2]); return new Uint8Array(s, 1, 2); })()",
            "hi",
        ),
        ("new Uint8Array([0, 0, 104, 105, 33]).subarray(2, 4)", "hi"),
        ("new Uint8Array([0xE2, 0x82, 0xAC, 0xE2, 0x82, 0xAC]).subarray(3)", "\u20ac"),
        ("new Uint8Array([0xE2, 0x82, 0xAC, 0x41]).subarray(1, 3)", FFFD * 2),
        ("new Uint8Array(new Uint8Array([9, 9, 104, 105, 9]).buffer, 2, 2)", "hi"),
        ("new DataView(new Uint8Array([0, 104, 105, 0]).buffer, 1, 2)", "hi"),
        ("new DataView(new Uint8Array([0, 104, 105, 0]).buffer, 4)", ""),
        ("new Int8Array([-30, -126, -84])", "\u20ac"),
        ("new Uint8ClampedArray([104, 105])", "hi"),
        ("new Uint16Array([0x6968])", "hi"),
        ("new Uint32Array([0x21216968])", "hi!!"),
        ("new Float64Array(new Uint8Array([104,105,106,107,108,109,110,111]).buffer)", "hijklmno"),
        ("new BigUint64Array(new Uint8Array([104,105,106,107,108,109,110,111]).buffer)", "hijklmno"),
        ("new Uint16Array(new Uint8Array([0, 104, 105, 106, 107]).buffer, 2, 1)", "ij"),
        (
            "(() => { const b = new Uint8Array([65]).buffer; b.transfer(); return b; })()",
            "",
        ),
        (
            "(() => { const b = new Uint8Array([65]).buffer; const v = new Uint8Array(b);"
            " b.transfer(); return v; })()",
            "",
        ),
    ],
)
def test_decode_input_types(mr: MiniRacer, expression: str, expected: str) -> None:
    assert mr.execute(f"new TextDecoder().decode({expression})") == expected


def test_decode_without_arguments(mr: MiniRacer) -> None:
    assert mr.execute("new TextDecoder().decode()") == ""


def test_decode_does_not_modify_input(mr: MiniRacer) -> None:
    result = mr.execute(
        """(() => {
            const bytes = new Uint8Array([0xEF, 0xBB, 0xBF, 0xE2, 0x82, 0xAC, 0xFF]);
            const text = new TextDecoder().decode(bytes);
            return [text, Array.from(bytes)];
        })()"""
    )
    assert result == [f"\u20ac{FFFD}", [0xEF, 0xBB, 0xBF, 0xE2, 0x82, 0xAC, 0xFF]]


@pytest.mark.parametrize(
    "expression",
    ["null", "'abc'", "42", "[104, 105]", "{}", "{ length: 2, 0: 104, 1: 105 }", "Symbol()"],
)
def test_decode_rejects_non_buffer_input(mr: MiniRacer, expression: str) -> None:
    assert_type_error(mr, f"new TextDecoder().decode({expression})")


# ---------------------------------------------------------------------------
# Round trips, chunk boundaries and large inputs
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("prefix", [8189, 8190, 8191, 8192, 8193])
def test_decode_across_internal_chunk_boundary(mr: MiniRacer, prefix: int) -> None:
    text = "a" * prefix + "\U0001f600\u20ac" * 3 + "\u00e9" * 8200 + "\U0010ffff"
    result = mr.execute(f"new TextDecoder().decode(new TextEncoder().encode({js(text)})) === {js(text)}")
    assert result is True
    assert decode(mr, text.encode()) == text


def test_round_trip_every_code_point_class(mr: MiniRacer) -> None:
    result = mr.execute(
        """(() => {
            let s = '';
            for (let cp = 0; cp <= 0x10FFFF; cp += (cp < 0x800 ? 1 : 97)) {
                if (cp >= 0xD800 && cp <= 0xDFFF) continue;
                s += String.fromCodePoint(cp);
            }
            const bytes = new TextEncoder().encode(s);
            const back = new TextDecoder('utf-8', { fatal: true }).decode(bytes);
            return [back === s, s.length, bytes.length];
        })()"""
    )
    same, length, size = result
    assert same is True
    assert length > 10000
    assert size > length


def test_large_decode_is_fast(mr: MiniRacer) -> None:
    result = mr.execute(
        """(() => {
            const unit = 'h\\u00e9llo \\u20ac w\\u00f6rld \\ud83d\\ude00 ';  // 23 bytes
            const text = unit.repeat(Math.ceil(10 * 1024 * 1024 / 23));
            const bytes = new TextEncoder().encode(text);
            const start = Date.now();
            const decoded = new TextDecoder().decode(bytes);
            const elapsed = Date.now() - start;
            return { size: bytes.length, elapsed, same: decoded === text };
        })()"""
    )
    assert result["size"] >= 10 * 1024 * 1024
    assert result["same"] is True
    assert result["elapsed"] < 1000, result


def test_large_ascii_encode_and_decode(mr: MiniRacer) -> None:
    result = mr.execute(
        """(() => {
            const text = 'The quick brown fox. '.repeat(500000);
            const start = Date.now();
            const bytes = new TextEncoder().encode(text);
            const decoded = new TextDecoder('utf-8', { fatal: true }).decode(bytes);
            return { size: bytes.length, length: text.length,
                     same: decoded === text, elapsed: Date.now() - start };
        })()"""
    )
    assert result["size"] == result["length"] == 10_500_000
    assert result["same"] is True
    assert result["elapsed"] < 2000, result


def test_large_streaming_decode(mr: MiniRacer) -> None:
    result = mr.execute(
        """(() => {
            const text = 'ab\\u00e9\\u20ac\\ud83d\\ude00'.repeat(1 << 20);
            const bytes = new TextEncoder().encode(text);
            const d = new TextDecoder();
            let out = '';
            // Odd chunk size so multi-byte characters straddle chunk edges.
            for (let i = 0; i < bytes.length; i += 65537) {
                out += d.decode(bytes.subarray(i, i + 65537), { stream: true });
            }
            out += d.decode();
            return [bytes.length, out === text];
        })()"""
    )
    assert result == [11 * (1 << 20), True]


# ---------------------------------------------------------------------------
# btoa / atob
# ---------------------------------------------------------------------------

ALL_BYTES = bytes(range(256))


def test_btoa_atob_all_byte_values(mr: MiniRacer) -> None:
    result = mr.execute(
        """(() => {
            let s = '';
            for (let i = 0; i < 256; i++) s += String.fromCharCode(i);
            const singles = [];
            for (let i = 0; i < 256; i++) {
                const c = String.fromCharCode(i);
                singles.push([btoa(c), atob(btoa(c)) === c]);
            }
            return { encoded: btoa(s), back: atob(btoa(s)) === s, singles };
        })()"""
    )
    assert result["encoded"] == base64.b64encode(ALL_BYTES).decode("ascii")
    assert result["back"] is True
    for value, (encoded, same) in enumerate(result["singles"]):
        assert encoded == base64.b64encode(bytes([value])).decode("ascii")
        assert same is True
    decoded = mr.execute(f"atob({js(base64.b64encode(ALL_BYTES).decode())})")
    assert decoded == ALL_BYTES.decode("latin-1")


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ("", ""),
        ("a", "YQ=="),
        ("ab", "YWI="),
        ("abc", "YWJj"),
        ("abcd", "YWJjZA=="),
        ("Hello, world!", "SGVsbG8sIHdvcmxkIQ=="),
        ("\x00", "AA=="),
        ("\x00\x00\x00", "AAAA"),
        ("\xff\xff\xff", "////"),
        ("\xfb\xff\xbf", "+/+/"),
        ("\xe9t\xe9", "6XTp"),
    ],
)
def test_btoa_known_answers(mr: MiniRacer, data: str, expected: str) -> None:
    assert mr.execute(f"btoa({js(data)})") == expected


@pytest.mark.parametrize(
    ("argument", "expected"),
    [("null", "bnVsbA=="), ("undefined", "dW5kZWZpbmVk"), ("123", "MTIz")],
)
def test_btoa_argument_conversion(mr: MiniRacer, argument: str, expected: str) -> None:
    assert mr.execute(f"btoa({argument})") == expected


@pytest.mark.parametrize(
    "data",
    [
        "\u0100",
        "a\u0100",
        "ab\u0100",
        "abc\u0100",
        "abcd\u0100",
        "\u20ac",
        "\U0001f600",
        "\ud800",
        "\uffff",
    ],
)
def test_btoa_rejects_non_latin1(mr: MiniRacer, data: str) -> None:
    assert_invalid_character(mr, f"btoa({js(data)})")


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ("", ""),
        ("YQ", "a"),
        ("YQ==", "a"),
        (" Y Q = = ", "a"),
        ("YWI", "ab"),
        ("YWI=", "ab"),
        ("YWJj", "abc"),
        ("YWJjZA", "abcd"),
        ("\tYW\nJj\f\r ZA==", "abcd"),
        ("    ", ""),
        ("AAAA", "\x00\x00\x00"),
        ("+/+/", "\xfb\xff\xbf"),
        ("/w==", "\xff"),
        ("/w", "\xff"),
        # Non-zero discarded bits are accepted by forgiving-base64.
        ("YR", "a"),
        ("YWJ", "ab"),
        ("SGVsbG8sIHdvcmxkIQ==", "Hello, world!"),
    ],
)
def test_atob_known_answers(mr: MiniRacer, data: str, expected: str) -> None:
    assert mr.execute(f"atob({js(data)})") == expected


@pytest.mark.parametrize(
    "data",
    [
        "Y",
        "YQ=",
        "YQ===",
        "Y===",
        "=",
        "==",
        "===",
        "====",
        "YQ==YQ==",
        "YQ=a",
        "YQ= =a",
        "Y=Q=",
        "abcde",
        "YQ\u00a0",  # NBSP is not ASCII whitespace
        "YQ\v",  # neither is VT
        "Y-Q_",  # base64url alphabet is not accepted
        "YQ!",
        "YW\u0100J",
        "\U0001f600",
    ],
)
def test_atob_rejects_invalid(mr: MiniRacer, data: str) -> None:
    assert_invalid_character(mr, f"atob({js(data)})")


def test_atob_argument_conversion(mr: MiniRacer) -> None:
    assert mr.execute("atob(null)") == "\x9e\xe9e"
    assert_invalid_character(mr, "atob(undefined)")


@pytest.mark.parametrize("function", ["atob", "btoa"])
def test_base64_functions_require_an_argument(mr: MiniRacer, function: str) -> None:
    assert_type_error(mr, f"{function}()")
    assert_type_error(mr, f"{function}(Symbol())")


def test_base64_random_round_trips(mr: MiniRacer) -> None:
    rng = random.Random(4648)
    blobs = [bytes(rng.randrange(256) for _ in range(rng.randint(0, 40))) for _ in range(200)]
    latin1 = [blob.decode("latin-1") for blob in blobs]
    encoded = [base64.b64encode(blob).decode("ascii") for blob in blobs]
    # Unpadded and whitespace-sprinkled forms must decode the same.
    relaxed = [
        "".join(ch + rng.choice(["", "", " ", "\n", "\t", "\r\n", "\f"]) for ch in text)
        for text in (e.rstrip("=") for e in encoded)
    ]
    result = mr.execute(
        f"""(() => {{
            const latin1 = {js(latin1)};
            const relaxed = {js(relaxed)};
            return {{
                encoded: latin1.map((s) => btoa(s)),
                decoded: latin1.map((s) => atob(btoa(s)) === s),
                relaxed: relaxed.map((s, i) => atob(s) === latin1[i]),
            }};
        }})()"""
    )
    assert result["encoded"] == encoded
    assert all(result["decoded"])
    assert all(result["relaxed"])


def test_large_base64_round_trip(mr: MiniRacer) -> None:
    result = mr.execute(
        """(() => {
            let s = '';
            for (let i = 0; i < 256; i++) s += String.fromCharCode(i);
            s = s.repeat(12289);  // ~3 MB, not a multiple of 3
            const encoded = btoa(s);
            return [s.length, encoded.length, atob(encoded) === s,
                    encoded.slice(0, 8), encoded.slice(-4)];
        })()"""
    )
    length = 256 * 12289
    expected = base64.b64encode(ALL_BYTES * 12289).decode("ascii")
    assert result == [length, len(expected), True, expected[:8], expected[-4:]]


# ---------------------------------------------------------------------------
# DOMException
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("arguments", "name", "message", "code"),
    [
        ("", "Error", "", 0),
        ("'boom'", "Error", "boom", 0),
        ("'bad char', 'InvalidCharacterError'", "InvalidCharacterError", "bad char", 5),
        ("undefined, 'InvalidCharacterError'", "InvalidCharacterError", "", 5),
        ("'x', 'AbortError'", "AbortError", "x", 20),
        ("'x', 'SomethingElse'", "SomethingElse", "x", 0),
        ("42, 7", "7", "42", 0),
    ],
)
def test_dom_exception(mr: MiniRacer, arguments: str, name: str, message: str, code: int) -> None:
    result = mr.execute(
        f"""(() => {{
            const e = new DOMException({arguments});
            return {{ name: e.name, message: e.message, code: e.code,
                      isError: e instanceof Error, string: String(e),
                      stack: typeof e.stack }};
        }})()"""
    )
    assert result == {
        "name": name,
        "message": message,
        "code": code,
        "isError": True,
        "string": f"{name}: {message}" if message else name,
        "stack": "string",
    }


def test_dom_exception_thrown_by_atob(mr: MiniRacer) -> None:
    error = thrown(mr, "atob('*')")
    assert error is not None
    assert error["type"] == "DOMException"
    assert error["name"] == "InvalidCharacterError"
    assert error["code"] == 5
    assert error["message"]


# ---------------------------------------------------------------------------
# Robustness against user code that tampers with built-ins
# ---------------------------------------------------------------------------


def test_survives_monkey_patched_builtins(mr: MiniRacer) -> None:
    result = mr.execute(
        """(() => {
            const toArray = Array.from;
            const encoder = new TextEncoder();
            const decoder = new TextDecoder();
            const TA = Object.getPrototypeOf(Uint8Array.prototype);
            const bomView = new DataView(new Int8Array([-17, -69, -65, 65]).buffer);

            // Sabotage everything an implementation might look up lazily.
            String.prototype.charCodeAt = () => 0;
            String.prototype.codePointAt = () => 0;
            String.prototype.slice = () => 'sliced';
            String.prototype.toLowerCase = () => 'nope';
            String.fromCharCode = () => 'X';
            String.fromCodePoint = () => 'X';
            Function.prototype.call = () => 'call';
            Function.prototype.apply = () => 'apply';
            Reflect.apply = () => 'apply';
            for (const key of ['length', 'byteLength', 'byteOffset', 'buffer']) {
                Object.defineProperty(TA, key, { get() { return 0; }, configurable: true });
            }
            Object.defineProperty(DataView.prototype, 'byteLength',
                                  { get() { return 0; }, configurable: true });
            TA.set = () => {};
            TA.subarray = () => new Uint16Array(0);
            TA.slice = () => new Uint16Array(0);
            ArrayBuffer.isView = () => false;
            Array.prototype.join = () => 'join';
            Array.prototype.push = () => 0;
            Object.defineProperty(Array.prototype, '0',
                                  { set() { throw new Error('setter'); }, configurable: true });
            Object.defineProperty(Object.prototype, 'value',
                                  { get() { return 0; }, configurable: true });
            globalThis.Uint8Array = function () { throw new Error('Uint8Array'); };
            globalThis.Uint16Array = function () { throw new Error('Uint16Array'); };
            globalThis.ArrayBuffer = function () { throw new Error('ArrayBuffer'); };

            const text = 'h\\u00e9llo \\u20ac \\ud83d\\ude00 '.repeat(1000);
            const bytes = encoder.encode(text);
            const dest = new (Object.getPrototypeOf(bytes).constructor)(5);
            const into = encoder.encodeInto('\\u00e9\\u20ac', dest);
            const fresh = new TextDecoder('UTF-8');
            return {
                head: toArray(bytes).slice(0, 3),
                roundTrip: decoder.decode(bytes) === text,
                bom: fresh.decode(bomView),
                into: [into.read, into.written],
                btoa: btoa('\\u00ff\\u00fe\\u00fd\\u00fc'),
                atob: atob(' //79/A== ') === '\\u00ff\\u00fe\\u00fd\\u00fc',
                fresh: new TextEncoder().encode('\\u20ac')[2],
            };
        })()"""
    )
    assert result == {
        "head": [0x68, 0xC3, 0xA9],
        "roundTrip": True,
        "bom": "A",
        "into": [2, 5],
        "btoa": "//79/A==",
        "atob": True,
        "fresh": 0xAC,
    }
