"""End-to-end tests for ``dcp-worker localexec``, run as a real subprocess.

The contract under test::

    dcp-worker localexec WORK_FUNCTION_FILE [INPUT_FILE] [options]

Results go to stdout (or ``--out``) in slice order, as one JSON array (``--format json``) or
one line per slice (``--format jsonl``); slices are numbered from 1. Exit status is 0 when
every slice succeeded, 1 when any failed, 2 for bad usage or unreadable input (one line on
stderr starting with ``dcp-worker: error:``, no traceback). Work-function console output goes
to stderr tagged ``[slice N] ``. Values JSON cannot hold travel as tagged JSON (``{"$dcp": ...}``)
in both directions.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

TIMEOUT_SECONDS = 120
ERROR_PREFIX = "dcp-worker: error:"
PROGRESS_WARNING = "never called progress()"

# A work function that returns its datum unchanged and reports progress.
IDENTITY = "function (datum) { progress(); return datum; }\n"


def localexec(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run ``dcp-worker localexec ARGS`` in ``cwd``; file arguments are relative to it."""
    return subprocess.run(
        [sys.executable, "-m", "dcp_worker", "localexec", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_SECONDS,
        check=False,
    )


def write(directory: Path, name: str, text: str) -> str:
    """Write ``text`` to ``directory/name`` (creating folders) and return ``name``."""
    path = directory / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return name


def write_json(directory: Path, name: str, value: Any) -> str:
    return write(directory, name, json.dumps(value))


def describe(result: subprocess.CompletedProcess[str]) -> str:
    return f"exit {result.returncode}\n--- stdout ---\n{result.stdout}\n--- stderr ---\n{result.stderr}"


def json_results(result: subprocess.CompletedProcess[str]) -> list[Any]:
    values = json.loads(result.stdout)
    assert isinstance(values, list), describe(result)
    return values


def jsonl_records(text: str) -> list[dict[str, Any]]:
    records = [json.loads(line) for line in text.splitlines()]
    assert all(isinstance(record, dict) for record in records), text
    return records


def stderr_lines(result: subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.strip()]


def slice_lines(result: subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("[slice ")]


def failed(name: str, message: str) -> dict[str, Any]:
    return {"$dcp": "failed", "error": {"name": name, "message": message}}


def assert_usage_error(result: subprocess.CompletedProcess[str], *fragments: str) -> str:
    """Exit 2, nothing on stdout, one stderr line naming ``fragments`` (any case), no traceback."""
    assert result.returncode == 2, describe(result)
    assert "Traceback" not in result.stderr, describe(result)
    assert result.stdout == "", describe(result)
    lines = stderr_lines(result)
    assert len(lines) == 1, describe(result)
    line = lines[0]
    assert line.startswith(ERROR_PREFIX), describe(result)
    for fragment in fragments:
        assert fragment.lower() in line.lower(), f"{fragment!r} not in {line!r}"
    return line


# ---------------------------------------------------------------------------
# Output formats and slice order
# ---------------------------------------------------------------------------

# Slice 1 runs for ~0.6 s while the second sandbox works through the rest, so slices finish out
# of order; the others busy-wait between 0 and 10 ms, varying with the datum.
VARYING_DURATION = """\
function (n) {
  const ms = n === 1 ? 600 : (n * 37) % 11;
  const until = Date.now() + ms;
  while (Date.now() < until) {}
  progress(1);
  console.log(`done ${n}`);
  return { n, square: n * n };
}
"""


def completion_order(result: subprocess.CompletedProcess[str]) -> list[int]:
    return [int(line.rsplit(" ", 1)[1]) for line in slice_lines(result) if " done " in line]


def test_json_output_keeps_slice_order_with_two_cores(tmp_path: Path) -> None:
    work = write(tmp_path, "vary.js", VARYING_DURATION)
    inputs = write_json(tmp_path, "inputs.json", list(range(1, 51)))

    result = localexec(tmp_path, work, inputs, "--cores", "2")

    assert result.returncode == 0, describe(result)
    assert json_results(result) == [{"n": n, "square": n * n} for n in range(1, 51)]
    # The scenario really reordered completions, so the output order was the writer's doing.
    finished = completion_order(result)
    assert sorted(finished) == list(range(1, 51))
    assert finished != sorted(finished)
    assert PROGRESS_WARNING not in result.stderr


def test_jsonl_output_keeps_slice_order_with_two_cores(tmp_path: Path) -> None:
    work = write(tmp_path, "vary.js", VARYING_DURATION)
    inputs = write_json(tmp_path, "inputs.json", list(range(1, 51)))

    result = localexec(tmp_path, work, inputs, "--cores", "2", "--format", "jsonl")

    assert result.returncode == 0, describe(result)
    assert result.stdout.endswith("\n")
    assert jsonl_records(result.stdout) == [
        {"slice": n, "result": {"n": n, "square": n * n}} for n in range(1, 51)
    ]
    finished = completion_order(result)
    assert finished != sorted(finished)


def test_empty_input_writes_an_empty_array(tmp_path: Path) -> None:
    work = write(tmp_path, "id.js", IDENTITY)
    inputs = write_json(tmp_path, "empty.json", [])

    result = localexec(tmp_path, work, inputs)

    assert result.returncode == 0, describe(result)
    assert json_results(result) == []


@pytest.mark.parametrize("output_format", ["json", "jsonl"])
def test_out_writes_results_to_the_file_and_not_stdout(tmp_path: Path, output_format: str) -> None:
    work = write(
        tmp_path, "triple.js", "function (x) { progress(); console.log('tripling', x); return 3 * x; }"
    )
    inputs = write_json(tmp_path, "inputs.json", [1, 2, 3])

    result = localexec(
        tmp_path, work, inputs, "--cores", "1", "--format", output_format, "--out", "results.out"
    )

    assert result.returncode == 0, describe(result)
    assert result.stdout == ""
    assert "[slice 2] tripling 2" in slice_lines(result)
    text = (tmp_path / "results.out").read_text(encoding="utf-8")
    if output_format == "json":
        assert json.loads(text) == [3, 6, 9]
    else:
        assert jsonl_records(text) == [{"slice": n, "result": 3 * n} for n in (1, 2, 3)]


# ---------------------------------------------------------------------------
# Input: --range, .jsonl
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("1:5", [1, 2, 3, 4, 5]),
        ("5:1", [5, 4, 3, 2, 1]),
        ("-2:-4", [-2, -3, -4]),
        ("0:1:0.25", [0, 0.25, 0.5, 0.75, 1]),
        ("1:6:2", [1, 3, 5]),
        ("10:0:-5", [10, 5, 0]),
        ("7:7", [7]),
    ],
    ids=[
        "ascending",
        "descending",
        "negative-descending",
        "fractional-step",
        "step-2",
        "negative-step",
        "single",
    ],
)
def test_range_input(tmp_path: Path, spec: str, expected: list[float]) -> None:
    work = write(tmp_path, "id.js", IDENTITY)

    result = localexec(tmp_path, work, "--range", spec, "--cores", "1", "--format", "jsonl")

    assert result.returncode == 0, describe(result)
    assert jsonl_records(result.stdout) == [
        {"slice": number, "result": value} for number, value in enumerate(expected, start=1)
    ]


