"""The governor: keeps the worker out of its host owner's way.

``Governor`` decides from ``GovernorSettings`` how many sandboxes may run (0: paused), whether
to fetch, and why; ``Throttler`` stops and continues sandbox hosts to honour the decision and
the CPU cap; ``serve_control`` lets ``dcp-worker pause|resume|status`` reach a running worker.
"""

from dcp_worker.governor.control import (
    ControlHandlers,
    control_socket_path,
    governor_handlers,
    request,
    serve_control,
)
from dcp_worker.governor.governor import Decision, Governor, Sources
from dcp_worker.governor.settings import (
    OPTION_FIELDS,
    OPTION_HELP,
    OPTION_NAMES,
    GovernorSettings,
    HoursWindow,
    parse_hours,
    parse_option,
)
from dcp_worker.governor.throttle import Throttler

__all__ = [
    "OPTION_FIELDS",
    "OPTION_HELP",
    "OPTION_NAMES",
    "ControlHandlers",
    "Decision",
    "Governor",
    "GovernorSettings",
    "HoursWindow",
    "Sources",
    "Throttler",
    "control_socket_path",
    "governor_handlers",
    "parse_hours",
    "parse_option",
    "request",
    "serve_control",
]
