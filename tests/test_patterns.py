"""Client-ID patterns: validation, fnmatchcase semantics, and indexed routing."""

from __future__ import annotations

import fnmatch

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sse_kit import Client, InvalidPattern
from sse_kit._patterns import ALL, EXACT, GLOB, PREFIX, ClientIndex, compile_pattern


@pytest.mark.parametrize(
    ("pattern", "kind"),
    [
        ("user:42", EXACT),
        ("job:17:*", PREFIX),
        ("*", ALL),
        ("*:42", GLOB),
        ("job:?", GLOB),
        ("job:[12]", GLOB),
        ("job*:x", GLOB),
        ("a**", GLOB),
    ],
)
def test_pattern_kinds(pattern: str, kind: int) -> None:
    assert compile_pattern(pattern).kind == kind


@pytest.mark.parametrize(("bad", "exc"), [("", InvalidPattern), (None, TypeError),
                                           (b"user:*", TypeError), (42, TypeError)])
def test_bad_patterns_are_rejected(bad: object, exc: type[Exception]) -> None:
    with pytest.raises(exc, match="pattern"):
        compile_pattern(bad)  # type: ignore[arg-type]


def test_patterns_are_case_sensitive() -> None:
    assert not compile_pattern("User:*").matches("user:1")
    assert compile_pattern("user:*").matches("user:1")


ids = st.text(alphabet="ab:*?[]!1", max_size=8)


@given(pattern=ids.filter(bool), client_id=ids)
def test_matches_agrees_with_fnmatchcase(pattern: str, client_id: str) -> None:
    assert compile_pattern(pattern).matches(client_id) == fnmatch.fnmatchcase(client_id, pattern)


# U+10FFFF: the prefix range's upper bound is prefix + U+10FFFF (see ClientIndex.match).
index_ids = st.text(alphabet="ab:*?[]!1\U0010ffff", max_size=8)


@given(pattern=index_ids.filter(bool), client_ids=st.lists(index_ids.filter(bool), max_size=20))
def test_index_match_agrees_with_fnmatchcase(pattern: str, client_ids: list[str]) -> None:
    index = ClientIndex()
    clients = [Client(cid) for cid in client_ids]
    for c in clients:
        index.add(c)
    got = sorted(id(c) for c in index.match(compile_pattern(pattern)))
    want = sorted(id(c) for c in clients if fnmatch.fnmatchcase(c.id, pattern))
    assert got == want


def test_index_keeps_several_connections_per_id() -> None:
    index = ClientIndex()
    a, b = Client("user:1"), Client("user:1")
    assert index.add(a) == 1
    assert index.add(b) == 2
    assert index.ids() == ["user:1"]
    assert index.remove(a)
    assert not index.remove(a)
    assert list(index.match(compile_pattern("user:1"))) == [b]
    assert index.remove(b)
    assert index.ids() == []
    assert len(index) == 0


def test_prefix_match_visits_only_the_matching_range() -> None:
    index = ClientIndex()
    for i in range(1000):
        index.add(Client(f"other:{i:04}"))
    mine = [Client(f"job:17:{i}") for i in range(3)]
    for c in mine:
        index.add(c)
    # The prefix walk stops at the first non-matching ID: no regex over 1000 IDs.
    assert list(index.match(compile_pattern("job:17:*"))) == mine
    assert list(index.match(compile_pattern("job:1*"))) == mine


def test_prefix_match_includes_ids_continuing_with_the_last_code_point() -> None:
    index = ClientIndex()
    edge = [Client("job:\U0010ffff"), Client("job:\U0010ffffz"), Client("job:a")]
    for c in [*edge, Client("jo"), Client("joc"), Client("job\U0010ffff")]:
        index.add(c)
    assert sorted(c.id for c in index.match(compile_pattern("job:*"))) == sorted(
        c.id for c in edge
    )
