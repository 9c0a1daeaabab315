"""`apo-planner build`: trajectories -> actions -> efficient plans -> preference dataset on disk.

Steps, each recording what it did in `stats.json` (distilabel-style provenance):
1. read      the source through `datasets` (streaming for Hub ids),
2. abstract  each record into a trajectory or a named drop (`datasets.map`, `num_proc` workers),
3. select    the calls worth keeping (a synthesizer) and assemble chosen/rejected plans,
4. write     deterministic train/test splits as Hub-layout parquet plus stats.
"""

from __future__ import annotations

import json
import tempfile
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import datasets
import orjson
from tqdm.auto import tqdm

from apo_planner import __version__
from builders.abstraction import abstract
from builders.config import BuildConfig, FilterConfig
from builders.dataset import FEATURES, fingerprint, make_row, split_of, write_hub_layout
from builders.readers import get_reader
from builders.records import DropReason, RecordDropped, Trajectory
from builders.sources import TEXT_COLUMN, Source, open_source
from builders.synthesis.rule import RuleSynthesizer
from builders.synthesis.selection import InvalidSelection, original_plan, selected_plan

ABSTRACT_COLUMNS = ("source_row_id", "trajectory", "drop_reason", "drop_detail")
_MAX_EXAMPLES = 3


def abstract_record(row: dict[str, Any], fmt: str, filters: FilterConfig, raw_text: bool) -> dict[str, Any]:
    """One record -> {trajectory JSON | drop reason}. Never raises for bad data."""
    source_row_id = ""
    try:
        if raw_text:
            line = row[TEXT_COLUMN]
            if not line.strip():
                return {
                    "source_row_id": "",
                    "trajectory": None,
                    "drop_reason": "blank_line",
                    "drop_detail": None,
                }
            try:
                row = orjson.loads(line)
            except orjson.JSONDecodeError as exc:
                raise RecordDropped(DropReason.UNPARSEABLE_RECORD, f"line is not JSON: {exc}") from None
            if not isinstance(row, dict):
                raise RecordDropped(DropReason.UNPARSEABLE_RECORD, "line is not a JSON object")
        conversation = get_reader(fmt)(row)
        source_row_id = conversation.source_row_id
        trajectory = abstract(conversation, filters)
        payload = orjson.dumps(trajectory).decode()  # orjson serialises dataclasses natively
        return {
            "source_row_id": source_row_id,
            "trajectory": payload,
            "drop_reason": None,
            "drop_detail": None,
        }
    except RecordDropped as drop:
        return {
            "source_row_id": source_row_id,
            "trajectory": None,
            "drop_reason": drop.reason.value,
            "drop_detail": drop.detail[:300],
        }
    except Exception as exc:  # a reader bug on strange data must cost one record, not the run
        return {
            "source_row_id": source_row_id,
            "trajectory": None,
            "drop_reason": DropReason.UNPARSEABLE_RECORD.value,
            "drop_detail": f"{type(exc).__name__}: {exc}"[:300],
        }


def abstract_batch(batch: dict[str, list[Any]], fmt: str, filters: FilterConfig, raw_text: bool) -> dict[str, list]:
    names = list(batch)
    out: dict[str, list[Any]] = {c: [] for c in ABSTRACT_COLUMNS}
    for values in zip(*(batch[n] for n in names), strict=True):
        result = abstract_record(dict(zip(names, values, strict=True)), fmt, filters, raw_text)
        for c in ABSTRACT_COLUMNS:
            out[c].append(result[c])
    return out


def abstract_source(
    source: Source, filters: FilterConfig, num_proc: int = 1
) -> datasets.Dataset | datasets.IterableDataset:
    """The abstraction step over a whole source, parallel where the source is materialised."""
    kwargs: dict[str, Any] = {
        "batched": True,
        "batch_size": 512,
        "fn_kwargs": {"fmt": source.format, "filters": filters, "raw_text": source.raw_text},
        "remove_columns": source.dataset.column_names,
    }
    if isinstance(source.dataset, datasets.Dataset):
        kwargs |= {"num_proc": num_proc if num_proc > 1 else None, "desc": "abstracting"}
    return source.dataset.map(abstract_batch, **kwargs)


@dataclass
class BuildStats:
    """Counts the build reports; `as_dict` is what stats.json holds."""

    records_read: int = 0
    dropped: Counter = field(default_factory=Counter)
    drop_examples: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    trajectories: int = 0
    selection_rejected: Counter = field(default_factory=Counter)
    removed_calls: Counter = field(default_factory=Counter)
    duplicates: int = 0
    calls_chosen: int = 0
    calls_rejected: int = 0
    pairs: int = 0

    def drop(self, reason: str, detail: str | None) -> None:
        self.dropped[reason] += 1
        if detail and len(self.drop_examples[reason]) < _MAX_EXAMPLES:
            self.drop_examples[reason].append(detail)

    def as_dict(self) -> dict[str, Any]:
        return {
            "records_read": self.records_read,
            "dropped": dict(sorted(self.dropped.items())),
            "dropped_total": sum(self.dropped.values()),
            "drop_examples": dict(sorted(self.drop_examples.items())),
            "trajectories": self.trajectories,
            "selection_rejected": dict(sorted(self.selection_rejected.items())),
            "removed_calls_by_reason": dict(sorted(self.removed_calls.items())),
            "duplicate_records": self.duplicates,
            "pairs": self.pairs,
            "avg_calls_chosen": round(self.calls_chosen / self.pairs, 4) if self.pairs else 0.0,
            "avg_calls_rejected": round(self.calls_rejected / self.pairs, 4) if self.pairs else 0.0,
        }


