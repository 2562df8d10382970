"""The Python baselines, each its own process (``baselines.py KIND PORT``): ``bare``, a
Starlette endpoint that reads the body and answers 200 JSON under the service's uvicorn
settings (the framework alone); ``sink``, the cheapest server there is (uvloop, no
parsing): the load generator's ceiling; ``gidgethub``, a bot as gidgethub's docs build
one: aiohttp, ``Event.from_http`` (signature, JSON), a ``Router`` whose ``pull_request``
handler counts (GET /count); ``floor``, the least a receiver keeping this service's
promise does (the signature, the JSON, the delivery stored durably before the 2xx; no
PR, task or event): what durability costs on this stack. Each echoes the GUID for
``replay.lua``."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from collections.abc import AsyncIterator
from typing import Any, cast

WEBHOOK_PATH = "/webhooks/github"


def serve_bare(port: int, webhook: Any = None, lifespan: Any = None) -> None:
    import uvicorn
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    async def bare(request: Request) -> Response:
        body = await request.body()
        guid = request.headers.get("x-github-delivery", "")
        return JSONResponse({"guid": guid, "bytes": len(body)})

    routes = [Route(WEBHOOK_PATH, webhook or bare, methods=["POST"]),
              Route("/healthz", lambda request: JSONResponse({"status": "ok"}))]  # fmt: skip
    app = Starlette(routes=routes, lifespan=lifespan)
    uvicorn.run(app, host="127.0.0.1", port=port, log_config=None,
                access_log=False, timeout_graceful_shutdown=8)  # fmt: skip


def serve_floor(port: int) -> None:
    """Starlette as ``bare``; two writers, each inserting all deliveries waiting in one
    statement on PostgreSQL (DATABASE_URL; fsync'd commit), then answering them."""
    import hashlib
    import hmac

    import asyncpg
    import orjson
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response

    waiting: asyncio.Queue[tuple[str, str, bytes, asyncio.Future[None]]] = asyncio.Queue()
    secret = os.environ["WEBHOOK_SECRET"].encode()
    insert = ("INSERT INTO deliveries SELECT * FROM unnest($1::text[], $2::text[],"
              " $3::bytea[]) ON CONFLICT DO NOTHING")  # fmt: skip

    async def write(pool: asyncpg.Pool) -> None:
        while True:
            batch = [await waiting.get()]
            while not waiting.empty():
                batch.append(waiting.get_nowait())
            guids, headers, bodies, _ = zip(*batch, strict=True)
            await pool.execute(insert, list(guids), list(headers), list(bodies))
            for *_, done in batch:
                done.set_result(None)

    async def webhook(request: Request) -> Response:
        body, headers = await request.body(), request.headers
        digest = hmac.new(secret, body, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(headers.get("x-hub-signature-256", ""), f"sha256={digest}"):
            return JSONResponse({"error": "bad signature"}, 401)
        orjson.loads(body)
        guid, done = headers["x-github-delivery"], asyncio.get_running_loop().create_future()
        waiting.put_nowait((guid, orjson.dumps(dict(headers)).decode(), body, done))
        await done
        return JSONResponse({"guid": guid})

    @contextlib.asynccontextmanager
    async def lifespan(app: object) -> AsyncIterator[None]:
        async with asyncpg.create_pool(os.environ["DATABASE_URL"], min_size=2) as pool:
            await pool.execute("CREATE TABLE deliveries (guid text PRIMARY KEY, headers text,"
                               " body bytea COMPRESSION lz4)")  # fmt: skip
            writers = [asyncio.create_task(write(pool)) for _ in range(2)]
            yield
            for writer in writers:
                writer.cancel()

    serve_bare(port, webhook, lifespan)


def serve_gidgethub(port: int) -> None:
    from aiohttp import web
    from gidgethub import routing, sansio

    router, count, secret = routing.Router(), [0], os.environ["WEBHOOK_SECRET"]

    @router.register("pull_request")
    async def pull_request(event: sansio.Event) -> None:
        count[0] += 1

    async def webhook(request: web.Request) -> web.Response:
        event = sansio.Event.from_http(request.headers, await request.read(), secret=secret)
        await router.dispatch(event)
        return web.json_response(text=f'{{"guid":"{event.delivery_id}"}}')

    async def counted(request: web.Request) -> web.Response:
        return web.json_response({"count": count[0]})

    app = web.Application()
    app.add_routes([web.post(WEBHOOK_PATH, webhook), web.get("/count", counted),
                    web.get("/healthz", counted)])  # fmt: skip
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


class _Sink(asyncio.Protocol):
    """Answers each request as soon as its bytes are in; echoes X-GitHub-Delivery."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        while (end := self._buffer.find(b"\r\n\r\n")) >= 0:
            length, guid = 0, b""
            for line in bytes(self._buffer[:end]).split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                name = name.strip().lower()
                if name == b"content-length":
                    length = int(value)
                elif name == b"x-github-delivery":
                    guid = value.strip()
            if len(self._buffer) < end + 4 + length:
                return
            del self._buffer[: end + 4 + length]
            body = b'{"guid":"' + guid + b'","status":"ok"}'
            assert self._transport is not None
            self._transport.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                % (len(body), body)
            )


def serve_sink(port: int) -> None:
    import uvloop

    async def main() -> None:
        server = await asyncio.get_running_loop().create_server(_Sink, "127.0.0.1", port)
        async with server:
            await server.serve_forever()

    with contextlib.suppress(KeyboardInterrupt):
        uvloop.run(main())


if __name__ == "__main__":
    kinds = {"bare": serve_bare, "sink": serve_sink, "gidgethub": serve_gidgethub,
             "floor": serve_floor}  # fmt: skip
    serve = kinds[sys.argv[1]]
    serve(int(sys.argv[2]))
