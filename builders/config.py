"""Configuration of the build stage (the recipe's `build:` section)."""

from __future__ import annotations

import re
from functools import cached_property
from typing import Literal

from pydantic import Field

from apo_planner.config import StrictConfig

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

    max_chars: int = Field(60_000, gt=0, description="drop trajectories longer than this (query+reasoning+results)")
    multi_turn: Literal["first", "drop"] = Field(
        "first", description="'first': keep what the first user turn led to; 'drop': skip multi-turn records"
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


class BuildConfig(StrictConfig):
    """Where trajectories come from, how they are filtered and synthesized, where the dataset goes."""

    source: str = Field(description="Hub dataset id, or local .jsonl/.json/.parquet files, globs or a directory")
    format: Literal["auto", "nemotron", "openai", "sharegpt"] = "auto"
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
