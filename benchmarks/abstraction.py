"""Reading speed: read + abstract + filter against the floor of merely decoding the same records' JSON.

For each trajectory format it writes a corpus (default 20,000 conversations of ~20 KB, as the Nemotron
split's rows are; the other formats hold the same conversations, `benchmarks.formats`), then measures:
- floor:     `orjson.loads` of every JSON line (what any reader must pay),
- core:      read + abstract + filter every line in one process (`abstract_record`, formats sniffed per row
             as a build does),
- pipeline:  the build's abstraction step as it runs (`datasets.map`, batched, `num_proc` workers),
and prints records/s with the ratios. Goals: the core within 2x of the floor, and the pipeline within 1.5x
of the core per process (the CPU time of all its processes against the core's). `--profile` prints where
the core's time goes.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import io
import os
import pstats
import resource
import tempfile
import time
from functools import partial
from pathlib import Path

import datasets
import orjson

from apo_planner.builders.config import FilterConfig
from apo_planner.builders.source_abstraction import abstract_record, abstract_source
from apo_planner.builders.sources import TEXT_COLUMN, open_source
from apo_planner.formats import FORMATS, detect
from benchmarks.formats import write_corpus

CORE_GOAL, PIPELINE_GOAL = 2.0, 1.5


def _cpu() -> float:
    """CPU seconds of this process and of its finished children (the map's workers)."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


def _best_of(repeats: int, fn) -> float:
    """Fastest of `repeats` runs, in CPU seconds of this process (the machine may be shared)."""
    times = []
    for _ in range(repeats):
        start = time.process_time()
        fn()
        times.append(time.process_time() - start)
    return min(times)


def _timed(fn) -> tuple[float, float]:
    """(CPU seconds of this process and its workers, wall seconds) of one run."""
    cpu, wall = _cpu(), time.perf_counter()
    fn()
    return _cpu() - cpu, time.perf_counter() - wall


def _core(rows: list[dict], detection, filters: FilterConfig) -> None:
    for row in rows:
        abstract_record(row, detection, filters, True)


def _floor(lines: list[bytes]) -> None:
    """Each record decoded and let go, as the core does (keeping 20,000 decoded rows alive would slow the
    floor down with memory, flattering the ratio)."""
    for line in lines:
        orjson.loads(line)


def measure(name: str, records: int, num_proc: int, repeats: int, profile: bool) -> dict[str, float]:
    filters = FilterConfig()
    with tempfile.TemporaryDirectory() as tmp:
        path = write_corpus(Path(tmp) / f"{name}.jsonl", name, records, seed=1)
        lines = path.read_bytes().splitlines()
        detection = detect(orjson.loads(line) for line in lines[:20])
        rows = [{TEXT_COLUMN: line} for line in lines]  # the lines' bytes, as the build's Arrow column holds them
        floor = _best_of(repeats, partial(_floor, lines))
        core = _best_of(repeats, partial(_core, rows, detection, filters))
        kept = sum(1 for r in rows for o in abstract_record(r, detection, filters, True) if o["trajectory"])
        if profile:
            profiler = cProfile.Profile()
            profiler.runcall(_core, rows, detection, filters)
            out = io.StringIO()
            pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(15)
            print(out.getvalue())
        mb, n = sum(map(len, lines)) / 1e6, len(lines)
        del lines, rows  # a build's process holds no decoded corpus when it forks its workers: neither do we
        gc.collect()
        source = open_source(str(path), work_dir=Path(tmp))
        step = lambda: abstract_source(source, filters, num_proc)  # noqa: E731
        # all processes' CPU: what the step costs per process; wall: what a user waits (shared cores slow it)
        runs = [_timed(step) for _ in range(repeats)]
        pipe_cpu, pipe = min(r[0] for r in runs), min(r[1] for r in runs)
    print(f"{name}: {n} records, {mb:.1f} MB, {kept} trajectories ({filters.multi_turn})")
    return {"records": n, "floor": floor, "core": core, "pipeline": pipe, "pipeline_cpu": pipe_cpu}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--formats", default="all", help="comma-separated format names (default: every one)")
    parser.add_argument("--num-proc", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--profile", action="store_true", help="print the core's 15 costliest functions")
    args = parser.parse_args()
    datasets.disable_caching()  # every repeat computes the map again (nothing reloaded from a cache file)
    datasets.disable_progress_bars()
    names = FORMATS.names() if args.formats == "all" else args.formats.split(",")
    results = {name: measure(name, args.records, args.num_proc, args.repeats, args.profile) for name in names}

    header = f"{'format':<18}{'floor/s':>9}{'core/s':>9}{'core x floor':>14}{'pipe/s':>9}{'pipe cpu x core':>17}"
    print(f"\n{header}")
    met = True
    for name, r in results.items():
        n, core_x, pipe_x = r["records"], r["core"] / r["floor"], r["pipeline_cpu"] / r["core"]
        met &= core_x <= CORE_GOAL and pipe_x <= PIPELINE_GOAL
        print(
            f"{name:<18}{n / r['floor']:>9,.0f}{n / r['core']:>9,.0f}{core_x:>14.2f}"
            f"{n / r['pipeline']:>9,.0f}{pipe_x:>17.2f}"
        )
    print(
        f"(floor, core: CPU time, best of {args.repeats}; pipeline: datasets.map with num_proc={args.num_proc}, "
        "records/s in wall time, and its CPU time over all processes against the core's)"
    )
    nemotron = results.get("nemotron")
    if nemotron:
        minutes = 310_051 / (nemotron["records"] / nemotron["pipeline"]) / 60
        print(f"310,051-record split at the pipeline rate: {minutes:.1f} min")
    print(
        f"goal (core within {CORE_GOAL:g}x of floor, pipeline within {PIPELINE_GOAL:g}x of core per process): "
        f"{'met' if met else 'NOT met'}"
    )


if __name__ == "__main__":
    main()
