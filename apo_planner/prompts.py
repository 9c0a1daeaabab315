"""Prompt formats shared by dataset building (training) and the planner at inference.

The planner must see at inference exactly what it saw in training, so both sides call
`planner_prompt` and `plan_completion`; nothing else formats planner messages. A later turn of a
conversation carries the earlier turns as context, reduced by `context_messages` on both sides.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from apo_planner.plan import Plan
from apo_planner.reasoning import visible_text

# How a plan reaches an executor: the text put before its first turn (`eval.injection.template` overrides it).
DEFAULT_INJECTION_TEMPLATE = Path(__file__).parent / "templates" / "plan_injection.jinja"

PLANNER_SYSTEM_PROMPT = (
    "You are a planner for a tool-calling assistant. Given the user's request and the available tools, "
    "write the shortest sequence of tool calls that answers it: no duplicate calls, no calls whose result "
    "is not needed. Write one numbered line per call, `N. tool_name({json arguments})`, followed by "
    "` after K` when it needs the result of step K, and an indented `why:` line giving the reason."
)


def content_text(content: Any) -> Any:
    """A message's content parts (`[{"type": "text", "text": ...}, ...]`) joined into one string, the way
    every reader and the planner see them; any other content is returned as it is."""
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return content


def context_messages(messages: Iterable[Mapping[str, Any]] | None) -> list[dict[str, str]]:
    """Earlier turns as the planner sees them: what the user said and what the assistant answered in
    words. Tool calls, tool results, system prompts and `<think>` reasoning are left out: the plan is
    for the last request, and a planner must not depend on how an executor happened to reason.
    Idempotent, so training (builders) and inference (the planner) can both apply it."""
    out: list[dict[str, str]] = []
    for m in messages or ():
        role, content = m.get("role"), content_text(m.get("content"))
        if (
            role not in ("user", "assistant")
            or not isinstance(content, str)
            or (role == "assistant" and m.get("tool_calls"))
        ):
            continue
        text = visible_text(content) if role == "assistant" else content.strip()
        if text:
            out.append({"role": role, "content": text})
    return out


def planner_prompt(query: str, context: Iterable[Mapping[str, Any]] | None = None) -> list[dict[str, str]]:
    """Conversational prompt for the planner: the system prompt, the earlier turns (if any, through
    `context_messages`) and the request. The tool catalog travels separately as `tools` so chat
    templates render it the way the base model was trained to read tools. Without context the
    prompt is exactly the single-turn one."""
    return [
        {"role": "system", "content": PLANNER_SYSTEM_PROMPT},
        *context_messages(context),
        {"role": "user", "content": query},
    ]


def plan_completion(plan: Plan) -> list[dict[str, str]]:
    """The assistant turn that a plan becomes in `chosen` / `rejected`."""
    return [{"role": "assistant", "content": plan.to_text()}]


def dump_tools(tools: list[dict[str, Any]]) -> str:
    """Tool catalogs are stored as JSON strings: their parameter schemas differ per row, which Arrow
    cannot hold as one struct type (TRL's DPOTrainer json-decodes a string `tools` column)."""
    return json.dumps(tools, ensure_ascii=False)
