"""A snapshot of what the worker is doing, for the status report and the dashboard."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["JobActivity", "WorkerStatus"]


@dataclass(frozen=True, slots=True)
class JobActivity:
    job_id: str
    name: str
    sandboxes: int  # hosts up for the job
    waiting: int  # slices queued for its sandboxes
    held: int  # slices of the job this worker holds


@dataclass(frozen=True, slots=True)
class WorkerStatus:
    state: str  # "Idle", "Fetching Work...", "Working" or "No Work Available"
    held: int
    submitted: int
    returned: int
    earned: float  # the sum of the scheduler's slicePaymentAmount answers
    last_task_at: float | None  # time.time() of the last task request
    last_task_slices: int
    last_task_jobs: int
    jobs: tuple[JobActivity, ...] = field(default=())
    governor: str = "off"  # the governor's state, as it says it

    @property
    def sandboxes(self) -> int:
        return sum(job.sandboxes for job in self.jobs)

    @property
    def queued(self) -> int:
        return sum(job.waiting for job in self.jobs)

    @property
    def working(self) -> int:
        return self.held - self.queued
