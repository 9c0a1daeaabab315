"""Tool catalogs in one shape: what readers, the planner and the BFCL handler all agree on.

Logs, BFCL entries, MCP servers and users' `tools.json` files spell tools as OpenAI tools
(`{"type": "function", "function": {...}}`), bare or flat functions (`{name, description, parameters}`,
as the Responses API and OpenTelemetry's `gen_ai.tool.definitions` have them), Anthropic tools
(`input_schema`) or MCP tools (`inputSchema`, from a `tools/list` result), with the schema as a dict or a
JSON string. Everything downstream sees the OpenAI shape. MCP's `readOnlyHint`/`destructiveHint`
annotations are kept beside the function (`annotations`), where the build's rules can tell read-only
calls from state-changing ones.
"""

from __future__ import annotations

import json
from typing import Any

_SCHEMA_KEYS = ("parameters", "inputSchema", "input_schema")  # OpenAI/flat, MCP, Anthropic
_CALLABLE_TYPES = (None, "function", "custom")  # other types are server-side tools (web search, ...)
HINTS = ("readOnlyHint", "destructiveHint")  # the MCP annotations a catalog keeps


def _schema(function: dict[str, Any]) -> Any:
    for key in _SCHEMA_KEYS:
        value = function.get(key)
        if value is not None:
            if isinstance(value, str):
                try:
                    value = json.loads(value)
                except ValueError:
                    value = None
            return value
    return None


def normalize_tool(tool: Any) -> dict[str, Any] | None:
    """OpenAI tool shape from any of the shapes above; None when it names no function a model can call."""
    if not isinstance(tool, dict):
        return None
    function = tool.get("function")
    if function.__class__ is not dict and not isinstance(function, dict):
        function = tool
    name = function.get("name")
    if not name or name.__class__ is not str or tool.get("type") not in _CALLABLE_TYPES:
        return None
    parameters = function.get("parameters")
    if parameters.__class__ is not dict:
        parameters = _schema(function)
    out: dict[str, Any] = {
        "type": "function",
        "function": {
            "name": name,
            "description": function.get("description") or "",
            "parameters": parameters if isinstance(parameters, dict) else {"type": "object", "properties": {}},
        },
    }
    annotations = tool.get("annotations") or function.get("annotations")
    if annotations and isinstance(annotations, dict):
        hints = {k: annotations[k] for k in HINTS if isinstance(annotations.get(k), bool)}
        if hints:
            out["annotations"] = hints
    return out


def catalog_items(raw: Any) -> list[Any]:
    """The tool definitions of a catalog: a list, one tool, an MCP `tools/list` result (`{"tools": [...]}`)
    or the JSON-RPC response carrying one (`{"result": {"tools": [...]}}`)."""
    if isinstance(raw, dict):
        if isinstance(raw.get("result"), dict) and isinstance(raw["result"].get("tools"), list):
            raw = raw["result"]
        if isinstance(raw.get("tools"), list) and "name" not in raw:
            return raw["tools"]
        return [raw]
    return raw if isinstance(raw, list) else [raw]


def normalize_tools(raw: Any) -> list[dict[str, Any]]:
    """A catalog in the OpenAI shape; entries that name no callable function are left out."""
    return [t for t in (normalize_tool(t) for t in catalog_items(raw)) if t is not None]


def tool_names(tools: list[dict[str, Any]]) -> set[str]:
    return {t.get("function", t).get("name") for t in tools}


def read_only_hints(tools: list[dict[str, Any]]) -> dict[str, bool]:
    """Per tool name, what its MCP annotations say: True read-only, False state-changing; tools without
    annotations are absent (their names decide)."""
    out = {}
    for tool in tools:
        hints = tool.get("annotations")
        if not hints:
            continue
        name = tool["function"]["name"]
        if hints.get("readOnlyHint") is True:
            out[name] = True
        elif hints.get("readOnlyHint") is False or hints.get("destructiveHint") is True:
            out[name] = False
    return out
