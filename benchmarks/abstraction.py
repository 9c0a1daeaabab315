"""Abstraction + filtering throughput vs the floor of merely decoding the same records' JSON.

Generates a Nemotron-shaped corpus (default 20,000 records of ~20 KB, as the real split's rows are: ~400 MB),
then in one run measures:
- floor:     `orjson.loads` of every JSON line (what any reader must pay),
- core:      read + abstract + filter every line in one process (`abstract_record`),
- pipeline:  the build's abstraction step as it runs (`datasets.map`, batched, `num_proc` workers),
and prints records/s with ratios to the floor. The goal is core within 3x of the floor.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import orjson

from apo_planner.builders.config import FilterConfig
from apo_planner.builders.source_abstraction import abstract_record, abstract_source
from apo_planner.builders.sources import TEXT_COLUMN, open_source
from apo_planner.formats import Detection
from benchmarks.workloads import write_corpus


def _best_of(repeats: int, fn) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--num-proc", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    filters = FilterConfig()
    with tempfile.TemporaryDirectory() as tmp:
        path = write_corpus(Path(tmp) / "corpus.jsonl", args.records, seed=1)
        lines = path.read_bytes().splitlines()
        texts = [line.decode() for line in lines]
        print(f"corpus: {len(lines)} Nemotron-shaped records, {path.stat().st_size / 1e6:.1f} MB")

        floor = _best_of(args.repeats, lambda: [orjson.loads(line) for line in lines])
        core = _best_of(
            args.repeats,
            lambda: [abstract_record({TEXT_COLUMN: t}, Detection("nemotron"), filters, raw_text=True) for t in texts],
        )
        kept = sum(
            1 for t in texts for o in abstract_record({TEXT_COLUMN: t}, Detection("nemotron"), filters, True) if o["trajectory"]
        )

        source = open_source(str(path), work_dir=Path(tmp))

        def pipeline() -> None:
            abstract_source(source, filters, args.num_proc).cleanup_cache_files()

        pipe = _best_of(1, pipeline)

    n = len(lines)
    print(f"{kept} trajectories from {n} records ({filters.multi_turn}: every user turn that led to tool calls)")
    print(f"{'step':<44}{'records/s':>12}{'x floor':>10}")
    print(f"{'floor: orjson.loads per line':<44}{n / floor:>12,.0f}{1.0:>10.2f}")
    print(f"{'core: read+abstract+filter, 1 process':<44}{n / core:>12,.0f}{core / floor:>10.2f}")
    print(f"{f'pipeline: datasets.map, num_proc={args.num_proc}':<44}{n / pipe:>12,.0f}{pipe / floor:>10.2f}")
    print(f"310,051-record split at the pipeline rate: {310_051 / (n / pipe) / 60:.1f} min")
    print(f"goal (core within 3x of floor): {'met' if core / floor <= 3 else 'NOT met'}")


if __name__ == "__main__":
    main()
