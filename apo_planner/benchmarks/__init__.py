"""The benchmarks registry: every benchmark the toolkit can evaluate a planner on (BFCL first).

    from apo_planner.benchmarks import BENCHMARKS
    bfcl = BENCHMARKS.get("bfcl")

Adding one is one module with a `Benchmark` subclass and one `@BENCHMARKS.register(name)` line (or an
entry point in the `apo_planner.benchmarks` group); see docs/extending/benchmarks.md.
"""

from __future__ import annotations

from apo_planner.benchmarks.base import (
    ARM_LABELS,
    DIAGNOSTIC_ARMS,
    Benchmark,
    BenchmarkError,
    EntryDetail,
    EvalJob,
    Executor,
    PlanSource,
)
from apo_planner.registry import Registry

BENCHMARKS: Registry[Benchmark] = Registry(
    "benchmark", "apo_planner.benchmarks", builtins=("apo_planner.benchmarks.bfcl",)
)

__all__ = [
    "ARM_LABELS",
    "BENCHMARKS",
    "DIAGNOSTIC_ARMS",
    "Benchmark",
    "BenchmarkError",
    "EntryDetail",
    "EvalJob",
    "Executor",
    "PlanSource",
]
