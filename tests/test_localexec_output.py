"""localexec's result writer: slice order whatever order batches come in, both formats."""

from __future__ import annotations

import io

import orjson
import pytest

from dcp_worker.errors import WorkFunctionException
from dcp_worker.localexec.output import OutputFormat, ResultWriter
from dcp_worker.supervisor.outcomes import BatchOutcome, SliceOutcome


def failed(number: int) -> SliceOutcome:
    return SliceOutcome(number, error=WorkFunctionException(number, "TypeError", "no"))


def batches() -> list[BatchOutcome]:
    """Slices 1-7 in the order a pool may report them: a later batch first, a retried slice
    alone, one batch numbered by a list, a failure among successes."""
    return [
        BatchOutcome(range(4, 6), ["d", {"e": [5]}]),
        BatchOutcome([6, 7], [6, 7]),
        BatchOutcome(range(1, 3), [1, None], {2: failed(2)}),
        BatchOutcome.single(SliceOutcome(3, 3.5)),
    ]


def written(output_format: OutputFormat, reports: list[BatchOutcome]) -> tuple[bytes, list[int]]:
    """The output, and how many slices were written after each report."""
    stream = io.BytesIO()
    writer = ResultWriter(stream, output_format)
    progress = []
    for batch in reports:
        writer.add(batch)
        progress.append(writer.written)
    writer.close()
    return stream.getvalue(), progress


def test_json_holds_every_slice_in_order_with_failures_in_place() -> None:
    text, progress = written("json", batches())
    assert progress == [0, 0, 2, 7]
    error = {"name": "TypeError", "message": "no"}
    assert orjson.loads(text) == [1, {"$dcp": "failed", "error": error}, 3.5, "d", {"e": [5]}, 6, 7]
    assert text.count(b"\n") == 9  # one entry a line, between the brackets' lines


def test_jsonl_has_one_line_a_slice_in_order() -> None:
    text, _ = written("jsonl", batches())
    lines = [orjson.loads(line) for line in text.splitlines()]
    assert [line["slice"] for line in lines] == list(range(1, 8))
    assert lines[1] == {"slice": 2, "error": {"name": "TypeError", "message": "no"}}
    assert lines[4] == {"slice": 5, "result": {"e": [5]}}


@pytest.mark.parametrize(("output_format", "expected"), [("json", b"[]\n"), ("jsonl", b"")])
def test_no_slices_is_still_valid_output(output_format: OutputFormat, expected: bytes) -> None:
    assert written(output_format, [BatchOutcome(range(1, 1), [])]) == (expected, [0])


def test_a_gap_leaves_valid_json_of_the_slices_before_it() -> None:
    text, progress = written("json", batches()[:3])
    assert orjson.loads(text) == [1, {"$dcp": "failed", "error": {"name": "TypeError", "message": "no"}}]
    assert progress[-1] == 2
