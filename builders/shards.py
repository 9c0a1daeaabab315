"""Sharded builds on disk: `--shard i/N` writes `shards/shard-i-of-N/` (pairs.parquet + stats.json);
`--merge-shards` reads all N back as one set of pairs, counts and build settings."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import datasets

from apo_planner.artifacts import STATS_FILE, read_json, write_json
from apo_planner.dataset import FEATURES
from builders.stats import HISTOGRAMS_KEY, REVIEW_KEY, BuildStats

PAIRS_FILE = "pairs.parquet"
# keys of a shard's stats.json that describe that shard alone, not how every shard was built
_PER_SHARD = ("shard", "elapsed_s", "request_failure_examples", HISTOGRAMS_KEY, REVIEW_KEY)


def parse_shard(text: str) -> tuple[int, int]:
    """'i/N' -> (i, N), 0-based."""
    try:
        index, total = (int(x) for x in text.split("/"))
    except ValueError:
        raise ValueError(f"--shard must look like i/N (e.g. 0/8), got {text!r}") from None
    if not 0 <= index < total:
        raise ValueError(f"--shard {text}: need 0 <= i < N")
    return index, total


def shard_dir(output: Path, index: int, total: int) -> Path:
    return output / "shards" / f"shard-{index:05d}-of-{total:05d}"


def write_shard(
    pairs: datasets.Dataset,
    stats: BuildStats,
    meta: dict[str, Any],
    output: Path,
    shard: tuple[int, int],
    started: float,
) -> dict[str, Any]:
    """Write one shard's pairs and stats.json (written last: it marks the shard finished); returns the stats."""
    folder = shard_dir(output, *shard)
    folder.mkdir(parents=True, exist_ok=True)
    pairs.to_parquet(str(folder / PAIRS_FILE))
    summary = {
        **meta,
        "shard": list(shard),
        **stats.as_dict(),
        HISTOGRAMS_KEY: stats.histograms(),
        REVIEW_KEY: stats.review.as_dict(),
        "elapsed_s": round(time.time() - started, 2),
    }
    write_json(folder / STATS_FILE, summary)
    return summary


def read_shards(output: Path) -> tuple[datasets.Dataset, BuildStats, dict[str, Any]]:
    """Every finished shard under `output/shards` (all N must be there, built the same way) as
    (pairs, merged counts, build settings with every shard's request failure examples)."""
    folders = sorted((output / "shards").glob("shard-*-of-*"))
    if not folders:
        raise FileNotFoundError(f"no shards under {output / 'shards'}; run build --shard i/N first")
    totals = {int(f.name.rsplit("-", 1)[1]) for f in folders}
    if len(totals) != 1:
        raise ValueError(f"shards of different totals under {output / 'shards'}: {sorted(totals)}")
    total = totals.pop()
    shards = [shard_dir(output, i, total) for i in range(total)]
    missing = [i for i, folder in enumerate(shards) if not (folder / STATS_FILE).is_file()]
    if missing:
        raise ValueError(f"shards {missing} of {total} are missing or unfinished; run build --shard i/{total}")
    stats = BuildStats()
    metas = []
    for folder in shards:
        shard_stats = read_json(folder / STATS_FILE, f"build --shard i/{total}")
        stats.merge(shard_stats)
        metas.append(shard_stats)
    per_shard = set(BuildStats().as_dict()) | set(_PER_SHARD)
    failures = [f for m in metas for f in m.get("request_failure_examples", [])]
    meta = {k: v for k, v in metas[0].items() if k not in per_shard}  # how the shards were built
    for m in metas[1:]:
        diff = [k for k in meta if m.get(k) != meta[k]]
        if diff:
            raise ValueError(f"shard {m['shard']} was built differently ({', '.join(sorted(diff))}); rebuild it")
    if failures:
        meta["request_failure_examples"] = failures
    pairs = datasets.load_dataset(
        "parquet", data_files=[str(folder / PAIRS_FILE) for folder in shards], split="train", features=FEATURES
    )
    meta["shards"] = total
    return pairs, stats, meta
