"""Scripted models with known answers (test support, never reachable from a recipe).

Random tiny models score 0 everywhere, so they cannot show that the statistics find what is there. These
doubles make every outcome a matter of construction:

- `ScriptedExecutor`: the `replies` of an `OpenAIStub` (`tests.support.loopback`) serving bfcl-eval's local
  handlers on /v1/completions. It answers with the calls of the plan it finds injected into its prompt (the
  text the injection template puts there), written as a Qwen FC executor writes calls; with no plan, with the
  answer configured for the entry's question, or else with a configured wrong call.
- `ScriptedPlanner`: the `replies` of an `OpenAIStub` serving the planner arm on /v1/chat/completions (the
  leaderboard handler's request: the query as the user message, the catalog as `tools`): a given plan for the
  queries it was given (say the ground truth for a chosen subset) and a wrong plan for every other.
  `planner_stub_sets` points a recipe's planner arm at such a stub.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from apo_planner.plan import Plan, PlanParseError, PlanStep, parse_plan
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


PLANNER_MODEL = "scripted/planner"  # the name a planner stub serves and the recipe's planner arm asks for


def planner_stub_sets(stub: Any, **extra: Any) -> dict[str, Any]:
    """`--set`s that make the eval stage's planner arm the (already running) planner `stub`."""
    return {
        "eval.planner.model": PLANNER_MODEL,
        "eval.planner.server.engine": "external",
        "eval.planner.server.base_url": stub.base_url,
        **extra,
    }


def planner_request(request: dict[str, Any]) -> tuple[str, list[dict[str, Any]]]:
    """(the query, the catalog) of the handler's plan request."""
    query = next((m["content"] for m in request.get("messages", []) if m.get("role") == "user"), "")
    return query, request.get("tools") or []


@dataclass
class ScriptedPlanner:
    """`replies(request, n)` for the planner's `OpenAIStub`: `plans[query]` for the queries it knows,
    `wrong(tools)` for every other."""

    plans: dict[str, Plan]
    wrong: Callable[[list[dict[str, Any]]], Plan] = wrong_plan
    asked: list[str] = field(default_factory=list)

    def __call__(self, request: dict[str, Any], n: int) -> tuple[int, str, float]:
        query, tools = planner_request(request)
        self.asked.append(query)
        plan = self.plans.get(query) or self.wrong(tools)
        return 200, plan.to_text(), 0.0


def terse_model(source: str | Path, output: str | Path) -> Path:
    """A copy of the tiny random model `source` whose every answer ends at once (its first token is EOS), for a
    stock server (`transformers serve`) that must answer bfcl-eval's requests quickly on CPU: bfcl asks for up
    to 4096 new tokens and a random model would write them all. A constant component in one hidden dimension
    (set in every embedding, never written by attention or MLP) reaches the final norm as the only nonzero
    one, and the untied head reads it into EOS alone."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(source, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(source)
    eos = tokenizer.eos_token_id
    with torch.no_grad():
        embeddings = model.get_input_embeddings().weight.clone()
        embeddings[:, 0] = 10.0
        model.get_input_embeddings().weight = torch.nn.Parameter(embeddings)
        for layer in model.model.layers:
            layer.self_attn.o_proj.weight[0, :] = 0.0
            layer.mlp.down_proj.weight[0, :] = 0.0
        model.model.norm.weight.zero_()
        model.model.norm.weight[0] = 1.0
        head = torch.zeros_like(embeddings)
        head[eos, 0] = 1.0
    model.config.tie_word_embeddings = False
    model.lm_head.weight = torch.nn.Parameter(head)
    output = Path(output)
    model.save_pretrained(output)
    tokenizer.save_pretrained(output)
    return output
