"""Sharded builds on disk: `--shard i/N` (or `--shard auto` under a scheduler's job array) writes
`shards/shard-i-of-N/` (pairs.parquet + stats.json); `--merge-shards` reads all N back as one set
of pairs, counts and build settings, after checking that every shard is there and was built alike."""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import datasets

from apo_planner.artifacts import STATS_FILE, ShardStats, atomic_dir, read_json, write_record
from apo_planner.builders.errors import ShardError
from apo_planner.builders.stats import HISTOGRAMS_KEY, REVIEW_KEY, BuildStats
from apo_planner.dataset import FEATURES

PAIRS_FILE = "pairs.parquet"
RECIPE_KEY = "pairs_recipe"  # shards only: the settings behind `recipe_sha256`, to name what differs
# keys of a shard's stats.json that describe that shard alone, not how every shard was built
_PER_SHARD = ("shard", "elapsed_s", "request_failure_examples", HISTOGRAMS_KEY, REVIEW_KEY, RECIPE_KEY)
# what a mismatch most likely means, per key of the shared settings
_REBUILD_HINT = {
    "recipe_sha256": "the build: section differs",
    "source_revision": "the source changed between shards; pin build.revision",
    "template_sha256": "another prompt template (build.llm.template)",
}


def parse_shard(text: str, environ: Mapping[str, str] | None = None) -> tuple[int, int]:
    """'i/N' -> (i, N), 0-based; 'auto' -> the same from the environment (APO_SHARD=i/N, else a Slurm
    job array's SLURM_ARRAY_TASK_* variables)."""
    if text == "auto":
        return _scheduler_shard(os.environ if environ is None else environ)
    try:
        index, total = (int(x) for x in text.split("/"))
    except ValueError:
        raise ShardError(f"--shard must look like i/N (e.g. 0/8) or auto, got {text!r}") from None
    if not 0 <= index < total:
        raise ShardError(f"--shard {text}: need 0 <= i < N")
    return index, total


