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

from apo_planner.reasoning import visible_text

# Tool names may carry dots and dashes (BFCL uses `math.factorial`), never whitespace or the
# parentheses that delimit arguments in the text form.
TOOL_NAME_PATTERN = r"^[^\s(){}\[\]]+$"
_TOOL_NAME_RE = re.compile(TOOL_NAME_PATTERN)
_STEP_HEAD_RE = re.compile(r"^(\d+)\. ([^\s(){}\[\]]+)\(")
_AFTER_RE = re.compile(r"^ after (\d+(?:, \d+)*)$")
_WHY_PREFIX = "   why:"


class PlanParseError(ValueError):
    """Text that is not a canonical plan; carries the offending line number for diagnostics."""


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def normalize_rationale(text: str) -> str:
    """Collapse whitespace and control characters (which grammar-constrained decoders can emit
    inside strings) so a rationale fits the one-line text form."""
    return " ".join(_CONTROL.sub(" ", text).split())


class PlanStep(BaseModel):
    """One tool call of a plan."""

    model_config = ConfigDict(frozen=True)

    tool: str = Field(pattern=TOOL_NAME_PATTERN, max_length=256)
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
                "arguments": _dump_arguments(s.arguments),
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


def _dump_arguments(arguments: dict[str, Any]) -> str:
    return json.dumps(arguments, ensure_ascii=False, separators=(", ", ": "))


def render_plan(plan: Plan) -> str:
    """Canonical text form, one call per numbered line followed by its rationale::

        1. get_weather({"city": "Paris"})
           why: the answer needs today's weather
        2. convert_units({"value": 21, "to": "F"}) after 1
           why: the user asked in Fahrenheit

    Arguments are JSON so any value survives; step numbers are 1-based in text, 0-based in `depends_on`.
    """
    lines = []
    for index, step in enumerate(plan.steps, start=1):
        head = f"{index}. {step.tool}({_dump_arguments(step.arguments)})"
        if step.depends_on:
            head += " after " + ", ".join(str(d + 1) for d in step.depends_on)
        lines.append(head)
        lines.append(f"{_WHY_PREFIX} {step.rationale}".rstrip())
    return "\n".join(lines)


def parse_plan(text: str) -> Plan:
    """Parse the canonical text form back into a Plan.

    Tolerates what models wrap around it (a reasoning block, code fences, blank lines, trailing
    spaces) but nothing inside it: a step that does not parse raises PlanParseError.
    """
    text = _strip_wrappers(text)
    # Split on "\n" only: str.splitlines() also breaks on U+2028 and friends, which JSON leaves raw.
    lines = [line.rstrip() for line in text.split("\n")]
    steps: list[PlanStep] = []
    decoder = json.JSONDecoder()
    i = 0
    while i < len(lines):
        line = lines[i]
        if not line.strip():
            i += 1
            continue
        match = _STEP_HEAD_RE.match(line)
        if not match:
            raise PlanParseError(f"line {i + 1}: expected 'N. tool({{...}})', got {line[:80]!r}")
        number, tool = int(match.group(1)), match.group(2)
        if number != len(steps) + 1:
            raise PlanParseError(f"line {i + 1}: step numbered {number}, expected {len(steps) + 1}")
        try:
            arguments, end = decoder.raw_decode(line, match.end())
        except json.JSONDecodeError as exc:
            raise PlanParseError(f"line {i + 1}: arguments are not JSON: {exc.msg}") from exc
        if not isinstance(arguments, dict):
            raise PlanParseError(f"line {i + 1}: arguments must be a JSON object")
        rest = line[end:]
        if not rest.startswith(")"):
            raise PlanParseError(f"line {i + 1}: expected ')' after the arguments")
        rest = rest[1:]
        depends_on: list[int] = []
        if rest:
            after = _AFTER_RE.match(rest)
            if not after:
                raise PlanParseError(f"line {i + 1}: unexpected text after the call: {rest[:40]!r}")
            depends_on = [int(n) - 1 for n in after.group(1).split(", ")]
        rationale = ""
        if i + 1 < len(lines) and lines[i + 1].lstrip().startswith("why:"):
            rationale = lines[i + 1].lstrip()[len("why:") :].strip()
            i += 1
        try:
            steps.append(PlanStep(tool=tool, arguments=arguments, rationale=rationale, depends_on=depends_on))
        except ValueError as exc:
            raise PlanParseError(f"line {i + 1}: {exc}") from exc
        i += 1
    if not steps:
        raise PlanParseError("no plan steps found")
    try:
        return Plan(steps=steps)
    except ValueError as exc:
        raise PlanParseError(str(exc)) from exc


_FENCE_RE = re.compile(r"^\s*```[\w-]*\n(.*?)\n```\s*$", re.DOTALL)


def _strip_wrappers(text: str) -> str:
    text = visible_text(text)
    fenced = _FENCE_RE.match(text)
    return fenced.group(1) if fenced else text


def is_valid_tool_name(name: str) -> bool:
    return bool(name) and len(name) <= 256 and bool(_TOOL_NAME_RE.match(name))


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
