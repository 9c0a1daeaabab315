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
CHANGES_FILE = "changes.json"  # the entries the planner fixed and broke against each baseline; .md beside it
POOLED = "pooled"  # the statistics' scope over every category of a comparison
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


class Interval(BaseModel):
    """A value with its 95% interval, rounded as reports print it."""

    model_config = ConfigDict(frozen=True)

    value: float
    low: float
    high: float

    def __str__(self) -> str:
        return f"{self.value} [{self.low}, {self.high}]"

    def signed(self) -> str:
        return f"{self.value:+g} [{self.low:+g}, {self.high:+g}]"


class PlanMetric(_Record):
    """One plan-generation metric: base, merged, and merged - base with its paired bootstrap interval."""

    name: str
    description: str
    base: float
    merged: float
    delta: Interval


class PlanGeneration(_Record):
    """`metrics.json -> plan_generation`: the base and the merged planner each write a plan for every held-out
    prompt under the deployment decoding (constrained by the catalog's grammar), scored against the pair's
    chosen and rejected plans."""

    split: str
    prompts: int
    seed: int
    resamples: int
    decoding: dict[str, Any]
    metrics: list[PlanMetric]
    reference: dict[str, float] = {}  # the chosen and rejected plans' own average calls

    def metric(self, name: str) -> PlanMetric | None:
        return next((m for m in self.metrics if m.name == name), None)


class TrainMetrics(_Record):
    """`metrics.json` of a training run; `preference_accuracy` (lm-eval log-likelihood preference) and
    `plan_generation` (base vs merged planner writing plans for the held-out prompts) appear once `merge`
    evaluated them."""

    loss_type: str
    steps: int
    wall_time_s: float
    preference_accuracy: dict[str, Any] | None = None
    plan_generation: PlanGeneration | None = None


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


class EntryOutcome(_Record):
    """One entry of one arm, read from the benchmark's own result and score files: what the paired
    statistics are computed from."""

    id: str
    category: str
    passed: bool
    calls: int = 0  # tool calls in the answer, decoded the way the checker decodes them
    ground_truth_calls: int | None = None  # None: the category has no ground-truth calls (irrelevance)
    excess_calls: int | None = None  # answer calls the ground truth does not have (matched by function name)
    missing_calls: int | None = None  # ground-truth calls the answer does not have
    executor_tokens: float = 0.0  # input + output
    planner_tokens: float = 0.0  # prompt + completion (arms with a planner)
    latency_s: float | None = None  # executor + planner
    cost: float | None = None  # the benchmark's own cost of this entry (BFCL: latency x its hourly price)
    planned: bool | None = None  # arms with an injected plan: whether the executor saw one


class ArmInfo(_Record):
    """One arm of a comparison: what ran, under which benchmark entry and handler, with which plan."""

    name: str  # fc, prompt, planner, placebo, oracle, plan_only
    label: str  # how reports name it
    model: str  # the benchmark's registry name its files are under
    mode: str | None = None  # the executor's mode (fc / prompt); None: no executor (plan_only)
    entry: str | None = None  # the benchmark's stock executor entry it runs
    handler: str | None = None  # the benchmark handler class the executor ran through
    plan: str | None = None  # none, planner, placebo or oracle: what was injected


class RunOutcomes(_Record):
    """Every arm's per-entry outcomes in one run (`eval.repeats` gives several, each with its own seed)."""

    run: int
    seed: int | None = None
    entries: dict[str, list[EntryOutcome]]  # arm name -> one outcome per entry, in the benchmark's order


class ArmStats(_Record):
    """One arm in one scope (a category, or `pooled` over the categories)."""

    arm: str
    scope: str
    entries: int
    correct: int
    accuracy: Interval  # percent, Wilson 95% interval
    avg_calls: float | None = None
    excess_calls: float | None = None  # per entry
    missing_calls: float | None = None
    executor_tokens: float | None = None  # per entry
    planner_tokens: float | None = None
    tokens: float | None = None
    latency_p50_s: float | None = None
    latency_p95_s: float | None = None
    cost: float | None = None  # summed over the scope's entries
    cost_per_correct: float | None = None  # cost / correct (None when nothing passed)
    planned: int | None = None


class PairStats(_Record):
    """Arm `a` against arm `b` on the same entries: the 2x2 table, the exact McNemar test, paired bootstrap
    intervals of the differences, and the sentence that reads them."""

    a: str
    b: str
    question: str  # what this difference measures (the placebo's effect, the plan's content, ...)
    scope: str
    entries: int
    both: int  # both passed
    only_a: int  # a passed, b failed (fixed, when a is the planner and b a baseline)
    only_b: int  # b passed, a failed (broken)
    neither: int
    p_value: float  # exact McNemar: two-sided binomial on only_a vs only_b
    delta_accuracy: Interval  # points, a - b
    delta_calls: Interval | None = None  # average calls per entry, a - b
    delta_tokens: Interval | None = None  # tokens per entry, a - b
    significant: bool
    sentence: str


class PaperSupport(_Record):
    """What one published difference could show at the category's full size."""

    category: str
    entries: int  # the category's full size
    points_per_entry: float
    paper_baseline: float
    paper_planner: float
    paper_gain: float  # points
    gain_entries: float  # the gain in entries (paper_gain / points_per_entry)
    best_p: float  # the smallest exact-McNemar p any run with that net gain can have
    distinguishable: bool  # best_p < 0.05
    min_gain_entries: int  # the smallest net gain that could reach p < 0.05
    min_gain_points: float
    sentence: str


