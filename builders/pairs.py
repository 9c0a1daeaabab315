"""Preference pairs as dataset rows: stable ids, row assembly, the deterministic split, the content
fingerprint and the Hub-layout parquet folder. The columns themselves are the core's contract
(`apo_planner.dataset`)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from datasets import DatasetDict

from apo_planner import __version__
from apo_planner.artifacts import DatasetDir
from apo_planner.builders.records import Trajectory
from apo_planner.plan import Plan
from apo_planner.prompts import dump_tools, plan_completion, planner_prompt


def row_id(namespace: str, source_row_id: str, turn: int = 0) -> str:
    """Stable across rebuilds, synthesizers and machines: it names the source trajectory (a row's first
    user turn keeps the id it had before multi-turn records counted every turn)."""
    key = f"{namespace}\0{source_row_id}" + (f"\0{turn}" if turn else "")
    return hashlib.sha256(key.encode()).hexdigest()[:20]


def make_row(
    trajectory: Trajectory,
    chosen: Plan,
    rejected: Plan,
    removed: dict[int, str],
    provenance: dict[str, str],
    id_namespace: str,
) -> dict[str, Any]:
    return {
        "id": row_id(id_namespace, trajectory.source_row_id, trajectory.turn),
        "prompt": planner_prompt(trajectory.query, trajectory.context),
        "chosen": plan_completion(chosen),
        "rejected": plan_completion(rejected),
        "tools": dump_tools(trajectory.tools),
        "chosen_plan": chosen.to_records(),
        "rejected_plan": rejected.to_records(),
        "num_calls_chosen": len(chosen),
        "num_calls_rejected": len(rejected),
        "removed_calls": [{"index": i, "reason": r} for i, r in sorted(removed.items())],
        "query": trajectory.query,
        "final_answer": trajectory.final_answer,
        "provenance": {
            **provenance,
            "source_row_id": trajectory.source_row_id,
            "generator": trajectory.generator,
            "license": trajectory.license or provenance.get("license", ""),
            "builder_version": __version__,
        },
    }


def split_of(row_id_: str, test_fraction: float) -> str:
    """Deterministic by id hash: a row stays in its split however the dataset grows."""
    bucket = int(hashlib.sha256(row_id_.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    return "test" if bucket < test_fraction else "train"


def fingerprint(dataset: DatasetDict) -> str:
    """Content hash of every split's rows in id order: equal datasets, equal fingerprints."""
    digest = hashlib.sha256()
    for split in sorted(dataset):
        digest.update(split.encode())
        for row in dataset[split].sort("id"):
            digest.update(json.dumps(row, sort_keys=True, ensure_ascii=False).encode())
    return digest.hexdigest()


def write_hub_layout(dataset: DatasetDict, output: Path) -> list[str]:
    """`data/<split>-00000-of-00001.parquet`, the layout `load_dataset(DIR)` and the Hub both read.
    Empty splits are not written (tiny sources with a small `test_fraction` can have none)."""
    data_dir = DatasetDir(output).data_dir
    data_dir.mkdir(parents=True, exist_ok=True)
    for stale in data_dir.glob("*.parquet"):
        stale.unlink()
    files = []
    for split, ds in dataset.items():
        if len(ds) == 0:  # an empty parquet split makes load_dataset fail; stats.json records the 0
            continue
        path = data_dir / f"{split}-00000-of-00001.parquet"
        ds.to_parquet(str(path))
        files.append(str(path.relative_to(output)))
    return files
