"""Running one of the package's own programs (a module's ``main``) as a subprocess.

Under Python that is ``python -m MODULE``. The single-file build has no interpreter beside it:
it runs its own executable with a hidden first argument, which ``dcp_worker.__main__`` turns
back into the module's ``main()`` (and ``tools/build_binary.py`` makes sure the modules are in).
"""

from __future__ import annotations

import sys

# Hidden first argument -> the module whose main() it runs.
PROGRAMS = {
    "sandbox-host": "dcp_worker.sandbox.host",
    "sandbox-lockdown-probe": "dcp_worker.sandbox.lockdown",
    "x-idle": "dcp_worker.governor.x_idle",
}
_ARGUMENT_FOR = {module: argument for argument, module in PROGRAMS.items()}


def compiled_executable() -> str | None:
    """The running executable, when this is the single-file build (Nuitka gives every module it
    compiled a ``__compiled__`` record); None under Python."""
    compiled = globals().get("__compiled__")
    executable = getattr(compiled, "process_exe", None)
    return str(executable) if executable else None


def program_command(module: str) -> list[str]:
    """The command line that runs ``module``'s ``main()`` (one of ``PROGRAMS``) in a new process."""
    executable = compiled_executable()
    if executable is None:
        return [sys.executable, "-m", module]
    return [executable, _ARGUMENT_FOR[module]]
