"""Synthesis across several servers: least-outstanding routing, a failing server taken out of rotation
and probed back, the same dataset as with one server, and the throughput stats.json records."""

import asyncio
import json
import time

import pytest

from apo_planner.builders.build import build
from apo_planner.builders.errors import SynthesisError
from apo_planner.builders.synthesis.llm import _validator, parse_selection, selection_schema
from apo_planner.builders.synthesis.selection import InvalidSelection
from apo_planner.entry.recipe import load_recipe
from apo_planner.errors import RecipeError
from apo_planner.generation.inprocess import BackendError
from apo_planner.generation.pool import ServerPool, redact_url
from apo_planner.generation.server import OpenAIBackend
from benchmarks.latency_server import drop_first_call
from tests.conftest import SMOKE_SOURCE
from tests.support.loopback import OpenAIStub


def _config(tmp_path, name, urls, limit=12, **llm):
    settings = {
        "backend": "openai",
        "base_url": json.dumps(urls),  # a YAML flow list
        "model": "stub-model",
        "tiny_model": False,
        "structured_output": "none",
        "concurrency": 4,
        "max_retries": 4,
        "timeout_s": 5,
        "health_retry_s": 0.2,
        "cache": str(tmp_path / name / "cache.sqlite"),
        **llm,
    }
    overrides = [
        f"build.source={SMOKE_SOURCE}",
        f"build.output={tmp_path / name / 'ds'}",
        f"build.limit={limit}",
        "build.synthesizer=llm",
        *[f"build.llm.{k}={v}" for k, v in settings.items()],
    ]
    return load_recipe(None, overrides).build


def _healthy(request, n):
    return 200, drop_first_call(request), 0.01


def _fails_after(first_good: int):
    """A server that answers its first `first_good` requests, then only 500s."""
    return lambda request, n: _healthy(request, n) if n < first_good else (500, None, 0.0)


def test_two_servers_one_failing_build_the_same_dataset_as_one_server(tmp_path):
    """Routing and retries lose and duplicate nothing. (The stubs answer as a function of the request; vLLM
    promises that only when it runs batch-invariant: `server.batch_invariant`, docs/vllm.md.)"""
    with OpenAIStub(_healthy) as alone:
        single = build(_config(tmp_path, "single", [alone.base_url])).stats
    with OpenAIStub(_healthy) as good, OpenAIStub(_fails_after(3)) as failing:
        both = build(_config(tmp_path, "both", [good.base_url, failing.base_url])).stats
        failed_requests = sum(1 for n in range(len(failing.requests)) if n >= 3)
    assert both["fingerprint"] == single["fingerprint"] and both["pairs"] == single["pairs"] > 0
    assert "request_failed" not in both["synthesis"]
    servers = both["throughput"]["servers"]
    assert set(servers) == {good.base_url, failing.base_url}
    assert servers[failing.base_url]["requests"] == len(failing.requests) > 3  # used while it was healthy
    assert servers[failing.base_url]["failed"] == failed_requests > 0
    assert servers[failing.base_url]["taken_out"] >= 1
    assert servers[good.base_url]["requests"] == len(good.requests) and servers[good.base_url]["failed"] == 0
    # every attempt went to some server: the first of each answer and every retry of a failed one
    synthesis = both["synthesis"]
    assert sum(s["requests"] for s in servers.values()) == synthesis["model_calls"] + synthesis["request_retries"]
    assert synthesis["request_retries"] == failed_requests


def test_throughput_is_recorded_per_run_and_absent_when_everything_was_cached(tmp_path):
    with OpenAIStub(_healthy) as stub:
        config = _config(tmp_path, "one", [stub.base_url])
        stats = build(config).stats
        rerun = build(config).stats
    rates = stats["throughput"]
    synthesis = stats["synthesis"]
    assert rates["requests"] == synthesis["model_calls"] and rates["trajectories"] == synthesis["synthesized"]
    assert rates["prompt_tokens"] == rates["completion_tokens"] == synthesis["model_calls"]  # the stub reports 1 + 1
    # `seconds` is rounded to ms and the run is short: the rate agrees with it to a few percent only
    assert rates["seconds"] > 0 and rates["requests_per_s"] == pytest.approx(rates["requests"] / rates["seconds"], 0.05)
    assert rates["tokens_per_s"] > 0 and rates["cache_hits"] == 0
    assert rerun["throughput"] is None and rerun["synthesis"]["cache_hits"] == synthesis["synthesized"]


