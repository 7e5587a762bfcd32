"""Reading localexec inputs: ranges and modules."""

from __future__ import annotations

from pathlib import Path

import pytest

from dcp_worker.errors import UsageError
from dcp_worker.localexec.inputs import parse_module, parse_range


@pytest.mark.parametrize(
    ("spec", "values"),
    [
        ("1:5", [1, 2, 3, 4, 5]),
        ("5:1", [5, 4, 3, 2, 1]),
        ("0:10:3", [0, 3, 6, 9]),
        ("3:3", [3]),
        ("0:1:0.25", [0, 0.25, 0.5, 0.75, 1]),
        ("0:1:0.1", [round(0.1 * i, 10) for i in range(11)]),
        ("-2:2:2", [-2, 0, 2]),
        ("1e3:1002", [1000, 1001, 1002]),
    ],
)
def test_ranges_are_inclusive_like_dcp(spec: str, values: list[float]) -> None:
    assert [round(v, 10) for v in parse_range(spec)] == values


def test_integral_ranges_are_integers() -> None:
    assert parse_range("1:4") == range(1, 5)
    assert parse_range("10:-10:-4") == range(10, -11, -4)
    assert all(isinstance(v, float) for v in parse_range("0:1:0.5"))


def test_ranges_past_exact_integers_are_floats() -> None:
    assert parse_range("1e16:1e16") == [1e16]


@pytest.mark.parametrize(
    ("spec", "complaint"),
    [
        ("1", "expected START:END"),
        ("1:2:3:4", "expected START:END"),
        ("a:2", "START 'a'"),
        ("1:b", "END 'b'"),
        ("1:2:c", "STEP 'c'"),
        ("1:5:0", "must not be 0"),
        ("1:5:-1", "moves away"),
        ("1:inf", "finite"),
    ],
)
def test_bad_ranges_say_what_is_wrong(spec: str, complaint: str) -> None:
    with pytest.raises(UsageError, match=complaint) as caught:
        parse_range(spec)
    assert str(caught.value).startswith(f"--range {spec}:")


def test_module_option(tmp_path: Path) -> None:
    path = tmp_path / "m.js"
    path.write_text("exports.x = 1;")
    name, module = parse_module(f"mine={path}")
    assert (name, module.source, module.filename) == ("mine", "exports.x = 1;", str(path))


@pytest.mark.parametrize("spec", ["nameonly", "=path", "name="])
def test_bad_module_options(spec: str) -> None:
    with pytest.raises(UsageError, match="NAME=PATH"):
        parse_module(spec)


def test_missing_module_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"--require m: module file .*no such file"):
        parse_module(f"m={tmp_path / 'absent.js'}")
