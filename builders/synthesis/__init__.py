"""Synthesizers choose which of a trajectory's original calls the efficient plan keeps.

The build talks to every synthesizer through `Synthesizer`: the deterministic rules
(`rule.RuleSynthesizer`) and a model behind a cache (`llm.LLMSynthesizer`) alike.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Protocol, runtime_checkable

import datasets

from apo_planner.builders.config import BuildConfig
from apo_planner.builders.records import Trajectory
from apo_planner.builders.synthesis.selection import Selection


@runtime_checkable
class Synthesizer(Protocol):
    """What the build asks of a synthesizer; `stats` and `failures` end up in stats.json."""

    name: str
    stats: Counter[str]  # work done (model calls, cache hits, ...); empty where there is none
    failures: list[str]  # a few requests that failed after their retries, as examples
    throughput: dict[str, Any] | None  # rates of the requests this run sent (None: it sent none)

    @property
    def provenance(self) -> dict[str, str]:
        """The synthesizer's part of every row's provenance (model, revision, backend, template, sampling)."""
        ...

    def prepare(self, abstracted: datasets.Dataset) -> None:
        """Do whatever work selection needs up front, over every abstracted record at once."""
        ...

    def select(self, trajectory: Trajectory, payload: bytes) -> Selection:
        """The calls to keep for one trajectory (`payload` is its abstracted JSON), or InvalidSelection."""
        ...

    def close(self) -> None: ...


def get_synthesizer(config: BuildConfig) -> Synthesizer:
    """The recipe's synthesizer (imported here so a rule build never loads the model client)."""
    if config.synthesizer == "rule":
        from apo_planner.builders.synthesis.rule import RuleSynthesizer

        return RuleSynthesizer(config.rule)
    from apo_planner.builders.synthesis.llm import LLMSynthesizer

    return LLMSynthesizer(config.llm, consistency=config.consistency)
