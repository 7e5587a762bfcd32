"""``python -m dcp_worker.governor.x_idle``: for each line read, print the X server's idle time
in milliseconds; exit at the end of the input.

Run as a child of the worker (see ``activity.X11Idle``), because libX11 exits the process it
runs in when the display connection breaks. It keeps one connection open: some X servers (Xvfb)
count opening a connection as activity. Exits 1, printing nothing, when ``$DISPLAY`` cannot be
opened or has no MIT-SCREEN-SAVER extension, or libX11/libXss are not installed.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys
from collections.abc import Iterator


class _ScreenSaverInfo(ctypes.Structure):
    _fields_ = [
        ("window", ctypes.c_ulong),
        ("state", ctypes.c_int),
        ("kind", ctypes.c_int),
        ("til_or_since", ctypes.c_ulong),
        ("idle", ctypes.c_ulong),
        ("event_mask", ctypes.c_ulong),
    ]


def idle_readings() -> Iterator[int]:
    """Each time it is advanced, the display's idle milliseconds; nothing if it cannot tell."""
    x11_name, xss_name = ctypes.util.find_library("X11"), ctypes.util.find_library("Xss")
    if x11_name is None or xss_name is None:
        return
    x11, xss = ctypes.CDLL(x11_name), ctypes.CDLL(xss_name)
    x11.XOpenDisplay.restype = ctypes.c_void_p
    x11.XOpenDisplay.argtypes = [ctypes.c_char_p]
    x11.XDefaultRootWindow.restype = ctypes.c_ulong
    x11.XDefaultRootWindow.argtypes = [ctypes.c_void_p]
    x11.XCloseDisplay.argtypes = [ctypes.c_void_p]
    xss.XScreenSaverAllocInfo.restype = ctypes.POINTER(_ScreenSaverInfo)
    xss.XScreenSaverQueryExtension.argtypes = [
        ctypes.c_void_p, ctypes.POINTER(ctypes.c_int), ctypes.POINTER(ctypes.c_int)
    ]  # fmt: skip
    xss.XScreenSaverQueryInfo.argtypes = [
        ctypes.c_void_p, ctypes.c_ulong, ctypes.POINTER(_ScreenSaverInfo)
    ]  # fmt: skip
    display = x11.XOpenDisplay(None)
    if not display:
        return
    try:
        event_base, error_base = ctypes.c_int(), ctypes.c_int()
        if not xss.XScreenSaverQueryExtension(display, ctypes.byref(event_base), ctypes.byref(error_base)):
            return
        info = xss.XScreenSaverAllocInfo()
        root = x11.XDefaultRootWindow(display)
        while info and xss.XScreenSaverQueryInfo(display, root, info):
            yield int(info.contents.idle)
    finally:
        x11.XCloseDisplay(display)


def main() -> int:
    readings = idle_readings()
    if next(readings, None) is None:
        return 1
    for _ in sys.stdin:
        reading = next(readings, None)
        if reading is None:
            return 1
        print(reading, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
