"""The bytes an HTTP/2 stream has waiting for its flow-control window.

Kept as the chunks they were queued in, never copied into one buffer: see
:class:`ChunkQueue`.
"""

from __future__ import annotations

import collections

__all__ = ["ChunkQueue"]


class ChunkQueue:
    """Bytes waiting for a stream's window, as the chunks they were queued in.

    An event stream's chunks are the hub's, one bytes object per fan-out shared
    by every stream it reaches (sse_kit._client.deliver), so a stream whose
    window is closed holds a reference per event, not a copy of its bytes (as
    sse_kit._outlet's tail does for HTTP/1.1). Only the bytes of the DATA frame
    being built are joined, and let go at once.
    """

    __slots__ = ("_chunks", "_offset", "size")

    def __init__(self) -> None:
        self._chunks: collections.deque[bytes] = collections.deque()
        self._offset = 0  # bytes of the first chunk already sent
        self.size = 0  # bytes waiting

    def append(self, chunk: bytes) -> None:
        """Queue *chunk* (kept as it is: the caller must not change it)."""
        if chunk:
            self._chunks.append(chunk)
            self.size += len(chunk)

    def take(self, size: int) -> bytes | memoryview:
        """The next *size* bytes (at most :attr:`size`), removed: a view of the
        first chunk when it holds them all, else joined."""
        chunks, wanted = self._chunks, size
        parts: list[memoryview] = []
        while wanted:
            view = memoryview(chunks[0])[self._offset:self._offset + wanted]
            parts.append(view)
            wanted -= len(view)
            self._offset += len(view)
            if self._offset == len(chunks[0]):
                chunks.popleft()
                self._offset = 0
        self.size -= size
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def clear(self) -> None:
        """Let every chunk go (the stream is over)."""
        self._chunks.clear()
        self._offset = self.size = 0