def test_jsonl_input_skips_blank_lines_and_accepts_tags(tmp_path: Path) -> None:
    work = write(tmp_path, "kind.js", "(d) => { progress(); return [typeof d, d]; }")
    inputs = write(
        tmp_path,
        "inputs.jsonl",
        '1\n\n   \n{"a": [2, "x"]}\r\n"three"\n{"$dcp": "bigint", "value": "4"}\n\n',
    )

    result = localexec(tmp_path, work, inputs, "--cores", "1", "--format", "jsonl")

    assert result.returncode == 0, describe(result)
    assert jsonl_records(result.stdout) == [
        {"slice": 1, "result": ["number", 1]},
        {"slice": 2, "result": ["object", {"a": [2, "x"]}]},
        {"slice": 3, "result": ["string", "three"]},
        {"slice": 4, "result": ["bigint", {"$dcp": "bigint", "value": "4"}]},
    ]


def test_bad_jsonl_line_is_reported_with_its_line_number(tmp_path: Path) -> None:
    work = write(tmp_path, "id.js", IDENTITY)
    inputs = write(tmp_path, "inputs.jsonl", '1\n\n{"ok": true}\n{not json\n5\n')

    result = localexec(tmp_path, work, inputs)

    line = assert_usage_error(result, "inputs.jsonl")
    assert "line 4" in line


