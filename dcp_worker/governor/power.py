"""Whether the machine runs on battery, from Linux's /sys/class/power_supply (readable by anyone).

Each supply is a directory with a ``type`` file: ``Mains`` (or ``USB``, a USB-C charger) with
``online`` 1 when plugged in, ``Battery`` with ``status`` Charging, Discharging, Full...
On battery means: some external supply is known and none is online, or, where the machine
reports no external supply, a battery is discharging. A machine with no battery (a desktop, a
server, a container) is never on battery.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["POWER_SUPPLIES", "on_battery"]

POWER_SUPPLIES = Path("/sys/class/power_supply")
EXTERNAL_TYPES = frozenset({"Mains", "USB"})


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def on_battery(root: Path = POWER_SUPPLIES) -> bool:
    try:
        supplies = sorted(root.iterdir())
    except OSError:
        return False
    external_online: list[bool] = []
    batteries: list[str | None] = []  # their status
    for supply in supplies:
        kind = _read(supply / "type")
        if kind in EXTERNAL_TYPES:
            external_online.append(_read(supply / "online") == "1")
        elif kind == "Battery" and _read(supply / "present") != "0":
            batteries.append(_read(supply / "status"))
    if external_online:
        return bool(batteries) and not any(external_online)
    return "Discharging" in batteries
