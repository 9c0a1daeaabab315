"""The last step of a build, whole or merged from shards: dedupe, decontaminate against BFCL, split
by id hash, write the Hub-layout dataset folder and its stats.json.

The folder is written as a hidden sibling and swapped into place only when complete
(`apo_planner.artifacts.atomic_dir`): a rebuild that fails (a full disk) or is killed leaves the
previous dataset as it was, and a build that produces no pairs writes nothing."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import datasets

from apo_planner.artifacts import (
    REVIEW_FILE,
    REVIEW_JSON,
    STATS_FILE,
    DatasetDir,
    DatasetStats,
    atomic_dir,
    write_record,
)
from apo_planner.builders.config import BuildConfig
from apo_planner.builders.decontamination import Decontaminator
from apo_planner.builders.errors import NoPairs
from apo_planner.builders.pairs import fingerprint, split_of, write_hub_layout
from apo_planner.builders.stats import BuildStats, length_filters
from apo_planner.dataset import SPLITS
from apo_planner.formats.records import DropReason


def _dedupe_sorted(pairs: datasets.Dataset, stats: BuildStats) -> datasets.Dataset:
    """Drop rows whose id equals the previous row's (pairs sorted by id; shards can repeat a source row)."""
    ids = pairs["id"]
    keep = [i for i in range(len(ids)) if i == 0 or ids[i] != ids[i - 1]]
    if len(keep) < len(ids):
        removed = len(ids) - len(keep)
        stats.counts["duplicate_records"] += removed
        stats.dropped[DropReason.DUPLICATE_RECORD.value] += removed
        pairs = pairs.select(keep)
    return pairs


def _decontaminate(pairs: datasets.Dataset, config: BuildConfig) -> tuple[datasets.Dataset, dict[str, Any]]:
    """Remove rows whose query shares a word n-gram with a benchmark's question; the report goes in stats.json."""
    settings = config.decontamination
    if not settings.enabled:
        return pairs, {"enabled": False}
    checker = Decontaminator.from_benchmarks(settings.benchmarks, settings.ngram)
    # every user message of the prompt: an earlier turn can carry a benchmark question as well as the last one
    hits = [
        next((hit for m in prompt if m["role"] == "user" and (hit := checker.match(m["content"]))), None)
        for prompt in pairs["prompt"]
    ]
    removed = [(pairs[i]["id"], hit) for i, hit in enumerate(hits) if hit is not None]
    report = {
        "enabled": True,
        "ngram": settings.ngram,
        "questions": sum(checker.questions.values()),
        "benchmarks": dict(checker.questions),
        "removed": len(removed),
        "examples": [{"id": rid, "entry": hit} for rid, hit in removed[:10]],
    }
    if removed:
        pairs = pairs.select([i for i, hit in enumerate(hits) if hit is None])
    return pairs, report


def finalize(
    pairs: datasets.Dataset,
    stats: BuildStats,
    meta: dict[str, Any],
    config: BuildConfig,
    output: Path,
    started: float,
) -> dict[str, Any]:
    """Dedupe, decontaminate, split by id hash and write the dataset folder; returns its stats.json."""
    pairs = _dedupe_sorted(pairs.sort("id"), stats)
    pairs, decontamination = _decontaminate(pairs, config)
    # counts and averages describe what is released, whatever dedupe and decontamination removed
    stats.counts["pairs"] = len(pairs)
    stats.counts["calls_chosen_total"] = sum(pairs["num_calls_chosen"])
    stats.counts["calls_rejected_total"] = sum(pairs["num_calls_rejected"])
    if len(pairs) == 0:
        raise NoPairs({**meta, **stats.as_dict()}, output)
    splits = [split_of(i, config.test_fraction) for i in pairs["id"]]
    dataset = datasets.DatasetDict({s: pairs.select([i for i, x in enumerate(splits) if x == s]) for s in SPLITS})
    # the folder's own entries; anything else in it (shards/, ...) is carried over into the new one
    owned = {DatasetDir(output).data_dir.name, STATS_FILE, REVIEW_FILE, REVIEW_JSON}
    with atomic_dir(output, owned=owned) as folder:
        files = write_hub_layout(dataset, folder)
        summary = {
            **meta,
            **stats.as_dict(),
            "length_filters": length_filters(stats, config),
            "decontamination": decontamination,
            "splits": {s: len(d) for s, d in dataset.items()},
            "test_fraction": config.test_fraction,
            "fingerprint": fingerprint(dataset),
            "files": files,
            "review": stats.review.write(folder, set(pairs["id"])),
            "elapsed_s": round(time.time() - started, 2),
        }
        write_record(DatasetDir(folder).stats_file, DatasetStats.model_validate(summary))  # last: marks it finished
    return summary
