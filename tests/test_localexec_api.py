"""dcp_worker.localexec.run: the work function's world, values, modules and errors."""

from __future__ import annotations

import array
import datetime
import math
import time

import pytest

from dcp_worker.errors import WorkFunctionError, WorkFunctionException, WorkRejectedError
from dcp_worker.jsvalues import JSError, JSRegExp, Undefined
from dcp_worker.localexec import run


def test_results_come_back_in_slice_order_across_sandboxes() -> None:
    source = "function (x) { progress(); let s = 0; for (let i = 0; i < (x % 7) * 20000; i++) s += i; return x * x; }"
    assert run(source, range(300), cores=2) == [x * x for x in range(300)]


def test_arguments_follow_the_datum_and_this_is_null() -> None:
    source = "function (datum, a, b) { progress(); return [datum, a, b, this === null]; }"
    assert run(source, [1, 2], ["a", {"k": [1]}]) == [[1, "a", {"k": [1]}, True], [2, "a", {"k": [1]}, True]]


@pytest.mark.parametrize(
    "source",
    [
        "async function (x) { progress(); await null; return x + 1; }",
        "async (x) => { await new Promise((r) => setTimeout(r, 20)); progress(0.5); return x + 1; }",
        "(x) => new Promise((resolve) => setImmediate(() => { progress(); resolve(x + 1); }))",
        "(x) => new Promise((r) => queueMicrotask(() => { progress(); r(x + 1); }))",
        """async (x) => {
          let ticks = 0;
          await new Promise((r) => { const id = setInterval(() => { if (++ticks === 3) { clearInterval(id); r(); } }, 5); });
          progress();
          return x + ticks - 2;
        }""",
        """async (x) => {
          const wasm = new Uint8Array([0,97,115,109,1,0,0,0,1,7,1,96,2,127,127,1,127,3,2,1,0,7,7,1,3,97,100,100,0,0,10,9,1,7,0,32,0,32,1,106,11]);
          const { instance } = await WebAssembly.instantiate(wasm);
          progress();
          return instance.exports.add(x, 1);
        }""",
    ],
    ids=["await", "setTimeout", "setImmediate", "queueMicrotask", "setInterval", "async-wasm"],
)
def test_asynchronous_work_functions_complete(source: str) -> None:
    assert run(source, [1, 2]) == [2, 3]


def test_cleared_timer_does_not_fire() -> None:
    source = """async () => {
      let fired = false;
      const id = setTimeout(() => { fired = true; }, 5);
      clearTimeout(id);
      await new Promise((r) => setTimeout(r, 30));
      progress();
      return fired;
    }"""
    assert run(source, [0]) == [False]


def test_timers_respect_their_delays() -> None:
    source = """async () => {
      const order = [];
      const start = Date.now();
      await new Promise((r) => { setTimeout(() => order.push('b'), 40); setTimeout(() => { order.push('a'); }, 10); setTimeout(r, 60); });
      progress();
      return [order.join(''), Date.now() - start >= 55];
    }"""
    assert run(source, [0]) == [["ab", True]]


def test_a_thrown_error_fails_only_its_slice() -> None:
    source = "function (x) { progress(); if (x === 2) throw new TypeError('two'); return x; }"
    results = run(source, [1, 2, 3])
    assert results[0] == 1 and results[2] == 3
    error = results[1]
    assert isinstance(error, WorkFunctionException)
    assert (error.slice_number, error.name, error.message) == (2, "TypeError", "two")
    assert error.stack is not None and "work-function.js" in error.stack


def test_a_rejected_promise_and_a_thrown_non_error() -> None:
    results = run(
        "async (x) => { progress(); if (x) throw 'plain'; return Promise.reject(new RangeError('r')); }",
        [0, 1],
    )
    assert isinstance(results[0], WorkFunctionException) and results[0].name == "RangeError"
    assert isinstance(results[1], WorkFunctionException) and "'plain'" in results[1].message


def test_work_reject_fails_the_slice_and_replaces_the_sandbox() -> None:
    source = """function (x) {
      progress();
      globalThis.count = (globalThis.count || 0) + 1;
      if (x === 1) work.reject('not today');
      return globalThis.count;
    }"""
    results = run(source, [1, 2], cores=1)
    assert isinstance(results[0], WorkRejectedError) and results[0].message == "not today"
    assert results[1] == 1


