"""`apo-planner build`: trajectories -> actions -> efficient plans -> preference dataset on disk.

Steps, each recording what it did in `stats.json` (distilabel-style provenance):
1. read         the source through `datasets` (streaming for Hub ids; `--shard i/N` takes a shard),
2. abstract     each record into a trajectory or a named drop (`source_abstraction`, `num_proc` workers),
3. synthesize   ask the synthesizer for what is not cached yet (LLM) and select the calls to keep,
4. pair         assemble chosen/rejected plans into rows (`pairing`),
5. finalize     dedupe, decontaminate against the benchmarks, split by id hash, write Hub-layout parquet (`finalize`).
A sharded build stops after step 4 and writes its shard (`shards`); `--merge-shards` runs step 5 on all.
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets
from datasets.arrow_writer import ArrowWriter

from apo_planner import __version__
from apo_planner.artifacts import DatasetDir
from apo_planner.builders.config import BuildConfig
from apo_planner.builders.decontamination import Decontaminator
from apo_planner.builders.finalize import finalize
from apo_planner.builders.pairing import pair_rows
from apo_planner.builders.review import ReviewSample
from apo_planner.builders.shards import parse_shard, read_shards, shard_dir, write_shard
from apo_planner.builders.source_abstraction import ABSTRACT_FEATURES, abstract_source
from apo_planner.builders.sources import Source, open_source
from apo_planner.builders.stats import BuildStats
from apo_planner.builders.synthesis import Synthesizer, get_synthesizer
from apo_planner.dataset import FEATURES
from apo_planner.locks import output_lock

__all__ = ["BuildResult", "build", "merge_shards", "outputs", "parse_shard"]

logger = logging.getLogger(__name__)


@dataclass
class BuildResult:
    output: Path  # the dataset folder, or the shard's folder for `--shard`
    stats: dict[str, Any]  # what that folder's stats.json holds


def outputs(config: BuildConfig) -> list[Path]:
    """What a finished build leaves behind (its stats.json is written last), for callers deciding
    whether the stage has to run again (`DatasetDir.complete` checks the folder through it)."""
    return [DatasetDir(Path(config.output)).stats_file]


def build(config: BuildConfig, shard: tuple[int, int] | None = None) -> BuildResult:
    """Run the build stage and write `config.output` (or one shard of it), one writer at a time."""
    if config.decontamination.enabled:
        Decontaminator.require(config.decontamination.benchmarks)  # refused now, not after hours of synthesis
    if config.synthesizer == "llm" and getattr(config.llm, "tiny_model", False):
        logger.warning(
            "build: the synthesizer is a tiny random model (build.llm.tiny_model, as in the smoke recipe): its "
            "selections and rationales are noise. For a dataset from your logs use --synthesizer rule or point "
            "build.llm at a real model"
        )
    output = Path(config.output)
    # shards of one build run side by side: each holds the output shared and its own folder alone; the merge
    # and a whole build hold the output alone (they replace the folder the shards write into)
    with contextlib.ExitStack() as locks:
        locks.enter_context(output_lock(output, "build", shared=shard is not None))
        if shard:
            locks.enter_context(output_lock(shard_dir(output, *shard), "build"))
        with tempfile.TemporaryDirectory(prefix="apo-build-") as tmp:
            return _build(config, output, Path(tmp), shard)


def merge_shards(config: BuildConfig) -> BuildResult:
    """Finalize a dataset from the shards written under `config.output/shards` (all must be there)."""
    started = time.time()
    output = Path(config.output)
    with output_lock(output, "build --merge-shards"):
        pairs, stats, meta = read_shards(output)
        return BuildResult(output=output, stats=finalize(pairs, stats, meta, config, output, started))


def _write_arrow(rows: Iterable[dict[str, Any]], features: datasets.Features, path: Path) -> datasets.Dataset:
    """Stream rows to an Arrow file (memory stays flat at 310k rows; zero rows is fine too)."""
    with ArrowWriter(features=features, path=str(path)) as writer:
        for row in rows:
            writer.write(row)
        writer.finalize()
    return datasets.Dataset.from_file(str(path))


def _build(config: BuildConfig, output: Path, cache_dir: Path, shard: tuple[int, int] | None) -> BuildResult:
    """Steps 1-4 with intermediate Arrow files under `cache_dir`, then a shard or step 5."""
    started = time.time()
    source = open_source(
        config.source,
        config.format,
        split=config.split,
        config_name=config.config_name,
        revision=config.revision,
        streaming=config.streaming,
        limit=config.limit,
        work_dir=cache_dir,
    )
    if shard is not None:
        source.dataset = source.dataset.shard(num_shards=shard[1], index=shard[0])
    abstracted = abstract_source(source, config.filters, config.num_proc)
    if isinstance(abstracted, datasets.IterableDataset):  # synthesis reads it twice: materialise once
        abstracted = _write_arrow(abstracted, ABSTRACT_FEATURES, cache_dir / "abstracted.arrow")
    synthesizer = get_synthesizer(config)
    base_provenance = {
        "source_dataset": source.name,
        "source_split": source.split,
        "source_revision": source.revision,
        "license": "",
        "dataset_version": config.version,
        **synthesizer.provenance,
    }
    stats = BuildStats(review=ReviewSample(config.review.size, config.review.seed))
    try:
        synthesizer.prepare(abstracted)
        rows = pair_rows(abstracted, synthesizer, config, base_provenance, source.id_namespace, stats)
        pairs = _write_arrow(rows, FEATURES, cache_dir / "pairs.arrow")
    finally:
        synthesizer.close()
    stats.synthesis.update(synthesizer.stats)
    stats.throughput = synthesizer.throughput
    meta = _meta(source, synthesizer, config)
    if shard is not None:
        summary = write_shard(pairs, stats, meta, config.pairs_recipe(), output, shard, started)
        return BuildResult(output=shard_dir(output, *shard), stats=summary)
    return BuildResult(output=output, stats=finalize(pairs, stats, meta, config, output, started))


def _meta(source: Source, synthesizer: Synthesizer, config: BuildConfig) -> dict[str, Any]:
    """How the pairs were built: the part of stats.json that every shard of one build shares."""
    meta = {
        "source": source.name,
        "source_split": source.split,
        "source_revision": source.revision,
        "format": source.format,
        "synthesizer": synthesizer.provenance["synthesizer_model"],
        "synthesizer_backend": synthesizer.provenance["synthesizer_backend"],
        "template_sha256": synthesizer.provenance["template_sha256"],
        "dataset_version": config.version,
        "builder_version": __version__,
        "recipe_sha256": config.pairs_recipe_sha256(),
    }
    if synthesizer.failures:
        meta["request_failure_examples"] = synthesizer.failures
    return meta
