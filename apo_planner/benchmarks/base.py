"""What a benchmark is to apo-planner: the contract every entry of the `BENCHMARKS` registry fulfils.

A benchmark owns everything that is specific to it (lm-evaluation-harness's `Task` habit): which
categories it has, the questions the training data must not contain (decontamination), how an
executor answers its entries alone and with a plan injected (its own generation code and official
checker), how its result files read back, and how its results read in a model card. The evaluation
stage is the same for every benchmark: it starts the servers, supplies the planner arm (`PlanSource`),
and writes the comparison; builders and cards ask the registry, never a benchmark's module.

For the statistics and the diagnostic arms a benchmark also gives, from its own files and ground truth:
every arm's per-entry outcomes (`EntryOutcome`: pass/fail, calls against the ground truth, tokens, latency,
cost), the ground-truth calls of an entry as a plan (`oracle_plan`, the oracle arm), plans scored as answers
with no executor (`score_plans`, the plan-only arm), what one entry looked like (`entry_details`, for
changes.md) and its categories' full sizes (`category_size`, for what a published table can show). The
statistics themselves are the evaluation stage's, the same for every benchmark.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from apo_planner.errors import UserError, require_extra

if TYPE_CHECKING:
    from apo_planner.artifacts import Comparison
    from apo_planner.generation import Sampling
    from apo_planner.plan import Plan

# The arms of a comparison, by the names comparison.json, the statistics and the reports use.
FC, PROMPT, PLANNER = "fc", "prompt", "planner"  # executor alone in each mode; the planner in front of it
ORACLE, PLACEBO, PLAN_ONLY = "oracle", "placebo", "plan_only"  # the diagnostic arms
DIAGNOSTIC_ARMS = (PLACEBO, ORACLE, PLAN_ONLY)
ARM_LABELS = {
    FC: "executor alone (FC)",
    PROMPT: "executor alone (prompt)",
    PLACEBO: "+ placebo plan",
    PLANNER: "+ planner",
    ORACLE: "+ oracle plan",
    PLAN_ONLY: "plan only (no executor)",
}


class BenchmarkError(UserError):
    """A benchmark asked for something it does not have (a category, an executor entry)."""


class PlanSource(Protocol):
    """Where a plan-injected arm's plans come from, as a benchmark's handler asks: a plan's text for an entry
    (or why there is none: its `fallback`, counted) and what it cost. The evaluation stage implements it (the
    planner, the oracle and placebo plans); how a plan reaches the executor is the benchmark's handler's."""

    def plan_for(self, test_entry: dict[str, Any]) -> dict[str, Any]: ...


@dataclass(frozen=True)
class Executor:
    """The executor as the eval stage serves it: the benchmark's entry names for it in each mode, where it
    answers, and how it is asked."""

    entry: str  # function-calling (FC) mode entry of the benchmark's model registry
    prompt_entry: str | None  # the same model's prompt-mode entry (None: that arm is skipped)
    base_url: str = ""  # OpenAI-compatible /v1 URL of the running executor server
    model_path: str | None = None  # local model folder (tokenizer, served name); None: the Hub id
    max_tokens: int | None = None  # cap on generated tokens (tiny CPU models)
    temperature: float = 0.001
    num_threads: int = 8
    # every sampling field a request states, for a token budget (None: only what the benchmark sends), and the
    # dialect of the server (`vllm` takes top_k/min_p, `openai` does not): no server default decides the rest
    sampling: Callable[[int], Sampling] | None = None
    api: str = "openai"
    tokenizer: str | None = None  # where the benchmark's prompt-building handlers read the tokenizer


@dataclass
class EvalJob:
    """One evaluation run: which categories, which arms, where the benchmark writes its files."""

    root: Path  # the benchmark's own tree under the eval folder (`EvalDir.run_root`)
    categories: list[str]
    executor: Executor
    planner_mode: str = "fc"  # which executor entry the planner arm runs on
    plans: PlanSource | None = None
    limit: int | None = None  # the first N entries of each category
    extra: dict[str, Any] = field(default_factory=dict)
    injected: dict[str, PlanSource] = field(default_factory=dict)  # oracle / placebo arm -> its plans
    plan_only: bool = False  # score the planner arm's plans as answers, no executor
    seed: int | None = None  # sent with every executor request (one per repeat)
    run: int = 1  # which repeat this is
    plan_settings: Any = None  # how plans are asked for and injected (BFCL: the handler's `PlannerSettings`)


@dataclass(frozen=True)
class EntryDetail:
    """One entry of one arm as a person reads it in changes.md: the question, the plan the executor saw,
    the answer, and the checker's error when it failed."""

    question: str
    plan: str | None
    output: str
    error: str | None


