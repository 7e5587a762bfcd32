"""The worker's main loop: ask for work, run it in sandboxes, submit results, return the rest.

One session to the task distributor, two to the event router (events, and the scheduler's
commands: ``schedmsg``), and one or two to the result submitter (``ResultLanes``: a second when
results come faster than one session is answered). A fetch
loop asks for a task whenever the worker holds fewer slices than twice its sandboxes; each job
gets a sandbox pool of its own, kept warm while the job has slices (sandboxes are never shared
between jobs). Every slice is held in the ``Ledger`` from the task that brings it until it is
submitted or returned: exactly one of the two, once.

While it holds slices, the worker tells the scheduler which, every Soteria period (4 minutes
unless a task's ``schedulerConfig`` says otherwise), with its next request for work or alone.

Stopping: ``stop.soft`` stops fetching, returns every slice not yet in a sandbox, and lets those
running finish and submit; ``stop.hard`` returns the running ones too, at once. Either way the
held set is returned through ``returnAllSlices`` before the sessions close.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import math
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson

from dcp_worker.errors import DCPWorkerError, JobValueError, ProtocolError, WorkFunctionError
from dcp_worker.protocol.canonical_json import Verbatim
from dcp_worker.protocol.identity import Identity
from dcp_worker.protocol.sealed import seal
from dcp_worker.protocol.session import Session, SessionOptions, open_sessions
from dcp_worker.supervisor.budget import HostBudget
from dcp_worker.supervisor.job import WORKTIMES, JobSpec
from dcp_worker.supervisor.outcomes import BatchOutcome, SliceOutcome
from dcp_worker.supervisor.pool import SandboxLimits, SandboxPool
from dcp_worker.tagged_json import from_json, to_json
from dcp_worker.worker.artifacts import ArtifactFetcher, OriginPolicy
from dcp_worker.worker.compute_groups import request_groups
from dcp_worker.worker.config import WorkerConfig
from dcp_worker.worker.ledger import HeldSlice, Ledger
from dcp_worker.worker.modules import ModuleFetcher
from dcp_worker.worker.reports import NO_PROGRESS, Emit, error_result, failure_code, metrics, slice_emits
from dcp_worker.worker.result_lanes import ResultLanes, result_lanes
from dcp_worker.worker.schedmsg import SchedMsg, listen
from dcp_worker.worker.services import Services, discover
from dcp_worker.worker.status import JobActivity, WorkerStatus
from dcp_worker.worker.task import (
    CAPABILITIES,
    FetchState,
    JobMessage,
    SliceMessage,
    Task,
    parse_task,
    result_body,
    soteria_period,
    status_body,
    work_emit_body,
)
from dcp_worker.worker.values import result_v2

__all__ = ["StopControl", "WorkerRun"]

log = logging.getLogger("dcp_worker")

WATCHDOG_SECONDS = 7.0
KEEPALIVE_AFTER_SECONDS = 30.0
DEFAULT_LIMITS = SandboxLimits()
REJECTED_JOBS_KEPT = 64  # dcp-client keeps a ring of the jobs whose work functions rejected work


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
        self._job_ids = list(config.job_ids)  # the jobs to work on (empty: any); the scheduler may edit it
        self._stop: StopControl | None = None
        self.exit_status = 0  # what the scheduler asked the worker to exit with
        self._last_task_size = 0
        self._room = asyncio.Event()  # set when held slices fall below the fetch threshold
        # Every job's pool draws its hosts from one budget, so an idle job's hosts make way.
        self._budget = HostBudget(config.sandbox_count())
        self._tasks: asyncio.TaskGroup | None = None
        self._fetcher: ArtifactFetcher | None = None
        self._modules: ModuleFetcher | None = None
        self._td: Session | None = None
        self._rs: Session | None = None
        self._results: ResultLanes | None = None
        self._er: Session | None = None
        self._stopping = False
        self._policy: OriginPolicy | None = None
        self._rejected_jobs: collections.deque[str] = collections.deque(maxlen=REJECTED_JOBS_KEPT)
        self._soteria_seconds = soteria_period({})
        self._last_soteria = time.monotonic()
        self._public_group_now = not config.leave_public_group
        self._state = "Idle"
        self._fetch_allowed = True
        self._held_back = False
        self._governor = "off"
        self._giving_back = False
        self._earned = 0.0
        self._last_task: tuple[float, int, int] | None = None  # when, slices, jobs
        self.on_slice_done: Callable[[SliceMessage, bool], None] = lambda message, ok: None

    def status(self) -> WorkerStatus:
        jobs = tuple(
            JobActivity(
                job_id,
                job.message.name,
                job.pool.sandboxes_up if job.pool is not None else 0,
                job.pool.waiting if job.pool is not None else 0,
                len(self.ledger.numbers(job_id)),
            )
            for job_id, job in self._jobs.items()
        )
        when, slices, job_count = self._last_task or (None, 0, 0)
        fetching = self._state == "Fetching Work..."
        return WorkerStatus(
            self._state if fetching or not len(self.ledger) else "Working",
            len(self.ledger),
            self.ledger.submitted,
            self.ledger.returned,
            self._earned,
            when,
            slices,
            job_count,
            jobs,
            self._governor,
        )

    # -- the run ----------------------------------------------------------------------------

    async def run(self, stop: StopControl) -> None:
        self._stop = stop
        location = self.config.scheduler
        policy = self._policy = OriginPolicy(location, self.config.allowed_origins)
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
        locations = [services.task_distributor, services.result_submitter, services.event_router]
        async with (
            open_sessions(locations, self.identity, options) as (td, rs, er),
            result_lanes(rs, self.identity, options) as results,
            contextlib.AsyncExitStack() as package_manager,
        ):
            self._td, self._rs, self._er, self._results = td, rs, er, results
            self._fetcher = ArtifactFetcher(policy, http)
            self._modules = ModuleFetcher(
                services.package_manager, self.identity, options, self._fetcher, package_manager
            )
            try:
                async with asyncio.TaskGroup() as tasks:
                    self._tasks = tasks
                    fetching = tasks.create_task(self._fetch_loop(stop), name="fetch loop")
                    stopped = asyncio.Event()
                    commands = SchedMsg(self.identity.address, self.worker_id, self)
                    tasks.create_task(
                        listen(services.event_router, self.identity, options, commands, stopped),
                        name="scheduler commands",
                    )
                    await stop.soft.wait()
                    self._stopping = True
                    fetching.cancel()
                    await self._wind_down(stop)
                    stopped.set()
            finally:
                await self._return_all()

    async def _wind_down(self, stop: StopControl) -> None:
        """Return what has not started; let the rest finish unless told to stop hard, or unless
        the governor holds sandboxes stopped: their slices would not finish, so all go back."""
        if self._held_back and not stop.hard.is_set():
            log.info(" . The governor holds sandboxes stopped; returning their slices now")
            stop.hard.set()
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
        if not self._fetch_allowed:
            return False
        return len(self.ledger) < max(2 * self.config.sandbox_count(), self._last_task_size)

    # -- governance ---------------------------------------------------------------------------

    def host_pids(self) -> list[int]:
        """Every sandbox host's process id, the oldest job's first."""
        return [pid for job in self._jobs.values() if job.pool is not None for pid in job.pool.host_pids]

    def govern(self, fetch: bool, held_back: bool, give_back: bool, summary: str) -> None:
        """The governor's word: whether to fetch, whether some sandboxes are held stopped (by its
        throttler), and whether to give back every slice held; ``summary`` is its state."""
        self._fetch_allowed = fetch
        self._held_back = held_back
        self._governor = summary
        if fetch:
            self._room.set()
        if give_back and self._tasks is not None and not self._giving_back and len(self.ledger):
            self._giving_back = True
            self._tasks.create_task(self._give_back(), name="give back")

    async def _give_back(self) -> None:
        """Return every slice held by a job whose sandboxes are up, the running ones too."""
        try:
            for job_id, job in list(self._jobs.items()):
                if job.pool is not None:
                    await self._give_back_job(job_id, "Worker paused")
        finally:
            self._giving_back = False

    async def _give_back_job(self, job_id: str, reason: str) -> None:
        """Return every slice of a job held, the running ones too. A job whose sandboxes are up
        loses them, and starts afresh when work of it comes again."""
        job = self._jobs.get(job_id)
        if job is not None and job.pool is not None:
            job.broken = reason
            job.pool.withdraw()
            job.pool.close()
            if job.serving is not None:
                job.serving.cancel()
                await asyncio.gather(job.serving, return_exceptions=True)
            del self._jobs[job_id]
        await self._return(job_id, self.ledger.returnable(job_id), reason)

    # -- the scheduler's commands (schedmsg.CommandTarget) ------------------------------------

    def stop_now(self, exit_status: int) -> None:
        self.exit_status = exit_status
        if self._stop is not None:
            self._stop.soft.set()
            self._stop.hard.set()

    def give_back_job(self, job_id: str, reason: str) -> None:
        if self._tasks is not None:
            self._tasks.create_task(self._give_back_job(job_id, reason), name=f"give back {job_id}")

    def prioritise(self, job_id: str, immediate: bool) -> None:
        if job_id not in self._job_ids:
            self._job_ids.append(job_id)
        self._room.set()  # ask again now, for the jobs as they are
        if immediate:
            for other in self.ledger.numbers_by_job():
                if other not in self._job_ids:
                    self.give_back_job(other, "SchedMsg")

    def unprioritise(self, job_id: str, immediate: bool) -> None:
        if job_id in self._job_ids:
            self._job_ids.remove(job_id)
        self._room.set()
        if immediate:
            self.give_back_job(job_id, "SchedMsg")

    def _soteria_due(self) -> bool:
        return len(self.ledger) > 0 and time.monotonic() - self._last_soteria >= self._soteria_seconds

    async def _fetch_loop(self, stop: StopControl) -> None:
        first = True
        while True:
            if not self._wanted():
                if self._soteria_due():
                    await self._notify_soteria()
                    continue
                self._room.clear()
                wait = self._last_soteria + self._soteria_seconds - time.monotonic()
                await self._wait_for_room(max(wait, 0.0) if len(self.ledger) else None)
                continue
            fetch_state = FetchState.NORMAL
            if first:
                fetch_state |= FetchState.STARTUP_CHECK
            elif self._soteria_due():
                fetch_state |= FetchState.NOTIFY_SOTERIA
            self._state = "Fetching Work..."
            # Cleared before asking, not after: what changes while the answer is on its way (a
            # slice done, the scheduler's list of jobs) makes the next ask come at once.
            self._room.clear()
            try:
                task = await self._request_task(fetch_state)
            except ProtocolError as error:
                log.warning(" ! Could not fetch a task: %s", error)
                task = None
            first = False
            got_work = task is not None and len(task.slices) > 0
            self._state = "Idle" if got_work else "No Work Available"
            self._last_task = (time.time(), len(task.slices) if task else 0, len(task.jobs) if task else 0)
            self._fallback(got_work)
            if task is None:
                await self._wait_for_room(WATCHDOG_SECONDS)
                continue
            self._accept(task)

    async def _wait_for_room(self, timeout: float | None) -> None:
        waiting = asyncio.ensure_future(self._room.wait())
        try:
            await asyncio.wait([waiting], timeout=timeout)
        finally:
            waiting.cancel()

    def _fallback(self, got_work: bool) -> None:
        """--publicGroupFallback: after work, ask without the public group (prefer one's own
        groups' work); after none, with it."""
        if self.config.public_group_fallback and not self.config.leave_public_group:
            self._public_group_now = not got_work

    async def _notify_soteria(self) -> None:
        """Tell the scheduler which slices this worker still holds, with no request for work."""
        assert self._td is not None
        self._last_soteria = time.monotonic()
        data = {
            "coreStats": {"worker": self.worker_id},
            "paymentAddress": self.payment_address,
            "soteriaJobs": self.ledger.numbers_by_job() or None,
            "overdueSlices": None,
            "fetchState": FetchState.NOTIFY_SOTERIA,
        }
        try:
            await self._td.request("requestTask@3", data)
        except ProtocolError as error:
            log.warning(" ! Could not notify the scheduler of held slices: %s", error)

    async def _request_task(self, fetch_state: int) -> Task | None:
        assert self._td is not None and self._rs is not None
        # dcp-client sends both a keepalive before every fetch; one is enough when a session
        # has been quiet for a while, and the round trips are saved when it has not.
        for session in (self._td, self._rs):
            if session.idle_seconds > KEEPALIVE_AFTER_SECONDS:
                await session.keepalive()
        self._seq += 1
        soteria_jobs = None
        if fetch_state & FetchState.NOTIFY_SOTERIA:
            self._last_soteria = time.monotonic()
            soteria_jobs = self.ledger.numbers_by_job() or None
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
            "jobIds": list(self._job_ids),
            "workerComputeGroups": request_groups(
                self.config.join, self._td.dcpsid or "", public=self._public_group_now
            ),
            "minimumWage": dict(self.config.minimum_wage),
            "soteriaJobs": soteria_jobs,
            "overdueSlices": None,
            "previouslyWorkedJobs": [],
            "rejectedJobs": list(self._rejected_jobs),
            "unresolvedJobs": [job_id for job_id, job in self._jobs.items() if not job.ready.is_set()],
            "fetchState": fetch_state,
            "worktimes": list(WORKTIMES),
            "seq": self._seq,
        }
        if fetch_state & FetchState.STARTUP_CHECK:
            data["returnAllSlices"] = seal(self.identity, {"id": self.worker_id})
        log.debug(" * Fetching slices...")
        payload = await self._td.request("requestTask@3", data)
        return parse_task(payload, self._job_messages)

    def _accept(self, task: Task) -> None:
        assert self._tasks is not None and self._policy is not None
        for reason in task.refused:
            log.warning(" ! Refused part of a task: %s", reason)
        if task.scheduler_config:
            self._soteria_seconds = soteria_period(task.scheduler_config)
        if self.config.trust_scheduler:
            for origin, purpose in task.origin_grants():
                self._policy.grant(origin, purpose)
        self._job_messages.update(task.jobs)
        by_job: dict[str, list[SliceMessage]] = defaultdict(list)
        refused: dict[str, list[int]] = defaultdict(list)
        for message in task.slices:
            if self._job_ids and message.job_id not in self._job_ids:
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
        assert self._tasks is not None and self._fetcher is not None and self._modules is not None
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
            modules = await self._modules.modules(message.dependencies) if message.dependencies else {}
            spec = JobSpec(
                work_function=source,
                filename=f"{job_id}.js",
                arguments=[to_json(argument) for argument in arguments],
                public={key: str(value) for key, value in message.public.items() if isinstance(value, str)},
                strict=message.use_strict,
                modules=modules,
            )
        except DCPWorkerError as error:
            code = error.code if isinstance(error, JobValueError) else JobValueError.code
            job.broken = f"{code}: {error}"
            log.warning(" ! Job %s cannot run: %s", message.name, error)
            # Forgotten once its slices are returned, so that a later task tries it again.
            del self._jobs[job_id]
        else:
            if self._stopping:  # the stop came while the job's artifacts were on their way
                job.broken = "Worker stopping"
            else:
                job.pool = SandboxPool(
                    spec, sandboxes=self.config.sandbox_count(), limits=self.limits, budget=self._budget
                )
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
                self.ledger.numbers(job.message.job_id),
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
            *(self._fetcher.fetch_sized(message.datum_uri, "fetchData") for message in slices),
            return_exceptions=True,
        )
        numbers: list[int] = []
        data: list[Any] = []
        for message, datum in zip(slices, fetched, strict=True):
            if isinstance(datum, BaseException):
                log.warning(" ! Slice %d of %s: %s", message.number, job.message.name, datum)
                await self._return(job_id, [message.number], "ESLICEFETCH")
                continue
            held = self.ledger.get(job_id, message.number)
            if held is None:  # given back while its datum was on its way
                continue
            held.in_size = datum[1]
            numbers.append(message.number)
            data.append(to_json(datum[0]))
        if not numbers:
            return
        if self._stopping or job.broken is not None:
            await self._return(job_id, numbers, job.broken or "Worker stopping")
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
        seconds = outcome.seconds / max(len(outcome), 1)
        for slice_outcome in outcome:
            self._tasks.create_task(self._settle(job, slice_outcome, seconds))

    async def _settle(self, job: JobMessage, outcome: SliceOutcome, seconds: float) -> None:
        """Submit a slice's result, or return it; first send the events its run made."""
        held = self.ledger.get(job.job_id, outcome.number)
        if held is None:
            return
        sent = [self._emit(held, emit) for emit in slice_emits(outcome, job.name, seconds)]
        error = outcome.error
        if error is not None and error.kind == "reject":
            await self._reject_job(job, error.message)
        elif error is not None and error.kind != "error":
            log.warning(" ! Slice %d of %s failed: %s", outcome.number, job.name, error.message)
            await self._return(job.job_id, [outcome.number], failure_code(error))
        elif error is None and not outcome.called_progress:
            log.warning(" ! Slice %d of %s never called progress()", outcome.number, job.name)
            await self._return(job.job_id, [outcome.number], NO_PROGRESS)
        else:
            if error is not None:
                log.warning(
                    " ! Slice %d of %s threw %s: %s", outcome.number, job.name, error.name, error.message
                )
            value = error_result(error) if error is not None else from_json(outcome.value)
            await self._submit(job, held, value, seconds)
        for reply in asyncio.as_completed(sent):
            try:
                await reply
            except ProtocolError as failure:
                log.warning(" ! workEmit: %s", failure)

    def _emit(self, held: HeldSlice, emit: Emit) -> asyncio.Future[Any]:
        assert self._er is not None
        body = work_emit_body(self.worker_id, held.message, held.authorization, emit.event, emit.payload)
        return self._er.send_request("workEmit", body)

    async def _submit(self, job: JobMessage, held: HeldSlice, value: Any, seconds: float) -> None:
        assert self._results is not None
        envelope = result_v2(value)
        measured = metrics(seconds, held.in_size, len(orjson.dumps(envelope)))
        body = result_body(
            self.worker_id, held.message, self.payment_address, held.authorization, envelope, measured
        )
        number = held.message.number
        held.submitting = True
        try:
            answer = await self._results.request("result", body)
        except ProtocolError as error:
            log.warning(" ! Result of slice %d of %s refused: %s", number, job.name, error)
            await self._return(job.job_id, [number], "EResultSubmission")
            return
        if self.ledger.settle(job.job_id, number, submitted=True) is not None:
            log.info(" * Slice Completed: slice %d, %s", number, job.name)
            self._paid(answer, job)
            self.on_slice_done(held.message, True)
            self._room.set()

    def _paid(self, answer: Any, job: JobMessage) -> None:
        amount = answer.get("slicePaymentAmount") if isinstance(answer, dict) else None
        try:
            paid = float(amount) if amount is not None else 0.0
        except (TypeError, ValueError):
            log.warning(" ! Failed to parse payment: %r", amount)
            return
        if paid:
            self._earned += paid
            log.debug(" . Payment: %s ⊇ %s", amount, job.job_id[:8])

    async def _reject_job(self, job: JobMessage, reason: str) -> None:
        """work.reject(): as dcp-client does, give the whole job back and ask for it no more."""
        log.warning(" ! Job %s rejected by its work function: %s", job.name, reason or "(no reason)")
        if job.job_id not in self._rejected_jobs:
            self._rejected_jobs.append(job.job_id)
        run = self._jobs.get(job.job_id)
        if run is not None and run.pool is not None and run.broken is None:
            run.broken = "EWORKREJECT"
            run.pool.withdraw()
            run.pool.close()
        await self._return(job.job_id, self.ledger.returnable(job.job_id), "EWORKREJECT")

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
        for job_id, numbers in self.ledger.numbers_by_job().items():
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
