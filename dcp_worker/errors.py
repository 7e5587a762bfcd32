"""The exceptions this package raises, in one hierarchy a caller can catch.

DCPWorkerError
├── UsageError             bad options or unreadable input (the CLI exits with status 2)
├── JobError               the job cannot run at all
│   └── WorkFunctionError  the work function or a module does not compile
├── SandboxError           a sandbox host could not be started
├── KVINError              text that is not KVIN, or a value KVIN cannot carry
└── SliceError             one slice failed; returned in place of its result, not raised
    ├── WorkFunctionException  the work function threw or its promise rejected
    ├── SliceTimeoutError      the slice ran past its wall-clock limit
    ├── MemoryLimitError       the slice's sandbox ran out of its memory cap
    ├── SandboxCrashError      the sandbox host died for another reason
    └── WorkRejectedError      the work function called work.reject()
"""

from __future__ import annotations


class DCPWorkerError(Exception):
    """Base class of every error this package raises."""


class UsageError(DCPWorkerError, ValueError):
    """An option or an input file is wrong; the message names it."""


class JobError(DCPWorkerError):
    """The job as a whole cannot run."""


class WorkFunctionError(JobError):
    """The work function (or a module supplied with the job) failed to compile."""

    def __init__(self, name: str, message: str, file: str, line: int | None = None) -> None:
        self.name = name
        self.message = message
        self.file = file
        self.line = line
        where = file if line is None else f"{file}:{line}"
        super().__init__(f"{where}: {name}: {message}")


class SandboxError(DCPWorkerError):
    """A sandbox host could not be started or broke its protocol."""


class KVINError(DCPWorkerError, ValueError):
    """Text that is not valid KVIN, or a value KVIN cannot carry; the message says where."""


class SliceError(DCPWorkerError):
    """A slice that failed. Results lists carry these in place of the slice's result."""

    kind = "error"

    def __init__(self, slice_number: int, name: str, message: str, stack: str | None = None) -> None:
        self.slice_number = slice_number
        self.name = name
        self.message = message
        self.stack = stack
        super().__init__(f"slice {slice_number}: {name}: {message}")

    def to_json(self) -> dict[str, str]:
        return {"name": self.name, "message": self.message}


class WorkFunctionException(SliceError):
    """The work function threw, or the promise it returned rejected."""


class SliceTimeoutError(SliceError):
    kind = "timeout"


class MemoryLimitError(SliceError):
    kind = "memory"


class SandboxCrashError(SliceError):
    kind = "crash"


class WorkRejectedError(SliceError):
    kind = "reject"
