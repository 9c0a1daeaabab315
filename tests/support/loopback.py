"""Loopback servers for fault injection (test and benchmark support, not part of the library).

Real-path tests run against a real server (`transformers serve` with a tiny model). `OpenAIStub`
is for what a real server will not do on demand: answer 500, hang past a timeout, return a chosen
text, or answer after a fixed latency (to measure the client and its concurrency alone). It speaks
just enough of `/v1/chat/completions`, `/v1/completions` and `/v1/models` for the `openai` client.
`tests.support.hub.HubStub` (same loopback base) stands in for the Hub, which tests cannot reach.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
import time
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
            site = web.TCPSite(self._runner, "127.0.0.1", 0)
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

        app.router.add_get("/v1/models", models)
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


def drop_first_call(request: dict[str, Any], n: int = 0) -> str:
    """A valid selection for whatever trajectory the synthesis prompt shows: every call but the first."""
    calls = request["messages"][0]["content"].count("\n[")
    keep = [{"index": i, "rationale": "needed", "depends_on": []} for i in range(1, max(calls, 2))]
    return json.dumps({"keep": keep})


class StubProcess:
    """`main` below in a process of its own, for benchmarks: in-process, the stub would share the GIL with
    the client it measures. Answers `drop_first_call` after `latency` seconds."""

    model = "stub-model"

    def __init__(self, workdir: Path, latency: float) -> None:
        port_file = workdir / f"stub-{latency}.url"
        port_file.unlink(missing_ok=True)
        command = [sys.executable, "-m", "tests.support.loopback", "--port-file", str(port_file)]
        self.proc = subprocess.Popen([*command, "--latency", str(latency)])
        while not port_file.exists() or not port_file.read_text():
            if self.proc.poll() is not None:
                raise RuntimeError("the loopback stub exited before it listened")
            time.sleep(0.05)
        self.base_url = port_file.read_text()

    def __enter__(self) -> StubProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)


def main() -> None:
    """Run a stub in its own process (so benchmarks measure the client, not a shared GIL)."""
    import argparse

    parser = argparse.ArgumentParser(description="loopback OpenAI-compatible stub")
    parser.add_argument("--port-file", required=True, help="where to write the port once listening")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds before each reply")
    args = parser.parse_args()
    with OpenAIStub(lambda request, n: (200, drop_first_call(request), args.latency)) as stub:
        partial = Path(args.port_file).with_suffix(".partial")
        partial.write_text(stub.base_url)
        partial.replace(args.port_file)  # appears whole: the reader never sees an empty file
        threading.Event().wait()


if __name__ == "__main__":
    main()