def get_synthesizer(config: BuildConfig) -> RuleSynthesizer:
    if config.synthesizer == "rule":
        return RuleSynthesizer(config.rule)
    raise NotImplementedError(
        f"synthesizer {config.synthesizer!r} is not available in this version; use --synthesizer rule"
    )


def _pair_rows(
    abstracted: datasets.Dataset | datasets.IterableDataset,
    synthesizer: RuleSynthesizer,
    config: BuildConfig,
    base_provenance: dict[str, str],
    id_namespace: str,
    stats: BuildStats,
    total: int | None,
) -> Iterator[dict[str, Any]]:
    seen_ids: set[str] = set()
    for record in tqdm(abstracted, total=total, desc="selecting", unit="rec", mininterval=1.0):
        if record["drop_reason"] == "blank_line":
            continue
        stats.records_read += 1
        if record["drop_reason"]:
            stats.drop(record["drop_reason"], record["drop_detail"])
            continue
        stats.trajectories += 1
        trajectory = Trajectory.from_dict(orjson.loads(record["trajectory"]))
        try:
            selection = synthesizer.select(trajectory)
            selection.validate(len(trajectory.actions))
        except InvalidSelection as bad:
            stats.selection_rejected[bad.reason] += 1
            continue
        chosen = selected_plan(trajectory, selection)
        rejected = original_plan(trajectory, config.rule.rationale_max_chars)
        row = make_row(trajectory, chosen, rejected, selection.removed, base_provenance, id_namespace)
        if row["id"] in seen_ids:
            stats.duplicates += 1
            stats.drop(DropReason.DUPLICATE_RECORD.value, f"source row {trajectory.source_row_id} seen before")
            continue
        seen_ids.add(row["id"])
        stats.removed_calls.update(selection.removed.values())
        stats.pairs += 1
        stats.calls_chosen += len(chosen)
        stats.calls_rejected += len(rejected)
        yield row


@dataclass
class BuildResult:
    output: Path
    stats: dict[str, Any]


def build(config: BuildConfig) -> BuildResult:
    """Run the whole build stage and write `config.output` (dataset dir + stats.json)."""
    started = time.time()
    output = Path(config.output)
    output.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="apo-build-") as tmp:
        return _build(config, output, Path(tmp), started)


def _build(config: BuildConfig, output: Path, cache_dir: Path, started: float) -> BuildResult:
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
    synthesizer = get_synthesizer(config)
    base_provenance = {
        "source_dataset": source.name,
        "source_split": source.split,
        "source_revision": source.revision,
        "license": "",
        "dataset_version": config.version,
        **synthesizer.provenance,
    }
    stats = BuildStats()
    abstracted = abstract_source(source, config.filters, config.num_proc)
    total = len(abstracted) if isinstance(abstracted, datasets.Dataset) else config.limit
    pairs = datasets.Dataset.from_generator(
        _pair_rows,
        features=FEATURES,
        cache_dir=str(cache_dir),
        fingerprint=uuid.uuid4().hex,  # the generator closes over live state; never reuse a cache
        gen_kwargs={
            "abstracted": abstracted,
            "synthesizer": synthesizer,
            "config": config,
            "base_provenance": base_provenance,
            "id_namespace": source.id_namespace,
            "stats": stats,
            "total": total,
        },
    ).sort("id")
    splits = pairs.map(lambda r: {"split": split_of(r["id"], config.test_fraction)}, desc="splitting")
    dataset = datasets.DatasetDict(
        {s: splits.filter(lambda r, s=s: r["split"] == s).remove_columns("split") for s in ("train", "test")}
    )
    files = write_hub_layout(dataset, output)
    summary = {
        "source": source.name,
        "source_split": source.split,
        "source_revision": source.revision,
        "format": source.format,
        "synthesizer": synthesizer.provenance["synthesizer_model"],
        "dataset_version": config.version,
        "builder_version": __version__,
        **stats.as_dict(),
        "splits": {s: len(d) for s, d in dataset.items()},
        "test_fraction": config.test_fraction,
        "fingerprint": fingerprint(dataset),
        "files": files,
        "elapsed_s": round(time.time() - started, 2),
    }
    (output / "stats.json").write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n")
    return BuildResult(output=output, stats=summary)
