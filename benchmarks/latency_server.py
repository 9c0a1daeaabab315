"""A fixed-latency OpenAI-compatible server in a process of its own: the load target of the synthesis
benchmarks. In process it would share the GIL with the client it measures.

It answers `/v1/chat/completions` with `drop_first_call` (a valid selection for whatever trajectory the
synthesis prompt shows) after `latency` seconds, and `/v1/models` at once; it is just enough server for
the build's client and `openai`'s, so what is measured is the client and its concurrency alone.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

MODEL = "stub-model"


def drop_first_call(request: dict[str, Any], n: int = 0) -> str:
    """A valid selection for whatever trajectory the synthesis prompt shows: every call but the first."""
    calls = request["messages"][0]["content"].count("\n[")
    keep = [{"index": i, "rationale": "needed", "depends_on": []} for i in range(1, max(calls, 2))]
    return json.dumps({"keep": keep})


class LatencyServer:
    """`main` below, started as a subprocess; `base_url` once it listens."""

    model = MODEL

    def __init__(self, workdir: Path, latency: float) -> None:
        port_file = workdir / f"latency-server-{latency}.url"
        port_file.unlink(missing_ok=True)
        command = [sys.executable, "-m", "benchmarks.latency_server", "--port-file", str(port_file)]
        self.proc = subprocess.Popen([*command, "--latency", str(latency)])
        while not port_file.exists() or not port_file.read_text():
            if self.proc.poll() is not None:
                raise RuntimeError("the latency server exited before it listened")
            time.sleep(0.05)
        self.base_url = port_file.read_text()

    def __enter__(self) -> LatencyServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)


async def _serve(port_file: Path, latency: float) -> None:
    from aiohttp import web

    served = 0

    async def models(request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [{"id": MODEL, "object": "model"}]})

    async def chat(request: web.Request) -> web.Response:
        nonlocal served
        body = await request.json()
        served += 1
        await asyncio.sleep(latency)
        message = {"role": "assistant", "content": drop_first_call(body)}
        usage = {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}
        choice = {"index": 0, "finish_reason": "stop", "message": message}
        return web.json_response(
            {
                "id": f"r{served}",
                "object": "chat.completion",
                "model": MODEL,
                "created": 0,
                "choices": [choice],
                "usage": usage,
            }
        )

    app = web.Application(client_max_size=1 << 30)
    app.router.add_get("/v1/models", models)
    app.router.add_post("/v1/chat/completions", chat)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    partial = port_file.with_suffix(".partial")
    partial.write_text(f"http://127.0.0.1:{port}/v1")
    partial.replace(port_file)  # appears whole: the reader never sees an empty file
    await asyncio.Event().wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port-file", required=True, help="where to write the /v1 URL once listening")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds before each reply")
    args = parser.parse_args()
    asyncio.run(_serve(Path(args.port_file), args.latency))


if __name__ == "__main__":
    main()