def test_jsonl_strings_may_hold_unicode_line_separators(tmp_path: Path) -> None:
    work = write(tmp_path, "len.js", "function (s) { progress(); return s.length; }")
    inputs = write(tmp_path, "inputs.jsonl", '"a\u2028b"\n"c\x85d"\n')

    result = localexec(tmp_path, work, inputs, "--format", "jsonl")

    assert result.returncode == 0, describe(result)
    assert jsonl_records(result.stdout) == [{"slice": 1, "result": 3}, {"slice": 2, "result": 3}]


# ---------------------------------------------------------------------------
# --args and --require
# ---------------------------------------------------------------------------


def test_args_are_passed_after_the_datum(tmp_path: Path) -> None:
    work = write(
        tmp_path,
        "args.js",
        "function (d, factor, label, big) { progress(); return [d * factor, label, typeof big, big * 2n, arguments.length]; }",
    )
    args = write_json(tmp_path, "args.json", [10, "x", {"$dcp": "bigint", "value": "5"}])

    result = localexec(tmp_path, work, "--range", "1:2", "--args", args, "--cores", "1")

    assert result.returncode == 0, describe(result)
    ten = {"$dcp": "bigint", "value": "10"}
    assert json_results(result) == [[10, "x", "bigint", ten, 4], [20, "x", "bigint", ten, 4]]


def test_require_modules_that_require_each_other(tmp_path: Path) -> None:
    base = write(tmp_path, "lib/base.js", "exports.offset = 100;\nexports.add = (a, b) => a + b;\n")
    # `scale` replaces module.exports with a function and requires `base` itself.
    scale = write(
        tmp_path,
        "lib/scale.js",
        "const base = require('base');\nmodule.exports = function scale(x) { return base.add(x, base.offset); };\n",
    )
    work = write(
        tmp_path,
        "use.js",
        "(x) => { progress(); const scale = require('scale');"
        " return [typeof scale, scale(x), require('./base.js').offset, require('base') === require('./base')]; }",
    )

    # `scale` comes first on the command line: modules resolve when required, not in order.
    result = localexec(
        tmp_path, work, "--range", "1:2", "--require", f"scale={scale}", "--require", f"base={base}"
    )

    assert result.returncode == 0, describe(result)
    assert json_results(result) == [["function", 101, 100, True], ["function", 102, 100, True]]


def test_require_name_may_be_a_relative_file_name(tmp_path: Path) -> None:
    lib = write(tmp_path, "lib.js", "exports.v = 5;\n")
    work = write(tmp_path, "use.js", "function () { progress(); return require('./lib.js').v; }")

    result = localexec(tmp_path, work, "--range", "1:1", "--require", f"./lib.js={lib}")

    assert result.returncode == 0, describe(result)
    assert json_results(result) == [5]


# ---------------------------------------------------------------------------
# Failing slices
# ---------------------------------------------------------------------------

THROWS_ON_TWO = """\
function (x) {
  progress();
  if (x === 2) throw new RangeError('two is not allowed');
  return x * 10;
}
"""


def test_throwing_slice_exits_1_and_others_are_written_json(tmp_path: Path) -> None:
    work = write(tmp_path, "throws.js", THROWS_ON_TWO)

    result = localexec(tmp_path, work, "--range", "1:4", "--cores", "2")

    assert result.returncode == 1, describe(result)
    assert "Traceback" not in result.stderr
    assert json_results(result) == [10, failed("RangeError", "two is not allowed"), 30, 40]


def test_throwing_slice_exits_1_and_others_are_written_jsonl(tmp_path: Path) -> None:
    work = write(tmp_path, "throws.js", THROWS_ON_TWO)

    result = localexec(tmp_path, work, "--range", "1:4", "--cores", "2", "--format", "jsonl")

    assert result.returncode == 1, describe(result)
    assert jsonl_records(result.stdout) == [
        {"slice": 1, "result": 10},
        {"slice": 2, "error": {"name": "RangeError", "message": "two is not allowed"}},
        {"slice": 3, "result": 30},
        {"slice": 4, "result": 40},
    ]


def test_slice_timeout_fails_only_the_looping_slice(tmp_path: Path) -> None:
    work = write(tmp_path, "loop.js", "function (x) { progress(); if (x === 2) { for (;;) {} } return -x; }")

    result = localexec(
        tmp_path, work, "--range", "1:4", "--slice-timeout", "1", "--cores", "2", "--format", "jsonl"
    )

    assert result.returncode == 1, describe(result)
    records = jsonl_records(result.stdout)
    assert [record["slice"] for record in records] == [1, 2, 3, 4]
    assert records[1]["error"]["name"] == "SliceTimeoutError"
    assert "result" not in records[1]
    assert [records[i].get("result") for i in (0, 2, 3)] == [-1, -3, -4]


