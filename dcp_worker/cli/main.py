"""The ``dcp-worker`` command line: a small typer app over the package's public APIs."""

from __future__ import annotations

import signal
import sys

import typer

from dcp_worker.cli.control import pause, resume, status
from dcp_worker.cli.evaluator import evaluator
from dcp_worker.cli.keys import keys
from dcp_worker.cli.localexec import localexec
from dcp_worker.cli.worker import worker_options
from dcp_worker.errors import DCPWorkerError

app = typer.Typer(
    name="dcp-worker",
    help="A DCP worker: runs DCP work functions in locked-down V8 sandboxes.",
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    invoke_without_command=True,
)
app.command()(localexec)
app.command()(evaluator)
app.add_typer(keys)
for control_command in (pause, resume, status):
    app.command()(control_command)


app.callback()(worker_options)


def fail(message: str, status: int = 2) -> None:
    print(f"dcp-worker: error: {message}", file=sys.stderr)
    sys.exit(status)


def run() -> None:
    """Console-script entry point: every failure is one line on stderr, never a traceback."""
    # A shell script's background job starts with SIGINT ignored, and Python keeps it so; but
    # `kill -INT` must stop localexec and the evaluator as it stops the worker.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    command = typer.main.get_command(app)
    try:
        status = command.main(prog_name="dcp-worker", standalone_mode=False)
    except DCPWorkerError as error:
        fail(str(error), error.exit_status)
    except typer.TyperException as error:
        message = getattr(error, "format_message", error.__str__)()
        if type(error).__name__ == "NoArgsIsHelpError":
            # `dcp-worker keys` alone: the help is the answer, not an error line.
            print(message, file=sys.stderr)
            sys.exit(2)
        fail(message, getattr(error, "exit_code", 2))
    except (KeyboardInterrupt, typer.Abort):
        fail("interrupted", 130)
    sys.exit(status if isinstance(status, int) else 0)
