"""Tool catalogs in one shape: what readers, the planner and the BFCL handler all agree on.

Logs, BFCL entries and users' `tools.json` files spell tools either OpenAI style
(`{"type": "function", "function": {...}}`) or as bare functions, with parameters as a dict or a
JSON string; everything downstream sees the OpenAI shape.
"""

from __future__ import annotations

import json
from typing import Any


def normalize_tool(tool: Any) -> dict[str, Any] | None:
    """OpenAI tool shape from either that or a bare function; None when it names no function."""
    if not isinstance(tool, dict):
        return None
    function = tool.get("function") if isinstance(tool.get("function"), dict) else tool
    name = function.get("name")
    if not isinstance(name, str) or not name:
        return None
    parameters = function.get("parameters")
    if isinstance(parameters, str):
        try:
            parameters = json.loads(parameters)
        except ValueError:
            parameters = None
    return {
        "type": "function",
        "function": {
            "name": name,
            "description": function.get("description") or "",
            "parameters": parameters if isinstance(parameters, dict) else {"type": "object", "properties": {}},
        },
    }


def normalize_tools(raw: Any) -> list[dict[str, Any]]:
    """A catalog (a list, or one tool) in the OpenAI shape; entries that name no function are left out."""
    items = raw if isinstance(raw, list) else [raw]
    return [t for t in (normalize_tool(t) for t in items) if t is not None]


def tool_names(tools: list[dict[str, Any]]) -> set[str]:
    return {t.get("function", t).get("name") for t in tools}
