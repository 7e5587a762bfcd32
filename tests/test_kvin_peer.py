"""The KVIN peer itself (node running kvin@9.0.0): its protocol, its corpus, and kvin's real forms."""

from __future__ import annotations

import json
from pathlib import Path

import kvin_peer as peer_module
import pytest
from kvin_peer import KvinPeer, KvinPeerError

SEED = 20240917
COUNT = 1000


@pytest.fixture(scope="module")
def corpus(kvin_peer: KvinPeer) -> list[str]:
    return kvin_peer.corpus(SEED, COUNT)


def test_greeting_names_kvin_9(kvin_peer: KvinPeer) -> None:
    assert kvin_peer.kvin_version == "9.0.0"
    assert kvin_peer.node_version.startswith("v")


# What kvin@9.0.0 really writes: the forms a codec has to read and write. Each text here was
# produced by kvin, not written by hand.
KVIN_FORMS = [
    ("[1,2,3]", '{"_serializeVerId":"v9","what":{"arr":[1,2,3]}}'),
    ("-0", '{"_serializeVerId":"v9","what":{"json":"-0"}}'),
    ("[-0, 1]", '{"_serializeVerId":"v9","what":{"arr":[0,1]}}'),
    ("{a: -0}", '{"_serializeVerId":"v9","what":{"raw":{"a":0}}}'),
    (
        "{a: -0, d: new Date(0)}",
        '{"_serializeVerId":"v9","what":{"ctr":0,"ps":{"a":{"json":"-0"},"d":{"ctr":19,"ps":{},"arg":"1970-01-01T00:00:00.000Z"}}}}',
    ),
    (
        "{tiny: -5e-324, d: new Date(0)}",
        '{"_serializeVerId":"v9","what":{"ctr":0,"ps":{"tiny":{"json":"-0"},"d":{"ctr":19,"ps":{},"arg":"1970-01-01T00:00:00.000Z"}}}}',
    ),
    ("NaN", '{"_serializeVerId":"v9","what":{"number":"NaN"}}'),
    (
        "[NaN, Infinity, -Infinity]",
        '{"_serializeVerId":"v9","what":{"arr":[{"number":"NaN"},{"number":"Infinity"},{"number":"-Infinity"}]}}',
    ),
    ("{b: 1n}", '{"_serializeVerId":"v9","what":{"ctr":0,"ps":{"b":{"bigint":"1"}}}}'),
    ("[1n, 2n]", '{"_serializeVerId":"v9","what":{"arr":[{"bigint":"1"},{"bigint":"2"}]}}'),
    ("[1, , 3]", '{"_serializeVerId":"v9","what":{"arr":[1],"ps":{"0":1,"2":3},"len":3}}'),
    (
        "[ , , 'x', 'y', , ]",
        '{"_serializeVerId":"v9","what":{"arr":[],"isl":[{"@":2,"arr":["x","y"]}],"len":5}}',
    ),
    (
        "Object.assign([1, 2], {name: 'n'})",
        '{"_serializeVerId":"v9","what":{"arr":[1,2],"isl":[{"@":0,"arr":[1,2]}],"ps":{"name":"n"}}}',
    ),
    (
        "[7, 7, 7, 7, 7, 7, 7, 7, 'x', 'x']",
        '{"_serializeVerId":"v9","what":{"arr":[7,{"lst":7},"x",{"lst":1}]}}',
    ),
    (
        "new Map([[1, 'one'], [{k: 1}, [2]], [NaN, undefined]])",
        '{"_serializeVerId":"v9","what":{"mapKeys":{"arr":[1,{"raw":{"k":1}},{"number":"NaN"}]},"mapVals":{"arr":["one",{"arr":[2]},{"undefined":true}]}}}',
    ),
    (
        "new Set([1, 'a', {x: 1}, 1n])",
        '{"_serializeVerId":"v9","what":{"set":{"arr":[1,"a",{"raw":{"x":1}},{"bigint":"1"}]}}}',
    ),
    (
        "(() => { const e = new TypeError('bad'); e.code = 'E_BAD'; e.stack = 'TypeError: bad\\n    at f (x.js:1:1)'; e.extra = 5; return e })()",
        '{"_serializeVerId":"v9","what":{"ctr":"Error","ps":{"code":"E_BAD","stack":"TypeError: bad\\n    at f (x.js:1:1)","extra":5},"arg":"bad"}}',
    ),
    (
        "[new Number(-0), new Number(1.5), new String('s'), new Boolean(true), new Boolean(false)]",
        '{"_serializeVerId":"v9","what":{"arr":[{"ctr":11,"arg":"0"},{"ctr":11,"arg":"1.5"},{"ctr":12,"arg":"s"},{"ctr":13,"arg":"true"},{"ctr":13,"arg":"false"}]}}',
    ),
    ("new Date(1e12)", '{"_serializeVerId":"v9","what":{"ctr":19,"ps":{},"arg":"2001-09-09T01:46:40.000Z"}}'),
    ("/a\\/b[/]/gimsuy", '{"_serializeVerId":"v9","what":{"ctr":10,"args":["a\\\\/b[/]","gimsuy"]}}'),
    (
        "new DataView(new Uint8Array([1, 2, 3, 0, 0, 0, 0, 0, 0, 0, 0, 250]).buffer)",
        '{"_serializeVerId":"v9","what":{"ctr":"DataView","isl8":[{"0":"\\u0001\\u0002\\u0003","@":0},{"0":"ú","@":11}],"len":12}}',
    ),
    ("Buffer.from('hé')", '{"_serializeVerId":"v9","what":{"ctr":"Buffer","ab8":"hÃ©"}}'),
    (
        "new Uint8ClampedArray([1, 2, 300, -5])",
        '{"_serializeVerId":"v9","what":{"ctr":3,"ab8":"\\u0001\\u0002ÿ\\u0000"}}',
    ),
    ("new Float64Array(8)", '{"_serializeVerId":"v9","what":{"ctr":9,"isl8":[],"len":64}}'),
    (
        "(() => { const x = {p: new Date(0)}; return [x, x, x] })()",
        '{"_serializeVerId":"v9","what":{"arr":[{"ctr":0,"ps":{"p":{"ctr":19,"ps":{},"arg":"1970-01-01T00:00:00.000Z"}}},{"seen":1},{"lst":1}]}}',
    ),
    (
        "(() => { const o = {name: 'o'}; o.self = o; return o })()",
        '{"_serializeVerId":"v9","what":{"ctr":0,"ps":{"name":{"raw":"o"},"self":{"seen":0}}}}',
    ),
    (
        "(() => { const a = [1]; a.push(a); return a })()",
        '{"_serializeVerId":"v9","what":{"arr":[1,{"seen":0}]}}',
    ),
    (
        "(() => { const m = new Map(); m.set('me', m); m.set('wrap', {m}); return m })()",
        '{"_serializeVerId":"v9","what":{"mapKeys":{"arr":["me","wrap"]},"mapVals":{"arr":[{"seen":0},{"ctr":0,"ps":{"m":{"seen":0}}}]}}}',
    ),
]


