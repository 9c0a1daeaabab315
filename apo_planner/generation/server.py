"""`backend: openai`: OpenAI-compatible servers (vLLM, `transformers serve`, hosted APIs).

One request builder for every role (`request_body`): the synthesizer's chat requests with a JSON schema
and the planner's text completions with a plan grammar carry the same sampling fields and the same
constraint field (`structured_output`: vLLM's `structured_outputs`, OpenAI's `response_format`, or none).
Two transports send the same bytes: the aiohttp `ServerPool` for the synthesizer's thousands of
concurrent requests (`agenerate`), and a thread-safe httpx client for callers that block, such as the
planner inside bfcl-eval's worker threads (`generate`).

What a server understands is its `api`: `vllm` takes every sampling field and `structured_outputs`;
`openai` (hosted APIs, `transformers serve`) takes only the OpenAI API's fields, so top_k, min_p and
repetition_penalty are left to that server and recorded as such.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import orjson
from pydantic import Field, model_validator
from tenacity import AsyncRetrying, Retrying, retry_if_exception, stop_after_attempt, wait_exponential_jitter

from apo_planner.generation import BACKENDS
from apo_planner.generation.base import Api, Backend, Generation, GenerationRequest, Identity, sampling_fields
from apo_planner.generation.config import BackendConfig
from apo_planner.generation.inprocess import BackendError
from apo_planner.generation.pool import ServerPool, StatusError, redact_url, retryable
from apo_planner.pinning import SHA, pin_served
from apo_planner.serving import ServerConfig, serve, served_engine

logger = logging.getLogger(__name__)
_BACKOFF_S = 0.2  # the wait before the first retry of a failed request; it doubles with each retry


class RequestFailed(BackendError):
    """A request that still failed after its retries (network, timeout, 5xx); recorded, never cached."""


class OpenAIConfig(BackendConfig):
    """OpenAI-compatible servers: started by the stage (`server`) or already running (`base_url`)."""

    backend: Literal["openai"] = "openai"
    base_url: str | list[str] = Field(
        "http://localhost:8000/v1",
        description="the server someone else runs (no `server`), or a list of servers serving the same model: each "
        "request goes to the one with the fewest in flight; one that fails is taken out and probed later",
    )
    server: ServerConfig | None = Field(
        None,
        description="the role's own server, started by the stage while it has requests to send (vllm or "
        "transformers; its URL replaces base_url; external: only checked); none: use base_url as it is",
    )
    api: Literal["auto", "vllm", "openai"] = Field(
        "auto",
        description="what the server understands: vllm (every sampling field, structured_outputs) or openai (the "
        "OpenAI API's fields only: hosted APIs, transformers serve); auto: openai for server.engine "
        "transformers-serve, else vllm",
    )
    structured_output: Literal["structured_outputs", "response_format", "none"] = Field(
        "structured_outputs",
        description="how the constraint is sent: vLLM's `structured_outputs` (JSON schema or grammar), OpenAI's "
        "`response_format` (JSON schema only), or none (the answer is validated only)",
    )
    api_key_env: str = Field("OPENAI_API_KEY", description="name of the env var holding the key (never the key)")
    concurrency: int = Field(32, ge=1, description="requests in flight (per build; connections per server)")
    timeout_s: float = Field(120.0, gt=0)
    max_retries: int = Field(4, ge=0, description="retries of a failed request (timeouts, 5xx, 429), with backoff")
    health_retry_s: float = Field(
        30.0, gt=0, description="longest wait before a server taken out after a failure is probed (GET /models) again"
    )

    @property
    def base_urls(self) -> list[str]:
        """`base_url` as a list (one server or many), in the recipe's order, without repeats."""
        urls = [self.base_url] if isinstance(self.base_url, str) else self.base_url
        return list(dict.fromkeys(url.rstrip("/") for url in urls))

    @property
    def dialect(self) -> Api:
        if self.api != "auto":
            return self.api
        return "openai" if self.server is not None and self.server.engine == "transformers-serve" else "vllm"

    @property
    def started(self) -> bool:
        """Whether the stage starts the server itself (and so chooses the weights it serves)."""
        return self.server is not None and self.server.engine != "external"

    @model_validator(mode="after")
    def _coherent(self) -> OpenAIConfig:
        if not self.base_urls or not all(self.base_urls):
            raise ValueError("base_url: give a server URL or a non-empty list of them (e.g. http://node1:8000/v1)")
        if self.server is not None and self.server.engine == "transformers-serve" and self.dialect == "vllm":
            raise ValueError("api vllm: transformers serve takes only the OpenAI API's fields; set api: openai")
        if self.dialect == "openai" and self.structured_output == "structured_outputs":
            raise ValueError(
                "structured_output structured_outputs is vLLM's field; with api openai use response_format or none"
            )
        return self


