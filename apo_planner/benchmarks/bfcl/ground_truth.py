"""bfcl-eval's ground truth as executor output: the correctness anchor of the scoring path.

`ground_truth_output` writes a possible answer the way a Qwen FC executor would answer
(`<tool_call>\\n{json}\\n</tool_call>` blocks), so feeding it through the same decode-and-check
path as real outputs must score (near) 100% and count exactly the ground-truth calls. The oracle arm's
plan carries the same calls (`ground_truth_calls`), and the plan-only arm writes a planner's plan the same
way (`calls_output`).
Optional parameters (those whose options include "") are left out; otherwise the first option
is used. Java values are written as Java source, the form bfcl-eval's Java checker parses.
"""

from __future__ import annotations

import json
from typing import Any


def _pick(options: Any) -> tuple[Any, bool]:
    if not isinstance(options, list):
        return options, True
    if not options or "" in options:
        return None, False
    return options[0], True


def _unwrap(value: Any) -> Any:
    if isinstance(value, dict):
        out = {}
        for key, options in value.items():
            picked, present = _pick(options)
            if present:
                out[key] = _unwrap(picked)
        return out
    if isinstance(value, list):
        return [_unwrap(v) for v in value]
    return value


def _java_literal(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    return str(value)


def _java_scalar(value: Any, java_type: str) -> str:
    if java_type == "boolean":
        return "true" if value else "false"
    if java_type == "long":
        return f"{value}L"
    if java_type == "float":
        return f"{value}f"
    return str(value)


def _java_value(value: Any, spec: dict[str, Any]) -> str:
    java_type = spec.get("type", "any")
    if isinstance(value, str):
        return value  # already Java source or a plain string
    item_type = spec.get("items", {}).get("type", "any")
    if java_type == "Array":
        element = {"integer": "int"}.get(item_type, item_type if item_type != "any" else "Object")
        return f"new {element}[]{{{', '.join(_java_scalar(v, item_type) for v in value)}}}"
    if java_type == "ArrayList":
        fmt = _java_literal if item_type in ("String", "any") else (lambda v: _java_scalar(v, item_type))
        return f"new ArrayList<>(Arrays.asList({', '.join(fmt(v) for v in value)}))"
    if java_type == "HashMap":
        puts = []
        for key, options in value.items():
            picked, present = _pick(options) if isinstance(options, list) else (options, True)
            if present:
                puts.append(f'put("{key}", {json.dumps(picked)});')
        return "new HashMap<String, Object>() {{ " + " ".join(puts) + " }}"
    return _java_scalar(value, java_type)


def ground_truth_calls(
    ground_truth: list[dict[str, Any]], functions: list[dict[str, Any]], java: bool
) -> list[tuple[str, dict[str, Any]]]:
    """(function name, arguments) of each ground-truth call, as the anchor writes them: what the oracle arm's
    plan carries, so an executor that follows it exactly answers exactly the anchor's output."""
    docs = {f["name"]: f for f in functions}
    calls = []
    for call in ground_truth:
        ((name, params),) = call.items()
        required = set(docs.get(name, {}).get("parameters", {}).get("required", []))
        arguments = {}
        for param, options in params.items():
            value, present = _pick(options)
            if not present:
                if param in required and isinstance(options, list) and any(o != "" for o in options):
                    value = next(o for o in options if o != "")
                else:
                    continue
            arguments[param] = (
                _java_value(value, docs[name]["parameters"]["properties"][param]) if java else _unwrap(value)
            )
        calls.append((name, arguments))
    return calls


def java_arguments(name: str, arguments: dict[str, Any], functions: list[dict[str, Any]]) -> dict[str, Any]:
    """A plan's JSON arguments for a Java function as the checker reads them (Java source strings), by the
    function's own parameter types; strings are taken as already written in Java."""
    properties = next((f for f in functions if f["name"] == name), {}).get("parameters", {}).get("properties", {})
    return {
        k: v if isinstance(v, str) or k not in properties else _java_value(v, properties[k])
        for k, v in arguments.items()
    }


def calls_output(calls: list[tuple[str, dict[str, Any]]]) -> str:
    """Calls written the way a Qwen FC executor answers (`<tool_call>` blocks)."""
    return "\n".join(
        "<tool_call>\n" + json.dumps({"name": name, "arguments": arguments}) + "\n</tool_call>"
        for name, arguments in calls
    )


def ground_truth_output(ground_truth: list[dict[str, Any]], functions: list[dict[str, Any]], java: bool) -> str:
    return calls_output(ground_truth_calls(ground_truth, functions, java))
