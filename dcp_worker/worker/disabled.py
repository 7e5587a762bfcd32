"""A worker the scheduler has disabled: a ``kill`` command that is not temporary leaves a mark,
and the worker will not start again until someone removes it.

dcp-client keeps the mark in its local storage and asks at the next start whether to work anyway;
a worker run by a service manager has no one to ask, so here the mark is a file, and removing it
is the answer.
"""

from __future__ import annotations

from pathlib import Path

from dcp_worker.protocol.dcp_home import resource_dir

__all__ = ["disable", "marker", "refusal"]


def marker() -> Path:
    """``<resource dir>/dcp-worker/disabled`` (``~/.dcp/dcp-worker/disabled``)."""
    return resource_dir() / "dcp-worker" / "disabled"


def disable(why: str) -> None:
    """Leave the mark, saying ``why`` (one line)."""
    path = marker()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(why + "\n")


def refusal() -> str | None:
    """Why this worker must not start, or None when it may."""
    path = marker()
    try:
        why = path.read_text(errors="replace").strip()
    except FileNotFoundError:
        return None
    except OSError as error:
        why = f"unreadable: {error.strerror}"
    return f"this worker was disabled by its scheduler ({why}); remove {path} to let it work again"
