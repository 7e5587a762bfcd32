"""A test's processes as /proc shows them (Linux): a process's descendants, and which of them
are sandbox hosts."""

from __future__ import annotations

import os

__all__ = ["descendants", "sandbox_hosts"]


def _children() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as f:
                text = f.read()
        except OSError:  # gone meanwhile
            continue
        # The command name is in parentheses and may contain spaces; the ppid follows the state.
        fields = text[text.rfind(b")") + 2 :].split()
        if len(fields) > 1:
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    return children


def descendants(root: int) -> list[int]:
    """The live descendants of ``root`` (not ``root`` itself)."""
    children = _children()
    found, stack = [], list(children.get(root, ()))
    while stack:
        pid = stack.pop()
        found.append(pid)
        stack.extend(children.get(pid, ()))
    return found


def sandbox_hosts(root: int) -> list[int]:
    """The descendants of ``root`` that are sandbox hosts: ``python -m dcp_worker.sandbox.host``,
    or the single-file binary run as ``dcp-worker sandbox-host``."""
    hosts = []
    for pid in descendants(root):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if b"dcp_worker.sandbox.host" in argv or argv[1:2] == [b"sandbox-host"]:
            hosts.append(pid)
    return hosts
