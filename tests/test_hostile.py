"""Hostile work functions: each is contained to its own slice, and the run goes on."""

from __future__ import annotations

import pytest

from dcp_worker.errors import MemoryLimitError, SliceTimeoutError, WorkFunctionException
from dcp_worker.localexec import run

MEMORY_MB = 128


def run_among_neighbours(body: str, *, slice_timeout: float = 3.0) -> list[object]:
    """Slice 2 runs ``body``; slices 1 and 3 return their datum."""
    source = f"async function (x) {{ progress(); if (x !== 2) return x; {body} }}"
    return run(source, [1, 2, 3], cores=1, slice_timeout=slice_timeout, memory_mb=MEMORY_MB)


def assert_contained(results: list[object], error_type: type[Exception]) -> Exception:
    assert results[0] == 1
    assert results[2] == 3
    error = results[1]
    assert isinstance(error, error_type), error
    return error


def test_infinite_loop_times_out() -> None:
    error = assert_contained(run_among_neighbours("for (;;) {}", slice_timeout=1), SliceTimeoutError)
    assert "1 s" in str(error)


def test_spin_after_await_times_out() -> None:
    results = run_among_neighbours("await null; for (;;) {}", slice_timeout=1)
    assert_contained(results, SliceTimeoutError)


def test_promise_that_never_settles_times_out() -> None:
    results = run_among_neighbours("await new Promise(() => {});", slice_timeout=1)
    assert_contained(results, SliceTimeoutError)


def test_endless_interval_times_out() -> None:
    results = run_among_neighbours("setInterval(() => {}, 0); await new Promise(() => {});", slice_timeout=1)
    assert_contained(results, SliceTimeoutError)


@pytest.mark.parametrize(
    "bomb",
    [
        pytest.param("const a = []; for (;;) a.push({ n: Math.random(), s: [1, 2, 3] });", id="heap"),
        pytest.param("const a = []; for (;;) a.push(new ArrayBuffer(16 << 20));", id="array-buffer"),
        pytest.param("const b = new ArrayBuffer(8 * 2 ** 30); return b.byteLength;", id="one-huge-buffer"),
        pytest.param(
            "const m = new WebAssembly.Memory({ initial: 1 }); for (;;) m.grow(16);", id="wasm-memory"
        ),
        pytest.param(
            "const ms = []; for (;;) ms.push(new WebAssembly.Memory({ initial: 1000 }));", id="wasm-memories"
        ),
        pytest.param("let s = 'x'; for (;;) s += s;", id="string"),
    ],
)
def test_memory_bombs_fail_only_their_slice(bomb: str) -> None:
    results = run_among_neighbours(bomb, slice_timeout=60)
    assert results[0] == 1 and results[2] == 3
    error = results[1]
    # A string bomb hits V8's maximum string length before any memory limit.
    if "s += s" in bomb:
        assert isinstance(error, WorkFunctionException) and error.name == "RangeError"
        return
    assert isinstance(error, MemoryLimitError), error
    assert f"{MEMORY_MB} MB" in error.message


def test_memory_bomb_that_catches_its_error_still_cannot_grow() -> None:
    source = """function () {
      progress();
      const kept = [];
      try { for (;;) kept.push(new ArrayBuffer(16 << 20)); } catch (e) { return [e.name, kept.length]; }
    }"""
    [result] = run(source, [0], memory_mb=MEMORY_MB)
    if isinstance(result, MemoryLimitError):
        return  # V8 may abort outright; either way the cap held
    name, count = result
    assert name == "RangeError"
    assert count * 16 <= MEMORY_MB + 64


def test_stack_overflow_is_a_catchable_error() -> None:
    results = run_among_neighbours("const f = (n) => f(n + 1) + 1; return f(0);")
    error = assert_contained(results, WorkFunctionException)
    assert isinstance(error, WorkFunctionException)
    assert error.name == "RangeError"
    assert "call stack" in error.message


def test_sandbox_is_replaced_after_a_timeout() -> None:
    source = """function (x) {
      progress();
      globalThis.seen = (globalThis.seen || 0) + 1;
      if (x === 2) for (;;) {}
      return globalThis.seen;
    }"""
    results = run(source, [1, 2, 3], cores=1, slice_timeout=1)
    assert results[0] == 1
    assert isinstance(results[1], SliceTimeoutError)
    assert results[2] == 1, "slice 3 should run in a fresh sandbox"


HOST_PROBES = {
    "process": "typeof process",
    "require of a host module": "(() => { try { require('fs'); return 'reachable'; } catch (e) { return e.message; } })()",
    "dynamic import": "(async () => { try { await import('fs'); return 'reachable'; } catch (e) { return e.name; } })()",
    "Function constructor": "typeof Function('return this')().process",
    "constructor chain": "(() => {}).constructor.constructor('return typeof process')()",
    "Python objects": "Object.getOwnPropertyNames(globalThis).filter((n) => /py|python|racer/i.test(n)).join()",
}


@pytest.mark.parametrize("name", HOST_PROBES)
def test_host_is_unreachable(name: str) -> None:
    [result] = run(f"async function () {{ progress(); return await ({HOST_PROBES[name]}); }}", [0])
    assert result in {
        "undefined",
        "",
        "Module 'fs' is not available.",
        "SyntaxError",
        "TypeError",
        "Error",
    }, result


def test_globals_are_the_documented_ones() -> None:
    source = "function () { progress(); return Object.getOwnPropertyNames(globalThis); }"
    [names] = run(source, [0])
    web = {
        "console",
        "progress",
        "work",
        "require",
        "module",
        "setTimeout",
        "setInterval",
        "setImmediate",
        "clearTimeout",
        "clearInterval",
        "clearImmediate",
        "queueMicrotask",
        "TextEncoder",
        "TextDecoder",
        "atob",
        "btoa",
        "DOMException",
    }
    assert web <= set(names)
    unexpected = {
        name
        for name in names
        if name not in web
        and not name[0].isupper()
        and name
        not in {
            "globalThis",
            "undefined",
            "NaN",
            "Infinity",
            "eval",
            "isFinite",
            "isNaN",
            "parseFloat",
            "parseInt",
            "decodeURI",
            "decodeURIComponent",
            "encodeURI",
            "encodeURIComponent",
            "escape",
            "unescape",
            "__dcpHost",
            "__timer_manager",
        }
    }
    assert unexpected == set()


# A job's own toJSON on the built-in prototypes must not rewrite what the runtime tells its host.
TAMPERED_JSON = """
  Object.prototype.toJSON = function () { return 'spoiled'; };
  Object.defineProperty(Array.prototype, 'toJSON', { value: () => 'spoiled' });
  Object.setPrototypeOf(Array.prototype, { toJSON: () => 'spoiled' });
"""


def test_tampering_with_to_json_does_not_spoil_reports() -> None:
    source = f"""function (x) {{
      progress();
      if (x === 2) {{ {TAMPERED_JSON} }}
      console.log('slice', x);
      work.emit('seen', {{ x: x, list: [x, 'y'] }});
      return {{ x: x, list: [x, null, 'z'] }};
    }}"""
    lines: list[tuple[int, str]] = []
    results = run(source, [1, 2, 3], cores=1, on_console=lambda n, level, text: lines.append((n, text)))
    # The job's values follow its own toJSON, as JSON.stringify would have them (slice 3 shares
    # slice 2's sandbox); the runtime's report around them does not.
    assert results == [{"x": 1, "list": [1, None, "z"]}, "spoiled", "spoiled"]
    assert sorted(lines) == [(n, f"slice {n}") for n in (1, 2, 3)]
