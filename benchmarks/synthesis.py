"""Synthesis throughput: requests/s at concurrency 1 vs N, and the cost of a cache-hit re-run.

Three servers on loopback, all through the real `LLMSynthesizer.prepare` path (openai backend):
- stub, instant replies: the client's own ceiling (it must not be the bottleneck),
- stub, fixed latency per reply: what concurrency buys when the server batches (as vLLM does),
- `transformers serve` with a tiny random model: a real server on this CPU.
Then the same run again: every answer comes from the cache, so model calls must be 0.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from apo_planner.builders.source_abstraction import abstract_source
from apo_planner.builders.sources import open_source
from apo_planner.builders.synthesis.llm import LLMSynthesizer
from apo_planner.entry.recipe import load_recipe
from apo_planner.serving import transformers_server
from benchmarks.latency_server import LatencyServer
from benchmarks.workloads import write_corpus


def _run(abstracted, tmp: Path, name: str, base_url: str, model: str, concurrency: int, **llm) -> tuple[float, dict]:
    settings = {
        "backend": "openai",
        "base_url": base_url,
        "model": model,
        "structured_output": "none",
        "concurrency": concurrency,
        "cache": str(tmp / f"{name}-{concurrency}.sqlite"),
        **llm,
    }
    config = load_recipe(None, [f"build.llm.{k}={v}" for k, v in settings.items()]).build.llm
    synthesizer = LLMSynthesizer(config)
    start = time.perf_counter()
    synthesizer.prepare(abstracted)
    elapsed = time.perf_counter() - start
    synthesizer.close()
    return elapsed, dict(synthesizer.stats)


def _report(label: str, elapsed: float, stats: dict) -> float:
    calls = stats.get("model_calls", 0)
    rate = calls / elapsed if elapsed else 0.0
    print(f"{label:<52}{calls:>8}{elapsed:>10.2f}{rate:>12.1f}")
    return rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", type=int, default=600)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--latency", type=float, default=0.05, help="seconds per reply of the latency stub")
    parser.add_argument("--real-records", type=int, default=24)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        source = open_source(str(write_corpus(tmp / "corpus.jsonl", args.records, seed=3)), work_dir=tmp)
        abstracted = abstract_source(source, load_recipe(None, []).build.filters)
        print(f"{'run':<52}{'calls':>8}{'seconds':>10}{'requests/s':>12}")
        n = args.concurrency
        with LatencyServer(tmp, 0.0) as stub:
            one = _report(
                "stub, instant, concurrency 1", *_run(abstracted, tmp, "instant", stub.base_url, stub.model, 1)
            )
            many = _report(
                f"stub, instant, concurrency {n}", *_run(abstracted, tmp, "instant", stub.base_url, stub.model, n)
            )
        with LatencyServer(tmp, args.latency) as stub:
            lat_one = _report(
                f"stub, {args.latency * 1000:.0f} ms/reply, concurrency 1",
                *_run(abstracted, tmp, "latency", stub.base_url, stub.model, 1),
            )
            lat_many = _report(
                f"stub, {args.latency * 1000:.0f} ms/reply, concurrency {n}",
                *_run(abstracted, tmp, "latency", stub.base_url, stub.model, n),
            )
            rerun_s, rerun = _run(abstracted, tmp, "latency", stub.base_url, stub.model, n)
        print(
            f"{'cache-hit re-run (same settings)':<52}{rerun.get('model_calls', 0):>8}{rerun_s:>10.2f}"
            f"{'':>12}  cache hits {rerun.get('cache_hits', 0)}"
        )

        from apo_planner.tiny import make_tiny_model

        model = make_tiny_model(tmp / "tiny")
        real = abstracted.select(range(min(args.real_records, len(abstracted))))
        with transformers_server(model, tmp / "server") as base_url:
            real_one = _report(
                "transformers serve (tiny, CPU), concurrency 1",
                *_run(real, tmp, "real", base_url, str(model), 1, max_tokens=32, max_attempts=1, api="openai"),
            )
            real_many = _report(
                "transformers serve (tiny, CPU), concurrency 4",
                *_run(real, tmp, "real", base_url, str(model), 4, max_tokens=32, max_attempts=1, api="openai"),
            )

    print(f"client ceiling, concurrency {n} vs 1: {many / one:.2f}x ({many:.0f} req/s)")
    print(f"latency-bound server, concurrency {n} vs 1: {lat_many / lat_one:.2f}x (ideal {n}x)")
    print(f"transformers serve, concurrency 4 vs 1: {real_many / real_one:.2f}x")
    print(f"cache-hit re-run: {rerun.get('model_calls', 0)} model calls in {rerun_s:.2f} s")
    if rerun.get("model_calls", 0):
        raise SystemExit("the cache-hit re-run asked the model again: the answer cache is broken")


if __name__ == "__main__":
    main()
