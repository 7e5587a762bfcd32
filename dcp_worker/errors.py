"""The exceptions this package raises, in one hierarchy a caller can catch.

DCPWorkerError
├── UsageError             bad options or unreadable input (the CLI exits with status 2)
├── JobError               the job cannot run at all
│   └── WorkFunctionError  the work function or a module does not compile
├── SandboxError           a sandbox host could not be started
│   └── LockdownError          a sandbox host cannot lock down while lockdown is required
├── KVINError              text that is not KVIN, or a value KVIN cannot carry
├── JobValueError          a job's argument or datum that cannot be fetched or read
├── IdentityError          a private key or address that cannot be used
│   └── KeystoreError      a keystore file that is damaged, missing or cannot be written
│       └── PassphraseError    no passphrase tried unlocks the keystore
├── ControlError           no running worker answers on the control socket, or it refused
├── ProtocolError          a DCP session failed, or its peer broke the protocol
│   ├── ConnectError           the service cannot be reached, or refuses a session
│   ├── SessionClosedError     the session ended before a request was answered
│   ├── SignatureError         a message whose signature does not verify
│   ├── PeerIdentityError      a message from an owner other than the session's peer
│   ├── NonceError             a message that does not carry the nonce of our last ack
│   └── RemoteError            the peer answered a request with an error (code, message)
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

    exit_status = 2  # what the command line exits with when it stops on this error


class WorkerStartError(DCPWorkerError):
    """The worker could not start; ``exit_status`` is dcp-worker's for the cause."""

    def __init__(self, message: str, exit_status: int) -> None:
        super().__init__(message)
        self.exit_status = exit_status


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


class LockdownError(SandboxError):
    """Lockdown is required, and a sandbox host cannot raise every wall (or lockdown is off)."""


class KVINError(DCPWorkerError, ValueError):
    """Text that is not valid KVIN, or a value KVIN cannot carry; the message says where."""


class JobValueError(DCPWorkerError, ValueError):
    """A job's work function, argument or datum that cannot be fetched or read: a bad URI, a
    refused origin, an HTTP failure, or a body that is not what its media type says."""

    code = "EJOBFETCH"  # the reason DCP gives when returning the job's slices


class ModuleError(JobValueError):
    """A module a job depends on that the package manager cannot locate, or that cannot be fetched."""

    code = "ENOMODULE"


class IdentityError(DCPWorkerError, ValueError):
    """A private key or an address that cannot be used; the message says why."""


class KeystoreError(IdentityError):
    """A keystore file that is damaged, missing or cannot be written; the message names it."""


class PassphraseError(KeystoreError):
    """None of the passphrases tried unlocks the keystore."""


class ControlError(DCPWorkerError):
    """The control socket cannot be served or reached, or the worker refused the command."""


class ProtocolError(DCPWorkerError):
    """A DCP session failed, or the peer broke the protocol."""


class ConnectError(ProtocolError):
    """The service cannot be reached, or it refused to open a session."""


class SessionClosedError(ProtocolError):
    """The session ended before the request was answered."""


class SignatureError(ProtocolError):
    """A message whose signature is malformed or does not verify."""


class PeerIdentityError(ProtocolError):
    """A message signed by someone other than the session's peer, or a peer whose address
    changed since it was first met (the identity cache)."""


class NonceError(ProtocolError):
    """A message that does not carry the nonce of the last ack we sent: stale or replayed."""


class RemoteError(ProtocolError):
    """The peer answered a request with an error payload."""

    def __init__(self, operation: str, message: str, code: str | None = None) -> None:
        self.operation = operation
        self.message = message
        self.code = code
        super().__init__(f"{operation}: {message}" + (f" ({code})" if code else ""))


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