@BACKENDS.register("openai")
class OpenAIBackend(Backend):
    """Any OpenAI-compatible servers (vLLM, `transformers serve`, hosted APIs): chat and completions requests
    stating every sampling field, JSON schemas and plan grammars sent as vLLM `structured_outputs`.

    The async path posts plain JSON over aiohttp through `ServerPool` (least-outstanding routing over a list
    of servers, failing ones taken out and probed back): `benchmarks.synthesis_limit` measured the `openai`
    client's per-request work at about half of a bare load generator's throughput at concurrency 64."""

    name = "openai"
    config_class = OpenAIConfig

    def __post_init__(self) -> None:
        self.api_key = os.environ.get(self.config.api_key_env) or "EMPTY"
        self.urls = self.config.base_urls  # the started server's URL once `served` has started it
        self._revision: str | None = None
        self._pool: ServerPool | None = None
        self._down: set[str] = set()  # servers `check` found down: the pool starts with them out
        self._servers: dict[str, dict[str, int]] = {}
        self._sync: Any = None
        self._next_url = itertools.cycle(range(len(self.urls)))

    # --- who answers ------------------------------------------------------------------------

    def pin(self) -> None:
        if self._revision is not None:
            return
        c = self.config
        self._revision = pin_served(c.model, c.revision, c.started, "revision")

    def identity(self) -> Identity:
        self.pin()
        c = self.config
        engine = served_engine(c.server.engine if c.server is not None else None, c.dialect)
        return Identity(self.name, c.model, self._revision or c.revision, engine, c.structured_output)

    @property
    def concurrency(self) -> int:
        return self.config.concurrency

    @property
    def servers(self) -> dict[str, dict[str, int]]:
        """Requests, failures and times taken out per server (stats.json's `throughput.servers`)."""
        return self._pool.summary() if self._pool else self._servers

    @contextlib.contextmanager
    def served(self, workdir: Path, role: str) -> Iterator[None]:
        """The role's own server (`server`), pinned and downloaded first, for the duration of the block (an
        `external` one is only checked: it must answer and serve the model)."""
        c = self.config
        if c.server is None:
            yield
            return
        self.pin()
        revision = self._revision if self._revision and SHA.match(self._revision) else None
        with serve(c.server, c.model, workdir, role, revision=revision) as base_url:
            self.urls, self._down = [base_url], set()
            self._next_url = itertools.cycle([0])
            try:
                yield
            finally:
                self.urls = c.base_urls

    def check(self) -> None:
        """Every server must serve the model; a server that does not answer is left out (while one does)."""
        import openai

        down: dict[str, str] = {}
        for url in self.urls:
            sync = openai.OpenAI(
                base_url=url, api_key=self.api_key, timeout=min(self.config.timeout_s, 30), max_retries=2
            )
            try:
                served = [m.id for m in sync.models.list().data]
            except (openai.APIConnectionError, openai.APITimeoutError) as exc:
                down[url] = type(exc).__name__
                continue
            finally:
                sync.close()
            if served and self.config.model not in served:
                raise BackendError(
                    f"the server at {redact_url(url)} serves {served}, not {self.config.model!r}; "
                    "set the role's model to the served name"
                )
        if len(down) == len(self.urls):
            where = ", ".join(f"{redact_url(u)} ({e})" for u, e in down.items())
            raise BackendError(f"no OpenAI-compatible server answers at {where}")
        for url in down:
            logger.warning("%s does not answer; left out of rotation and probed again later", redact_url(url))
        self._down = set(down)

    # --- requests ---------------------------------------------------------------------------

    def request_body(self, request: GenerationRequest) -> bytes:
        """The JSON posted for `request` (also what `benchmarks.synthesis_limit` replays bare)."""
        c = self.config
        endpoint = request.endpoint
        body: dict[str, Any] = {"model": c.model}
        if endpoint == "chat":
            body["messages"] = request.messages
        else:
            body["prompt"] = request.prompt
        body.update(sampling_fields(request.sampling, c.dialect, endpoint))
        constraint = request.constraint
        if constraint is not None and c.structured_output == "structured_outputs":
            body["structured_outputs"] = {constraint.kind: constraint.value}
        elif constraint is not None and c.structured_output == "response_format":
            if constraint.kind != "json":
                raise BackendError("structured_output response_format carries JSON schemas only, not a grammar")
            body["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": "answer", "schema": constraint.value},
            }
        return orjson.dumps(body)

    @staticmethod
    def path(request: GenerationRequest) -> str:
        return "chat/completions" if request.endpoint == "chat" else "completions"

    def parse(self, raw: bytes, request: GenerationRequest) -> Generation:
        try:
            response = orjson.loads(raw)
            choice = response["choices"][0]
            text = choice["message"]["content"] if request.endpoint == "chat" else choice["text"]
        except (orjson.JSONDecodeError, KeyError, IndexError, TypeError):
            raise RequestFailed(f"response is not a {request.endpoint} completion: {raw[:120]!r}") from None
        usage = response.get("usage") or {}
        return self.record(
            Generation(
                text or "",
                usage.get("prompt_tokens") or 0,
                usage.get("completion_tokens") or 0,
                truncated=choice.get("finish_reason") == "length",
            )
        )

    async def agenerate(self, request: GenerationRequest) -> Generation:
        if self._pool is None:  # made in the running loop: its connections belong to it
            self._pool = ServerPool(self.config, self.api_key, out=self._down, urls=self.urls)
        body = self.request_body(request)
        path = self.path(request)
        try:
            try:
                raw = await self._attempt(path, body)
            except Exception as exc:
                if not retryable(exc) or not self.config.max_retries:
                    raise
                raw = await self._retry(path, body)
        except Exception as exc:
            raise RequestFailed(f"{type(exc).__name__}: {str(exc)[:200]}") from None
        return self.parse(raw, request)

    async def _attempt(self, path: str, body: bytes) -> bytes:
        """One try on the server the pool picks; a failure worth retrying takes that server out of rotation."""
        pool = self._pool
        assert pool is not None
        server = pool.acquire()
        failed = False  # a cancelled request (Ctrl-C, a crashed sibling) says nothing about the server
        try:
            return await pool.post(server, path, body)
        except Exception as exc:
            failed = retryable(exc)
            raise
        finally:
            pool.release(server, failed)

    async def _retry(self, path: str, body: bytes) -> bytes:
        """The retries after a first try failed (tenacity: exponential backoff with jitter). Kept off the
        first try: most requests need none, and its per-call machinery cost a third of the client's own
        per-request time (benchmarks.synthesis_limit)."""
        # waits 0.2 s, 0.4 s, 0.8 s ... (+ up to 1 s jitter, at most 20 s) before the 1st, 2nd, 3rd retry
        await asyncio.sleep(_BACKOFF_S + random.uniform(0, 1))
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self.config.max_retries),
            wait=wait_exponential_jitter(initial=2 * _BACKOFF_S, max=20),
            retry=retry_if_exception(retryable),
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                self.retries += 1
                return await self._attempt(path, body)
        raise AssertionError("unreachable: tenacity reraises the last failure")

    def generate(self, request: GenerationRequest) -> Generation:
        """The same request, blocking (thread-safe: one httpx client shared by every thread)."""
        import httpx

        if self._sync is None:
            headers = {"Content-Type": "application/json", "Authorization": f"Bearer {self.api_key}"}
            self._sync = httpx.Client(headers=headers, timeout=self.config.timeout_s)
        body, path = self.request_body(request), self.path(request)

        def post() -> bytes:
            url = self.urls[next(self._next_url) % len(self.urls)]
            response = self._sync.post(f"{url}/{path}", content=body)
            if response.status_code != 200:
                raise StatusError(url, response.status_code, response.content)
            return response.content

        def worth_retrying(exc: BaseException) -> bool:
            if isinstance(exc, StatusError):
                return exc.status == 429 or exc.status >= 500
            return isinstance(exc, (httpx.TransportError, httpx.TimeoutException))

        retrying = Retrying(
            stop=stop_after_attempt(self.config.max_retries + 1),
            wait=wait_exponential_jitter(initial=_BACKOFF_S, max=20),
            retry=retry_if_exception(worth_retrying),
            reraise=True,
        )
        return self.parse(retrying(post), request)

    async def aclose(self) -> None:
        if self._pool is not None:
            self._servers = self._pool.summary()
            await self._pool.aclose()
            self._pool = None