@pytest.mark.parametrize(("expr", "text"), KVIN_FORMS, ids=[expr[:40] for expr, _ in KVIN_FORMS])
def test_serialize_gives_kvins_form(kvin_peer: KvinPeer, expr: str, text: str) -> None:
    assert kvin_peer.serialize(expr) == text


def test_deserialize_equals(kvin_peer: KvinPeer) -> None:
    neg_zero = '{"_serializeVerId":"v9","what":{"json":"-0"}}'
    assert kvin_peer.deserialize_equals(neg_zero, "-0") == (True, "-0")
    # isDeepStrictEqual tells -0 from 0.
    assert kvin_peer.deserialize_equals(neg_zero, "0") == (False, "-0")
    equal, shown = kvin_peer.deserialize_equals(
        kvin_peer.serialize("new Map([[1, {a: [2n]}]])"), "new Map([[1, {a: [2n]}]])"
    )
    assert equal, shown


def test_kvin_loses_boolean_false_and_error_classes(kvin_peer: KvinPeer) -> None:
    """Known kvin@9 losses, which the corpus reports through kvinSelfEqual."""
    assert kvin_peer.deserialize_equals(kvin_peer.serialize("new Boolean(false)"), "new Boolean(true)")[0]
    text = kvin_peer.serialize("(() => { const e = new TypeError('t'); delete e.stack; return e })()")
    assert kvin_peer.deserialize_equals(
        text, "(() => { const e = new Error('t'); delete e.stack; return e })()"
    )[0]


def test_corpus_is_deterministic(kvin_peer: KvinPeer, corpus: list[str]) -> None:
    assert len(corpus) == COUNT
    assert all(json.loads(item)["_serializeVerId"] == "v9" for item in corpus)
    assert kvin_peer.corpus(SEED, COUNT) == corpus
    assert kvin_peer.corpus(SEED, 10) == corpus[:10]
    assert kvin_peer.corpus(SEED + 1, 10) != corpus[:10]
    with KvinPeer() as other:
        assert other.corpus(SEED, COUNT) == corpus