def _scheduler_shard(environ: Mapping[str, str]) -> tuple[int, int]:
    """APO_SHARD=i/N when set (explicit: also how one task of an array is re-run alone); else Slurm, whose
    task ids MIN, MIN+STEP, ... (any `--array=a-b[:step]`) map to shards 0..COUNT-1."""
    if environ.get("APO_SHARD"):
        try:
            return parse_shard(environ["APO_SHARD"])
        except ShardError as exc:
            raise ShardError(f"APO_SHARD={environ['APO_SHARD']!r}: {exc}") from None
    if "SLURM_ARRAY_TASK_ID" in environ:
        task = int(environ["SLURM_ARRAY_TASK_ID"])
        first = int(environ.get("SLURM_ARRAY_TASK_MIN", "0"))
        last = int(environ.get("SLURM_ARRAY_TASK_MAX", str(task)))
        step = int(environ.get("SLURM_ARRAY_TASK_STEP", "1"))
        count = int(environ.get("SLURM_ARRAY_TASK_COUNT", str((last - first) // step + 1)))
        if (last - first) // step + 1 != count or (task - first) % step:
            raise ShardError(
                f"--shard auto: Slurm array task {task} of ids {first}..{last} step {step} ({count} tasks) is not "
                "an even range; submit with --array=0-{N-1}, or set APO_SHARD=i/N"
            )
        return parse_shard(f"{(task - first) // step}/{count}")
    raise ShardError(
        "--shard auto: no job array in the environment (SLURM_ARRAY_TASK_ID is not set) and no APO_SHARD=i/N; "
        "run it as a Slurm array task, export APO_SHARD=i/N, or pass --shard i/N"
    )


def shard_name(index: int, total: int) -> str:
    return f"shard-{index:05d}-of-{total:05d}"


def shard_dir(output: Path, index: int, total: int) -> Path:
    return output / "shards" / shard_name(index, total)


def write_shard(
    pairs: datasets.Dataset,
    stats: BuildStats,
    meta: dict[str, Any],
    recipe: dict[str, Any],
    output: Path,
    shard: tuple[int, int],
    started: float,
) -> dict[str, Any]:
    """Write one shard's pairs and stats.json (written last: it marks the shard finished), the folder
    swapped into place only when complete; returns the stats."""
    with atomic_dir(shard_dir(output, *shard)) as folder:
        pairs.to_parquet(str(folder / PAIRS_FILE))
        summary = {
            **meta,
            "shard": list(shard),
            **stats.as_dict(),
            HISTOGRAMS_KEY: stats.histograms(),
            REVIEW_KEY: stats.review.as_dict(),
            RECIPE_KEY: recipe,
            "elapsed_s": round(time.time() - started, 2),
        }
        write_record(folder / STATS_FILE, ShardStats.model_validate(summary))
    return summary


def _differences(a: Any, b: Any, prefix: str = "build") -> list[str]:
    """Dotted recipe keys whose values differ between two shards' `pairs_recipe`."""
    if isinstance(a, dict) and isinstance(b, dict):
        return [d for key in sorted(set(a) | set(b)) for d in _differences(a.get(key), b.get(key), f"{prefix}.{key}")]
    return [] if a == b else [f"{prefix} ({a!r} vs {b!r})"]


def _mismatch(name: str, theirs: dict[str, Any], first: dict[str, Any], keys: list[str]) -> str:
    details = []
    for key in keys:
        if key == "recipe_sha256" and RECIPE_KEY in theirs and RECIPE_KEY in first:
            details.append("; ".join(_differences(first[RECIPE_KEY], theirs[RECIPE_KEY])) or key)
        else:
            details.append(f"{key} ({first.get(key)!r} vs {theirs.get(key)!r})")
    return f"{name}: {', '.join(details)}"


def read_shards(output: Path) -> tuple[datasets.Dataset, BuildStats, dict[str, Any]]:
    """Every finished shard under `output/shards` (all N must be there, built the same way) as
    (pairs, merged counts, build settings with every shard's request failure examples)."""
    root = output / "shards"
    folders = sorted(root.glob("shard-*-of-*"))
    if not folders:
        raise ShardError(f"no shards under {root}; run build --shard i/N (or --shard auto) first")
    by_total: dict[int, list[str]] = {}
    for folder in folders:
        by_total.setdefault(int(folder.name.rsplit("-", 1)[1]), []).append(folder.name)
    if len(by_total) != 1:
        listing = "; ".join(f"of {total}: {', '.join(names)}" for total, names in sorted(by_total.items()))
        raise ShardError(f"shards of different totals under {root} ({listing}); keep one build's shards only")
    total = next(iter(by_total))
    shards = [shard_dir(output, i, total) for i in range(total)]
    missing = [f.name for f in shards if not f.is_dir()]
    unfinished = [f.name for f in shards if f.is_dir() and not (f / STATS_FILE).is_file()]
    if missing or unfinished:
        problems = []
        if missing:
            problems.append(f"missing: {', '.join(missing)}")
        if unfinished:
            problems.append(f"unfinished (no stats.json): {', '.join(unfinished)}")
        raise ShardError(
            f"{len(missing) + len(unfinished)} of {total} shards under {root} are not ready; "
            f"{'; '.join(problems)}. Run build --shard i/{total} for each"
        )
    metas = [read_json(folder / STATS_FILE, f"build --shard i/{total}") for folder in shards]
    per_shard = set(BuildStats().as_dict()) | set(_PER_SHARD)
    meta = {k: v for k, v in metas[0].items() if k not in per_shard}  # how the shards were built
    mismatched, differing = [], set()
    for folder, theirs in zip(shards[1:], metas[1:], strict=True):
        keys = sorted(k for k in set(meta) | {k for k in theirs if k not in per_shard} if theirs.get(k) != meta.get(k))
        if keys:
            mismatched.append(_mismatch(folder.name, theirs, metas[0], keys))
            differing.update(keys)
    if mismatched:
        hints = [_REBUILD_HINT[k] for k in sorted(differing) if k in _REBUILD_HINT]
        raise ShardError(
            f"shards built differently from {shards[0].name}: {' | '.join(mismatched)}"
            f"{' (' + '; '.join(hints) + ')' if hints else ''}. Rebuild those shards with the same recipe and source"
        )
    stats = BuildStats()
    for shard_stats in metas:
        stats.merge(shard_stats)
    failures = [f for m in metas for f in m.get("request_failure_examples", [])]
    if failures:
        meta["request_failure_examples"] = failures
    pairs = datasets.load_dataset(
        "parquet", data_files=[str(folder / PAIRS_FILE) for folder in shards], split="train", features=FEATURES
    )
    meta["shards"] = total
    return pairs, stats, meta
