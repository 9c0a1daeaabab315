"""The artifacts stages hand each other on disk: their names, their layout, and typed readers.

Stages never import one another; a stage reads the previous stage's folder through these classes,
so a folder written on one machine is read the same way on another. Readers are lenient (extra
keys are kept) but the keys other code relies on are typed, and a missing file says which command
writes it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict

from apo_planner.errors import UserError

STATS_FILE = "stats.json"  # a dataset folder's (and each build shard's) statistics and provenance
REVIEW_FILE = "review.md"  # a dataset folder's seeded sample of pairs for a person to read
REVIEW_JSON = "review.json"  # the same sample as data (the dataset card embeds from it)
METRICS_FILE = "metrics.json"  # training (and, copied, the merged model's) metrics
TRAINING_PROVENANCE_FILE = "training_provenance.json"
MERGE_INFO_FILE = "apo_planner_merge.json"
COMPARISON_FILE = "comparison.json"  # the benchmark comparison; .md and .png beside it
ADAPTER_DIR = "adapter"
MERGED_DIR = "merged"
CHECKPOINTS_DIR = "checkpoints"


class MissingArtifact(UserError, FileNotFoundError):
    """An artifact a command needs is not there; the message names the command that writes it."""


class InvalidArtifact(UserError):
    """An artifact that is there but is not what this toolkit writes (another tool's folder, a stale layout)."""


class _Record(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)


class DatasetStats(_Record):
    """`stats.json` of a finished dataset folder (the build stage writes many more keys)."""

    fingerprint: str
    dataset_version: str
    pairs: int
    splits: dict[str, int]
    source: str


class TrainMetrics(_Record):
    """`metrics.json` of a training run; `preference_accuracy` appears once `merge` evaluated it."""

    loss_type: str
    steps: int
    wall_time_s: float
    preference_accuracy: dict[str, Any] | None = None


@dataclass(frozen=True)
class PlanCoverage:
    """How many of a category's entries the executor saw a plan for; a planner-arm number means
    nothing without it (an entry that fell back ran the executor alone)."""

    planned: int
    entries: int
    fallbacks: dict[str, int]

    @property
    def fraction(self) -> float:
        return self.planned / self.entries if self.entries else 0.0

    def __str__(self) -> str:
        text = f"{self.planned}/{self.entries} planned"
        if self.fallbacks:
            text += " (fell back: " + ", ".join(f"{k} {v}" for k, v in sorted(self.fallbacks.items())) + ")"
        return text


class Comparison(_Record):
    """`comparison.json`: one row per category of the benchmark it ran (`benchmark`, a name in
    `apo_planner.benchmarks.BENCHMARKS`): the executor alone (in both of its modes when both ran) and with
    the planner."""

    benchmark: str = "bfcl"
    baseline_model: str  # the executor alone in the planner arm's mode
    planner_model: str
    categories: list[dict[str, Any]]
    other_mode_model: str | None = None  # the executor alone in its other mode (FC or prompt)
    planner_mode: str = "fc"
    other_mode: str | None = None
    paper_note: str | None = None
    planner_outcomes: dict[str, int] = {}
    limit: int | None = None

    def coverage(self) -> dict[str, PlanCoverage]:
        """Per category, from the planner arm's own result lines (what the executor really saw)."""
        out = {}
        for row in self.categories:
            arm = row.get("planner") or {}
            planner = arm.get("planner") or {}
            out[row["category"]] = PlanCoverage(
                planned=int(planner.get("planned", 0)),
                entries=int(arm.get("entries") or 0),
                fallbacks=dict(planner.get("fallbacks") or {}),
            )
        return out


Record = TypeVar("Record", bound=_Record)


def read_json(path: Path, writer: str) -> Any:
    if not path.is_file():
        raise MissingArtifact(f"{path} not found; `apo-planner {writer}` writes it")
    return json.loads(path.read_text(encoding="utf-8"))


def write_json(path: Path, data: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return path


def _read(model: type[Record], path: Path, writer: str) -> Record:
    return model.model_validate(read_json(path, writer))


@dataclass(frozen=True)
class DatasetDir:
    """A preference dataset folder: Hub-layout parquet under `data/` plus `stats.json`."""

    root: Path

    @property
    def stats_file(self) -> Path:
        return self.root / STATS_FILE

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def review_file(self) -> Path:
        return self.root / REVIEW_FILE

    @property
    def review_json(self) -> Path:
        return self.root / REVIEW_JSON

    def stats(self) -> DatasetStats:
        return _read(DatasetStats, self.stats_file, "build")

    def review(self) -> list[dict[str, Any]]:
        """The review sample's pairs (each with its rendered `markdown`); empty for a folder built without one."""
        return read_json(self.review_json, "build")["pairs"] if self.review_json.is_file() else []


@dataclass(frozen=True)
class TrainDir:
    """A training run folder: the adapter, the merged model, checkpoints, metrics and provenance."""

    root: Path

    @property
    def adapter(self) -> Path:
        return self.root / ADAPTER_DIR

    @property
    def merged(self) -> Path:
        return self.root / MERGED_DIR

    @property
    def checkpoints(self) -> Path:
        return self.root / CHECKPOINTS_DIR

    @property
    def metrics_file(self) -> Path:
        return self.root / METRICS_FILE

    @property
    def provenance_file(self) -> Path:
        return self.root / TRAINING_PROVENANCE_FILE

    def metrics(self) -> TrainMetrics:
        return _read(TrainMetrics, self.metrics_file, "train")

    def provenance(self) -> dict[str, Any]:
        return read_json(self.provenance_file, "train")


@dataclass(frozen=True)
class EvalDir:
    """An evaluation folder: the benchmark's own tree under `<benchmark name>/` (its result and score files
    in its own layout), the comparison reports beside it."""

    root: Path

    def benchmark_root(self, benchmark: str) -> Path:
        return self.root / benchmark

    @property
    def comparison_file(self) -> Path:
        return self.root / COMPARISON_FILE

    @property
    def comparison_markdown(self) -> Path:
        return self.comparison_file.with_suffix(".md")

    @property
    def comparison_plot(self) -> Path:
        return self.comparison_file.with_suffix(".png")

    def submission(self, benchmark: str) -> Path:
        """Where `apo-planner submission` drafts a leaderboard pull request."""
        return self.root / f"{benchmark}_submission"

    def comparison(self) -> Comparison:
        return _read(Comparison, self.comparison_file, "eval")


def sha256_files(paths: Iterable[Path], *, names: bool = False) -> str:
    """One streamed digest of some files' bytes in the given order (an adapter can be hundreds of
    MB); with `names`, each path is hashed before its bytes. A missing file counts as empty."""
    digest = hashlib.sha256()
    for path in paths:
        if names:
            digest.update(path.as_posix().encode() + b"\0")
        if path.is_file():
            with path.open("rb") as f:
                for chunk in iter(lambda f=f: f.read(1 << 20), b""):
                    digest.update(chunk)
    return digest.hexdigest()