class ClaimCheck(_Record):
    """The paper's claim "fewer calls at equal or better accuracy", read off one planner-vs-baseline pair."""

    scope: str
    baseline: str
    fewer_calls: str  # yes / no / undetermined
    accuracy: str  # better / worse / not distinguishable
    sentence: str


class RepeatSpread(_Record):
    """Run-to-run spread of one arm's accuracy (or one difference's) over `eval.repeats` runs."""

    what: str  # an arm name, or "a - b"
    scope: str
    values: list[float]  # one per run, points
    low: float
    high: float
    sd: float | None = None


class ComparisonStats(_Record):
    confidence: float = 0.95
    resamples: int
    seed: int
    run: int = 1  # the run the paired statistics are computed on
    arms: list[ArmStats]
    pairs: list[PairStats]
    paper: list[PaperSupport] = []
    claims: list[ClaimCheck] = []
    repeats: list[RepeatSpread] = []


class ExecutorInfo(_Record):
    """The executor that actually ran: the model its server served (with revision, or named as a local folder)
    and the benchmark entries and handler classes it was asked through, and the sampling it ran with."""

    model: str
    revision: str | None = None  # the commit it was served at; `local` for a folder; marked when unverified
    api: str | None = None  # the dialect its requests spoke (vllm: top_k/min_p stated too)
    sampling: dict[str, Any] = {}  # requested (every field stated) and effective (as the engine runs them)
    local: bool = False  # a local folder, not a Hub id
    tiny: bool = False  # a tiny random model made for the smoke run
    engine: str | None = None
    entries: dict[str, str] = {}  # mode -> the benchmark's stock entry
    handlers: dict[str, str] = {}  # mode -> handler class
    max_tokens: int | None = None


class ChangedEntry(_Record):
    """One entry whose outcome differs between the planner arm and a baseline."""

    category: str
    id: str
    question: str
    plan: str | None  # what the planner arm's executor saw
    baseline_output: str
    planner_output: str
    failing: str  # "baseline" (the planner fixed it) or "planner" (the planner broke it)
    error: str | None  # the benchmark checker's error for the failing arm's answer


class BaselineChanges(_Record):
    baseline: str  # arm name
    label: str
    fixed: list[ChangedEntry]
    broken: list[ChangedEntry]


class Changes(_Record):
    """`changes.json`: against each baseline, every entry the planner fixed and every one it broke (run 1)."""

    benchmark: str
    planner: str  # the planner arm's registry name
    baselines: list[BaselineChanges]


class Comparison(_Record):
    """`comparison.json`: one row per category of the benchmark it ran (`benchmark`, a name in
    `apo_planner.benchmarks.BENCHMARKS`): the executor alone (in both of its modes when both ran), with the
    planner, and the diagnostic arms; every arm's per-entry outcomes (`runs`) and the statistics computed
    from them (`statistics`)."""

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
    arms: list[ArmInfo] = []
    runs: list[RunOutcomes] = []
    statistics: ComparisonStats | None = None
    executor: ExecutorInfo | None = None
    changes: dict[str, dict[str, int]] = {}  # baseline arm -> {"fixed": n, "broken": n}; all in changes.json

    def scopes(self) -> list[str]:
        """Every category, then `pooled`: the scopes the statistics have."""
        return [*(r["category"] for r in self.categories), POOLED]

    def reported_arms(self) -> list[ArmInfo]:
        """The arms the statistics have numbers for, in the comparison's order."""
        return [a for a in self.arms if self.arm_stats(a.name, POOLED)]

    def baselines(self) -> list[str]:
        """The executor-alone arms: the planner arm's own mode first."""
        names = [self.planner_mode, "prompt" if self.planner_mode == "fc" else "fc"]
        return [n for n in names if self.arm(n)]

    def arm(self, name: str) -> ArmInfo | None:
        return next((a for a in self.arms if a.name == name), None)

    def arm_stats(self, arm: str, scope: str) -> ArmStats | None:
        stats = self.statistics
        return next((s for s in stats.arms if s.arm == arm and s.scope == scope), None) if stats else None

    def pair(self, a: str, b: str, scope: str) -> PairStats | None:
        stats = self.statistics
        return next((p for p in stats.pairs if (p.a, p.b, p.scope) == (a, b, scope)), None) if stats else None

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

    @property
    def changes_file(self) -> Path:
        return self.root / CHANGES_FILE

    @property
    def changes_markdown(self) -> Path:
        return self.changes_file.with_suffix(".md")

    def run_root(self, benchmark: str, run: int) -> Path:
        """The benchmark's tree of one repeat (`eval.repeats`): run 1 is `benchmark_root`, later runs beside it."""
        return self.benchmark_root(benchmark) if run == 1 else self.root / f"{benchmark}-run{run}"

    def submission(self, benchmark: str) -> Path:
        """Where `apo-planner submission` drafts a leaderboard pull request."""
        return self.root / f"{benchmark}_submission"

    def comparison(self) -> Comparison:
        return _read(Comparison, self.comparison_file, "eval")

    def changes(self) -> Changes:
        return _read(Changes, self.changes_file, "eval")


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