def test_the_progress_bar_shows_rates_cache_hits_and_an_eta():
    from collections import Counter

    from apo_planner.builders.synthesis.progress import Progress

    with Progress(pending=3, cache_hits=5) as progress:
        for done in (1, 2, 3):
            progress.update(requests=2 * done, usage=Counter(prompt_tokens=100 * done, completion_tokens=10 * done))
        line = str(progress.bar)
    assert "3/3" in line and "<00:00" in line  # tqdm's count and remaining time
    for part in ("req/s=", "tok/s=", "cached=5"):
        assert part in line, line


def test_a_server_down_at_the_start_is_left_out_and_the_build_completes(tmp_path, caplog):
    from apo_planner.serving import free_port

    down = f"http://127.0.0.1:{free_port()}/v1"
    with OpenAIStub(_healthy) as good:
        stats = build(_config(tmp_path, "down", [down, good.base_url])).stats
    assert stats["pairs"] > 0 and "request_failed" not in stats["synthesis"]
    assert stats["throughput"]["servers"][down]["requests"] == 0
    assert f"{down} does not answer; left out of rotation" in caplog.text


def test_a_server_taken_out_is_probed_and_comes_back():
    async def scenario(urls: list[str]) -> tuple[int, int]:
        config = load_recipe(
            None,
            ["build.llm.backend=openai", f"build.llm.base_url={json.dumps(urls)}", "build.llm.health_retry_s=0.05"],
        )
        pool = ServerPool(config.build.llm, "EMPTY")
        try:
            server = pool.acquire()
            pool.release(server, failed=True)
            assert server.out
            while server.out:  # the next acquire after its wait probes GET /models
                await asyncio.sleep(0.06)
                chosen = pool.acquire()
                pool.release(chosen, failed=False)
            assert chosen is server  # back in rotation: the first request after its probe goes to it
            return server.counts["taken_out"], server.counts["requests"]
        finally:
            await pool.aclose()

    with OpenAIStub(_healthy) as stub:  # the other server only has to be in rotation: it is never called
        taken_out, requests = asyncio.run(asyncio.wait_for(scenario([stub.base_url, "http://127.0.0.1:9/v1"]), 10))
    assert taken_out == 1 and requests == 2


def test_a_burst_of_failures_is_one_strike_so_the_first_probe_comes_after_a_second():
    async def scenario() -> tuple[int, int, float]:
        urls = json.dumps(["http://127.0.0.1:9/v1", "http://127.0.0.1:10/v1"])
        config = load_recipe(
            None, ["build.llm.backend=openai", f"build.llm.base_url={urls}", "build.llm.health_retry_s=30"]
        )
        pool = ServerPool(config.build.llm, "EMPTY")
        try:
            server = pool.servers[0]
            held = [pool.acquire() for _ in range(64)]  # 32 on each server, then all of server 0's fail at once
            for failed in (s for s in held if s is server):
                pool.release(failed, failed=True)
            wait = server.back_at - time.monotonic()
            return server.strikes, server.counts["failed"], wait
        finally:
            await pool.aclose()

    strikes, failed, wait = asyncio.run(scenario())
    assert strikes == 1 and failed == 32 and 0.5 < wait <= 1.0


def test_the_last_server_in_rotation_is_never_taken_out():
    """With nowhere else to send a request, failures are retried with backoff alone, as with one server:
    no request waits for a probe, and a dead cluster fails its requests as fast as a dead server."""

    async def scenario() -> tuple[bool, int, int]:
        config = load_recipe(None, ["build.llm.backend=openai", "build.llm.base_url=http://127.0.0.1:9/v1"])
        pool = ServerPool(config.build.llm, "EMPTY")
        try:
            for server in [pool.acquire() for _ in range(32)]:
                pool.release(server, failed=True)
            only = pool.servers[0]
            return only.out, only.counts["failed"], only.counts["taken_out"]
        finally:
            await pool.aclose()

    assert asyncio.run(scenario()) == (False, 32, 0)


