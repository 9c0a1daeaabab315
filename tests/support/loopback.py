"""Loopback servers for fault injection (test and benchmark support, not part of the library).

Real-path tests run against a real server (`transformers serve` with a tiny model). `OpenAIStub`
is for what a real server will not do on demand: answer 500, hang past a timeout, return a chosen
text, or answer after a fixed latency (to measure the client and its concurrency alone). It speaks
just enough of `/v1/chat/completions`, `/v1/completions` and `/v1/models` for the `openai` client.
`tests.support.hub.HubStub` (same loopback base) stands in for the Hub, which tests cannot reach.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# A reply is (status, body text or None, delay seconds).
Reply = tuple[int, str | None, float]


class LoopbackServer:
    """An aiohttp app on 127.0.0.1 with its own event-loop thread, usable as a context manager.

    Its own loop means handler latency is an `asyncio.sleep`, so concurrent requests overlap the
    way they do against a real server, and a blocking client in the test thread cannot starve it.
    """

    _port: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._port}"

    def routes(self, app: Any) -> None:
        raise NotImplementedError

    def __enter__(self):
        from aiohttp import web

        app = web.Application(client_max_size=1 << 30)
        self.routes(app)
        self._loop = asyncio.new_event_loop()
        self._runner = web.AppRunner(app, access_log=None)
        ready = threading.Event()

        def serve() -> None:
            asyncio.set_event_loop(self._loop)
            self._loop.run_until_complete(self._runner.setup())
            site = web.TCPSite(self._runner, "127.0.0.1", self._port)  # 0: any free port
            self._loop.run_until_complete(site.start())
            self._port = site._server.sockets[0].getsockname()[1]
            ready.set()
            self._loop.run_forever()

        self._thread = threading.Thread(target=serve, daemon=True)
        self._thread.start()
        ready.wait(30)
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(30)


@dataclass
class OpenAIStub(LoopbackServer):
    """`replies(request_json, n)` decides the n-th reply (0-based); default: instant "ok"."""

    replies: Callable[[dict[str, Any], int], Reply] = lambda request, n: (200, "ok", 0.0)
    model: str = "stub-model"
    requests: list[dict[str, Any]] = field(default_factory=list)
    version: dict[str, Any] | None = None  # what GET /version answers (None: 404, as a server without it)

    @property
    def base_url(self) -> str:
        return f"{self.url}/v1"

    def routes(self, app: Any) -> None:
        from aiohttp import web

        async def models(request: web.Request) -> web.Response:
            return web.json_response({"object": "list", "data": [{"id": self.model, "object": "model"}]})

        def endpoint(kind: str, choice: Callable[[str | None], dict[str, Any]]):
            async def handle(request: web.Request) -> web.Response:
                body = await request.json()
                n = len(self.requests)
                self.requests.append(body)
                status, text, delay = self.replies(body, n)
                if delay:
                    await asyncio.sleep(delay)
                if status != 200:
                    error = {"error": {"message": f"stub error {status}", "type": "server_error"}}
                    return web.json_response(error, status=status)
                return web.json_response(
                    {
                        "id": f"stub-{n}",
                        "object": kind,
                        "created": 0,
                        "model": self.model,
                        "choices": [{"index": 0, "finish_reason": "stop", **choice(text)}],
                        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
                    }
                )

            return handle

        async def version(request: web.Request) -> web.Response:
            return web.json_response(self.version)

        app.router.add_get("/v1/models", models)
        if self.version is not None:
            app.router.add_get("/version", version)
        app.router.add_post("/v1/chat/completions", endpoint("chat.completion", _chat_choice))
        app.router.add_post("/v1/completions", endpoint("text_completion", _text_choice))


def _chat_choice(text: str | None) -> dict[str, Any]:
    return {"message": {"role": "assistant", "content": text}}


def _text_choice(text: str | None) -> dict[str, Any]:
    return {"text": text, "logprobs": None}


def server_url(log: Path) -> str:
    """The /v1 URL a server started by `apo_planner.serving.serve` answered at (its log's first line)."""
    import re

    match = re.search(r"server at (http://\S+/v1):", log.read_text().splitlines()[0])
    assert match, f"{log} does not start with the server line"
    return match.group(1)
