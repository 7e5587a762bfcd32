"""Readings from Linux's /proc: the machine's CPU time and RAM, and our own process tree's share.

"Our tree" is this process and every live descendant (the sandbox hosts and anything they
start), plus the CPU time of children already reaped (``cutime``/``cstime``), so that a host
that ends between two readings does not make its time look like another program's.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

__all__ = ["CpuSample", "MemorySample", "ProcessStat", "read_cpu", "read_memory"]

PROC = Path("/proc")
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


@dataclass(frozen=True, slots=True)
class ProcessStat:
    """The fields of ``/proc/<pid>/stat`` the governor uses (times in clock ticks)."""

    pid: int
    state: str
    parent: int
    cpu_ticks: int  # utime + stime
    reaped_children_ticks: int  # cutime + cstime
    rss_bytes: int


def process_stat(pid: int, proc: Path = PROC) -> ProcessStat | None:
    """``None`` when the process has gone (or is not readable)."""
    try:
        # os.open and os.read: a third of the cost of Path.read_text, over a scan of /proc.
        descriptor = os.open(proc / str(pid) / "stat", os.O_RDONLY)
    except OSError:
        return None
    try:
        text = os.read(descriptor, 4096)
    except OSError:
        return None
    finally:
        os.close(descriptor)
    # The command name (field 2) is in parentheses and may hold spaces and parentheses.
    fields = text[text.rindex(b")") + 2 :].split()
    return ProcessStat(
        pid=pid,
        state=fields[0].decode(),
        parent=int(fields[1]),
        cpu_ticks=int(fields[11]) + int(fields[12]),
        reaped_children_ticks=int(fields[13]) + int(fields[14]),
        rss_bytes=int(fields[21]) * PAGE_SIZE,
    )


def _all_processes(proc: Path) -> Iterator[ProcessStat]:
    for entry in os.scandir(proc):
        if entry.name.isdigit() and (stat := process_stat(int(entry.name), proc)) is not None:
            yield stat


def process_tree(root: int, proc: Path = PROC) -> list[ProcessStat]:
    """``root`` and its live descendants (``root`` first); empty if ``root`` has gone."""
    children: dict[int, list[ProcessStat]] = {}
    top: ProcessStat | None = None
    for stat in _all_processes(proc):
        if stat.pid == root:
            top = stat
        children.setdefault(stat.parent, []).append(stat)
    if top is None:
        return []
    tree, queue = [top], [root]
    while queue:
        for child in children.get(queue.pop(), ()):
            tree.append(child)
            queue.append(child.pid)
    return tree


@dataclass(frozen=True, slots=True)
class CpuSample:
    """Cumulative clock ticks: all CPUs' total and busy time, and our tree's share of busy."""

    total: int
    busy: int
    ours: int


def read_cpu(root: int | None = None, proc: Path = PROC) -> CpuSample:
    """The machine's CPU ticks from ``/proc/stat`` and those of ``root``'s tree (default: us)."""
    with open(proc / "stat") as stream:
        line = stream.readline().split()
    if line[0] != "cpu":
        raise OSError(f"{proc / 'stat'}: no cpu line first")
    # user nice system idle iowait irq softirq steal (guest time is already counted in user)
    ticks = [int(value) for value in line[1:9]]
    total = sum(ticks)
    busy = total - ticks[3] - ticks[4]
    tree = process_tree(os.getpid() if root is None else root, proc)
    ours = sum(stat.cpu_ticks for stat in tree) + (tree[0].reaped_children_ticks if tree else 0)
    return CpuSample(total, busy, ours)


@dataclass(frozen=True, slots=True)
class MemorySample:
    """Bytes: the machine's RAM, our tree's resident memory, and that of each given host."""

    ram: int
    ours: int
    hosts: tuple[int, ...]


def meminfo_total(proc: Path = PROC) -> int:
    with open(proc / "meminfo") as stream:
        for line in stream:
            name, _, value = line.partition(":")
            if name == "MemTotal":
                return int(value.split()[0]) * 1024
    raise OSError(f"{proc / 'meminfo'}: no MemTotal")


def read_memory(hosts: Iterable[int], root: int | None = None, proc: Path = PROC) -> MemorySample:
    """RAM, our tree's RSS (``root`` default: us) and the RSS of each of ``hosts`` still alive."""
    tree = {stat.pid: stat for stat in process_tree(os.getpid() if root is None else root, proc)}
    return MemorySample(
        ram=meminfo_total(proc),
        ours=sum(stat.rss_bytes for stat in tree.values()),
        hosts=tuple(tree[pid].rss_bytes for pid in hosts if pid in tree),
    )
