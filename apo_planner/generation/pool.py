"""The async transport of the server backend: a pool of OpenAI-compatible servers over aiohttp.

Plain JSON over aiohttp, not the `openai` client: measured by `benchmarks.synthesis_limit`, the client's
request building, typed-dict transforms and response models cost more per request than everything else a
build does, and capped it at about half of what a bare load generator gets from the same server at
concurrency 64. Requests go to the server with the fewest in flight; failing servers leave the rotation
and are probed back.
"""

from __future__ import annotations

import asyncio
import time
import urllib.request
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit


class StatusError(Exception):
    """A server answered with an error status; 429 and 5xx are worth retrying, other 4xx are not."""

    def __init__(self, url: str, status: int, body: bytes) -> None:
        super().__init__(f"HTTP {status} from {redact_url(url)}: {body[:200].decode(errors='replace')}")
        self.status = status


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
    for a probe and an all-down cluster fails its requests as fast as one down server does.

    What routing does to answers: every request carries its own seed and all its sampling fields, so any
    server samples it the same way, but vLLM does not promise the same tokens for the same seeded request
    in another batch (`VLLM_BATCH_INVARIANT=0` by default: its kernels may reduce in a different order for
    another batch size). Which server a request lands on, and with which neighbours, can therefore change
    an answer unless the servers run batch-invariant (`server.batch_invariant`; see docs/vllm.md).
    """

    def __init__(self, config: Any, api_key: str, out: Iterable[str] = (), urls: list[str] | None = None) -> None:
        """`config`: a server backend's config (`base_urls`, `timeout_s`, `concurrency`, `health_retry_s`);
        `urls` replaces its `base_urls` (the server a stage started)."""
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

        self.servers = [Server(url, session(url), out=url in out) for url in (urls or config.base_urls)]
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

    async def post(self, server: Server, path: str, body: bytes) -> bytes:
        async with server.session.post(f"{server.url}/{path}", data=body) as response:
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


def retryable(exc: BaseException) -> bool:
    """429 and 5xx answers, connection errors and timeouts are worth another try; other 4xx are not."""
    import aiohttp

    if isinstance(exc, StatusError):
        return exc.status == 429 or exc.status >= 500
    return isinstance(exc, (aiohttp.ClientError, asyncio.TimeoutError))
