"""``dcp-worker``'s entry point, ``python -m dcp_worker``, and the main module of the single-file build.

Two invocations skip the CLI and its imports: ``dcp-worker sandbox-host`` (hidden: how a
supervisor starts a sandbox host when the worker is a compiled binary with no Python
interpreter beside it) and ``dcp-worker --version``.
"""

from __future__ import annotations

import sys

SANDBOX_HOST_COMMAND = "sandbox-host"


def main() -> None:
    arguments = sys.argv[1:]
    if arguments[:1] == [SANDBOX_HOST_COMMAND]:
        from dcp_worker.sandbox.host import main as host_main

        host_main(arguments[1:])
    elif arguments == ["--version"]:
        from dcp_worker import __version__

        print(f"dcp-worker {__version__}")
    else:
        from dcp_worker.cli.main import run

        run()


if __name__ == "__main__":
    main()
