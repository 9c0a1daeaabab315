"""Scripted models with known answers (test support, never reachable from a recipe).

Random tiny models score 0 everywhere, so they cannot show that the statistics find what is there. These
doubles make every outcome a matter of construction:

- `ScriptedExecutor`: the `replies` of an `OpenAIStub` (`tests.support.loopback`) serving bfcl-eval's local
  handlers on /v1/completions. It answers with the calls of the plan it finds injected into its prompt (the
  text the injection template puts there), written as a Qwen FC executor writes calls; with no plan, with the
  answer configured for the entry's question, or else with a configured wrong call.
- `ScriptedPlanner`: a planner (`plan_with_details`, as `apo_planner.planner.Planner`) that returns a given plan
  for the queries it was given (say the ground truth for a chosen subset) and a wrong plan for every other.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from apo_planner.plan import Plan, PlanParseError, PlanStep, parse_plan
from apo_planner.planner import PlanResult
from apo_planner.prompts import DEFAULT_INJECTION_TEMPLATE
from apo_planner.templating import environment

WRONG_CALL = '<tool_call>\n{"name": "scripted_wrong_call", "arguments": {}}\n</tool_call>'
_SLOT = "\x00PLAN\x00"


def fc_answer(calls: list[tuple[str, dict[str, Any]]]) -> str:
    """Calls the way a Qwen FC executor answers them: one `<tool_call>` block of JSON per call."""
    return "\n".join(
        "<tool_call>\n" + json.dumps({"name": name, "arguments": arguments}) + "\n</tool_call>"
        for name, arguments in calls
    )


def injected_plan(prompt: str, template: str | None = None) -> Plan | None:
    """The plan the injection template put into `prompt` (the text after the template's lead-in, up to the first
    blank line), or None when there is none."""
    text = template or DEFAULT_INJECTION_TEMPLATE.read_text(encoding="utf-8")
    lead = environment().from_string(text).render(plan=_SLOT).strip().split(_SLOT)[0]
    start = prompt.find(lead)
    if start < 0:
        return None
    block = prompt[start + len(lead) :].split("\n\n", 1)[0]
    try:
        return parse_plan(block)
    except PlanParseError:
        return None


@dataclass
class ScriptedExecutor:
    """`replies(request, n)` for `OpenAIStub`: the injected plan's calls, else `alone[question]` for the longest
    question found in the prompt, else `wrong`."""

    alone: dict[str, str] = field(default_factory=dict)
    wrong: str = WRONG_CALL
    template: str | None = None
    seen: list[str] = field(default_factory=list)  # what each answer came from: "plan", "alone" or "wrong"

    def __call__(self, request: dict[str, Any], n: int) -> tuple[int, str, float]:
        prompt = request.get("prompt")
        if not isinstance(prompt, str):  # chat completions: the messages' text
            prompt = "\n\n".join(str(m.get("content", "")) for m in request.get("messages", []))
        plan = injected_plan(prompt, self.template)
        if plan is not None:
            self.seen.append("plan")
            return 200, fc_answer([(s.tool, dict(s.arguments)) for s in plan.steps]), 0.0
        for question in sorted(self.alone, key=len, reverse=True):
            if question and question in prompt:
                self.seen.append("alone")
                return 200, self.alone[question], 0.0
        self.seen.append("wrong")
        return 200, self.wrong, 0.0


def wrong_plan(tools: list[dict[str, Any]]) -> Plan:
    """A plan that no checker accepts: the catalog's first tool with an argument it does not have."""
    name = tools[0]["function"]["name"] if tools else "scripted_wrong_call"
    return Plan(steps=[PlanStep(tool=name, arguments={"scripted_wrong_argument": 1}, rationale="scripted wrong")])


@dataclass
class ScriptedPlanner:
    """`plans[query]` for the queries it knows, `wrong(tools)` for every other (`Planner.plan_with_details`)."""

    plans: dict[str, Plan]
    wrong: Callable[[list[dict[str, Any]]], Plan] = wrong_plan
    asked: list[str] = field(default_factory=list)

    def plan_with_details(
        self, query: str, tools: list[dict[str, Any]], context: list[dict[str, Any]] | None = None
    ) -> PlanResult:
        self.asked.append(query)
        plan = self.plans.get(query) or self.wrong(tools)
        return PlanResult(plan, plan.to_text(), None, 7, 3, 0.01)
