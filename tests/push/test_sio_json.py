"""The orjson-backed ``json`` module the Socket.IO server (and the benchmark's clients) use."""

from __future__ import annotations

import json

import engineio.json
import pytest
import socketio.packet

from webhook_service.push import sio_json

EVENT = {
    "type": "pr_status_change",
    "event_id": 2**40,
    "pr_id": "0f6c6f2e-8a47-4bd1-9d4e-2b8c0e1f3a55",
    "pr_number": 123,
    "repository": "octo-org/ré-po",
    "task_id": None,
    "old_status": "OPEN",
    "new_status": "MERGED",
    "pr_trigger": True,
    "timestamp": "2026-11-26T10:30:00Z",
}


def test_it_writes_the_compact_form_and_reads_back_the_same_values() -> None:
    text = sio_json.dumps([EVENT, EVENT], separators=(",", ":"))
    assert isinstance(text, str)
    assert ", " not in text and '": ' not in text  # compact
    assert "ré-po" in text  # UTF-8, not \u escapes
    assert sio_json.loads(text) == [EVENT, EVENT]
    assert sio_json.loads(text.encode()) == [EVENT, EVENT]
    # The same values as the standard library's (engineio.json) reading of it.
    assert engineio.json.loads(text) == json.loads(text) == [EVENT, EVENT]
    assert sio_json.loads(json.dumps(EVENT)) == EVENT


def test_it_refuses_other_separators_and_bad_json() -> None:
    with pytest.raises(ValueError, match="compact"):
        sio_json.dumps(EVENT, separators=(", ", ": "))
    with pytest.raises(ValueError):
        sio_json.loads('{"event_id": 1,')
    with pytest.raises(ValueError):  # beyond 64 bits: refused, not parsed at length
        sio_json.loads("9" * 5000)


def test_a_socketio_packet_encodes_and_decodes_through_it() -> None:
    class Packet(socketio.packet.Packet):  # type: ignore[misc]
        json = sio_json

    encoded = Packet(socketio.packet.EVENT, namespace="/", data=["events", [EVENT]]).encode()
    assert encoded == "2" + sio_json.dumps(["events", [EVENT]])
    decoded = Packet(encoded_packet=encoded)
    assert decoded.packet_type == socketio.packet.EVENT
    assert decoded.data == ["events", [EVENT]]
