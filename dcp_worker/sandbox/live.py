"""Live reports: what a running slice says (console lines, events, progress, fetch requests) read
while it runs, and the answers to its fetch requests delivered while it waits.

A host cannot be called back by its isolate, and its main thread is inside V8 for as long as a
slice runs. The runtime (``openLive`` in runtime.js) shares two rings with the host instead, in
a SharedArrayBuffer: it writes its reports into one, which a thread of the host's own reads every
``period`` seconds and sends to the supervisor as ``{"op": "live", "records": [...]}``; and it
reads the other, into which the thread that reads the host's channel writes the supervisor's
``{"op": "fetched", ...}`` answers, as they come.

These threads are started before the host locks itself down (no thread can start after). The
poller writes to the channel only while a run is on: ``end`` takes what is left in the ring for
the run's answer and returns with the thread silent, so no report comes after that answer.
"""

from __future__ import annotations

import encodings.utf_16_le
import enum
import queue
import threading
from collections.abc import Callable

from dcp_worker.sandbox.framing import FramingError, read_frame

__all__ = ["FETCHED_PREFIX", "ChannelReader", "LiveMode", "LivePoller", "LiveRings"]

# Four Int32 counters: code units written and read, of the out ring, then of the in ring.
HEADER_BYTES = 16
UNIT_BYTES = 2  # the rings hold UTF-16 code units
# Imported by name, not looked up: once the host is locked down no codec module can be loaded,
# and the single-file build must see the import to include the module.
UTF16 = encodings.utf_16_le.getregentry()
# How a supervisor's answer to a fetch request starts (it writes it so); it goes to the isolate.
FETCHED_PREFIX = b'{"op":"fetched"'


class LiveMode(enum.StrEnum):
    """What a live host reports: console lines and events of the slices that run alone in their
    batch (so never twice, as a batch that broke a limit is run again slice by slice); or, where
    a supervisor answers (the evaluator's hosts), also progress, and fetch requests."""

    REPORTS = "reports"
    SUPERVISED = "supervised"


class LiveRings:
    """The host's side of the rings: ``memory`` is the SharedArrayBuffer as a memoryview."""

    def __init__(self, memory: memoryview) -> None:
        self._counters = memory[:HEADER_BYTES].cast("i")
        self._size = (len(memory) - HEADER_BYTES) // (2 * UNIT_BYTES)
        middle = HEADER_BYTES + self._size * UNIT_BYTES
        self._out = memory[HEADER_BYTES:middle]
        self._in = memory[middle:]
        self._pause = threading.Event()  # never set: waiting on it is a sleep the lockdown allows

    def take(self) -> list[bytes]:
        """The records written since the last take, as UTF-8 JSON texts, and frees their room."""
        written, read = self._counters[0], self._counters[1]
        if written == read:
            return []
        start, end = read % self._size * UNIT_BYTES, written % self._size * UNIT_BYTES
        if start < end:
            raw = self._out[start:end].tobytes()
        else:
            raw = self._out[start:].tobytes() + self._out[:end].tobytes()
        self._counters[1] = written
        # JSON.stringify escapes lone surrogates and newlines (not U+2028, which splitlines
        # would take for one), so the text is well-formed UTF-16 and "\n" ends each record.
        return [line.encode() for line in UTF16.decode(raw)[0].split("\n")[:-1]]

    def put(self, record: bytes, wait: float = 0.01) -> None:
        """Write a record (a JSON text with no newline) into the in ring, as fast as the isolate
        reads it (at every turn of its event loop, and as each slice begins): a record larger
        than the ring goes in part by part."""
        units = memoryview(UTF16.encode(record.decode() + "\n")[0])
        while units:
            written = self._counters[2]
            free = self._size - (written - self._counters[3])
            if free == 0:
                self._pause.wait(wait)
                continue
            start = written % self._size * UNIT_BYTES
            part = units[: min(free * UNIT_BYTES, len(self._in) - start)]
            self._in[start : start + len(part)] = part
            self._counters[2] = written + len(part) // UNIT_BYTES
            units = units[len(part) :]


class LivePoller:
    """A thread that forwards the out ring's records with ``send`` while a run is on."""

    def __init__(self, rings: LiveRings, send: Callable[[bytes], None], period: float = 0.05) -> None:
        self._rings = rings
        self._send = send
        self._period = period
        self._lock = threading.Lock()  # held while forwarding: the channel has one writer at a time
        self._running = threading.Event()
        self._pause = threading.Event()  # never set: waiting on it is a sleep the lockdown allows
        threading.Thread(target=self._loop, name="live reports", daemon=True).start()

    def begin(self) -> None:
        self._running.set()

    def end(self) -> list[bytes]:
        """The records not forwarded yet, for the run's answer to carry; the thread writes
        nothing more until the next ``begin``."""
        with self._lock:
            self._running.clear()
            return self._rings.take()

    def _loop(self) -> None:
        while True:
            self._running.wait()
            self._pause.wait(self._period)
            with self._lock:
                if self._running.is_set():
                    self._forward()

    def _forward(self) -> None:
        records = self._rings.take()
        if records:
            self._send(b'{"op":"live","records":[' + b",".join(records) + b"]}")


class ChannelReader:
    """A thread that reads the host's channel, so that fetch answers reach the isolate while the
    main thread is inside it: those go into the in ring, every other frame to ``receive_raw``.

    A second thread writes the answers into the ring, so that the reader never waits for room:
    an answer nobody awaits any more (its slice ended) may not be read from the ring before the
    next slice begins, and that slice's ``run`` must not be stuck behind it.
    """

    def __init__(self, read_fd: int, rings: LiveRings) -> None:
        self._read_fd = read_fd
        self._rings = rings
        self._frames: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
        self._answers: queue.SimpleQueue[bytes] = queue.SimpleQueue()
        threading.Thread(target=self._loop, name="channel reader", daemon=True).start()
        threading.Thread(target=self._deliver, name="fetch answers", daemon=True).start()

    def receive_raw(self) -> bytes:
        """The next frame that is not a fetch answer; ``EOFError`` when the channel closed."""
        frame = self._frames.get()
        if frame is None:
            raise EOFError
        return frame

    def _loop(self) -> None:
        try:
            while True:
                frame = read_frame(self._read_fd)
                if frame.startswith(FETCHED_PREFIX):
                    self._answers.put(frame)
                else:
                    self._frames.put(frame)
        except (EOFError, OSError, FramingError, ValueError):
            self._frames.put(None)  # the main thread ends the host

    def _deliver(self) -> None:
        while True:
            self._rings.put(self._answers.get())