def test_console_lines_are_captured_per_slice_with_levels() -> None:
    lines: list[tuple[int, str, str]] = []
    source = """function (x) {
      progress();
      console.log('n', x, { a: [1, 'two'] }, [undefined, null], 3n, -0);
      console.warn('careful');
      console.error(new Error('shown'));
      return x;
    }"""
    run(source, [7], on_console=lambda n, level, text: lines.append((n, level, text)))
    assert lines[0] == (1, "log", "n 7 { a: [ 1, 'two' ] } [ undefined, null ] 3n -0")
    assert lines[1] == (1, "warn", "careful")
    assert lines[2][1] == "error" and lines[2][2].startswith("Error: shown")


def test_progress_rejects_values_outside_zero_to_one_with_a_warning() -> None:
    lines: list[tuple[int, str, str]] = []
    run(
        "function () { progress(2); progress('50%'); progress(); return 0; }",
        [0],
        on_console=lambda n, level, text: lines.append((n, level, text)),
    )
    assert [(level, text) for _, level, text in lines] == [
        ("warn", "progress(2): expected a number from 0 to 1, or nothing")
    ]


def test_work_job_public_has_dcp_defaults() -> None:
    [public] = run("function () { progress(); return work.job.public; }", [0])
    assert public == {
        "name": "Ad-Hoc Job",
        "description": "Discreetly making the world smarter",
        "link": "https://distributed.computer/about",
    }


def test_modules_are_commonjs_and_may_require_each_other() -> None:
    modules = {
        "geometry": "const sq = require('./square'); exports.area = (r) => Math.round(3 * sq.square(r));",
        "square": "module.exports = { square: (x) => x * x };",
        "declared": "module.declare([], function (require, exports) { exports.twice = (x) => 2 * x; });",
    }
    source = (
        "function (r) { progress(); return [require('geometry').area(r), require('declared.js').twice(r)]; }"
    )
    assert run(source, [2], modules=modules) == [[12, 4]]


def test_a_missing_module_fails_the_slice_with_its_name() -> None:
    [error] = run("function () { progress(); return require('nowhere'); }", [0])
    assert isinstance(error, WorkFunctionException)
    assert error.message == "Module 'nowhere' is not available."


def test_a_syntax_error_raises_before_any_slice_with_its_line() -> None:
    with pytest.raises(WorkFunctionError) as caught:
        run("function (x) {\n  progress();\n  return x +;\n}", [1])
    assert (caught.value.name, caught.value.line) == ("SyntaxError", 3)


def test_a_module_syntax_error_names_the_module() -> None:
    with pytest.raises(WorkFunctionError) as caught:
        run("function () { return 1; }", [1], modules={"broken": "exports.x = ;"})
    assert caught.value.file == "broken.js"


def test_a_statement_is_not_a_work_function() -> None:
    with pytest.raises(WorkFunctionError):
        run("const f = 1;", [1])


def test_web_apis_are_present() -> None:
    source = """function () {
      progress();
      const bytes = new TextEncoder().encode('héllo');
      return [bytes.length, new TextDecoder().decode(bytes), btoa('hi'), atob('aGk=')];
    }"""
    assert run(source, [0]) == [[6, "héllo", "aGk=", "hi"]]


def test_values_javascript_cannot_put_in_json_come_back_as_python_values() -> None:
    source = """function () {
      progress();
      return [undefined, null, NaN, -0, Infinity, 2n ** 70n, new Float64Array([1.5, -2]),
              new Uint8Array([1, 255]), new Date(0), /a+b/gi, new Map([['k', 1]]), new Set([1, 2]),
              new RangeError('kept'), { $dcp: 'mine' }, [1, , 3]];
    }"""
    [values] = run(source, [0])
    assert values[0] is Undefined and values[1] is None
    assert math.isnan(values[2])
    assert values[3] == 0 and math.copysign(1, values[3]) == -1
    assert values[4] == math.inf
    assert values[5] == 2**70
    assert values[6] == array.array("d", [1.5, -2])
    assert values[7] == array.array("B", [1, 255])
    assert values[8] == datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)
    assert values[9] == JSRegExp("a+b", "gi")
    assert values[10] == {"k": 1}
    assert values[11] == {1, 2}
    assert isinstance(values[12], JSError) and (values[12].name, values[12].message) == ("RangeError", "kept")
    assert values[13] == {"$dcp": "mine"}
    assert values[14] == [1, Undefined, 3]