# ---------------------------------------------------------------------------
# Work functions that do not compile
# ---------------------------------------------------------------------------


def test_work_function_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    work = write(tmp_path, "bad.js", "function (x) {\n  return x +* 2;\n}\n")

    result = localexec(tmp_path, work, "--range", "1:3")

    assert_usage_error(result, "bad.js:2: SyntaxError")


def test_module_syntax_error_names_module_file_and_line(tmp_path: Path) -> None:
    work = write(tmp_path, "id.js", IDENTITY)
    module = write(tmp_path, "broken.js", "exports.a = 1;\n\nexports.b = );\n")

    result = localexec(tmp_path, work, "--range", "1:3", "--require", f"broken={module}")

    assert_usage_error(result, "broken.js:3: SyntaxError")


def test_non_function_work_function_is_not_blamed_on_a_line_it_does_not_have(tmp_path: Path) -> None:
    work = write(tmp_path, "number.js", "42\n")

    result = localexec(tmp_path, work, "--range", "1:1")

    line = assert_usage_error(result, "number.js")
    assert re.search(r"number\.js:(?!1:)\d", line) is None, line


# ---------------------------------------------------------------------------
# Usage errors: exit 2, one line on stderr, no traceback
# ---------------------------------------------------------------------------


@pytest.fixture
def job_files(tmp_path: Path) -> Path:
    """A working job (work function, inputs, args, module) plus some broken inputs."""
    write(tmp_path, "wf.js", IDENTITY)
    write_json(tmp_path, "in.json", [1, 2, 3])
    write_json(tmp_path, "object.json", {"slices": [1, 2, 3]})
    write(tmp_path, "broken.json", "[1, 2,")
    write_json(tmp_path, "args.json", [1])
    write_json(tmp_path, "args-object.json", {"a": 1})
    write(tmp_path, "mod.js", "exports.x = 1;\n")
    return tmp_path


USAGE_ERRORS = [
    pytest.param(["missing.js", "in.json"], ["missing.js"], id="missing-work-function-file"),
    pytest.param(["--range", "1:3"], ["WORK_FUNCTION_FILE"], id="no-work-function-argument"),
    pytest.param(["wf.js", "missing.json"], ["missing.json"], id="missing-input-file"),
    pytest.param(["wf.js", "object.json"], ["object.json", "array"], id="input-not-an-array"),
    pytest.param(["wf.js", "broken.json"], ["broken.json"], id="input-not-json"),
    pytest.param(["wf.js", "in.json", "--range", "1:3"], ["INPUT_FILE", "--range"], id="input-and-range"),
    pytest.param(["wf.js"], ["INPUT_FILE", "--range"], id="neither-input-nor-range"),
    pytest.param(["wf.js", "--range", "abc"], ["--range", "abc"], id="range-not-start-end"),
    pytest.param(["wf.js", "--range", "1:x"], ["--range", "1:x"], id="range-end-not-a-number"),
    pytest.param(["wf.js", "--range", "1:2:3:4"], ["--range"], id="range-too-many-parts"),
    pytest.param(["wf.js", "--range", "1:3:0"], ["--range", "1:3:0"], id="range-step-zero"),
    pytest.param(["wf.js", "--range", "1:3:-1"], ["--range", "1:3:-1"], id="range-step-away-from-end"),
    pytest.param(["wf.js", "--range", "nan:3"], ["--range"], id="range-not-finite"),
    pytest.param(["wf.js", "in.json", "--cores", "0"], ["cores"], id="cores-0"),
    pytest.param(["wf.js", "in.json", "--cores", "two"], ["--cores"], id="cores-not-a-number"),
    pytest.param(["wf.js", "in.json", "--memory", "1"], ["memory"], id="memory-1"),
    pytest.param(["wf.js", "in.json", "--slice-timeout", "0"], ["timeout"], id="slice-timeout-0"),
    pytest.param(
        ["wf.js", "in.json", "--require", "mod.js"], ["--require", "mod.js"], id="require-without-equals"
    ),
    pytest.param(["wf.js", "in.json", "--require", "=mod.js"], ["--require"], id="require-without-name"),
    pytest.param(
        ["wf.js", "in.json", "--require", "m=nomod.js"], ["--require", "nomod.js"], id="require-missing-file"
    ),
    pytest.param(
        ["wf.js", "in.json", "--args", "args-object.json"],
        ["--args", "args-object.json"],
        id="args-not-an-array",
    ),
    pytest.param(
        ["wf.js", "in.json", "--args", "nope.json"], ["--args", "nope.json"], id="args-missing-file"
    ),
    pytest.param(["wf.js", "in.json", "--format", "xml"], ["--format"], id="unknown-format"),
    pytest.param(["wf.js", "in.json", "--bogus"], ["--bogus"], id="unknown-option"),
]