def test_requests_go_to_the_server_with_the_fewest_in_flight():
    async def scenario(urls: list[str]) -> list[str]:
        config = load_recipe(None, ["build.llm.backend=openai", f"build.llm.base_url={json.dumps(urls)}"]).build.llm
        pool = ServerPool(config, "EMPTY")
        try:
            held = [pool.acquire() for _ in range(4)]
            pool.release(held[0], failed=False)  # server 0 now has one in flight, server 1 two
            return [s.url for s in [*held, pool.acquire()]]
        finally:
            await pool.aclose()

    urls = ["http://127.0.0.1:9/v1", "http://127.0.0.1:10/v1"]
    assert asyncio.run(scenario(urls)) == [urls[0], urls[1], urls[0], urls[1], urls[0]]


def test_every_server_must_serve_the_model_and_all_down_is_a_clear_error(tmp_path):
    from apo_planner.serving import free_port

    with OpenAIStub(_healthy, model="another-model") as other:
        config = _config(tmp_path, "x", [other.base_url]).llm
        with pytest.raises(BackendError, match="serves \\['another-model'\\], not 'stub-model'"):
            OpenAIBackend(config).check()
    downs = [f"http://127.0.0.1:{free_port()}/v1" for _ in range(2)]
    with pytest.raises(SynthesisError, match="no OpenAI-compatible server answers at .*, .*make serve-synth"):
        build(_config(tmp_path, "y", downs))


def test_a_base_url_list_must_not_be_empty_and_credentials_never_reach_stats():
    with pytest.raises(RecipeError, match="non-empty list"):
        load_recipe(None, ["build.llm.backend=openai", "build.llm.base_url=[]"])
    config = load_recipe(
        None, ["build.llm.backend=openai", "build.llm.base_url=[http://a:8000/v1/, http://a:8000/v1]"]
    ).build.llm
    assert config.base_urls == ["http://a:8000/v1"]  # one server, however it was spelled
    assert redact_url("https://user:hf_secret@host:8000/v1") == "https://***@host:8000/v1"


@pytest.mark.parametrize(
    "answer",
    [
        {"keep": [{"index": 1, "rationale": "r", "depends_on": [0]}, {"index": 0, "rationale": "r", "depends_on": []}]},
        {"keep": []},
        {"keep": [{"index": True, "rationale": "r", "depends_on": []}]},
        {"keep": [{"index": "1", "rationale": "r", "depends_on": []}]},
        {"keep": [{"index": 1, "rationale": 3, "depends_on": []}]},
        {"keep": [{"index": 1, "rationale": "r", "depends_on": [], "extra": 1}]},
        {"keep": [{"index": 1, "rationale": "r"}]},
        {"keep": [{"index": 3, "rationale": "r", "depends_on": []}]},
        {"keep": [{"index": -1, "rationale": "r", "depends_on": []}]},
        {"keep": [{"index": 1, "rationale": "r", "depends_on": [0, 1, 2]}]},
        {"keep": [{"index": i, "rationale": "r", "depends_on": []} for i in (0, 1, 2, 0)]},
        {"keep": {"index": 1}},
        {"keep": [], "more": 1},
        [],
    ],
)
def test_answer_validation_accepts_exactly_what_the_schema_accepts(answer):
    """Answers are checked with the schema compiled by fastjsonschema (for speed): it must judge them as the
    reference validator does, edge cases (booleans, strings for integers, extra keys) included."""
    import fastjsonschema
    import jsonschema

    schema_ok = jsonschema.Draft202012Validator(selection_schema(3, 10**9)).is_valid(answer)
    try:
        _validator(3)(answer)
        compiled_ok = True
    except fastjsonschema.JsonSchemaValueException:
        compiled_ok = False
    assert compiled_ok == schema_ok
    if not schema_ok:
        with pytest.raises(InvalidSelection, match="schema_mismatch"):
            parse_selection(json.dumps(answer), 3, 100)
