"""Live reports: what a running slice says (console lines, events, progress) read while it runs.

A host cannot be called back by its isolate, and its main thread is inside V8 for as long as a
slice runs. The runtime (``openLive`` in runtime.js) writes its reports into a ring in a
SharedArrayBuffer instead, and a thread of the host's own reads the ring every ``period``
seconds and sends what it finds to the supervisor as ``{"op": "live", "records": [...]}``.

The thread is started before the host locks itself down (no thread can start after), and it
writes to the channel only while a run is on: ``end`` drains the ring a last time and returns
with the thread silent, so the run's answer always comes after its live reports.
"""

from __future__ import annotations

import codecs
import threading
from collections.abc import Callable

__all__ = ["LivePoller", "LiveRing"]

HEADER_BYTES = 8  # two Int32 counters: code units written, code units read
UNIT_BYTES = 2  # the ring holds UTF-16 code units
# Looked up now: once the host is locked down, no codec module can be loaded.
UTF16 = codecs.lookup("utf-16-le")


class LiveRing:
    """The host's side of the ring: ``memory`` is the SharedArrayBuffer as a memoryview."""

    def __init__(self, memory: memoryview) -> None:
        self._counters = memory[:HEADER_BYTES].cast("i")
        self._units = memory[HEADER_BYTES:]
        self._size = len(self._units) // UNIT_BYTES

    def take(self) -> list[bytes]:
        """The records written since the last take, as UTF-8 JSON texts, and frees their room."""
        written, read = self._counters[0], self._counters[1]
        if written == read:
            return []
        start, end = read % self._size * UNIT_BYTES, written % self._size * UNIT_BYTES
        if start < end:
            raw = self._units[start:end].tobytes()
        else:
            raw = self._units[start:].tobytes() + self._units[:end].tobytes()
        self._counters[1] = written
        # JSON.stringify escapes lone surrogates and newlines (not U+2028, which splitlines
        # would take for one), so the text is well-formed UTF-16 and "\n" ends each record.
        return [line.encode() for line in UTF16.decode(raw)[0].split("\n")[:-1]]


class LivePoller:
    """A thread that forwards a ring's records with ``send`` while a run is on."""

    def __init__(self, ring: LiveRing, send: Callable[[bytes], None], period: float = 0.05) -> None:
        self._ring = ring
        self._send = send
        self._period = period
        self._lock = threading.Lock()  # held while forwarding: the channel has one writer at a time
        self._running = threading.Event()
        self._pause = threading.Event()  # never set: waiting on it is a sleep the lockdown allows
        threading.Thread(target=self._loop, name="live reports", daemon=True).start()

    def begin(self) -> None:
        self._running.set()

    def end(self) -> None:
        """Forward what is left; the thread writes nothing more until the next ``begin``."""
        with self._lock:
            self._running.clear()
            self._forward()

    def _loop(self) -> None:
        while True:
            self._running.wait()
            self._pause.wait(self._period)
            with self._lock:
                if self._running.is_set():
                    self._forward()

    def _forward(self) -> None:
        records = self._ring.take()
        if records:
            self._send(b'{"op":"live","records":[' + b",".join(records) + b"]}")