@pytest.mark.parametrize(("args", "fragments"), USAGE_ERRORS)
def test_usage_error(job_files: Path, args: list[str], fragments: list[str]) -> None:
    result = localexec(job_files, *args)

    assert_usage_error(result, *fragments)


@pytest.mark.parametrize(("option", "value"), [("--cores", "0"), ("--memory", "1"), ("--slice-timeout", "0")])
def test_limit_errors_name_the_option(job_files: Path, option: str, value: str) -> None:
    result = localexec(job_files, "wf.js", "in.json", option, value)

    assert_usage_error(result, option)


def test_unwritable_out_is_reported_before_any_slice_runs(tmp_path: Path) -> None:
    work = write(tmp_path, "log.js", "function (x) { progress(); console.log('ran', x); return x; }")

    result = localexec(tmp_path, work, "--range", "1:3", "--out", "no-such-dir/results.json")

    assert_usage_error(result, "--out", "no-such-dir/results.json")


# ---------------------------------------------------------------------------
# stderr: console output and the progress warning
# ---------------------------------------------------------------------------


def test_console_output_is_tagged_with_slice_and_level(tmp_path: Path) -> None:
    work = write(
        tmp_path,
        "console.js",
        "function (x) { progress();"
        " console.log('log', x); console.info('info', x); console.debug('debug', x);"
        " console.warn('warn', x); console.error('error', { x }); return x; }",
    )

    result = localexec(tmp_path, work, "--range", "1:2", "--cores", "1")

    assert result.returncode == 0, describe(result)
    assert json_results(result) == [1, 2]
    assert result.stdout.count("log") == 0
    for n in (1, 2):
        lines = [line for line in slice_lines(result) if line.startswith(f"[slice {n}] ")]
        assert lines == [
            f"[slice {n}] log {n}",
            f"[slice {n}] info {n}",
            f"[slice {n}] debug {n}",
            f"[slice {n}] warn: warn {n}",
            f"[slice {n}] error: error {{ x: {n} }}",
        ]


def test_every_line_of_multiline_console_output_is_tagged(tmp_path: Path) -> None:
    work = write(
        tmp_path, "multi.js", "function (x) { progress(); console.warn('first\\nsecond'); return x; }"
    )

    result = localexec(tmp_path, work, "--range", "1:1")

    assert result.returncode == 0, describe(result)
    assert "[slice 1] warn: first" in result.stderr
    assert all(line.startswith("[slice 1] ") for line in result.stderr.splitlines() if "second" in line)


def test_work_function_without_progress_warns_but_succeeds(tmp_path: Path) -> None:
    work = write(tmp_path, "silent.js", "function (x) { return x + 1; }")

    result = localexec(tmp_path, work, "--range", "1:3", "--cores", "1")

    assert result.returncode == 0, describe(result)
    assert json_results(result) == [2, 3, 4]
    assert PROGRESS_WARNING in result.stderr


# ---------------------------------------------------------------------------
# Tagged JSON both ways; async work functions
# ---------------------------------------------------------------------------

SPECIAL_VALUES = """\
function (k) {
  progress();
  const values = [
    undefined, NaN, -0, 10n, new Float64Array([1.5]), new Date(0),
    new Map([['a', 1], [2, 'b']]), new Set([1, 'x']), Infinity, -Infinity,
    { nested: [undefined, 1n] }, null,
  ];
  return values[k];
}
"""


