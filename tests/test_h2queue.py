"""sse_kit._h2queue: a stream's waiting bytes, taken in DATA-frame sizes."""

from __future__ import annotations

import pytest

from sse_kit._h2queue import ChunkQueue


@pytest.mark.parametrize(("chunks", "sizes", "taken"), [
    ([b"abcdef"], [6], [b"abcdef"]),
    ([b"abcdef"], [2, 3, 1], [b"ab", b"cde", b"f"]),
    ([b"ab", b"cd", b"ef"], [3, 3], [b"abc", b"def"]),
    ([b"ab", b"", b"cdef"], [1, 4, 1], [b"a", b"bcde", b"f"]),
    ([b"a", b"b", b"c"], [3], [b"abc"]),
])
def test_take_returns_the_bytes_in_order_across_chunks(
    chunks: list[bytes], sizes: list[int], taken: list[bytes]
) -> None:
    queue = ChunkQueue()
    for chunk in chunks:
        queue.append(chunk)
    assert queue.size == sum(map(len, chunks))
    assert [bytes(queue.take(n)) for n in sizes] == taken
    assert queue.size == 0


def test_a_frame_within_one_chunk_is_a_view_of_it_not_a_copy() -> None:
    chunk = b"x" * 1000
    queue = ChunkQueue()
    queue.append(chunk)
    view = queue.take(400)
    assert isinstance(view, memoryview) and view.obj is chunk


def test_clear_forgets_everything() -> None:
    queue = ChunkQueue()
    queue.append(b"abc")
    queue.take(1)
    queue.clear()
    assert queue.size == 0
    queue.append(b"de")
    assert bytes(queue.take(2)) == b"de"
