"""Prompt formats shared by dataset building (training) and the planner at inference.

The planner must see at inference exactly what it saw in training, so both sides call
`planner_prompt` and `plan_completion`; nothing else formats planner messages.
"""

from __future__ import annotations

import json
from typing import Any

from apo_planner.plan import Plan

PLANNER_SYSTEM_PROMPT = (
    "You are a planner for a tool-calling assistant. Given the user's request and the available tools, "
    "write the shortest sequence of tool calls that answers it: no duplicate calls, no calls whose result "
    "is not needed. Write one numbered line per call, `N. tool_name({json arguments})`, followed by "
    "` after K` when it needs the result of step K, and an indented `why:` line giving the reason."
)


def planner_prompt(query: str) -> list[dict[str, str]]:
    """Conversational prompt for the planner; the tool catalog travels separately as `tools`
    so chat templates render it the way the base model was trained to read tools."""
    return [
        {"role": "system", "content": PLANNER_SYSTEM_PROMPT},
        {"role": "user", "content": query},
    ]


def plan_completion(plan: Plan) -> list[dict[str, str]]:
    """The assistant turn that a plan becomes in `chosen` / `rejected`."""
    return [{"role": "assistant", "content": plan.to_text()}]


def dump_tools(tools: list[dict[str, Any]]) -> str:
    """Tool catalogs are stored as JSON strings: their parameter schemas differ per row, which Arrow
    cannot hold as one struct type (TRL's DPOTrainer json-decodes a string `tools` column)."""
    return json.dumps(tools, ensure_ascii=False)
