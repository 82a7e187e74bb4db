"""``python -m sse_kit``: publish an event from a shell, a cron job or a deploy script.

::

    python -m sse_kit publish --redis redis://localhost:6379/0 'job:7:*' '{"done": 1}' --event done

or, with Redis behind Sentinel, ``--sentinel host:port,host:port --master mymaster``
instead of ``--redis`` (the event goes to the master the Sentinels name now);
prints the event's ID, and on stderr where it went (the Redis server and the
stream key), with a warning when that key did not exist before: hubs follow the
key their ``RedisBackplane(stream=...)`` names, and an event appended under
another one reaches nobody. Exit status: 0 published, 1 Redis unreachable, 2 bad
arguments.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

from ._exceptions import BackplaneUnavailable
from ._patterns import validate_pattern
from ._wire import data_to_text, encode_fields

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m sse_kit", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    publish = commands.add_parser(
        "publish",
        help="broadcast one event through a Redis backplane",
        description="Broadcast one event to every client, on every hub following the"
        " stream, whose ID matches PATTERN; prints the event's ID.",
    )
    where = publish.add_mutually_exclusive_group(required=True)
    where.add_argument("--redis", metavar="URL",
                       help="the backplane's Redis URL, e.g. redis://localhost:6379/0")
    where.add_argument("--sentinel", metavar="HOST:PORT[,HOST:PORT...]",
                       help="Redis Sentinels to ask for the master (instead of --redis)")
    publish.add_argument("--master", default="mymaster",
                         help="with --sentinel: the master's name (default: %(default)s)")
    publish.add_argument("--stream", default="sse_kit",
                         help="the stream key the hubs follow (default: %(default)s)")
    publish.add_argument("--event", default=None, help="event type (default: message)")
    publish.add_argument("--timeout", type=float, default=1.0,
                         help="seconds to wait for Redis (default: %(default)s)")
    publish.add_argument("pattern", metavar="PATTERN", help="glob over client IDs, e.g. 'job:7:*'")
    publish.add_argument("data", metavar="DATA", help="the event's data, sent as is ('-': stdin)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    args = _parser().parse_args(argv)
    try:
        from .redis import RedisBackplane
    except ImportError as exc:
        print(f"python -m sse_kit publish: {exc}", file=sys.stderr)
        return 2
    data = sys.stdin.read() if args.data == "-" else args.data
    try:
        validate_pattern(args.pattern)
        body = encode_fields(data_to_text(data), event=args.event or None)
        if args.sentinel is not None:
            url: Any = _sentinel_connect(args.sentinel, args.master, args.timeout)
            where = f"master {args.master!r} via Sentinel {args.sentinel}"
        else:
            url, where = args.redis, args.redis.split("@")[-1]  # no password on the terminal
        with RedisBackplane(url, stream=args.stream, timeout=args.timeout) as backplane:
            existed = backplane.stream_exists()
            event_id = backplane.publish(args.pattern, body)
    except BackplaneUnavailable as exc:
        print(f"python -m sse_kit publish: {exc}", file=sys.stderr)
        return 1
    except ValueError as exc:
        print(f"python -m sse_kit publish: {exc}", file=sys.stderr)
        return 2
    print(event_id)
    print(f"published to stream {args.stream!r} at {where}", file=sys.stderr)
    if not existed:
        print(f"python -m sse_kit publish: warning: stream {args.stream!r} did not exist "
              "before this event: it is the first ever published there, or no hub follows "
              "that name. Hubs read the stream their RedisBackplane(stream=...) names "
              "(default 'sse_kit'); check --stream.", file=sys.stderr)
    return 0


def _sentinel_connect(spec: str, master: str, timeout: float) -> Any:
    """A ``connect`` callable for :class:`~sse_kit.redis.RedisBackplane` that asks
    the Sentinels in *spec* (``host:port,host:port``) for *master*.

    :raises ValueError: if *spec* is not a list of ``host:port``.
    """
    from redis.sentinel import Sentinel

    hosts = []
    for item in spec.split(","):
        host, _, port = item.strip().rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(f"--sentinel must be host:port[,host:port...], got {spec!r}")
        hosts.append((host, int(port)))
    sentinel = Sentinel(hosts, socket_timeout=timeout)  # type: ignore[no-untyped-call]

    def connect(**options: Any) -> Any:
        return sentinel.master_for(master, **options)  # type: ignore[no-untyped-call]

    return connect


if __name__ == "__main__":
    sys.exit(main())
