"""Configuration of the build stage (the recipe's `build:` section)."""

from __future__ import annotations

import hashlib
import re
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

import orjson
from pydantic import AfterValidator, Field

from apo_planner.benchmarks import BENCHMARKS
from apo_planner.config import StrictConfig
from apo_planner.formats import FORMATS
from apo_planner.generation import RoleSettings, Sampling

DEFAULT_FAILURE_PATTERNS = (
    r"(?i)^\s*[\[{(]?\s*\"?(error|exception|traceback|failed|failure)\b",
    r"(?i)\bstatus(?: code)?\"?\s*[:=]\s*\"?(4\d\d|5\d\d|error|failed)\b",
)
DEFAULT_VERIFICATION_PREFIXES = (
    "get",
    "check",
    "verify",
    "validate",
    "confirm",
    "lookup",
    "look_up",
    "search",
    "find",
    "fetch",
    "list",
    "read",
    "query",
    "is",
    "has",
    "retrieve",
    "view",
    "show",
    "describe",
)


class FilterConfig(StrictConfig):
    """What abstraction keeps and drops."""

    model_config = StrictConfig.model_config | {"ignored_types": (cached_property,)}

    max_chars: int = Field(
        60_000,
        gt=0,
        description="drop trajectories longer than this (query, context, each message's reasoning once, results, "
        "answer); stats.json -> lengths.trajectory_chars shows what it cuts",
    )
    multi_turn: Literal["each", "first", "drop"] = Field(
        "each",
        description="'each': every user turn that led to tool calls is a trajectory, the earlier turns its context; "
        "'first': only what the first user message led to; 'drop': skip records with more than one user message",
    )
    failure_patterns: tuple[str, ...] = DEFAULT_FAILURE_PATTERNS
    check_schemas: bool = True

    @cached_property
    def compiled_failure_patterns(self) -> tuple[re.Pattern[str], ...]:
        return tuple(re.compile(p) for p in self.failure_patterns)


class RuleConfig(StrictConfig):
    """The deterministic synthesizer's rules."""

    verification_prefixes: tuple[str, ...] = DEFAULT_VERIFICATION_PREFIXES
    rationale_max_chars: int = Field(240, gt=0)


class LLMConfig(RoleSettings):
    """The LLM synthesizer: its backend (`backend` and that backend's keys: `apo_planner.generation`), how it
    samples, how hard it retries, where its answers are cached. Every request states all its sampling fields
    (top_k 0 and min_p 0 are vLLM's neutral values), so a server's own defaults never apply."""

    default_backend: ClassVar[str] = "openai"

    model: str = Field("Qwen/Qwen3-30B-A3B-Instruct-2507", description="served model name, Hub id or local dir")
    template: str | None = Field(None, description="Jinja prompt template (default: the bundled select_calls.jinja)")
    temperature: float = Field(0.0, ge=0.0)
    retry_temperature: float = Field(0.7, ge=0.0, description="temperature of the 2nd and later attempts")
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    top_k: int = Field(0, ge=0, description="0: no top-k (stated in every request, so Qwen's default 20 never applies)")
    min_p: float = Field(0.0, ge=0.0, le=1.0)
    max_tokens: int = Field(1024, gt=0)
    seed: int = 0
    max_attempts: int = Field(3, ge=1, description="model answers per trajectory before an invalid one is dropped")
    cache: str = Field("runs/synthesis-cache.sqlite", description="persistent answer cache shared by re-runs")
    max_result_chars: int = Field(600, gt=0)
    max_rationale_chars: int = Field(400, gt=0)
    max_answer_chars: int = Field(800, gt=0)
    plan_rationale_max_chars: int = Field(200, gt=0)

    def sampling(self, temperature: float, seed: int = 0) -> Sampling:
        """Every sampling field of one request at `temperature` (first attempts and retries differ only there)."""
        return Sampling(
            max_tokens=self.max_tokens,
            temperature=temperature,
            top_p=self.top_p,
            top_k=self.top_k,
            min_p=self.min_p,
            seed=seed,
        )

    def server_workdir(self) -> Path:
        """Where the synthesizer's server writes its log: next to the answer cache it fills."""
        return Path(self.cache).resolve().parent / "servers"


class ConsistencyConfig(StrictConfig):
    """Checks of every selection against its trajectory (apo_planner.builders.synthesis.consistency)."""

    enabled: bool = Field(True, description="reject selections that contradict the trajectory, counted by reason")
    dropped_reported_tool: bool = Field(
        True, description="also reject dropping the last successful call of a tool whose result the answer reports"
    )


class ReviewConfig(StrictConfig):
    """The seeded sample of pairs written to `DIR/review.md` for a person to read before releasing."""

    size: int = Field(20, ge=0, description="pairs in review.md (0: no review sample); the dataset card embeds 3")
    seed: int = Field(0, description="which pairs: the same seed draws the same pairs on every rebuild")


class DecontaminationConfig(StrictConfig):
    """Word n-gram overlap between dataset queries and the questions of the benchmarks the planner is evaluated on."""

    enabled: bool = True
    ngram: int = Field(8, ge=2, description="a query sharing any word n-gram with a benchmark question is removed")
    benchmarks: list[Annotated[str, AfterValidator(BENCHMARKS.validator())]] = Field(
        default_factory=lambda: ["bfcl"],
        description="registered benchmarks whose questions the dataset must not contain",
    )


# How a build runs, not what it writes: the shards of one dataset may differ in these (each its own
# servers, cache and workers); everything else in `build:` must match for `--merge-shards`.
RUN_ONLY: dict[str, Any] = {
    "output": True,
    "num_proc": True,
    "llm": {k: True for k in ("base_url", "server", "health_retry_s", "concurrency", "timeout_s", "max_retries")}
    | {"cache": True, "api_key_env": True},
}


class BuildConfig(StrictConfig):
    """Where trajectories come from, how they are filtered and synthesized, where the dataset goes."""

    source: str = Field(description="Hub dataset id, or local .jsonl/.json/.parquet files, globs or a directory")
    format: Annotated[str, AfterValidator(FORMATS.validator("auto"))] = Field(
        "auto", description="trajectory format (`apo-planner formats`); auto: found from the first rows' content"
    )
    config_name: str | None = Field(None, description="Hub dataset config (Nemotron: 'default')")
    split: str = "train"
    revision: str = "main"
    streaming: bool = True
    limit: int | None = Field(None, gt=0, description="read at most this many records")
    num_proc: int = Field(1, ge=1)
    synthesizer: Literal["rule", "llm"] = "rule"
    output: str = "runs/dataset"
    version: str = Field("0.1.0", pattern=r"^\d+\.\d+\.\d+$", description="semantic version of the dataset")
    test_fraction: float = Field(0.1, ge=0.0, lt=1.0)
    filters: FilterConfig = FilterConfig()
    rule: RuleConfig = RuleConfig()
    llm: LLMConfig.section() = LLMConfig.default()
    consistency: ConsistencyConfig = ConsistencyConfig()
    decontamination: DecontaminationConfig = DecontaminationConfig()
    review: ReviewConfig = ReviewConfig()

    def pairs_recipe(self) -> dict[str, Any]:
        """The settings that decide which pairs a build writes (`RUN_ONLY` left out), as shards record them."""
        recipe = self.model_dump(mode="json", exclude=RUN_ONLY)
        if self.synthesizer == "rule":
            del recipe["llm"]  # a rule build asks no model
        return recipe

    def pairs_recipe_sha256(self) -> str:
        return hashlib.sha256(orjson.dumps(self.pairs_recipe(), option=orjson.OPT_SORT_KEYS)).hexdigest()
