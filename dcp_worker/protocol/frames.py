"""The frames DCP's socket.io transport sends inside socket.io ``message`` events.

The first character of a frame says what it is: ``{`` a whole sealed DCP message; ``E`` an
extended frame, ``"E" + 4 hex digits (header length) + type + header + payload``, of type ``P``
(the peer's capability announcement), ``C`` (one fragment of a long message) or ``O`` (an
out-of-order message); ``A`` a transport-level ack; ``T`` debugging text. Lengths are counted, as
JavaScript counts them, in UTF-16 code units.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from dcp_worker.errors import ProtocolError

__all__ = ["MAX_FRAGMENT_SIZE", "FrameReader", "PeerCapabilities", "announcement", "split_message"]

MAX_FRAGMENT_SIZE = 300_000
PING_INTERVAL_MS = 10_100
TRANSPORT_ACK = "A0000-ACK"


@dataclass(slots=True)
class PeerCapabilities:
    """What the peer has announced; until it does, what dcp-client assumes of a peer."""

    rx_max_fragment_size: int = 1_000_000
    rx_max_fragment_count: int = 0
    wants_concat: bool = True
    wants_ack: bool = False

    def update(self, announced: dict[str, Any]) -> None:
        size = announced.get("rxMaxFragmentSize", self.rx_max_fragment_size)
        count = announced.get("rxMaxFragmentCount", self.rx_max_fragment_count)
        if not isinstance(size, int) or isinstance(size, bool) or size < 1_000:
            raise ProtocolError(f"the peer announced an unusable rxMaxFragmentSize {size!r}")
        if not isinstance(count, int) or isinstance(count, bool) or count < 0:
            raise ProtocolError(f"the peer announced an unusable rxMaxFragmentCount {count!r}")
        self.rx_max_fragment_size = size
        self.rx_max_fragment_count = count
        self.wants_concat = bool(announced.get("wantsConcat", self.wants_concat))
        self.wants_ack = bool(announced.get("wantsAck", self.wants_ack))


def announcement() -> str:
    """Our capability announcement: we take fragments up to 300000 units and want no transport acks."""
    capabilities = {
        "canOoo": True,
        "canAck": True,
        "wantsConcat": True,
        "wantsAck": False,
        "rxMaxFragmentSize": MAX_FRAGMENT_SIZE,
        "rxMaxFragmentCount": 0,
        "pingInterval": PING_INTERVAL_MS,
        "hasAnnounced": True,
    }
    return "E0000P" + json.dumps(capabilities, separators=(",", ":"))


def split_message(message: str, message_id: int, peer: PeerCapabilities) -> list[str]:
    """The frames that carry ``message`` to ``peer``: itself, or fragments within its limit.

    Fragments are cut between characters, never inside a surrogate pair, so every fragment is
    well-formed text.
    """
    limit = peer.rx_max_fragment_size
    if not peer.wants_concat or utf16_length(message) <= limit:
        return [message]
    pieces: list[str] = []
    start = 0
    while start < len(message):
        # A character is one or two UTF-16 units; take `limit` units' worth, backing off as needed.
        end = min(len(message), start + limit)
        while utf16_length(message[start:end]) > limit:
            end -= max(1, (utf16_length(message[start:end]) - limit + 1) // 2)
        pieces.append(message[start:end])
        start = end
    if peer.rx_max_fragment_count and len(pieces) > peer.rx_max_fragment_count:
        raise ProtocolError(
            f"a message of {len(message)} characters needs {len(pieces)} fragments;"
            f" the peer takes at most {peer.rx_max_fragment_count}"
        )
    total = len(pieces)
    frames = []
    for seq, piece in enumerate(pieces):
        header = json.dumps({"msgId": message_id, "seq": seq, "total": total}, separators=(",", ":"))
        frames.append(f"E{len(header):04x}C{header}{piece}")
    return frames


def utf16_length(text: str) -> int:
    """``text.length`` in JavaScript."""
    if text.isascii():
        return len(text)
    return len(text) + sum(1 for char in text if ord(char) > 0xFFFF)


@dataclass(slots=True)
class FrameReader:
    """Turns frames from the peer into whole DCP messages, and keeps the peer's capabilities."""

    peer: PeerCapabilities = field(default_factory=PeerCapabilities)
    max_fragment_size: int = MAX_FRAGMENT_SIZE
    _fragments: dict[Any, dict[int, str]] = field(default_factory=dict)
    _totals: dict[Any, int] = field(default_factory=dict)

    def feed(self, frame: object) -> str | None:
        """The whole message this frame completes, if any. Raises ``ProtocolError`` for a frame
        that breaks the transport's rules (the transport must then be dropped)."""
        if not isinstance(frame, str) or not frame:
            return None  # dcp-client ignores frames that are not strings
        kind = frame[0]
        if kind == "{":
            return frame
        if kind in "AT":
            return None
        if kind != "E":
            raise ProtocolError(f"a transport frame of unknown type {kind!r}")
        try:
            header_length = int(frame[1:5], 16)
        except ValueError:
            raise ProtocolError(f"an extended frame with a bad header length {frame[1:5]!r}") from None
        subtype = frame[5:6]
        header = frame[6 : 6 + header_length]
        payload = frame[6 + header_length :]
        if subtype == "P":
            try:
                announced = json.loads(payload)
            except ValueError:
                raise ProtocolError("a capability announcement that is not JSON") from None
            if not isinstance(announced, dict):
                raise ProtocolError("a capability announcement that is not an object")
            self.peer.update(announced)
            return None
        if subtype == "O":
            return payload
        if subtype == "C":
            return self._fragment(header, payload)
        return None  # unknown extended types are ignored, as dcp-client does

    def _fragment(self, header_text: str, payload: str) -> str | None:
        try:
            header = json.loads(header_text)
            message_id, seq, total = header["msgId"], header["seq"], header["total"]
        except (ValueError, TypeError, KeyError):
            raise ProtocolError(f"a fragment with a bad header {header_text[:80]!r}") from None
        if not all(isinstance(n, int) and not isinstance(n, bool) for n in (seq, total)) or not (
            0 <= seq < total
        ):
            raise ProtocolError(f"a fragment numbered {seq!r} of {total!r}")
        if len(payload) > self.max_fragment_size:
            raise ProtocolError(f"a fragment longer than {self.max_fragment_size} characters")
        if not isinstance(message_id, int | str) or isinstance(message_id, bool):
            raise ProtocolError(f"a fragment with a bad message id {message_id!r}")
        if self._totals.setdefault(message_id, total) != total:
            raise ProtocolError(f"fragments of message {message_id!r} disagree on their number")
        pieces = self._fragments.setdefault(message_id, {})
        pieces[seq] = payload
        if len(pieces) < total:
            return None
        del self._fragments[message_id], self._totals[message_id]
        joined = "".join(pieces[index] for index in range(total))
        if any("\ud800" <= pieces[index][-1:] <= "\udbff" for index in range(total - 1)):
            # JavaScript cuts fragments between UTF-16 units, so a pair may arrive in two halves
            # (socket.io's JSON carries each half escaped); put each pair back together.
            joined = joined.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "surrogatepass")
        return joined
