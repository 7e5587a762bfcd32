"""The socket.io frame layer: announcements, fragments and hostile frames, without a network."""

from __future__ import annotations

import json
from typing import Any

import pytest

from dcp_worker.errors import ProtocolError
from dcp_worker.protocol.frames import (
    FrameReader,
    PeerCapabilities,
    announcement,
    split_message,
    utf16_length,
)
from dcp_worker.protocol.messages import StampCache, batch_entry, unbatch_payload, validity_error


def test_our_announcement_is_what_dcp_client_expects() -> None:
    frame = announcement()
    assert frame.startswith("E0000P")
    capabilities = json.loads(frame[6:])
    assert capabilities["rxMaxFragmentSize"] == 300_000
    assert capabilities["wantsAck"] is False and capabilities["hasAnnounced"] is True


def test_the_peer_announcement_sets_the_fragment_size() -> None:
    reader = FrameReader()
    assert reader.feed('E0000P{"rxMaxFragmentSize":2000,"wantsAck":true}') is None
    assert reader.peer.rx_max_fragment_size == 2000 and reader.peer.wants_ack


@pytest.mark.parametrize("text", ["x" * 10_000, "é" * 5000 + "z", "\U0001f600" * 3001, "a\U0001f600" * 2000])
def test_long_messages_split_within_the_limit_and_join_again(text: str) -> None:
    peer = PeerCapabilities(rx_max_fragment_size=1000)
    frames = split_message(text, 7, peer)
    assert len(frames) > 1
    reader = FrameReader()
    outputs = []
    for frame in reversed(frames):  # out of order on purpose
        header_length = int(frame[1:5], 16)
        assert utf16_length(frame[6 + header_length :]) <= 1000
        outputs.append(reader.feed(frame))
    assert outputs[:-1] == [None] * (len(frames) - 1)
    assert outputs[-1] == text


def test_a_surrogate_pair_cut_between_two_fragments_is_joined_again() -> None:
    # What a JavaScript peer sends when its cut falls inside a pair: each half on its own.
    reader = FrameReader()
    first = '{"msgId":4,"seq":0,"total":2}'
    second = '{"msgId":4,"seq":1,"total":2}'
    assert reader.feed(f"E{len(first):04x}C{first}ab\ud83d") is None
    assert reader.feed(f"E{len(second):04x}C{second}\ude00cd") == "ab\U0001f600cd"


def test_short_messages_and_peers_that_take_no_fragments_get_the_message_whole() -> None:
    assert split_message("{}", 1, PeerCapabilities()) == ["{}"]
    assert split_message("x" * 5000, 1, PeerCapabilities(rx_max_fragment_size=1000, wants_concat=False)) == [
        "x" * 5000
    ]


def test_a_message_needing_more_fragments_than_the_peer_takes_is_refused() -> None:
    with pytest.raises(ProtocolError, match="at most 2"):
        split_message("x" * 5000, 1, PeerCapabilities(rx_max_fragment_size=1000, rx_max_fragment_count=2))


@pytest.mark.parametrize("frame", ["A0000-ACK", "Tdebugging text", "E0000Xwhatever", 42, None, ""])
def test_frames_that_carry_no_message(frame: Any) -> None:
    assert FrameReader().feed(frame) is None


def test_whole_and_out_of_order_messages_pass_through() -> None:
    reader = FrameReader()
    assert reader.feed('{"a":1}') == '{"a":1}'
    assert reader.feed('E0000O{"b":2}') == '{"b":2}'


@pytest.mark.parametrize(
    ("frame", "words"),
    [
        ("Zgarbage", "unknown type"),
        ("Ezzzz", "header length"),
        ("E0004Cnope", "bad header"),
        ('E001dC{"msgId":1,"seq":5,"total":2}x', "numbered 5 of 2"),
        ('E001eC{"msgId":1,"seq":-1,"total":2}x', "numbered -1"),
        ('E0020C{"msgId":true,"seq":0,"total":2}x', "bad message id"),
        ("E0000Pnot json", "not JSON"),
        ("E0000P[1]", "not an object"),
        ('E0000P{"rxMaxFragmentSize":1}', "rxMaxFragmentSize"),
        ('E0000P{"rxMaxFragmentCount":-1}', "rxMaxFragmentCount"),
    ],
)
def test_hostile_frames_are_refused_with_a_reason(frame: str, words: str) -> None:
    with pytest.raises(ProtocolError, match=words):
        FrameReader().feed(frame)


def test_an_oversized_fragment_is_refused() -> None:
    header = '{"msgId":1,"seq":0,"total":2}'
    frame = f"E{len(header):04x}C{header}" + "x" * 300_001
    with pytest.raises(ProtocolError, match="longer than"):
        FrameReader().feed(frame)


def test_fragments_that_disagree_on_their_count_are_refused() -> None:
    reader = FrameReader()
    first = '{"msgId":1,"seq":0,"total":3}'
    second = '{"msgId":1,"seq":1,"total":2}'
    reader.feed(f"E{len(first):04x}C{first}a")
    with pytest.raises(ProtocolError, match="disagree"):
        reader.feed(f"E{len(second):04x}C{second}b")


def test_batch_entries_carry_their_data_as_json_text() -> None:
    body = {"id": "1", "type": "request", "payload": {"operation": "x", "data": {"b": [1, 2.0]}, "allow": []}}
    entry = batch_entry(body)
    assert entry["payload"] == {"operation": "x", "allow": [], "jsonData": '{"b":[1,2]}'}
    assert unbatch_payload(entry)["payload"] == {"operation": "x", "allow": [], "data": {"b": [1, 2]}}
    # Falsy data stays as it is (JavaScript's truthiness: [] and {} are truthy).
    assert batch_entry({"payload": {"data": 0}})["payload"] == {"data": 0}
    assert batch_entry({"payload": {"data": []}})["payload"] == {"jsonData": "[]"}


NOW = 1_800_000_000.0


@pytest.mark.parametrize(
    ("validity", "code"),
    [
        ({"stamp": "s1", "ttl": 120, "time": NOW}, None),
        ({"stamp": "s2", "ttl": 120, "time": NOW + 601}, "ETIMETRAVEL"),
        ({"stamp": "s3", "ttl": 1, "time": NOW - 614}, None),  # ttl is at least 15 s
        ({"stamp": "s4", "ttl": 120, "time": NOW - 721}, "EEXPIRED"),
        ({"stamp": "", "ttl": 120, "time": NOW}, "EINVAL"),
        ({"stamp": "s5", "ttl": "120", "time": NOW}, "EINVAL"),
        (None, "EINVAL"),
    ],
)
def test_request_validity(validity: Any, code: str | None) -> None:
    problem = validity_error({"validity": validity}, StampCache(), NOW)
    assert (problem.split(":")[0] if problem else None) == code


def test_a_validity_stamp_used_twice_is_a_replay() -> None:
    stamps = StampCache()
    payload = {"validity": {"stamp": "once", "ttl": 120, "time": NOW}}
    assert validity_error(payload, stamps, NOW) is None
    problem = validity_error(payload, stamps, NOW + 1)
    assert problem is not None and problem.startswith("EDUP")
