"""Client-ID glob patterns and the index that routes a broadcast to its clients.

Patterns are :func:`fnmatch.fnmatchcase` globs over client IDs (case-sensitive on
every platform). Three shapes are routed without looking at every client:

* an exact ID (no ``*``, ``?`` or ``[``): one dict lookup;
* a prefix glob (``job:17:*``: one trailing ``*``, no other glob character): a
  binary search into the sorted list of IDs, then a walk over the matches;
* ``*`` alone: every client.

Any other glob is translated to a regular expression once (LRU-cached) and
matched against every connected ID.
"""

from __future__ import annotations

import bisect
import fnmatch
import re
from collections.abc import Iterable, Iterator
from functools import lru_cache
from itertools import chain
from typing import TYPE_CHECKING, Final

from ._exceptions import InvalidPattern
from ._options import check_str

if TYPE_CHECKING:
    from ._client import Client

__all__ = ["ClientIndex", "Pattern", "compile_pattern", "validate_pattern"]

_GLOB_CHARS: Final = frozenset("*?[")
_MAX_CHAR: Final = chr(0x10FFFF)

# Pattern kinds; ints so the hot path compares small ints.
EXACT: Final = 0
PREFIX: Final = 1
ALL: Final = 2
GLOB: Final = 3


def validate_pattern(pattern: object) -> str:
    """Return *pattern* if it is a usable client-ID glob.

    :raises InvalidPattern: if *pattern* is not a ``str`` or is empty.
    """
    if pattern == "":
        raise InvalidPattern("pattern must not be empty; use '*' to address every client")
    return check_str("pattern", pattern)


class Pattern:
    """A compiled client-ID glob; build it with :func:`compile_pattern`."""

    __slots__ = ("kind", "prefix", "regex", "text")

    def __init__(self, text: str) -> None:
        self.text = text
        self.regex: re.Pattern[str] | None = None
        self.prefix = ""
        head, last = text[:-1], text[-1:]
        if not _GLOB_CHARS.intersection(text):
            self.kind = EXACT
        elif text == "*":
            self.kind = ALL
        elif last == "*" and not _GLOB_CHARS.intersection(head):
            self.kind = PREFIX
            self.prefix = head
        else:
            self.kind = GLOB
            self.regex = re.compile(fnmatch.translate(text))

    def matches(self, client_id: str) -> bool:
        """Whether *client_id* matches, exactly as ``fnmatchcase`` would say."""
        if self.kind == EXACT:
            return client_id == self.text
        if self.kind == PREFIX:
            return client_id.startswith(self.prefix)
        if self.kind == ALL:
            return True
        assert self.regex is not None
        return self.regex.match(client_id) is not None

    def __repr__(self) -> str:
        return f"Pattern({self.text!r})"


def compile_pattern(pattern: str) -> Pattern:
    """Validate and compile *pattern*; cached, so a hot pattern compiles once.

    :raises InvalidPattern: as :func:`validate_pattern`.
    """
    return _compile(validate_pattern(pattern))


@lru_cache(maxsize=4096)
def _compile(pattern: str) -> Pattern:
    return Pattern(pattern)


class ClientIndex:
    """Connected clients by ID, for routing.

    Not thread-safe: it belongs to the hub thread, which is the only reader and
    writer (see the ``design`` note in :mod:`sse_kit._hub`).
    """

    __slots__ = ("_all", "_by_id", "_sorted")

    def __init__(self) -> None:
        # Several connections may share one ID (two browser tabs): a list each.
        self._by_id: dict[str, list[Client]] = {}
        self._sorted: list[str] = []
        # Every connection, flat (a dict as an ordered set): "*" walks one table
        # instead of a list per ID, a measurable share of a 10,000-client fan-out.
        self._all: dict[Client, None] = {}

    def __len__(self) -> int:
        return len(self._all)

    def add(self, client: Client) -> int:
        """Add *client*; return how many connections now share its ID."""
        same = self._by_id.get(client.id)
        if same is None:
            same = self._by_id[client.id] = []
            bisect.insort(self._sorted, client.id)
        same.append(client)
        self._all[client] = None
        return len(same)

    def remove(self, client: Client) -> bool:
        """Remove *client* (this connection only); False if it was not here."""
        same = self._by_id.get(client.id)
        if same is None or client not in same:
            return False
        same.remove(client)
        del self._all[client]
        if not same:
            del self._by_id[client.id]
            del self._sorted[bisect.bisect_left(self._sorted, client.id)]
        return True

    def with_id(self, client_id: str) -> list[Client]:
        """The connections registered under exactly *client_id* (oldest first)."""
        return self._by_id.get(client_id, [])

    def ids(self) -> list[str]:
        """Every connected client ID once, sorted."""
        return list(self._sorted)

    def clients(self) -> Iterator[Client]:
        """Every connection, oldest first."""
        return iter(self._all)

    def match(self, pattern: Pattern) -> Iterable[Client]:
        """The connections whose ID matches *pattern*; cost grows with the matches
        for exact and prefix patterns, with every ID for other globs.

        The result is iterated in C (no Python frame per client): the hub's
        fan-out loop runs once per delivery. Iterate it before the index changes.
        """
        kind = pattern.kind
        if kind == EXACT:
            return self._by_id.get(pattern.text, ())
        if kind == ALL:
            return self._all
        if kind == PREFIX:
            ids, prefix = self._sorted, pattern.prefix
            lo = bisect.bisect_left(ids, prefix)
            # Every ID that starts with prefix sorts below prefix + U+10FFFF, except
            # those whose next character is U+10FFFF itself: walk past those.
            hi = bisect.bisect_left(ids, prefix + _MAX_CHAR, lo)
            n = len(ids)
            while hi < n and ids[hi].startswith(prefix):
                hi += 1
            return chain.from_iterable(map(self._by_id.__getitem__, ids[lo:hi]))
        regex = pattern.regex
        assert regex is not None
        return chain.from_iterable(
            same for client_id, same in self._by_id.items() if regex.match(client_id) is not None
        )
