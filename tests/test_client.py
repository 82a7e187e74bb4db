"""Client: identity, options, and the bounded outbox."""

from __future__ import annotations

import threading

import pytest

from sse_kit import Client, ClientOption, with_metadata, with_session_id, with_user_id
from sse_kit._client import CUT, DISCONNECT, DROPPED, ENDED, OFFERED, SLOW


def test_keyword_arguments_and_options_are_equivalent() -> None:
    a = Client("u:1", metadata={"role": "admin"}, session_id="s", user_id="u")
    b = Client("u:1", with_metadata("role", "admin"), with_session_id("s"), with_user_id("u"))
    for c in (a, b):
        assert (c.id, c.session_id, c.user_id) == ("u:1", "s", "u")
        assert c.metadata == {"role": "admin"}
        assert c.get_metadata("role") == "admin"
        assert c.get_metadata("missing", 7) == 7


def test_options_override_keywords_in_order() -> None:
    c = Client("x", with_user_id("a"), with_user_id("b"), user_id="k")
    assert c.user_id == "b"


def test_metadata_is_read_only_and_copied() -> None:
    source = {"k": 1}
    c = Client("x", metadata=source)
    source["k"] = 2
    assert c.metadata["k"] == 1
    with pytest.raises(TypeError):
        c.metadata["k"] = 3  # type: ignore[index]


def test_options_must_be_client_options() -> None:
    with pytest.raises(TypeError, match="ClientOption"):
        Client("x", "user_id")  # type: ignore[arg-type]
    assert isinstance(with_user_id("u"), ClientOption)
    with pytest.raises(TypeError, match="metadata key"):
        with_metadata(1, "v")  # type: ignore[arg-type]


def test_send_never_blocks_and_reports_a_full_outbox() -> None:
    c = Client("x", buffer=2)
    assert c.send("a") and c.send({"b": 1}, event="e")
    assert c.send("c") is False  # full: dropped for this client
    frames, end = c._take(0)
    assert frames == [b"data: a\n\n", b'event: e\ndata: {"b":1}\n\n']
    assert end is None
    assert c.send("d")


def test_disconnect_policy_ends_the_stream_after_the_queued_frames() -> None:
    c = Client("x", buffer=1)
    c._policy = DISCONNECT
    assert c._offer(b"1") == OFFERED
    assert c._offer(b"2") == CUT
    assert c._offer(b"3") == ENDED
    assert c._take(0) == ([b"1"], SLOW)
    assert c.closed


def test_drop_policy_is_the_default_outside_a_hub() -> None:
    c = Client("x", buffer=1)
    assert c._offer(b"1") == OFFERED
    assert c._offer(b"2") == DROPPED
    assert not c.closed


def test_close_wakes_a_waiting_stream() -> None:
    c = Client("x")
    got: list[tuple[list[bytes], str | None]] = []
    waiting = threading.Thread(target=lambda: got.append(c._take(30)))
    waiting.start()
    c.close()
    waiting.join(10)
    assert got == [([], "closed")]
    assert c.send("late") is False


def test_a_frame_wakes_a_waiting_stream() -> None:
    c = Client("x")
    got: list[tuple[list[bytes], str | None]] = []
    waiting = threading.Thread(target=lambda: got.append(c._take(30)))
    waiting.start()
    c.send("hello")
    waiting.join(10)
    assert got == [([b"data: hello\n\n"], None)]
