"""The preference dataset: row layout, Arrow features, deterministic split, Hub-layout parquet.

Columns follow TRL's conversational preference format (`prompt`, `chosen`, `rejected`, `tools`)
plus the structured plans, call counts, a stable `id` and per-row `provenance`.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import datasets
from datasets import DatasetDict, Features, List, Value

from apo_planner import __version__
from apo_planner.plan import Plan
from apo_planner.prompts import dump_tools, plan_completion, planner_prompt
from builders.records import Trajectory

PROVENANCE_FIELDS = (
    "source_dataset",
    "source_split",
    "source_revision",
    "source_row_id",
    "generator",
    "license",
    "synthesizer_model",
    "synthesizer_revision",
    "synthesizer_backend",
    "template_sha256",
    "sampling_params",
    "builder_version",
    "dataset_version",
)

_MESSAGES = List({"role": Value("string"), "content": Value("string")})
_PLAN = List(
    {
        "tool": Value("string"),
        "arguments": Value("string"),
        "rationale": Value("string"),
        "depends_on": List(Value("int32")),
    }
)
FEATURES = Features(
    {
        "id": Value("string"),
        "prompt": _MESSAGES,
        "chosen": _MESSAGES,
        "rejected": _MESSAGES,
        "tools": Value("string"),
        "chosen_plan": _PLAN,
        "rejected_plan": _PLAN,
        "num_calls_chosen": Value("int32"),
        "num_calls_rejected": Value("int32"),
        "removed_calls": List({"index": Value("int32"), "reason": Value("string")}),
        "query": Value("string"),
        "final_answer": Value("string"),
        "provenance": {name: Value("string") for name in PROVENANCE_FIELDS},
    }
)
REQUIRED_COLUMNS = ("prompt", "chosen", "rejected", "tools")


def row_id(namespace: str, source_row_id: str) -> str:
    """Stable across rebuilds, synthesizers and machines: it names the source trajectory."""
    return hashlib.sha256(f"{namespace}\0{source_row_id}".encode()).hexdigest()[:20]


def make_row(
    trajectory: Trajectory,
    chosen: Plan,
    rejected: Plan,
    removed: dict[int, str],
    provenance: dict[str, str],
    id_namespace: str,
) -> dict[str, Any]:
    return {
        "id": row_id(id_namespace, trajectory.source_row_id),
        "prompt": planner_prompt(trajectory.query),
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
    data_dir = output / "data"
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


def load_preference_dataset(path_or_id: str, revision: str | None = None) -> DatasetDict:
    """Load a dataset this toolkit wrote (local dir or Hub repo) and check it has the contract columns."""
    ds = datasets.load_dataset(path_or_id, revision=revision)
    for split, part in ds.items():
        missing = [c for c in REQUIRED_COLUMNS if c not in part.column_names]
        if missing:
            raise ValueError(
                f"{path_or_id} split {split!r} lacks columns {missing}; was it built by apo-planner build?"
            )
    return ds
