"""Where the synthesizer's model runs: an OpenAI-compatible endpoint or in-process transformers.

Both take a prompt, a JSON schema and a seed and return the raw text; both constrain decoding to
the schema where they can (vLLM `structured_outputs` / OpenAI `response_format`; xgrammar for
transformers). The caller validates every answer anyway: not every server enforces schemas
(`transformers serve` does not) and xgrammar cannot enforce `uniqueItems`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
import time
import urllib.request
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Protocol
from urllib.parse import urlsplit, urlunsplit

import orjson
from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_exponential_jitter

from apo_planner.builders.config import LLMConfig
from apo_planner.builders.errors import SynthesisError

logger = logging.getLogger(__name__)
_BACKOFF_S = 0.2  # the wait before the first retry of a failed request; it doubles with each retry


class RequestFailed(Exception):
    """A request that still failed after its retries (network, timeout, 5xx); recorded, not cached."""


class Backend(Protocol):
    name: str
    retries: int  # transient request errors retried so far (stats.json's `request_retries`)
    usage: Counter[str]  # prompt_tokens and completion_tokens so far (stats.json's `throughput`)
    servers: dict[str, dict[str, int]]  # per server URL: requests, failed, taken_out (empty in process)

    async def complete(self, prompt: str, schema: dict[str, Any], seed: int, temperature: float) -> str: ...

    def check(self) -> None:
        """Fail fast, with advice, when the model cannot be reached or loaded."""

    async def aclose(self) -> None: ...


class StatusError(Exception):
    """A server answered with an error status; 429 and 5xx are worth retrying, other 4xx are not."""

    def __init__(self, url: str, status: int, body: bytes) -> None:
        super().__init__(f"HTTP {status} from {redact_url(url)}: {body[:200].decode(errors='replace')}")
        self.status = status


def _retryable(exc: BaseException) -> bool:
    import aiohttp

    if isinstance(exc, StatusError):
        return exc.status == 429 or exc.status >= 500
    return isinstance(exc, (aiohttp.ClientError, asyncio.TimeoutError))


@dataclass(eq=False)
class Server:
    """One OpenAI-compatible endpoint of the pool: its connections, the requests it has in flight and whether
    it is in rotation. A server taken out stays out until `back_at`, then one GET /models decides."""

    url: str
    session: Any  # aiohttp.ClientSession, made inside the event loop that uses it
    outstanding: int = 0
    out: bool = False
    back_at: float = 0.0
    strikes: int = 0  # failures since it last answered: the wait before the next probe doubles with each
    counts: Counter = field(default_factory=Counter)  # requests, failed, taken_out


class ServerPool:
    """Least-outstanding routing over `build.llm.base_url` with health checks.

    A request goes to the in-rotation server with the fewest requests in flight. A request that fails
    in a way worth retrying takes its server out of rotation (its other requests finish or fail on
    their own) and the retry goes elsewhere; a server out of rotation is probed with GET /models once
    its wait is over (1 s after the first failure, doubling up to `health_retry_s`) and comes back when
    it answers. The last server in rotation is never taken out: with nowhere else to go, its failed
    requests are retried by backoff alone (exactly one server's behaviour), so a request never waits
    for a probe and an all-down cluster fails its requests as fast as one down server does. The answer
    to a request does not depend on the server (the seed is the request's), so routing changes nothing
    a build writes.
    """

    def __init__(self, config: LLMConfig, api_key: str, out: Iterable[str] = ()) -> None:
        import aiohttp

        self.config = config
        self._probe_timeout = aiohttp.ClientTimeout(total=min(config.timeout_s, 10.0))

        def session(url: str) -> aiohttp.ClientSession:
            headers = {"Content-Type": "application/json"}
            if not urlsplit(url).username:  # user:password@ in the URL: aiohttp sends it as basic auth instead
                headers["Authorization"] = f"Bearer {api_key}"
            return aiohttp.ClientSession(
                headers=headers,
                proxy=_env_proxy(url),
                timeout=aiohttp.ClientTimeout(total=config.timeout_s),
                connector=aiohttp.TCPConnector(limit=config.concurrency),
            )

        self.servers = [Server(url, session(url), out=url in out) for url in config.base_urls]
        self._probes: dict[Server, asyncio.Task[None]] = {}

    def acquire(self) -> Server:
        """The server for the next request (its `outstanding` already counted)."""
        now = time.monotonic()
        for server in self.servers:  # due probes run beside the requests, not in front of them
            if server.out and server.back_at <= now and server not in self._probes:
                self._probes[server] = asyncio.create_task(self._probe(server))
        # never empty: `check` leaves at least one server in, and `release` never takes out the last one
        chosen = min((s for s in self.servers if not s.out), key=lambda s: s.outstanding)
        chosen.outstanding += 1
        chosen.counts["requests"] += 1
        return chosen

    def release(self, server: Server, failed: bool) -> None:
        server.outstanding -= 1
        if not failed:
            server.strikes = 0
            return
        server.counts["failed"] += 1
        others_in = any(s is not server and not s.out for s in self.servers)
        if not server.out and others_in:  # one strike per fall, not per request in flight (32 failures: 1 s)
            server.counts["taken_out"] += 1
            self._bench(server)

    def _bench(self, server: Server) -> None:
        """Out of rotation until its next probe, which waits twice as long after each failure."""
        server.out = True
        server.strikes += 1
        wait = min(self.config.health_retry_s, 2.0 ** (server.strikes - 1))
        server.back_at = max(server.back_at, time.monotonic() + wait)

    async def _probe(self, server: Server) -> None:
        try:
            async with server.session.get(f"{server.url}/models", timeout=self._probe_timeout) as response:
                healthy = response.status == 200
        except Exception:  # noqa: BLE001 - any failure keeps it out; the next probe waits longer
            healthy = False
        finally:
            self._probes.pop(server, None)
        if healthy:
            server.out, server.strikes = False, 0
        else:
            self._bench(server)

    async def post(self, server: Server, body: bytes) -> bytes:
        async with server.session.post(f"{server.url}/chat/completions", data=body) as response:
            raw = await response.read()
            if response.status != 200:
                raise StatusError(server.url, response.status, raw)
            return raw

    def summary(self) -> dict[str, dict[str, int]]:
        return {redact_url(s.url): {k: s.counts[k] for k in ("requests", "failed", "taken_out")} for s in self.servers}

    async def aclose(self) -> None:
        for probe in list(self._probes.values()):
            probe.cancel()
        for server in self.servers:
            await server.session.close()


def _env_proxy(url: str) -> str | None:
    """The proxy HTTP(S)_PROXY / NO_PROXY give this server, as the openai client in `check` honours them.
    Resolved once per server: aiohttp's `trust_env` looks them (and ~/.netrc) up again on every request,
    which doubled the client's CPU per request (benchmarks.synthesis_limit). SSL_CERT_FILE needs nothing:
    the default SSL context reads it."""
    parts = urlsplit(url)
    if parts.hostname and urllib.request.proxy_bypass(parts.hostname):
        return None
    return urllib.request.getproxies().get(parts.scheme)


def redact_url(url: str) -> str:
    """A server URL as stats.json and logs show it: credentials in it (user:token@) removed."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc="***@" + parts.netloc.rsplit("@", 1)[1]))


class OpenAIBackend:
    """Any OpenAI-compatible servers (vLLM, `transformers serve`, hosted APIs), called concurrently.

    `check` goes through the `openai` client (its errors make the advice). The requests themselves are
    plain JSON over aiohttp (the transport the `openai` client offers for asyncio anyway): measured by
    `benchmarks.synthesis_limit`, the client's request building, typed-dict transforms and response models
    cost more per request than everything else the build does, and capped it at about half of what a
    bare load generator gets from the same server at concurrency 64.
    """

    name = "openai"

    def __init__(self, config: LLMConfig) -> None:
        self.config = config
        self.api_key = os.environ.get(config.api_key_env) or "EMPTY"
        self.retries = 0
        self.usage: Counter[str] = Counter()  # prompt_tokens, completion_tokens as the servers report them
        self._pool: ServerPool | None = None
        self._down: set[str] = set()  # servers `check` found down: the pool starts with them out
        self._servers: dict[str, dict[str, int]] = {}

    @property
    def servers(self) -> dict[str, dict[str, int]]:
        """Requests, failures and times taken out per server (stats.json's `throughput.servers`)."""
        return self._pool.summary() if self._pool else self._servers

    def check(self) -> None:
        """Every server must serve the model; a server that does not answer is left out (while one does)."""
        import openai

        down: dict[str, str] = {}
        for url in self.config.base_urls:
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
                raise SynthesisError(
                    f"the server at {redact_url(url)} serves {served}, not {self.config.model!r}; "
                    "set build.llm.model to the served name"
                )
        if len(down) == len(self.config.base_urls):
            where = ", ".join(f"{redact_url(u)} ({e})" for u, e in down.items())
            raise SynthesisError(
                f"no OpenAI-compatible server answers at {where}. Start one with `make serve-synth` (vLLM, "
                "separate environment; see README) or point build.llm.base_url at a running server."
            )
        for url in down:
            logger.warning(
                "synthesis: %s does not answer; left out of rotation and probed again later", redact_url(url)
            )
        self._down = set(down)

    def request_body(self, prompt: str, schema: dict[str, Any], seed: int, temperature: float) -> bytes:
        """The JSON posted to /chat/completions (also what `benchmarks.synthesis_limit` replays bare)."""
        body: dict[str, Any] = {
            "model": self.config.model,
            "messages": [{"role": "user", "content": prompt}],
            "temperature": temperature,
            "top_p": self.config.top_p,
            "max_tokens": self.config.max_tokens,
            "seed": seed,
        }
        mode = self.config.structured_output
        if mode == "structured_outputs":
            body["structured_outputs"] = {"json": schema}
        elif mode == "response_format":
            body["response_format"] = {"type": "json_schema", "json_schema": {"name": "selection", "schema": schema}}
        return orjson.dumps(body)

    async def complete(self, prompt: str, schema: dict[str, Any], seed: int, temperature: float) -> str:
        if self._pool is None:  # made in the running loop: its connections belong to it
            self._pool = ServerPool(self.config, self.api_key, out=self._down)
        body = self.request_body(prompt, schema, seed, temperature)
        try:
            try:
                raw = await self._attempt(body)
            except Exception as exc:
                if not _retryable(exc) or not self.config.max_retries:
                    raise
                raw = await self._retry(body)
        except Exception as exc:
            raise RequestFailed(f"{type(exc).__name__}: {str(exc)[:200]}") from None
        try:
            response = orjson.loads(raw)
            content = response["choices"][0]["message"]["content"]
        except (orjson.JSONDecodeError, KeyError, IndexError, TypeError):
            raise RequestFailed(f"response is not a chat completion: {raw[:120]!r}") from None
        usage = response.get("usage") or {}
        self.usage["prompt_tokens"] += usage.get("prompt_tokens") or 0
        self.usage["completion_tokens"] += usage.get("completion_tokens") or 0
        return content or ""

    async def _attempt(self, body: bytes) -> bytes:
        """One try on the server the pool picks; a failure worth retrying takes that server out of rotation."""
        pool = self._pool
        assert pool is not None
        server = pool.acquire()
        failed = False  # a cancelled request (Ctrl-C, a crashed sibling) says nothing about the server
        try:
            return await pool.post(server, body)
        except Exception as exc:
            failed = _retryable(exc)
            raise
        finally:
            pool.release(server, failed)

    async def _retry(self, body: bytes) -> bytes:
        """The retries after a first try failed (tenacity: exponential backoff with jitter). Kept off the
        first try: most requests need none, and its per-call machinery cost a third of the client's own
        per-request time (benchmarks.synthesis_limit)."""
        # waits 0.2 s, 0.4 s, 0.8 s ... (+ up to 1 s jitter, at most 20 s) before the 1st, 2nd, 3rd retry
        await asyncio.sleep(_BACKOFF_S + random.uniform(0, 1))
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self.config.max_retries),
            wait=wait_exponential_jitter(initial=2 * _BACKOFF_S, max=20),
            retry=retry_if_exception(_retryable),
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                self.retries += 1
                return await self._attempt(body)
        raise AssertionError("unreachable: tenacity reraises the last failure")

    async def aclose(self) -> None:
        if self._pool is not None:
            self._servers = self._pool.summary()
            await self._pool.aclose()
            self._pool = None


class TransformersBackend:
    """In-process generation with xgrammar-constrained decoding; for small local models and CPU runs."""

    name = "transformers"
    retries = 0  # in process: no requests to retry
    servers: dict[str, dict[str, int]] = {}  # noqa: RUF012 - in process: no servers (never mutated)

    def __init__(self, config: LLMConfig) -> None:
        from apo_planner.tiny import ensure_tiny_model

        self.config = config
        self.usage: Counter[str] = Counter()
        self._model = None
        self._lock = asyncio.Lock()
        if config.tiny_model:  # before anything records provenance of a model that must exist
            ensure_tiny_model(config.model, seed=config.seed)

    def check(self) -> None:
        self._load()

    def _load(self):
        if self._model is None:
            import xgrammar as xgr
            from transformers import AutoModelForCausalLM, AutoTokenizer

            revision = None if os.path.isdir(self.config.model) else self.config.revision
            try:
                self._tokenizer = AutoTokenizer.from_pretrained(self.config.model, revision=revision)
                self._model = AutoModelForCausalLM.from_pretrained(self.config.model, revision=revision)
            except OSError as exc:
                raise SynthesisError(f"cannot load synthesizer model {self.config.model!r}: {exc}") from None
            self._model.eval()
            info = xgr.TokenizerInfo.from_huggingface(self._tokenizer, vocab_size=self._model.config.vocab_size)
            self._compiler = xgr.GrammarCompiler(info)
        return self._model

    @lru_cache(maxsize=64)  # noqa: B019 - one backend per build; schemas repeat per call count
    def _grammar(self, schema_json: str):
        return self._compiler.compile_json_schema(schema_json, any_whitespace=False)

    def _generate(self, prompt: str, schema: dict[str, Any], seed: int, temperature: float) -> str:
        import torch
        from xgrammar.contrib.hf import LogitsProcessor

        model = self._load()
        text = self._tokenizer.apply_chat_template(
            [{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True
        )
        inputs = self._tokenizer(text, return_tensors="pt", add_special_tokens=False)
        processor = LogitsProcessor(self._grammar(json.dumps(schema, sort_keys=True)))
        torch.manual_seed(seed)
        sampling = (
            {"do_sample": True, "temperature": temperature, "top_p": self.config.top_p}
            if temperature > 0
            else {"do_sample": False}
        )
        with torch.no_grad():
            out = model.generate(
                **inputs, max_new_tokens=self.config.max_tokens, logits_processor=[processor], **sampling
            )
        prompt_tokens = inputs["input_ids"].shape[1]
        self.usage["prompt_tokens"] += prompt_tokens
        self.usage["completion_tokens"] += out.shape[1] - prompt_tokens
        return self._tokenizer.decode(out[0, prompt_tokens:], skip_special_tokens=True)

    async def complete(self, prompt: str, schema: dict[str, Any], seed: int, temperature: float) -> str:
        async with self._lock:  # one generate at a time; the model is not re-entrant
            return await asyncio.to_thread(self._generate, prompt, schema, seed, temperature)

    async def aclose(self) -> None:
        """The model stays loaded: a build may synthesize again after a resume."""


def make_backend(config: LLMConfig) -> Backend:
    return OpenAIBackend(config) if config.backend == "openai" else TransformersBackend(config)
