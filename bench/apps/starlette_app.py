"""sse-starlette under uvicorn (uvloop, httptools): one asyncio.Queue per client,
frames encoded once and yielded as bytes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from sse_starlette.sse import EventSourceResponse
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

_clients: set[asyncio.Queue[bytes]] = set()


async def events(request: Request) -> Response:
    q: asyncio.Queue[bytes] = asyncio.Queue(maxsize=1024)
    _clients.add(q)

    async def stream() -> AsyncIterator[bytes]:
        try:
            yield b": connected\n\n"
            while True:
                yield await q.get()
        finally:
            _clients.discard(q)

    return EventSourceResponse(stream(), ping=30)


async def publish(request: Request) -> Response:
    clients = list(_clients)
    for data in (await request.body()).split(b"\n"):
        frame = b"data: " + data + b"\n\n"  # encoded once
        for q in clients:
            try:  # noqa: SIM105 (contextlib.suppress costs more per client)
                q.put_nowait(frame)
            except asyncio.QueueFull:
                pass
    return Response(status_code=204)


async def count(request: Request) -> Response:
    return PlainTextResponse(str(len(_clients)))


app = Starlette(routes=[
    Route("/events/", events),
    Route("/publish", publish, methods=["POST"]),
    Route("/count", count),
])
