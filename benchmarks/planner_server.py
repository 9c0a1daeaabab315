"""Throughput of apo-planner's CPU planner server against in-process generation.

The planner arm always asks a served planner (on CPU: `server.engine: transformers`,
`apo_planner.generation.openai_server`). This measures what serving costs: the same tiny model, the same
requests (the leaderboard handler's plan requests for the first N BFCL entries: prompt rendered by the model's
chat template with the catalog, the catalog's plan grammar, greedy sampling), answered

- in process: the server's own request handling (`Server.generate`) called directly, no HTTP;
- served: through the handler's client (`PlannerClient`) over HTTP to the server in its own process;

once with every catalog's grammar compiled on first sight (cold, concurrency 1), then with the grammars
cached at concurrency 1 and 4 (the server queues concurrent requests: one model, one request at a time).
Printed: requests/s and tokens/s per mode, and served/in-process throughput ratios.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from apo_planner.entry.recipe import load_recipe
from apo_planner.tiny import make_tiny_model

SERVED = "bench/planner"


def _requests(limit: int) -> tuple[list[dict[str, Any]], Any]:
    """The handler's plan-request bodies for the first `limit` entries of BFCL's `multiple`, and its settings."""
    from bfcl_eval.utils import load_dataset_entry

    from apo_planner.evaluation.planner_arm import planner_settings
    from apo_planner.portable.apo_planner import PlannerClient, entry_request

    settings = planner_settings(load_recipe(None, []).eval, model=SERVED)
    client = PlannerClient(settings, "http://127.0.0.1:9/v1")
    client.server, client.grammar_field = "apo-planner", "structured_outputs"  # what /version tells the handler
    bodies = []
    for entry in load_dataset_entry("multiple")[:limit]:
        query, tools = entry_request(entry)
        bodies.append(
            {
                "model": SERVED,
                "messages": [
                    {"role": "system", "content": settings.system_prompt},
                    {"role": "user", "content": query},
                ],
                "tools": tools,
                "tool_choice": "none",
                **client.sampling(),
                "structured_outputs": {"grammar": client.grammar(tools)},
            }
        )
    return bodies, settings


def _timed(ask: Any, bodies: list[dict[str, Any]], concurrency: int) -> tuple[float, int]:
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        tokens = sum(pool.map(ask, bodies))
    return time.perf_counter() - started, tokens


def main() -> None:
    import openai

    from apo_planner.generation.inprocess import TransformersBackend, TransformersConfig
    from apo_planner.generation.openai_server import Server
    from apo_planner.serving import ServerConfig, serve

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--limit", type=int, default=8, help="BFCL entries (one plan request each)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        model = make_tiny_model(tmp / "planner", seed=1)
        bodies, _ = _requests(args.limit)
        local = Server(TransformersBackend(TransformersConfig(model=str(model))), SERVED)
        local.backend.check()

        def in_process(body: dict[str, Any]) -> int:
            return local.generate(dict(body), "chat")["usage"]["completion_tokens"]

        results: dict[tuple[str, str, int], tuple[float, int]] = {}
        # cold: each catalog's grammar compiled on first sight (as for BFCL, where most catalogs are new);
        # then warm, every grammar cached (each mode has its own cache)
        results[("in process", "cold", 1)] = _timed(in_process, bodies, 1)
        for concurrency in (1, 4):
            results[("in process", "warm", concurrency)] = _timed(in_process, bodies, concurrency)
        config = ServerConfig(engine="transformers", port=0, startup_timeout_s=180)
        with serve(config, model, tmp / "server", "planner", served_name=SERVED) as base_url:
            client = openai.OpenAI(base_url=base_url, api_key="EMPTY", max_retries=0, timeout=600)

            def served(body: dict[str, Any]) -> int:
                extra = {k: v for k, v in body.items() if k not in ("model", "messages", "tools", "tool_choice")}
                reply = client.chat.completions.create(
                    model=SERVED, messages=body["messages"], tools=body["tools"], tool_choice="none", extra_body=extra
                )
                return reply.usage.completion_tokens

            results[("served", "cold", 1)] = _timed(served, bodies, 1)
            for concurrency in (1, 4):
                results[("served", "warm", concurrency)] = _timed(served, bodies, concurrency)
    print(f"planner throughput, tiny random model on CPU, {len(bodies)} BFCL `multiple` plan requests per run")
    print(f"{'mode':<12}{'grammars':>9}{'concurrency':>12}{'wall s':>9}{'req/s':>8}{'tokens/s':>10}")
    for (mode, cache, concurrency), (wall, tokens) in sorted(results.items()):
        rate = f"{len(bodies) / wall:>8.2f}{tokens / wall:>10.1f}"
        print(f"{mode:<12}{cache:>9}{concurrency:>12}{wall:>9.2f}{rate}")
    for cache, concurrency in (("cold", 1), ("warm", 1), ("warm", 4)):
        ratio = results[("in process", cache, concurrency)][0] / results[("served", cache, concurrency)][0]
        print(f"served / in-process throughput, {cache} grammars, concurrency {concurrency}: {ratio:.3f}")
    print("same bodies, prompts, grammar and greedy sampling; the server answers one request at a time")


if __name__ == "__main__":
    main()