def test_corpus_covers_every_feature(kvin_peer: KvinPeer, corpus: list[str]) -> None:
    results = kvin_peer.check_values(SEED, COUNT, corpus)
    tags = {tag for result in results for tag in result["tags"]}
    wanted = {
        "neg0", "NaN", "Infinity", "extreme-exponent", "bigint", "null", "undefined",
        "string-NUL", "string-astral", "string-lone-surrogate",
        "array-short", "array-dense8", "array-runs", "array-long-repeats", "array-sparse",
        "array-named-props", "array-huge-sparse", "object",
        "typed-Int8Array", "typed-Uint8Array", "typed-Uint8ClampedArray", "typed-Int16Array",
        "typed-Uint16Array", "typed-Int32Array", "typed-Uint32Array", "typed-Float32Array",
        "typed-Float64Array", "typed-BigInt64Array", "typed-BigUint64Array", "typed-subarray",
        "bytes-mostly-zero", "bytes-zero", "NaN-payload", "DataView", "DataView-window", "Buffer",
        "Date", "RegExp", "Map", "Map-object-key", "Set",
        "Error-Error", "Error-TypeError", "Error-RangeError", "Error-SyntaxError",
        "Error-ReferenceError", "Error-EvalError", "Error-URIError", "Error-AggregateError",
        "Error-code", "Error-props", "Error-no-stack",
        "boxed-Number", "boxed-String", "boxed-Boolean-true", "boxed-Boolean-false",
        "shared", "cycle",
    }  # fmt: skip
    assert wanted <= tags, sorted(wanted - tags)
    forms = "".join(corpus)
    for form in ('"isl8"', '"ab8"', '"lst"', '"isl"', '"seen"', '"len"', '"mapKeys"', '"set"', '"json":"-0"'):
        assert form in forms, form


def test_check_of_corpus_against_itself(kvin_peer: KvinPeer, corpus: list[str]) -> None:
    checked = kvin_peer.check([(item, item) for item in corpus])
    values = kvin_peer.check_values(SEED, COUNT, corpus)
    assert len(checked) == len(values) == COUNT
    for index, (check, value) in enumerate(zip(checked, values, strict=True)):
        # With T = K, check_values is kvin's own round trip.
        assert value["equal"] == value["kvinSelfEqual"], (index, value)
        if value["kvinSelfEqual"]:
            assert check == {"equal": True}, (index, check)
        elif not check["equal"]:
            # Only where kvin cannot read its own text.
            assert check["side"] == "K" and "kvinSelfError" in value, (index, check, value)
    # Most of the corpus survives kvin's own round trip; the rest are kvin's known losses.
    assert sum(value["kvinSelfEqual"] for value in values) > COUNT // 2


def test_check_reports_differences(kvin_peer: KvinPeer) -> None:
    neg_zero = kvin_peer.serialize("-0")
    zero = kvin_peer.serialize("0")
    results = kvin_peer.check([(neg_zero, neg_zero), (neg_zero, zero), (neg_zero, "{not kvin"), ("[]", zero)])
    assert results[0] == {"equal": True}
    assert results[1] == {"equal": False, "expected": "-0", "actual": "0"}
    assert results[2]["equal"] is False and results[2]["side"] == "T" and results[2]["error"]
    assert results[3]["equal"] is False and results[3]["side"] == "K"


def test_check_values_against_originals(kvin_peer: KvinPeer, corpus: list[str]) -> None:
    texts = corpus[:5]
    texts[0] = texts[1]
    results = kvin_peer.check_values(SEED, 5, texts)
    assert results[1]["equal"] == results[1]["kvinSelfEqual"]
    if corpus[0] != corpus[1]:
        assert results[0]["equal"] is False
        assert "expected" in results[0] or "error" in results[0]
    with pytest.raises(KvinPeerError, match="texts"):
        kvin_peer.check_values(SEED, 5, texts[:4])


def test_malformed_requests_do_not_kill_the_peer(kvin_peer: KvinPeer) -> None:
    bad_lines = [
        "this is not JSON",
        "[1, 2]",
        "null",
        '{"no": "op"}',
        '{"op": "launch"}',
        '{"op": "corpus", "seed": -1, "count": 3}',
        '{"op": "corpus", "seed": 1, "count": "3"}',
        '{"op": "check", "pairs": "x"}',
        '{"op": "check", "pairs": [["only one"]]}',
        '{"op": "serialize", "expr": "(() => { throw new Error(\\"boom\\") })()"}',
        '{"op": "serialize", "expr": "[1n, 2n, , 3n]"}',
        '{"op": "serialize", "expr": ")"}',
        '{"op": "deserialize", "text": "{}", "expr": "1"}',
        '{"op": "deserialize", "text": 5, "expr": "1"}',
        "",
    ]
    for line in bad_lines:
        reply = kvin_peer.send_line(line)
        assert reply["ok"] is False, (line, reply)
        assert isinstance(reply["error"], str) and reply["error"], (line, reply)
    assert "boom" in kvin_peer.send_line(bad_lines[9])["error"]
    with pytest.raises(KvinPeerError, match="unknown op"):
        kvin_peer.request("launch")
    assert kvin_peer.serialize("1") == '{"_serializeVerId":"v9","what":1}'


def test_missing_kvin_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(peer_module, "KVIN_DIR", tmp_path / "kvin")
    with pytest.raises(RuntimeError, match=r"npm ci --prefix tests/node"):
        KvinPeer()


def test_missing_node_is_a_clear_error() -> None:
    with pytest.raises(RuntimeError, match=r"not on PATH.*npm ci --prefix tests/node"):
        KvinPeer(node="no-such-node-binary-for-kvin-peer")