def test_python_values_arrive_as_javascript_values() -> None:
    source = """function (v) {
      progress();
      return [v.u === undefined, Number.isNaN(v.nan), Object.is(v.negzero, -0), typeof v.big,
              v.bytes instanceof Uint8Array, v.floats instanceof Float64Array, v.when instanceof Date,
              v.when.getTime(), v.set instanceof Set, v.tuple.length, v.tagged.$dcp];
    }"""
    datum = {
        "u": Undefined,
        "nan": math.nan,
        "negzero": -0.0,
        "big": 2**60,
        "bytes": b"\x00\x01",
        "floats": array.array("d", [1.0]),
        "when": datetime.datetime(2020, 1, 1, tzinfo=datetime.UTC),
        "set": {1},
        "tuple": (1, 2, 3),
        "tagged": {"$dcp": "x"},
    }
    assert run(source, [datum]) == [
        [True, True, True, "bigint", True, True, True, 1577836800000, True, 3, "x"]
    ]


@pytest.mark.parametrize(
    "inputs",
    [
        range(10, -11, -3),
        range(2**53 - 4, 2**53),
        range(-(2**53) + 1, -(2**53) + 9, 4),
        range(2**53 - 2, 2**53 + 2),
        range(5, 5),
    ],
)
def test_a_range_of_inputs_reaches_the_work_function_number_by_number(inputs: range) -> None:
    """A range travels to the sandbox as its ends and step; past 2**53 its numbers are bigints."""
    source = "n => { progress(); return [typeof n, String(n)]; }"
    kind = ["bigint" if abs(n) > 2**53 - 1 else "number" for n in inputs]
    assert run(source, inputs, cores=2) == [[k, str(n)] for k, n in zip(kind, inputs, strict=True)]


def test_a_circular_result_fails_with_a_clear_error() -> None:
    [error] = run("function () { progress(); const a = {}; a.self = a; return a; }", [0])
    assert isinstance(error, WorkFunctionException)
    assert "circular" in error.message


@pytest.mark.parametrize(
    ("options", "message"),
    [({"cores": 0}, "cores"), ({"slice_timeout": 0}, "timeout"), ({"memory_mb": 1}, "memory")],
)
def test_bad_options_raise_value_errors_naming_them(options: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        run("x => x", [1], **options)  # type: ignore[arg-type]


def test_inputs_javascript_cannot_receive_raise_type_error() -> None:
    with pytest.raises(TypeError, match="object"):
        run("x => x", [object()])


def test_no_inputs_means_no_slices() -> None:
    assert run("x => x", []) == []


def test_sloppy_mode_is_available_as_dcp_default() -> None:
    source = (
        "function (x) { progress(); undeclared = x; return [this === globalThis, globalThis.undeclared]; }"
    )
    assert run(source, [5], strict=False) == [[True, 5]]
    [error] = run(source, [5])
    assert isinstance(error, WorkFunctionException) and error.name == "ReferenceError"


def test_a_slow_slice_logs_as_it_runs() -> None:
    heard: list[float] = []
    source = "async (x) => { progress(); console.log('begun', x); await new Promise((r) => setTimeout(r, 1500)); return x; }"
    assert run(
        source, [7], cores=1, on_console=lambda number, level, text: heard.append(time.monotonic())
    ) == [7]
    ended = time.monotonic()
    assert len(heard) == 1 and ended - heard[0] > 1.0, "the line came only when the slice had ended"


def test_a_batch_run_again_slice_by_slice_logs_each_line_once() -> None:
    # Fast slices go in batches; the one that never ends breaks its batch's time limit, and its
    # batch's slices run again one at a time: what they logged must not be shown twice.
    lines: list[tuple[int, str]] = []
    source = "(x) => { progress(); console.log('slice', x); if (x === 150) for (;;); return x; }"
    results = run(
        source,
        range(1, 201),
        cores=1,
        slice_timeout=1,
        on_console=lambda n, level, text: lines.append((n, text)),
    )
    assert [type(result).__name__ for result in results].count("SliceTimeoutError") == 1
    assert sorted(lines) == [(n, f"slice {n}") for n in range(1, 201)]


def test_lone_surrogates_reach_the_work_function_and_come_back() -> None:
    # JavaScript strings may hold them; UTF-8 (and orjson) cannot.
    source = "(x, suffix) => { progress(); return [x.length, x + suffix]; }"
    assert run(source, ["a\ud800b"], args=["\udc00"], on_console=None) == [[3, "a\ud800b\udc00"]]
