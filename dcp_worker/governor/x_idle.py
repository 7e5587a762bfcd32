"""``python -m dcp_worker.governor.x_idle``: print the X server's idle time in milliseconds.

Run as a child of the worker (see ``activity.x11_idle``), because libX11 exits the process it
runs in when the display connection breaks. Exits 1, printing nothing, when ``$DISPLAY`` cannot
be opened or has no MIT-SCREEN-SAVER extension, or libX11/libXss are not installed.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys


class _ScreenSaverInfo(ctypes.Structure):
    _fields_ = [
        ("window", ctypes.c_ulong),
        ("state", ctypes.c_int),
        ("kind", ctypes.c_int),
        ("til_or_since", ctypes.c_ulong),
        ("idle", ctypes.c_ulong),
        ("event_mask", ctypes.c_ulong),
    ]


def idle_milliseconds() -> int | None:
    x11_name, xss_name = ctypes.util.find_library("X11"), ctypes.util.find_library("Xss")
    if x11_name is None or xss_name is None:
        return None
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
        return None
    try:
        event_base, error_base = ctypes.c_int(), ctypes.c_int()
        if not xss.XScreenSaverQueryExtension(display, ctypes.byref(event_base), ctypes.byref(error_base)):
            return None
        info = xss.XScreenSaverAllocInfo()
        if not info or not xss.XScreenSaverQueryInfo(display, x11.XDefaultRootWindow(display), info):
            return None
        return int(info.contents.idle)
    finally:
        x11.XCloseDisplay(display)


if __name__ == "__main__":
    milliseconds = idle_milliseconds()
    if milliseconds is None:
        sys.exit(1)
    print(milliseconds)
