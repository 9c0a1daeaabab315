"""Synthesis against the limit: the build's client vs a bare load generator on the same server.

One loopback server (its own process) answers every request after a fixed latency, the way a
batching server does; at concurrency C it can serve at most C / latency requests/s. Against it, at
each concurrency, with the same prompts:
(a) a bare asyncio load generator: the prompts rendered before the clock starts, `concurrency`
    aiohttp workers posting them, no validation, no cache (the floor of client work; the role
    `vllm bench serve` plays on a GPU),
(b) the build's synthesis client: `LLMSynthesizer.prepare` on the abstracted trajectories with an
    empty cache (scan, render, request, validate, check, cache, progress).
It prints requests/s of each, (b)/(a) (target >= 0.9) and both processes' CPU per request.
`--profile` adds where (b)'s time goes (cProfile, by own time).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import pstats
import tempfile
import time
from pathlib import Path

import aiohttp
import orjson

from apo_planner.builders.records import Trajectory
from apo_planner.builders.source_abstraction import abstract_source
from apo_planner.builders.sources import open_source
from apo_planner.builders.synthesis.llm import LLMSynthesizer
from apo_planner.entry.recipe import load_recipe
from benchmarks.latency_server import LatencyServer
from benchmarks.workloads import write_corpus

TARGET = 0.9


def _synthesizer(stub: LatencyServer, concurrency: int, cache: Path) -> LLMSynthesizer:
    settings = {
        "backend": "openai",
        "base_url": stub.base_url,
        "model": stub.model,
        "structured_output": "none",
        "concurrency": concurrency,
        "cache": str(cache),
    }
    return LLMSynthesizer(load_recipe(None, [f"build.llm.{k}={v}" for k, v in settings.items()]).build.llm)


def _bodies(abstracted, synthesizer: LLMSynthesizer) -> list[bytes]:
    """The first request (b) sends per trajectory, fully built by its own backend: (a) does none of this work
    on the clock."""
    bodies = []
    for payload, calls in zip(abstracted["trajectory"], abstracted["num_actions"], strict=True):
        if payload is None or calls < 2:
            continue
        trajectory = Trajectory.from_dict(orjson.loads(payload))
        bodies.append(synthesizer.backend.request_body(synthesizer.request(synthesizer.key(payload), trajectory)))
    return bodies


async def _bare(url: str, bodies: list[bytes], concurrency: int) -> int:
    pending = iter(bodies)
    done = 0
    headers = {"Content-Type": "application/json", "Authorization": "Bearer EMPTY"}
    async with aiohttp.ClientSession(headers=headers, connector=aiohttp.TCPConnector(limit=concurrency)) as session:

        async def worker() -> None:
            nonlocal done
            for body in pending:
                async with session.post(f"{url}/chat/completions", data=body) as response:
                    await response.read()
                    done += response.status == 200

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return done


def _timed(run) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process)."""
    cpu, wall = time.process_time(), time.perf_counter()
    run()
    return time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=3000, help="source records (about 1.5 trajectories each)")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[16, 64])
    parser.add_argument("--latency", type=float, default=0.05, help="seconds the server takes per reply")
    parser.add_argument("--profile", action="store_true", help="print where the client's time goes")
    args = parser.parse_args()

    import openai  # noqa: F401 - imported by (b) on first use: a one-off cost kept off its clock

    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        source = open_source(str(write_corpus(tmp / "corpus.jsonl", args.records, seed=3)), work_dir=tmp)
        abstracted = abstract_source(source, load_recipe(None, []).build.filters)
        ratios = {}
        with LatencyServer(tmp, args.latency) as stub:
            print(f"server: loopback stub, {args.latency * 1000:.0f} ms per reply, its own process")
            print(f"{'run':<44}{'requests':>9}{'seconds':>9}{'req/s':>9}{'ceiling':>9}{'CPU ms/req':>12}")
            for concurrency in args.concurrency:
                ceiling = concurrency / args.latency
                bodies = _bodies(abstracted, _synthesizer(stub, concurrency, tmp / "render.sqlite"))
                sent = 0

                def bare(c: int = concurrency, b: list[bytes] = bodies) -> None:
                    nonlocal sent
                    sent = asyncio.run(_bare(stub.base_url, b, c))

                wall, cpu = _timed(bare)
                floor = sent / wall
                print(
                    f"{f'(a) bare load generator, concurrency {concurrency}':<44}{sent:>9}{wall:>9.2f}"
                    f"{floor:>9.0f}{ceiling:>9.0f}{cpu / sent * 1000:>12.3f}"
                )
                synthesizer = _synthesizer(stub, concurrency, tmp / f"client-{concurrency}.sqlite")
                profile = cProfile.Profile() if args.profile else None
                if profile:
                    profile.enable()
                wall, cpu = _timed(lambda s=synthesizer: s.prepare(abstracted))
                if profile:
                    profile.disable()
                synthesizer.close()
                asked = synthesizer.stats["model_calls"]
                if synthesizer.stats["request_failed"] or not asked:
                    raise SystemExit(f"the client's run failed: {dict(synthesizer.stats)}")
                rate = asked / wall
                print(
                    f"{f'(b) synthesis client, concurrency {concurrency}':<44}{asked:>9}{wall:>9.2f}"
                    f"{rate:>9.0f}{ceiling:>9.0f}{cpu / asked * 1000:>12.3f}"
                )
                ratios[concurrency] = rate / floor
                if profile:
                    out = io.StringIO()
                    pstats.Stats(profile, stream=out).sort_stats("tottime").print_stats(20)
                    print("\n".join(out.getvalue().splitlines()[4:]))
    for concurrency, ratio in ratios.items():
        verdict = "met" if ratio >= TARGET else "NOT met"
        print(f"client / bare at concurrency {concurrency}: {ratio:.2f} (target >= {TARGET}: {verdict})")


if __name__ == "__main__":
    main()