def test_results_that_json_cannot_hold_are_tagged(tmp_path: Path) -> None:
    work = write(tmp_path, "special.js", SPECIAL_VALUES)

    result = localexec(tmp_path, work, "--range", "0:11", "--cores", "1")

    assert result.returncode == 0, describe(result)
    assert json_results(result) == [
        {"$dcp": "undefined"},
        {"$dcp": "NaN"},
        {"$dcp": "-0"},
        {"$dcp": "bigint", "value": "10"},
        {"$dcp": "Float64Array", "base64": "AAAAAAAA+D8="},
        {"$dcp": "Date", "value": "1970-01-01T00:00:00.000Z"},
        {"$dcp": "Map", "entries": [["a", 1], [2, "b"]]},
        {"$dcp": "Set", "values": [1, "x"]},
        {"$dcp": "Infinity"},
        {"$dcp": "-Infinity"},
        {"nested": [{"$dcp": "undefined"}, {"$dcp": "bigint", "value": "1"}]},
        None,
    ]


TAGGED_INPUTS: list[Any] = [
    {"$dcp": "undefined"},
    {"$dcp": "NaN"},
    {"$dcp": "-0"},
    {"$dcp": "bigint", "value": "10"},
    {"$dcp": "Float64Array", "base64": "AAAAAAAA+D8="},
    {"$dcp": "Date", "value": "1970-01-01T00:00:00.000Z"},
    {"$dcp": "Map", "entries": [["k", 7], [1, "one"]]},
    {"$dcp": "Set", "values": [3, "s"]},
]

DESCRIBE_DATUM = """\
function (d) {
  progress();
  const kind = typeof d === 'object' && d !== null ? Object.prototype.toString.call(d) : typeof d;
  let detail = null;
  if (typeof d === 'number') detail = [Number.isNaN(d), Object.is(d, -0)];
  if (typeof d === 'bigint') detail = String(d + 1n);
  if (d instanceof Float64Array) detail = [d.length, d[0]];
  if (d instanceof Date) detail = d.getTime();
  if (d instanceof Map) detail = [d.get('k'), d.get(1)];
  if (d instanceof Set) detail = [d.has(3), d.has('s'), d.size];
  return [kind, detail, d];
}
"""


def test_tagged_inputs_arrive_as_real_javascript_values(tmp_path: Path) -> None:
    work = write(tmp_path, "describe.js", DESCRIBE_DATUM)
    inputs = write_json(tmp_path, "tagged.json", TAGGED_INPUTS)

    result = localexec(tmp_path, work, inputs, "--cores", "1")

    assert result.returncode == 0, describe(result)
    results = json_results(result)
    assert [[kind, detail] for kind, detail, _ in results] == [
        ["undefined", None],
        ["number", [True, False]],
        ["number", [False, True]],
        ["bigint", "11"],
        ["[object Float64Array]", [1, 1.5]],
        ["[object Date]", 0],
        ["[object Map]", [7, "one"]],
        ["[object Set]", [True, True, 2]],
    ]
    # Each value, returned unchanged, comes back in the tagged form it went in as.
    assert [echo for _, _, echo in results] == TAGGED_INPUTS


def test_async_work_function_awaiting_set_timeout(tmp_path: Path) -> None:
    work = write(
        tmp_path,
        "async.js",
        "async function (x) {\n"
        "  const started = Date.now();\n"
        "  const value = await new Promise((resolve) => setTimeout(() => resolve(x * 2), 100));\n"
        "  progress(1);\n"
        "  return { value, waited: Date.now() - started >= 90 };\n"
        "}\n",
    )

    result = localexec(tmp_path, work, "--range", "1:3", "--cores", "2", "--format", "jsonl")

    assert result.returncode == 0, describe(result)
    assert jsonl_records(result.stdout) == [
        {"slice": n, "result": {"value": 2 * n, "waited": True}} for n in (1, 2, 3)
    ]
    assert PROGRESS_WARNING not in result.stderr


@pytest.mark.parametrize("tag", ["Nope", "constructor", "__proto__", "toString"])
def test_unknown_tags_in_input_fail_their_slice(tmp_path: Path, tag: str) -> None:
    work = write(tmp_path, "wf.js", IDENTITY)
    inputs = write_json(tmp_path, "in.json", [{"$dcp": tag, "base64": "AA=="}, 2])

    result = localexec(tmp_path, work, inputs, "--format", "jsonl")

    assert result.returncode == 1, describe(result)
    first, second = (json.loads(line) for line in result.stdout.splitlines())
    assert first == {"slice": 1, "error": {"name": "TypeError", "message": f'unknown $dcp tag "{tag}"'}}
    assert second == {"slice": 2, "result": 2}
