"""Every slice the worker holds, until it is submitted or returned: exactly one of the two, once.

A slice enters when a task brings it and leaves through ``settle``; a second settlement of the
same slice is refused, so no slice is ever both submitted and returned, or reported twice. A
slice whose result is on its way (``submitting``) is settled by the scheduler's answer: giving a
job back returns only its ``returnable`` slices.
"""

from __future__ import annotations

from dataclasses import dataclass

from dcp_worker.protocol.canonical_json import Verbatim
from dcp_worker.worker.task import SliceMessage

__all__ = ["HeldSlice", "Ledger"]


@dataclass(slots=True)
class HeldSlice:
    message: SliceMessage
    authorization: Verbatim
    in_size: int = 0  # the length of the datum as fetched
    submitting: bool = False  # its result is on its way to the scheduler


class Ledger:
    def __init__(self) -> None:
        self._held: dict[tuple[str, int], HeldSlice] = {}
        self.submitted = 0
        self.returned = 0

    def hold(self, message: SliceMessage, authorization: Verbatim) -> bool:
        """Take a slice in; False if it is held already (the scheduler sent it twice)."""
        key = (message.job_id, message.number)
        if key in self._held:
            return False
        self._held[key] = HeldSlice(message, authorization)
        return True

    def get(self, job_id: str, number: int) -> HeldSlice | None:
        return self._held.get((job_id, number))

    def settle(self, job_id: str, number: int, submitted: bool) -> HeldSlice | None:
        """Let a slice go (submitted, or returned); None if it was not held (settled already)."""
        held = self._held.pop((job_id, number), None)
        if held is not None:
            if submitted:
                self.submitted += 1
            else:
                self.returned += 1
        return held

    def numbers(self, job_id: str) -> list[int]:
        """The numbers of the slices of ``job_id`` held."""
        return [number for held_job, number in self._held if held_job == job_id]

    def returnable(self, job_id: str) -> list[int]:
        """The numbers of the slices of ``job_id`` held whose results are not on their way."""
        return [
            number
            for (held_job, number), held in self._held.items()
            if held_job == job_id and not held.submitting
        ]

    def numbers_by_job(self) -> dict[str, list[int]]:
        """The numbers of every slice held, by job."""
        by_job: dict[str, list[int]] = {}
        for job_id, number in self._held:
            by_job.setdefault(job_id, []).append(number)
        return by_job

    def __len__(self) -> int:
        return len(self._held)
