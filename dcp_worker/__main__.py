"""``dcp-worker``'s entry point, ``python -m dcp_worker``, and the main module of the single-file build.

Two kinds of invocation skip the CLI and its imports: the package's own subprocesses in the
single-file build (``dcp-worker sandbox-host`` and the other hidden names of
``self_command.PROGRAMS``), and ``dcp-worker --version``.
"""

from __future__ import annotations

import importlib
import sys

from dcp_worker.self_command import PROGRAMS


def main() -> None:
    arguments = sys.argv[1:]
    program = PROGRAMS.get(arguments[0]) if arguments else None
    if program is not None:
        sys.argv = [f"dcp-worker {arguments[0]}", *arguments[1:]]
        sys.exit(importlib.import_module(program).main())
    elif arguments == ["--version"]:
        from dcp_worker import __version__

        print(f"dcp-worker {__version__}")
    else:
        from dcp_worker.cli.main import run

        run()


if __name__ == "__main__":
    main()
