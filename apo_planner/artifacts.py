"""The artifacts stages hand each other on disk: their names, their layout, and typed readers.

Stages never import one another; a stage reads the previous stage's folder through these classes,
so a folder written on one machine is read the same way on another. Readers are lenient (extra
keys are kept) but the keys other code relies on are typed, and a missing file says which command
writes it.

Writers are atomic: a file is written beside its final name and renamed over it (`write_text`,
`write_json`), a folder is built as a hidden sibling and swapped into place when complete
(`atomic_dir`). A write that fails or is killed leaves the previous artifact as it was, and a
folder that is there is complete; `complete()` on each folder class checks that through the typed
readers, for callers deciding whether a stage must run again.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import hashlib
import json
import os
import shutil
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict

from apo_planner.errors import UserError
from apo_planner.locks import pid_alive

STATS_FILE = "stats.json"  # a dataset folder's (and each build shard's) statistics and provenance
REVIEW_FILE = "review.md"  # a dataset folder's seeded sample of pairs for a person to read
REVIEW_JSON = "review.json"  # the same sample as data (the dataset card embeds from it)
METRICS_FILE = "metrics.json"  # training (and, copied, the merged model's) metrics
TRAINING_PROVENANCE_FILE = "training_provenance.json"
MERGE_INFO_FILE = "apo_planner_merge.json"  # written last into a merged model: it marks one complete
RUN_FILE = "apo_planner_run.json"  # in a saved adapter: the key of the training run that wrote it
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


class ShardStats(_Record):
    """`stats.json` of one build shard: its counts and what `--merge-shards` checks and merges."""

    shard: list[int]  # [index, total]


class TrainingProvenance(_Record):
    """`training_provenance.json`: what a trained adapter was made from (the model cards quote it)."""

    dataset: dict[str, Any]
    base_model: dict[str, Any]  # id, revision
    recipe_sha256: str
    train_config: dict[str, Any]  # the recipe's train section as validated
    trainer_args: dict[str, Any]  # every trl.DPOConfig value the run used
    packages: dict[str, str]
    git_commit: str


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
    text = path.read_text(encoding="utf-8")
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:  # a file this toolkit wrote atomically never looks like this
        raise InvalidArtifact(
            f"{path} is not valid JSON ({exc.msg} at line {exc.lineno}); it was not written by this toolkit or "
            f"was cut short; run `apo-planner {writer}` again"
        ) from None


# --- atomic writes ------------------------------------------------------------------------------


@contextlib.contextmanager
def writing(path: Path, tmp: Path | None = None) -> Iterator[None]:
    """OSErrors raised inside name `path` (a full disk while pyarrow or torch writes says no file), and a
    file under the temporary sibling `tmp` by where it will end up."""
    try:
        yield
    except OSError as exc:
        name = str(exc.filename) if exc.filename else ""
        if name and tmp is not None and name.startswith(str(tmp)):
            name = str(path) + name[len(str(tmp)) :]
        elif name:
            raise
        code = exc.errno or (errno.ENOSPC if "No space left" in str(exc) else None)
        if code is None:
            raise
        raise OSError(code, exc.strerror or os.strerror(code), name or str(path)) from exc


def _temporary(path: Path, kind: str) -> Path:
    return path.with_name(f".{path.name}.{kind}-{os.getpid()}")


def write_text(path: Path, text: str) -> Path:
    """`path` holds `text` entirely or keeps what it held: written beside it, flushed, renamed over it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temporary(path, "tmp")
    try:
        with writing(path, tmp), tmp.open("w", encoding="utf-8") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def write_json(path: Path, data: Any) -> Path:
    return write_text(path, json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def write_record(path: Path, record: _Record) -> Path:
    """An artifact written through the typed model it is read with (`DatasetStats`, `TrainMetrics`, ...): the keys
    other code relies on are checked at write time, not discovered missing by the next stage."""
    return write_json(path, record.model_dump(mode="json"))


_RENAME_EXCHANGE = 2  # renameat2(2) flag: swap two paths in one step


def _exchange(a: Path, b: Path) -> bool:
    """Swap two existing paths atomically (Linux renameat2); False where the system or file system cannot."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd = -100
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.EXDEV, errno.ENOTSUP):
        return False
    raise OSError(code, os.strerror(code), str(b))


def replace_dir(tmp: Path, final: Path) -> None:
    """Put the finished folder `tmp` at `final`, replacing what is there in one step where the system can."""
    _move_into_place(Path(tmp), Path(final))
    (Path(final) / _CARRIED).unlink(missing_ok=True)


def _move_into_place(tmp: Path, final: Path) -> None:
    """`tmp` becomes `final`; the folder that was at `final` (if any) ends at `.{name}.old-PID` and is removed."""
    try:
        os.rename(tmp, final)  # nothing there yet (or an empty folder)
        return
    except OSError as exc:
        if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST, errno.ENOTDIR, errno.EISDIR):
            raise
    if _exchange(tmp, final):
        shutil.rmtree(tmp, ignore_errors=True)  # now the previous folder
        return
    old = _temporary(final, "old")  # two renames; `_recover` puts `old` back if a kill lands between them
    os.rename(final, old)
    os.rename(tmp, final)
    shutil.rmtree(old, ignore_errors=True)


_CARRIED = ".carried.json"  # in a partial folder: the entries moved over from the folder it replaces


def _carried_names(folder: Path) -> list[str]:
    try:
        return list(json.loads((folder / _CARRIED).read_text()))
    except (OSError, ValueError):
        return []


def _recover(final: Path) -> None:
    """Leftovers of writes whose process died before finishing: a folder moved aside mid-swap goes back,
    entries a partial folder had carried over from `final` go back, then the partial folder goes."""
    parent = final.parent
    if not parent.is_dir():
        return
    for stale in sorted(parent.glob(f".{final.name}.old-*")) + sorted(parent.glob(f".{final.name}.partial-*")):
        pid = stale.name.rsplit("-", 1)[-1]
        if not pid.isdigit() or pid_alive(int(pid)):
            continue  # being written right now (another process making the same tiny model)
        if ".old-" in stale.name and not final.exists():
            os.rename(stale, final)
            continue
        if final.is_dir():
            for name in _carried_names(stale):
                if (stale / name).exists() and not (final / name).exists():
                    os.rename(stale / name, final / name)
        shutil.rmtree(stale, ignore_errors=True)
    if final.is_dir():
        (final / _CARRIED).unlink(missing_ok=True)  # a swap that finished, killed before it tidied up


@contextlib.contextmanager
def atomic_dir(final: Path, owned: Iterable[str] | None = None) -> Iterator[Path]:
    """A temporary sibling of `final` to write into; it replaces `final` when the block succeeds, and is
    removed when it fails. A kill leaves a hidden `.NAME.partial-PID` that the next write removes.

    `owned`: the entries this writer produces (a dataset's `data`, `stats.json`, ...); every other entry
    of the folder it replaces (shards, a cache someone put there) is carried over into the new one.
    None: the folder is the artifact, replaced whole (a model, a staged repo).
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    _recover(final)
    tmp = _temporary(final, "partial")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    try:
        with writing(final, tmp):
            yield tmp
            if owned is not None and final.is_dir():
                keep = sorted({e.name for e in final.iterdir()} - set(owned) - {e.name for e in tmp.iterdir()})
                if keep:
                    write_json(tmp / _CARRIED, keep)  # first: whoever finds this folder knows what to put back
                    for name in keep:
                        os.rename(final / name, tmp / name)
            _move_into_place(tmp, final)
        (final / _CARRIED).unlink(missing_ok=True)
    except BaseException:
        if tmp.exists():
            if final.is_dir():  # failed after carrying entries over: they go back first
                for name in _carried_names(tmp):
                    if (tmp / name).exists() and not (final / name).exists():
                        os.rename(tmp / name, final / name)
            shutil.rmtree(tmp, ignore_errors=True)
        raise


@contextlib.contextmanager
def atomic_file(final: Path) -> Iterator[Path]:
    """A temporary path beside `final` for a writer that wants a file name (pyarrow, matplotlib); renamed
    over `final` when the block succeeds."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(f".{final.stem}.tmp-{os.getpid()}{final.suffix}")  # the suffix tells writers the format
    try:
        with writing(final, tmp):
            yield tmp
        os.replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)


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

    def problem(self) -> str | None:
        """Why this is not a finished dataset (None when it is): stats.json must read, and the parquet files
        under data/ must be exactly those it lists, each readable with the rows it counts for its split."""
        try:
            stats = self.stats()
        except UserError as exc:
            return str(exc)
        except ValueError as exc:  # pydantic: a stats.json of another tool
            return f"{self.stats_file} is not this toolkit's stats.json ({exc.__class__.__name__})"
        import pyarrow.parquet as pq

        listed = {str(f) for f in (stats.model_dump().get("files") or [])}
        present = {str(p.relative_to(self.root)) for p in self.data_dir.glob("*.parquet")}
        if listed != present:
            return f"{self.data_dir} holds {sorted(present)} but {self.stats_file} lists {sorted(listed)}"
        for name in sorted(listed):
            split = Path(name).name.split("-", 1)[0]
            try:
                rows = pq.read_metadata(self.root / name).num_rows
            except (OSError, ValueError) as exc:
                return f"{self.root / name} is not a readable parquet file ({exc})"
            if rows != stats.splits.get(split):
                return f"{self.root / name} has {rows} rows, {self.stats_file} counts {stats.splits.get(split)}"
        return None

    def complete(self) -> bool:
        return self.problem() is None


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
        return _read(TrainingProvenance, self.provenance_file, "train").model_dump(mode="json")

    def finished(self, run_key: str) -> bool:
        """Training with this run key finished here: its adapter and metrics are in place (both name the key)."""
        try:
            adapter_key = read_json(self.adapter / RUN_FILE, "train").get("run_key")
            metrics_key = self.metrics().model_dump().get("run_key")
        except (UserError, ValueError, AttributeError):
            return False
        return adapter_key == metrics_key == run_key and self.provenance_file.is_file()

    def merged_complete(self, folder: Path | None = None) -> bool:
        """A merged model folder written to the end (its merge info is written last)."""
        folder = folder or self.merged
        try:
            read_json(folder / MERGE_INFO_FILE, "merge")
            read_json(folder / "config.json", "merge")
        except (UserError, ValueError):
            return False
        return True


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

    def complete(self) -> bool:
        """The comparison reads as this toolkit's, and its .md and .png are beside it."""
        try:
            self.comparison()
        except (UserError, ValueError):
            return False
        return self.comparison_markdown.is_file() and self.comparison_plot.is_file()


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
