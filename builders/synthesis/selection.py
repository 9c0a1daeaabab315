"""A synthesizer's answer: which original calls to keep, why, and what depends on what.

Synthesizers select, they never write calls: the chosen plan is assembled from the original
actions, so its tool names and arguments are exactly those of the trajectory.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import orjson

from apo_planner.builders.records import Action, Trajectory
from apo_planner.plan import Plan, PlanStep, normalize_rationale


class InvalidSelection(ValueError):
    """A selection that breaks a rule; `reason` is the counted name."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


@dataclass(frozen=True)
class KeptCall:
    index: int  # position in trajectory.actions
    rationale: str
    depends_on: tuple[int, ...] = ()  # indices of other kept calls, in trajectory.actions numbering


@dataclass(frozen=True)
class Selection:
    kept: tuple[KeptCall, ...]
    removed: dict[int, str] = field(default_factory=dict)  # index -> why it was removed

    def validate(self, num_actions: int) -> None:
        """Raise InvalidSelection unless: non-empty, indices valid, unique and increasing, dependencies
        on earlier kept calls only (hence acyclic), and strictly fewer calls than the original."""
        if not self.kept:
            raise InvalidSelection("empty_selection")
        indices = [k.index for k in self.kept]
        if any(not 0 <= i < num_actions for i in indices):
            raise InvalidSelection("index_out_of_range", f"{indices} with {num_actions} calls")
        if len(set(indices)) != len(indices):
            raise InvalidSelection("duplicate_index", str(indices))
        if indices != sorted(indices):
            raise InvalidSelection("unordered_indices", str(indices))
        kept = set(indices)
        for k in self.kept:
            for d in k.depends_on:
                if d not in kept or d >= k.index:
                    raise InvalidSelection("bad_dependency", f"call {k.index} depends on {d}")
        if len(indices) >= num_actions:
            raise InvalidSelection("no_redundancy")


def short_rationale(text: str, max_chars: int) -> str:
    """First sentence of the reasoning that preceded a call, capped at a word boundary."""
    text = normalize_rationale(text)
    match = re.search(r"(?<=[.!?])\s", text)
    if match:
        text = text[: match.start()]
    if len(text) > max_chars:
        text = text[:max_chars].rsplit(" ", 1)[0].rstrip(",;:") + "…"
    return text


MIN_VALUE_CHARS = 3  # shorter values ("1", "en") match anything by chance


def scalars(value: Any) -> list[str]:
    """The scalar values inside arguments or a parsed result, as text, long enough to be evidence."""
    if isinstance(value, dict):
        return [s for v in value.values() for s in scalars(v)]
    if isinstance(value, list):
        return [s for v in value for s in scalars(v)]
    if isinstance(value, bool) or value is None:
        return []
    text = str(value)
    return [text] if len(text) >= MIN_VALUE_CHARS else []


def result_values(result: str | None) -> list[str]:
    """The scalar values of a call's result when it is JSON (most tool results are); a free-text result
    gives none, because splitting prose into values would match by chance."""
    if not result:
        return []
    try:
        return scalars(orjson.loads(result))
    except orjson.JSONDecodeError:
        return []


def value_sources(actions: list[Action]) -> list[dict[str, tuple[int, ...]]]:
    """Per call, each of its argument values -> the earlier successful calls whose result holds it.
    The one value-matching rule behind dependency inference and the consistency checks."""
    out = []
    for j, action in enumerate(actions):
        sources = {}
        for value in scalars(action.arguments):
            found = tuple(
                i for i in range(j) if actions[i].result and not actions[i].failed and value in actions[i].result
            )
            if found:
                sources[value] = found
        out.append(sources)
    return out


def infer_dependencies(actions: list[Action]) -> list[tuple[int, ...]]:
    """Data-flow edges: call j depends on an earlier call i when one of j's argument values appears
    in i's result. A heuristic, but a conservative one: it only links calls through values that
    actually travelled from a result into arguments."""
    return [tuple(sorted({i for found in sources.values() for i in found})) for sources in value_sources(actions)]


def original_plan(trajectory: Trajectory, rationale_max_chars: int) -> Plan:
    """The redundant plan as the large model executed it: every call, in order."""
    deps = infer_dependencies(trajectory.actions)
    return Plan(
        steps=[
            PlanStep(
                tool=a.tool,
                arguments=a.arguments,
                rationale=short_rationale(a.rationale, rationale_max_chars),
                depends_on=deps[i],
            )
            for i, a in enumerate(trajectory.actions)
        ]
    )


def selected_plan(trajectory: Trajectory, selection: Selection) -> Plan:
    """The efficient plan: the kept original calls, dependencies renumbered to plan positions. A step's
    dependencies are the synthesizer's edges plus the data-flow edges among kept calls, so a plan
    never hides an ordering the trajectory's values impose."""
    position = {k.index: p for p, k in enumerate(selection.kept)}
    flow = infer_dependencies(trajectory.actions)
    return Plan(
        steps=[
            PlanStep(
                tool=trajectory.actions[k.index].tool,
                arguments=trajectory.actions[k.index].arguments,
                rationale=k.rationale,
                depends_on=sorted({position[d] for d in (*k.depends_on, *flow[k.index]) if d in position}),
            )
            for k in selection.kept
        ]
    )
