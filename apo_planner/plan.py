"""The plan schema every stage shares.

A plan is an ordered list of tool calls. Each step names a tool, its arguments, a one-line
rationale and the earlier steps it depends on (steps with no path between them may run in
parallel). The dataset stores plans structurally, prompts carry them as canonical text, and
constrained decoders use the JSON schema; all three forms live here so they cannot drift.
"""

from __future__ import annotations

import json
import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from apo_planner.portable.apo_planner_grammar import (
    MAX_TOOL_NAME_CHARS,
    TOOL_NAME_PATTERN,
    PlanParseError,
    dump_arguments,
    is_valid_tool_name,
    normalize_rationale,
    parse_plan_text,
    render_plan_text,
)
from apo_planner.reasoning import visible_text

__all__ = [
    "TOOL_NAME_PATTERN",
    "Plan",
    "PlanParseError",
    "PlanStep",
    "is_valid_tool_name",
    "normalize_rationale",
    "parse_plan",
    "plan_json_schema",
    "render_plan",
]


class PlanStep(BaseModel):
    """One tool call of a plan."""

    model_config = ConfigDict(frozen=True)

    tool: str = Field(pattern=TOOL_NAME_PATTERN, max_length=MAX_TOOL_NAME_CHARS)
    arguments: dict[str, Any] = Field(default_factory=dict)
    rationale: str = ""
    depends_on: tuple[int, ...] = ()

    @field_validator("rationale")
    @classmethod
    def _one_line(cls, value: str) -> str:
        return normalize_rationale(value)

    @field_validator("depends_on", mode="before")
    @classmethod
    def _sorted_unique(cls, value: Any) -> tuple[int, ...]:
        return tuple(sorted(set(value or ())))

    @field_validator("arguments")
    @classmethod
    def _json_only(cls, value: dict[str, Any]) -> dict[str, Any]:
        # Round-trip through JSON so tuples, NaN and other non-JSON values fail here, not at render time.
        try:
            return json.loads(json.dumps(value, ensure_ascii=False, allow_nan=False))
        except (TypeError, ValueError) as exc:
            raise ValueError(f"arguments must be JSON-serialisable: {exc}") from exc


class Plan(BaseModel):
    """An ordered, non-empty list of steps whose dependencies point strictly backwards (so acyclic)."""

    model_config = ConfigDict(frozen=True)

    steps: tuple[PlanStep, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _dependencies_point_backwards(self) -> Plan:
        for index, step in enumerate(self.steps):
            for dep in step.depends_on:
                if not 0 <= dep < index:
                    raise ValueError(f"step {index + 1} depends on step {dep + 1}, which is not an earlier step")
        return self

    def __len__(self) -> int:
        return len(self.steps)

    @property
    def tools(self) -> list[str]:
        return [step.tool for step in self.steps]

    def to_text(self) -> str:
        return render_plan(self)

    def to_records(self) -> list[dict[str, Any]]:
        """Arrow-friendly rows: arguments as a JSON string, since their shape differs per tool."""
        return [
            {
                "tool": s.tool,
                "arguments": dump_arguments(s.arguments),
                "rationale": s.rationale,
                "depends_on": list(s.depends_on),
            }
            for s in self.steps
        ]

    @classmethod
    def from_records(cls, records: list[dict[str, Any]]) -> Plan:
        steps = []
        for r in records:
            args = r.get("arguments") or {}
            steps.append(
                PlanStep(
                    tool=r["tool"],
                    arguments=json.loads(args) if isinstance(args, str) else args,
                    rationale=r.get("rationale") or "",
                    depends_on=r.get("depends_on") or (),
                )
            )
        return cls(steps=steps)


def render_plan(plan: Plan) -> str:
    """Canonical text form, one call per numbered line followed by its rationale::

        1. get_weather({"city": "Paris"})
           why: the answer needs today's weather
        2. convert_units({"value": 21, "to": "F"}) after 1
           why: the user asked in Fahrenheit

    Arguments are JSON so any value survives; step numbers are 1-based in text, 0-based in `depends_on`.
    The text form is `apo_planner.portable.apo_planner_grammar`'s, shared with the leaderboard handler.
    """
    return render_plan_text([step.model_dump() for step in plan.steps])


def parse_plan(text: str) -> Plan:
    """Parse the canonical text form back into a Plan.

    Tolerates what models wrap around it (a reasoning block, code fences, blank lines, trailing
    spaces) but nothing inside it: a step that does not parse raises PlanParseError.
    """
    steps = parse_plan_text(_strip_wrappers(text))
    try:
        return Plan(steps=[PlanStep(**step) for step in steps])
    except ValueError as exc:  # parse_plan_text checks what Plan does: kept so the two cannot drift
        raise PlanParseError(str(exc)) from exc


_FENCE_RE = re.compile(r"^\s*```[\w-]*\n(.*?)\n```\s*$", re.DOTALL)


def _strip_wrappers(text: str) -> str:
    text = visible_text(text)
    fenced = _FENCE_RE.match(text)
    return fenced.group(1) if fenced else text


def plan_json_schema() -> dict[str, Any]:
    """JSON schema of a plan for constrained decoding (xgrammar, vLLM structured outputs).

    Hand-written rather than pydantic's export so it stays flat (no `$defs`) and uses only the
    keywords grammar compilers support. Backward-pointing dependencies cannot be expressed in JSON
    schema; `Plan` validation checks them after decoding.
    """
    return {
        "type": "object",
        "properties": {
            "steps": {
                "type": "array",
                "minItems": 1,
                "items": {
                    "type": "object",
                    "properties": {
                        "tool": {"type": "string", "pattern": TOOL_NAME_PATTERN},
                        "arguments": {"type": "object"},
                        "rationale": {"type": "string"},
                        "depends_on": {"type": "array", "items": {"type": "integer", "minimum": 0}},
                    },
                    "required": ["tool", "arguments", "rationale", "depends_on"],
                    "additionalProperties": False,
                },
            }
        },
        "required": ["steps"],
        "additionalProperties": False,
    }
