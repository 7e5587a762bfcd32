"""How a work function's console output reads on the developer's terminal."""

from __future__ import annotations

QUIET_LEVELS = ("log", "info", "debug")


def console_lines(slice_number: int, level: str, text: str) -> list[str]:
    """Lines tagged with their slice, and with their level when it is ``warn`` or ``error``."""
    prefix = f"[slice {slice_number}] " + ("" if level in QUIET_LEVELS else f"{level}: ")
    return [prefix + line for line in text.split("\n")]