def call_differences(answer: Iterable[str], ground_truth: Iterable[str]) -> tuple[int, int]:
    """(excess, missing): answer calls the ground truth does not have, and ground-truth calls the answer does
    not have, matched by function name as multisets (a wrong function counts once each way)."""
    got, want = Counter(answer), Counter(ground_truth)
    return sum((got - want).values()), sum((want - got).values())


class Benchmark(ABC):
    """One benchmark. Subclass it in one module, register it with `BENCHMARKS.register(name)` (or a
    third-party entry point in the `apo_planner.benchmarks` group), and every stage can use it."""

    name: ClassVar[str]  # registry name; also the folder of its files under the eval output
    title: ClassVar[str]  # how cards and reports name it, e.g. "BFCL v4"
    checker: ClassVar[str]  # what scores it, e.g. "the official bfcl-eval checker"
    module: ClassVar[str]  # the Python package it needs (checked before an evaluation starts)
    dataset_id: ClassVar[str]  # its Hub dataset, for the model card's model-index
    url: ClassVar[str]  # where its code and leaderboard live
    extra: ClassVar[str] = "eval"  # the apo-planner extra that installs it

    @abstractmethod
    def use_root(self, root: Path) -> Path:
        """Point the benchmark's package at `root` for its files, once per process before anything imports it;
        returns the root in force."""

    @abstractmethod
    def categories(self) -> list[str]:
        """Every category (and group of categories) a recipe may name."""

    @abstractmethod
    def resolve(self, names: list[str]) -> list[str]:
        """Groups expanded, names checked: a `BenchmarkError` names the unknown one and lists the valid ones."""

    @abstractmethod
    def decontamination_queries(self) -> Iterator[tuple[str, str]]:
        """(entry id, question text) for every question a training set must not contain."""

    @abstractmethod
    def served_model(self, entry: str) -> str:
        """The model id an executor entry calls by default (what its server must serve)."""

    def prepare(self, job: EvalJob) -> None:  # noqa: B027 - optional hook, nothing to do by default
        """Everything that can fail on the job's settings (unknown entries, subsets), before any server starts."""

    @abstractmethod
    def run(self, job: EvalJob) -> dict[str, Any]:
        """Generate every arm (resuming what is there), score with the official checker, and read the results
        back: the `Comparison` fields (arm names and one row per category), `arms` (one `ArmInfo` per arm
        that ran) and `entries` (arm name -> its `EntryOutcome`s, every arm in the same entry order)."""

    def supports(self, arm: str, category: str) -> bool:
        """Whether `arm` can run on `category`: the oracle and plan-only arms need ground-truth calls and a
        single-turn checker, which a benchmark says it has by overriding this."""
        return arm not in (ORACLE, PLAN_ONLY)

    def oracle_plan(self, test_entry: dict[str, Any]) -> Plan | None:
        """The entry's ground-truth calls as a plan (the oracle arm's plan: the ceiling of what injecting a plan
        can do for this executor); None where there are none."""
        return None

    def score_plans(self, job: EvalJob, model: str, category: str, plans: dict[str, dict[str, Any]]) -> None:
        """Write each entry's plan (`{id: planner info with "plan" text or None}`) as the answer of registry
        entry `model` in the benchmark's own result layout, for its checker to score with no executor (the
        plan-only arm). Benchmarks without it leave the arm out."""
        raise BenchmarkError(f"{self.name} cannot score plans without an executor")

    def entry_details(self, root: Path, model: str, category: str) -> dict[str, EntryDetail]:
        """Every entry of one arm in one category under a run's tree `root`, as changes.md shows it (id -> detail)."""
        return {}

    def category_size(self, category: str) -> int | None:
        """How many entries the full category has (what a published number was measured on)."""
        return None

    @abstractmethod
    def card_section(self, comparison: Comparison, changes_link: str | None = None) -> str:
        """The model card's evaluation section (Markdown) for a comparison this benchmark produced; `changes_link`
        is where the repo carries changes.md (the entries the planner fixed and broke)."""

    def require(self, what: str) -> None:
        """Refuse, in one line naming the extra to install, a use of this benchmark without its package."""
        require_extra(self.extra, self.module, what=what)

    def paper_table(self) -> dict[str, Any]:
        """Published numbers to print beside this run's, keyed by category (none by default)."""
        return {}
