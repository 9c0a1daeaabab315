"""Test helpers shipped with the library: a loopback OpenAI-compatible stub for fault injection.

Real-path tests run against a real server (`transformers serve` with a tiny model). This stub is
for what a real server will not do on demand: answer 500, hang past a timeout, return a chosen
text, or answer instantly (to measure the client alone). It speaks just enough of
`/v1/chat/completions` and `/v1/models` for the `openai` client.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

# A reply is (status, body text or None, delay seconds).
Reply = tuple[int, str | None, float]


@dataclass
class OpenAIStub:
    """`replies(request_json, n)` decides the n-th reply (0-based); default: instant "ok"."""

    replies: Callable[[dict[str, Any], int], Reply] = lambda request, n: (200, "ok", 0.0)
    model: str = "stub-model"
    requests: list[dict[str, Any]] = field(default_factory=list)
    _server: ThreadingHTTPServer | None = None

    @property
    def base_url(self) -> str:
        assert self._server is not None
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/v1"

    def __enter__(self) -> OpenAIStub:
        stub = self
        lock = threading.Lock()

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _send(self, status: int, payload: dict[str, Any]) -> None:
                body = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                self._send(200, {"object": "list", "data": [{"id": stub.model, "object": "model"}]})

            def do_POST(self) -> None:
                request = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))) or b"{}")
                with lock:
                    n = len(stub.requests)
                    stub.requests.append(request)
                status, text, delay = stub.replies(request, n)
                if delay:
                    time.sleep(delay)
                if status != 200:
                    self._send(status, {"error": {"message": f"stub error {status}", "type": "server_error"}})
                    return
                self._send(
                    200,
                    {
                        "id": f"stub-{n}",
                        "object": "chat.completion",
                        "created": 0,
                        "model": stub.model,
                        "choices": [
                            {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": text}}
                        ],
                        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
                    },
                )

        class Server(ThreadingHTTPServer):
            def handle_error(self, request: Any, client_address: Any) -> None:
                pass  # clients that time out close their socket mid-reply; that is the point

        self._server = Server(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
