"""Length-prefixed frames: how a supervisor and a sandbox host exchange JSON messages.

Each frame is a 4-byte big-endian length followed by that many bytes of JSON.
"""

from __future__ import annotations

import os
import struct

HEADER = struct.Struct(">I")
MAX_FRAME_BYTES = 1 << 30


class FramingError(Exception):
    """The peer sent something that is not a frame, or closed the channel mid-frame."""


def encode_frame(body: bytes) -> bytes:
    if len(body) > MAX_FRAME_BYTES:
        raise FramingError(f"message of {len(body)} bytes exceeds the {MAX_FRAME_BYTES}-byte frame limit")
    return HEADER.pack(len(body)) + body


def frame_length(header: bytes) -> int:
    (length,) = HEADER.unpack(header)
    if length > MAX_FRAME_BYTES:
        raise FramingError(f"frame of {length} bytes exceeds the {MAX_FRAME_BYTES}-byte limit")
    return int(length)


def _read_exactly(fd: int, count: int) -> bytes:
    chunks = []
    while count:
        chunk = os.read(fd, min(count, 1 << 20))
        if not chunk:
            raise EOFError("channel closed")
        chunks.append(chunk)
        count -= len(chunk)
    return b"".join(chunks)


def read_frame(fd: int) -> bytes:
    """Blocking read of one frame from a file descriptor (the sandbox host's side)."""
    return _read_exactly(fd, frame_length(_read_exactly(fd, HEADER.size)))


def write_frame(fd: int, body: bytes) -> None:
    view = memoryview(encode_frame(body))
    while view:
        view = view[os.write(fd, view) :]
