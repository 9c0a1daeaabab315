"""`apo-planner build`: trajectories -> actions -> efficient plans -> preference dataset on disk.

Steps, each recording what it did in `stats.json` (distilabel-style provenance):
1. read         the source through `datasets` (streaming for Hub ids; `--shard i/N` takes a shard),
2. abstract     each record into a trajectory or a named drop (`datasets.map`, `num_proc` workers),
3. synthesize   ask the synthesizer for what is not cached yet (LLM) and select the calls to keep,
4. pair         assemble chosen/rejected plans into rows,
5. finalize     dedupe, decontaminate against BFCL, split by id hash, write Hub-layout parquet.
A sharded build stops after step 4 and writes its shard; `--merge-shards` runs step 5 on all.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import datasets
import orjson
from datasets.arrow_writer import ArrowWriter
from tqdm.auto import tqdm

from apo_planner import __version__
from apo_planner.dataset import FEATURES
from builders.abstraction import abstract
from builders.config import BuildConfig, FilterConfig
from builders.decontamination import Decontaminator
from builders.pairs import fingerprint, make_row, split_of, write_hub_layout
from builders.readers import get_reader
from builders.records import DropReason, RecordDropped, Trajectory
from builders.sources import TEXT_COLUMN, Source, open_source
from builders.synthesis.llm import LLMSynthesizer
from builders.synthesis.rule import RuleSynthesizer
from builders.synthesis.selection import InvalidSelection, original_plan, selected_plan

ABSTRACT_COLUMNS = ("source_row_id", "trajectory", "drop_reason", "drop_detail")
ABSTRACT_FEATURES = datasets.Features({c: datasets.Value("string") for c in ABSTRACT_COLUMNS})
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


_SUMMED = ("records_read", "trajectories", "duplicate_records", "pairs", "calls_chosen_total", "calls_rejected_total")
_COUNTED = ("dropped", "selection_rejected", "removed_calls_by_reason", "synthesis")


@dataclass
class BuildStats:
    """Counts the build reports; mergeable across shards; `as_dict` is what stats.json holds."""

    counts: Counter = field(default_factory=Counter)
    dropped: Counter = field(default_factory=Counter)
    drop_examples: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    selection_rejected: Counter = field(default_factory=Counter)
    removed_calls_by_reason: Counter = field(default_factory=Counter)
    synthesis: Counter = field(default_factory=Counter)

    def drop(self, reason: str, detail: str | None) -> None:
        self.dropped[reason] += 1
        if detail and len(self.drop_examples[reason]) < _MAX_EXAMPLES:
            self.drop_examples[reason].append(detail)

    def merge(self, other: dict[str, Any]) -> None:
        for key in _SUMMED:
            self.counts[key] += other.get(key, 0)
        for key in _COUNTED:
            getattr(self, key).update(other.get(key, {}))
        for reason, examples in other.get("drop_examples", {}).items():
            for example in examples:
                if len(self.drop_examples[reason]) < _MAX_EXAMPLES:
                    self.drop_examples[reason].append(example)

    def as_dict(self) -> dict[str, Any]:
        pairs = self.counts["pairs"]
        return {
            **{key: self.counts[key] for key in _SUMMED},
            **{key: dict(sorted(getattr(self, key).items())) for key in _COUNTED},
            "dropped_total": sum(self.dropped.values()),
            "drop_examples": dict(sorted(self.drop_examples.items())),
            "avg_calls_chosen": round(self.counts["calls_chosen_total"] / pairs, 4) if pairs else 0.0,
            "avg_calls_rejected": round(self.counts["calls_rejected_total"] / pairs, 4) if pairs else 0.0,
        }


Synthesizer = RuleSynthesizer | LLMSynthesizer


def get_synthesizer(config: BuildConfig) -> Synthesizer:
    return RuleSynthesizer(config.rule) if config.synthesizer == "rule" else LLMSynthesizer(config.llm)


def _pair_rows(
    abstracted: datasets.Dataset,
    synthesizer: Synthesizer,
    config: BuildConfig,
    base_provenance: dict[str, str],
    id_namespace: str,
    stats: BuildStats,
) -> Iterator[dict[str, Any]]:
    seen_ids: set[str] = set()
    for record in tqdm(abstracted, total=len(abstracted), desc="pairing", unit="rec", mininterval=1.0):
        if record["drop_reason"] == "blank_line":
            continue
        stats.counts["records_read"] += 1
        if record["drop_reason"]:
            stats.drop(record["drop_reason"], record["drop_detail"])
            continue
        stats.counts["trajectories"] += 1
        trajectory = Trajectory.from_dict(orjson.loads(record["trajectory"]))
        try:
            selection = synthesizer.select(trajectory, record["trajectory"])
            selection.validate(len(trajectory.actions))
        except InvalidSelection as bad:
            stats.selection_rejected[bad.reason] += 1
            continue
        chosen = selected_plan(trajectory, selection)
        rejected = original_plan(trajectory, config.rule.rationale_max_chars)
        row = make_row(trajectory, chosen, rejected, selection.removed, base_provenance, id_namespace)
        if row["id"] in seen_ids:
            stats.counts["duplicate_records"] += 1
            stats.drop(DropReason.DUPLICATE_RECORD.value, f"source row {trajectory.source_row_id} seen before")
            continue
        seen_ids.add(row["id"])
        stats.removed_calls_by_reason.update(selection.removed.values())
        stats.counts["pairs"] += 1
        stats.counts["calls_chosen_total"] += len(chosen)
        stats.counts["calls_rejected_total"] += len(rejected)
        yield row


def _write_arrow(rows: Iterable[dict[str, Any]], features: datasets.Features, path: Path) -> datasets.Dataset:
    """Stream rows to an Arrow file (memory stays flat at 310k rows; zero rows is fine too)."""
    with ArrowWriter(features=features, path=str(path)) as writer:
        for row in rows:
            writer.write(row)
        writer.finalize()
    return datasets.Dataset.from_file(str(path))


@dataclass
class BuildResult:
    output: Path
    stats: dict[str, Any]


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


def build(config: BuildConfig, shard: tuple[int, int] | None = None) -> BuildResult:
    """Run the build stage and write `config.output` (or one shard of it)."""
    output = Path(config.output)
    output.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="apo-build-") as tmp:
        return _build(config, output, Path(tmp), shard)


def _build(config: BuildConfig, output: Path, cache_dir: Path, shard: tuple[int, int] | None) -> BuildResult:
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
    stats = BuildStats()
    try:
        synthesizer.prepare(abstracted)
        rows = _pair_rows(abstracted, synthesizer, config, base_provenance, source.id_namespace, stats)
        pairs = _write_arrow(rows, FEATURES, cache_dir / "pairs.arrow")
    finally:
        synthesizer.close()
    stats.synthesis.update(getattr(synthesizer, "stats", {}))
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
    }
    if getattr(synthesizer, "failures", None):
        meta["request_failure_examples"] = synthesizer.failures
    if shard is not None:
        return _write_shard(pairs, stats, meta, output, shard, started)
    return finalize(pairs, stats, meta, config, output, started)


def _write_shard(
    pairs: datasets.Dataset,
    stats: BuildStats,
    meta: dict[str, Any],
    output: Path,
    shard: tuple[int, int],
    started: float,
) -> BuildResult:
    folder = shard_dir(output, *shard)
    folder.mkdir(parents=True, exist_ok=True)
    pairs.to_parquet(str(folder / "pairs.parquet"))
    summary = {**meta, "shard": list(shard), **stats.as_dict(), "elapsed_s": round(time.time() - started, 2)}
    (folder / "stats.json").write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n")
    return BuildResult(output=folder, stats=summary)


def merge_shards(config: BuildConfig) -> BuildResult:
    """Finalize a dataset from the shards written under `config.output/shards` (all must be there)."""
    started = time.time()
    output = Path(config.output)
    folders = sorted((output / "shards").glob("shard-*-of-*"))
    if not folders:
        raise FileNotFoundError(f"no shards under {output / 'shards'}; run build --shard i/N first")
    totals = {int(f.name.rsplit("-", 1)[1]) for f in folders}
    if len(totals) != 1:
        raise ValueError(f"shards of different totals under {output / 'shards'}: {sorted(totals)}")
    total = totals.pop()
    missing = [i for i in range(total) if not (shard_dir(output, i, total) / "stats.json").is_file()]
    if missing:
        raise ValueError(f"shards {missing} of {total} are missing or unfinished; run build --shard i/{total}")
    stats = BuildStats()
    metas = []
    for i in range(total):
        shard_stats = json.loads((shard_dir(output, i, total) / "stats.json").read_text())
        stats.merge(shard_stats)
        metas.append(shard_stats)
    per_shard = set(BuildStats().as_dict()) | {"shard", "elapsed_s", "request_failure_examples"}
    failures = [f for m in metas for f in m.get("request_failure_examples", [])]
    meta = {k: v for k, v in metas[0].items() if k not in per_shard}  # how the shards were built
    for m in metas[1:]:
        diff = [k for k in meta if m.get(k) != meta[k]]
        if diff:
            raise ValueError(f"shard {m['shard']} was built differently ({', '.join(sorted(diff))}); rebuild it")
    if failures:
        meta["request_failure_examples"] = failures
    pairs = datasets.load_dataset(
        "parquet",
        data_files=[str(shard_dir(output, i, total) / "pairs.parquet") for i in range(total)],
        split="train",
        features=FEATURES,
    )
    meta["shards"] = total
    return finalize(pairs, stats, meta, config, output, started)


def _dedupe_sorted(pairs: datasets.Dataset, stats: BuildStats) -> datasets.Dataset:
    ids = pairs["id"]
    keep = [i for i in range(len(ids)) if i == 0 or ids[i] != ids[i - 1]]
    if len(keep) < len(ids):
        removed = len(ids) - len(keep)
        stats.counts["duplicate_records"] += removed
        stats.dropped[DropReason.DUPLICATE_RECORD.value] += removed
        pairs = pairs.select(keep)
    return pairs


def _decontaminate(pairs: datasets.Dataset, config: BuildConfig) -> tuple[datasets.Dataset, dict[str, Any]]:
    settings = config.decontamination
    if not settings.enabled:
        return pairs, {"enabled": False}
    checker = Decontaminator.from_bfcl(settings.ngram, settings.bfcl_files)
    hits = [checker.match(q) for q in pairs["query"]]
    removed = [(pairs[i]["id"], hit) for i, hit in enumerate(hits) if hit is not None]
    report = {
        "enabled": True,
        "ngram": settings.ngram,
        "bfcl_questions": checker.questions,
        "removed": len(removed),
        "examples": [{"id": rid, "bfcl_id": hit} for rid, hit in removed[:10]],
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
) -> BuildResult:
    """Dedupe, decontaminate, split by id hash and write the dataset folder with stats.json."""
    pairs = _dedupe_sorted(pairs.sort("id"), stats)
    pairs, decontamination = _decontaminate(pairs, config)
    # counts and averages describe what is released, whatever dedupe and decontamination removed
    stats.counts["pairs"] = len(pairs)
    stats.counts["calls_chosen_total"] = sum(pairs["num_calls_chosen"])
    stats.counts["calls_rejected_total"] = sum(pairs["num_calls_rejected"])
    splits = [split_of(i, config.test_fraction) for i in pairs["id"]]
    dataset = datasets.DatasetDict(
        {s: pairs.select([i for i, x in enumerate(splits) if x == s]) for s in ("train", "test")}
    )
    files = write_hub_layout(dataset, output)
    summary = {
        **meta,
        **stats.as_dict(),
        "decontamination": decontamination,
        "splits": {s: len(d) for s, d in dataset.items()},
        "test_fraction": config.test_fraction,
        "fingerprint": fingerprint(dataset),
        "files": files,
        "elapsed_s": round(time.time() - started, 2),
    }
    (output / "stats.json").write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n")
    return BuildResult(output=output, stats=summary)
