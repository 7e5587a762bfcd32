"""The worker's main loop: ask for work, run it in sandboxes, submit results, return the rest.

One session each to the task distributor, the result submitter and the event router. A fetch
loop asks for a task whenever the worker holds fewer slices than twice its sandboxes; each job
gets a sandbox pool of its own, kept warm while the job has slices (sandboxes are never shared
between jobs). Every slice is held in the ``Ledger`` from the task that brings it until it is
submitted or returned: exactly one of the two, once.

Stopping: ``stop.soft`` stops fetching, returns every slice not yet in a sandbox, and lets those
running finish and submit; ``stop.hard`` returns the running ones too, at once. Either way the
held set is returned through ``returnAllSlices`` before the sessions close.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from dcp_worker.errors import DCPWorkerError, JobValueError, ProtocolError, WorkFunctionError
from dcp_worker.protocol.canonical_json import Verbatim
from dcp_worker.protocol.identity import Identity
from dcp_worker.protocol.sealed import seal
from dcp_worker.protocol.session import Session, SessionOptions, open_session
from dcp_worker.supervisor.job import JobSpec
from dcp_worker.supervisor.outcomes import BatchOutcome, SliceOutcome
from dcp_worker.supervisor.pool import SandboxLimits, SandboxPool
from dcp_worker.tagged_json import from_json, to_json
from dcp_worker.worker.artifacts import ArtifactFetcher, OriginPolicy
from dcp_worker.worker.compute_groups import request_groups
from dcp_worker.worker.config import WorkerConfig
from dcp_worker.worker.ledger import Ledger
from dcp_worker.worker.services import Services, discover
from dcp_worker.worker.task import (
    CAPABILITIES,
    FetchState,
    JobMessage,
    SliceMessage,
    Task,
    parse_task,
    result_body,
    status_body,
    work_emit_body,
)
from dcp_worker.worker.values import result_v2

__all__ = ["StopControl", "WorkerRun"]

log = logging.getLogger("dcp_worker")

WATCHDOG_SECONDS = 7.0
KEEPALIVE_AFTER_SECONDS = 30.0
DEFAULT_LIMITS = SandboxLimits(slice_timeout=300.0, memory_mb=1024)
# Per-slice measurements are not taken yet; these are the neutral values the scheduler accepts.
SLICE_METRICS = {
    "CPUTime": 0,
    "GPUTime": 0,
    "CPUDensity": 1,
    "GPUDensity": 0,
    "InDataSize": 0,
    "OutDataSize": 0,
}


@dataclass(slots=True)
class StopControl:
    """Set ``soft`` to finish running slices and stop; ``hard`` to stop at once."""

    soft: asyncio.Event = field(default_factory=asyncio.Event)
    hard: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass(slots=True)
class _JobRun:
    message: JobMessage
    pool: SandboxPool | None = None
    serving: asyncio.Task[None] | None = None
    broken: str | None = None
    ready: asyncio.Event = field(default_factory=asyncio.Event)


class WorkerRun:
    def __init__(
        self,
        config: WorkerConfig,
        identity: Identity,
        payment_address: str,
        worker_id: str,
        limits: SandboxLimits = DEFAULT_LIMITS,
        session_options: SessionOptions | None = None,
    ) -> None:
        self.config = config
        self.identity = identity
        self.payment_address = payment_address
        self.worker_id = worker_id
        self.limits = limits
        self.session_options = session_options or SessionOptions()
        self.ledger = Ledger()
        self._jobs: dict[str, _JobRun] = {}
        self._job_messages: dict[str, JobMessage] = {}
        self._seq = 0
        self._last_task_size = 0
        self._room = asyncio.Event()  # set when held slices fall below the fetch threshold
        self._tasks: asyncio.TaskGroup | None = None
        self._fetcher: ArtifactFetcher | None = None
        self._td: Session | None = None
        self._rs: Session | None = None
        self._er: Session | None = None
        self._stopping = False
        self.on_slice_done: Callable[[SliceMessage, bool], None] = lambda message, ok: None

    # -- the run ----------------------------------------------------------------------------

    async def run(self, stop: StopControl) -> None:
        location = self.config.scheduler
        policy = OriginPolicy(location, self.config.allowed_origins)
        async with aiohttp.ClientSession() as http:
            services = await discover(http, location)
            log.info(
                " . Task distributor %s, result submitter %s",
                services.task_distributor,
                services.result_submitter,
            )
            await self._run_with(http, services, policy, stop)

    async def _run_with(
        self, http: aiohttp.ClientSession, services: Services, policy: OriginPolicy, stop: StopControl
    ) -> None:
        options = self.session_options
        async with (
            open_session(services.task_distributor, self.identity, options=options) as td,
            open_session(services.result_submitter, self.identity, options=options) as rs,
            open_session(services.event_router, self.identity, options=options) as er,
        ):
            self._td, self._rs, self._er = td, rs, er
            self._fetcher = ArtifactFetcher(policy, http)
            try:
                async with asyncio.TaskGroup() as tasks:
                    self._tasks = tasks
                    fetching = tasks.create_task(self._fetch_loop(stop), name="fetch loop")
                    await stop.soft.wait()
                    self._stopping = True
                    fetching.cancel()
                    await self._wind_down(stop)
            finally:
                await self._return_all()

    async def _wind_down(self, stop: StopControl) -> None:
        """Return what has not started; let the rest finish unless told to stop hard."""
        for job in self._jobs.values():
            if job.pool is not None:
                await self._return(job.message.job_id, job.pool.withdraw(), "Worker stopping")
                job.pool.close()
        serving = [job.serving for job in self._jobs.values() if job.serving is not None]
        if not serving:
            return
        hard: asyncio.Task[Any] = asyncio.ensure_future(stop.hard.wait())
        running: set[asyncio.Task[Any]] = set(serving)
        while running and not hard.done():
            _, running = await asyncio.wait({*running, hard}, return_when=asyncio.FIRST_COMPLETED)
            running.discard(hard)
        for task in running:
            task.cancel()
        await asyncio.gather(*serving, return_exceptions=True)
        hard.cancel()

    # -- fetching -----------------------------------------------------------------------------

    def _wanted(self) -> bool:
        """Ask for more while fewer slices are held than the last task brought (at least
        twice the sandboxes), so that the next task arrives before the sandboxes run dry."""
        return len(self.ledger) < max(2 * self.config.sandbox_count(), self._last_task_size)

    async def _fetch_loop(self, stop: StopControl) -> None:
        first = True
        while True:
            if not self._wanted():
                self._room.clear()
                await self._room.wait()
                continue
            fetch_state = FetchState.NORMAL | (FetchState.STARTUP_CHECK if first else 0)
            try:
                task = await self._request_task(fetch_state)
            except ProtocolError as error:
                log.warning(" ! Could not fetch a task: %s", error)
                task = None
            first = False
            if task is None:
                with_timeout = asyncio.ensure_future(self._room.wait())
                await asyncio.wait([with_timeout], timeout=WATCHDOG_SECONDS)
                with_timeout.cancel()
                self._room.clear()
                continue
            self._accept(task)

    async def _request_task(self, fetch_state: int) -> Task | None:
        assert self._td is not None and self._rs is not None
        # dcp-client sends both a keepalive before every fetch; one is enough when a session
        # has been quiet for a while, and the round trips are saved when it has not.
        for session in (self._td, self._rs):
            if session.idle_seconds > KEEPALIVE_AFTER_SECONDS:
                await session.keepalive()
        self._seq += 1
        cpu = self.config.effective_cores()[0]
        data: dict[str, Any] = {
            "targetLoad": {"cpu": cpu, "gpu": 0, "longSlices": math.floor(cpu)},
            "coreStats": {
                "worker": self.worker_id,
                "lCores": cpu,
                "pCores": cpu,
                "sandbox": self.config.sandbox_count(),
            },
            "jobQuanta": {"CPU": {"0": 1}, "GPU": {"0": 1}},
            "capabilities": CAPABILITIES,
            "gpuSpeed": -1,
            "paymentAddress": self.payment_address,
            "jobIds": list(self.config.job_ids),
            "workerComputeGroups": request_groups(
                self.config.join, self._td.dcpsid or "", public=not self.config.leave_public_group
            ),
            "minimumWage": dict(self.config.minimum_wage),
            "soteriaJobs": None,
            "overdueSlices": None,
            "previouslyWorkedJobs": [],
            "rejectedJobs": [],
            "unresolvedJobs": [],
            "fetchState": fetch_state,
            "seq": self._seq,
        }
        if fetch_state & FetchState.STARTUP_CHECK:
            data["returnAllSlices"] = seal(self.identity, {"id": self.worker_id})
        log.debug(" * Fetching slices...")
        payload = await self._td.request("requestTask@3", data)
        return parse_task(payload, self._job_messages)

    def _accept(self, task: Task) -> None:
        assert self._tasks is not None
        for reason in task.refused:
            log.warning(" ! Refused part of a task: %s", reason)
        self._job_messages.update(task.jobs)
        by_job: dict[str, list[SliceMessage]] = defaultdict(list)
        refused: dict[str, list[int]] = defaultdict(list)
        for message in task.slices:
            if self.config.job_ids and message.job_id not in self.config.job_ids:
                if self.ledger.hold(message, task.authorization):
                    refused[message.job_id].append(message.number)
                continue
            if self.ledger.hold(message, task.authorization):
                by_job[message.job_id].append(message)
            else:
                log.warning(" ! The scheduler sent slice %d of %s twice", message.number, message.job_id)
        self._last_task_size = sum(len(slices) for slices in by_job.values())
        log.info(" . Fetched %d slices", self._last_task_size)
        for job_id, numbers in refused.items():
            log.warning(
                " ! Given %d slice(s) of %s, a job this worker was told not to run", len(numbers), job_id
            )
            self._tasks.create_task(self._return(job_id, numbers, "job not allowed by this worker"))
        for job_id, slices in by_job.items():
            self._tasks.create_task(self._start_slices(job_id, slices, task.authorization))

    # -- running ------------------------------------------------------------------------------

    async def _job(self, job_id: str) -> _JobRun:
        """The job's run, its work function and arguments fetched and its pool serving."""
        assert self._tasks is not None and self._fetcher is not None
        job = self._jobs.get(job_id)
        if job is not None:
            await job.ready.wait()
            return job
        job = self._jobs[job_id] = _JobRun(self._job_messages[job_id])
        message = job.message
        try:
            source = await self._fetcher.fetch(message.code_location, "fetchWorkFunctions")
            if not isinstance(source, str):
                raise JobValueError("fetchWorkFunctions: the work function is not text")
            arguments = list(message.arguments)
            for index, uri in message.arguments_location:
                while len(arguments) <= index:
                    arguments.append(None)
                arguments[index] = await self._fetcher.fetch(uri, "fetchArguments")
            spec = JobSpec(
                work_function=source,
                filename=f"{job_id}.js",
                arguments=[to_json(argument) for argument in arguments],
                public={key: str(value) for key, value in message.public.items() if isinstance(value, str)},
                strict=message.use_strict,
            )
        except DCPWorkerError as error:
            job.broken = f"EJOBFETCH: {error}"
            log.warning(" ! Job %s cannot run: %s", message.name, error)
            # Forgotten once its slices are returned, so that a later task tries it again.
            del self._jobs[job_id]
        else:
            if self._stopping:  # the stop came while the job's artifacts were on their way
                job.broken = "Worker stopping"
            else:
                job.pool = SandboxPool(spec, sandboxes=self.config.sandbox_count(), limits=self.limits)
                job.serving = self._tasks.create_task(self._serve(job), name=f"job {job_id}")
                log.info(" . Job: %s %s", message.name, job_id[:8])
        job.ready.set()
        return job

    async def _serve(self, job: _JobRun) -> None:
        assert job.pool is not None
        try:
            await job.pool.serve(lambda outcome: self._outcomes(job.message, outcome))
        except WorkFunctionError as error:
            job.broken = f"EUNCAUGHT: {error}"
            log.warning(" ! Job %s does not compile: %s", job.message.name, error)
            await self._return(job.message.job_id, job.pool.withdraw(), job.broken)
            await self._return(
                job.message.job_id,
                [held.message.number for held in self.ledger.held(job.message.job_id)],
                job.broken,
            )

    async def _start_slices(
        self, job_id: str, slices: Sequence[SliceMessage], authorization: Verbatim
    ) -> None:
        assert self._fetcher is not None and self._rs is not None
        job = await self._job(job_id)
        if job.broken is not None or job.pool is None or self._stopping:
            await self._return(
                job_id, [message.number for message in slices], job.broken or "Worker stopping"
            )
            return
        fetched = await asyncio.gather(
            *(self._fetcher.fetch(message.datum_uri, "fetchData") for message in slices),
            return_exceptions=True,
        )
        numbers: list[int] = []
        data: list[Any] = []
        for message, datum in zip(slices, fetched, strict=True):
            if isinstance(datum, BaseException):
                log.warning(" ! Slice %d of %s: %s", message.number, job.message.name, datum)
                await self._return(job_id, [message.number], "ESLICEFETCH")
                continue
            numbers.append(message.number)
            data.append(to_json(datum))
        if not numbers:
            return
        if self._stopping:
            await self._return(job_id, numbers, "Worker stopping")
            return
        # Queued before the slices run, so it reaches the scheduler before any of their results;
        # the slices need not wait for its answer.
        begin = status_body(self.worker_id, job_id, numbers, authorization, "begin")
        begun = self._rs.send_request("status", begin)
        job.pool.add(numbers, data)
        try:
            await begun
        except ProtocolError as error:
            log.warning(" ! status begin for %s: %s", job.message.name, error)

    def _outcomes(self, job: JobMessage, outcome: BatchOutcome) -> None:
        assert self._tasks is not None
        for slice_outcome in outcome:
            self._tasks.create_task(self._settle(job, slice_outcome))

    async def _settle(self, job: JobMessage, outcome: SliceOutcome) -> None:
        assert self._rs is not None and self._er is not None
        held = self.ledger.get(job.job_id, outcome.number)
        if held is None:
            return
        if outcome.error is not None:
            error = outcome.error
            payload = {
                "name": error.name,
                "message": error.message,
                "timestamp": int(time.time() * 1000),
                "jobName": job.name,
            }
            try:
                await self._er.request(
                    "workEmit",
                    work_emit_body(self.worker_id, held.message, held.authorization, "error", payload),
                )
            except ProtocolError as failure:
                log.warning(" ! workEmit: %s", failure)
            await self._return(job.job_id, [outcome.number], f"E{error.kind.upper()}")
            return
        value = from_json(outcome.value)
        body = result_body(
            self.worker_id,
            held.message,
            self.payment_address,
            held.authorization,
            result_v2(value),
            SLICE_METRICS,
        )
        try:
            await self._rs.request("result", body)
        except ProtocolError as error:
            log.warning(" ! Result of slice %d of %s refused: %s", outcome.number, job.name, error)
            await self._return(job.job_id, [outcome.number], "EResultSubmission")
            return
        if self.ledger.settle(job.job_id, outcome.number, submitted=True) is not None:
            log.info(" * Slice Completed: slice %d, %s", outcome.number, job.name)
            self.on_slice_done(held.message, True)
            self._room.set()

    # -- returning ----------------------------------------------------------------------------

    async def _return(self, job_id: str, numbers: Sequence[int], reason: str) -> None:
        """Return slices (those still held) to the scheduler, grouped by their authorization."""
        assert self._rs is not None
        groups: dict[int, tuple[Verbatim, list[int]]] = {}
        for number in numbers:
            held = self.ledger.settle(job_id, number, submitted=False)
            if held is not None:
                groups.setdefault(id(held.authorization), (held.authorization, []))[1].append(number)
                self.on_slice_done(held.message, False)
        for authorization, group in groups.values():
            try:
                await self._rs.request(
                    "status", status_body(self.worker_id, job_id, group, authorization, "return", reason)
                )
                log.info(" . Returned %d slice(s) of %s: %s", len(group), job_id[:8], reason)
            except ProtocolError as error:
                log.warning(" ! Could not return slices %s of %s: %s", group, job_id[:8], error)
        if groups:
            self._room.set()

    async def _return_all(self) -> None:
        """Give back whatever is still held, slice by slice, then ask the scheduler to release
        anything else it believes this worker holds."""
        by_job: dict[str, list[int]] = defaultdict(list)
        for held in self.ledger.held():
            by_job[held.message.job_id].append(held.message.number)
        for job_id, numbers in by_job.items():
            await self._return(job_id, numbers, "Worker stopping")
        if self._td is None:
            return
        data = {
            "paymentAddress": self.payment_address,
            "fetchState": FetchState.RETURN_ALL_SLICES,
            "returnAllSlices": seal(self.identity, {"id": self.worker_id}),
        }
        try:
            await self._td.request("requestTask@3", data)
        except ProtocolError as error:
            log.warning(" ! returnAllSlices: %s", error)
