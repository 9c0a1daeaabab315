"""Action abstraction and filtering: a `Conversation` becomes a `Trajectory` or a named drop.

A trajectory is what the first user request led to: the query, the catalog, every call in
order (tool, decoded arguments, the reasoning that preceded it, its result, whether it failed)
and the final answer. Records that cannot teach a planner anything are dropped with a reason.
"""

from __future__ import annotations

from typing import Any

import orjson

from apo_planner.plan import is_valid_tool_name
from builders.config import FilterConfig
from builders.records import Action, Conversation, DropReason, Message, RecordDropped, Trajectory
from builders.validation import arguments_match_schema

_ERROR_KEYS = ("error", "errors", "exception", "error_message")


def result_failed(result: str | None, config: FilterConfig) -> bool:
    """A tool result reports failure: an error key or status in a JSON object, else a failure pattern."""
    if result is None:
        return False
    stripped = result.strip()
    if stripped.startswith("{"):
        try:
            obj = orjson.loads(stripped)
        except orjson.JSONDecodeError:
            obj = None
        if isinstance(obj, dict):
            status = obj.get("status")
            return (
                any(obj.get(k) for k in _ERROR_KEYS)
                or (isinstance(status, str) and status.lower() in ("error", "failed", "failure"))
                or obj.get("success") is False
            )
    return any(p.search(stripped) for p in config.compiled_failure_patterns)


def _decode_arguments(raw: Any) -> dict[str, Any]:
    if raw is None or raw == "":
        return {}
    if isinstance(raw, (str, bytes)):
        try:
            raw = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise RecordDropped(DropReason.MALFORMED_ARGUMENTS, f"arguments are not JSON: {exc}") from None
        if isinstance(raw, str):  # double-encoded, common in exports
            try:
                raw = orjson.loads(raw)
            except orjson.JSONDecodeError:
                pass
    if not isinstance(raw, dict):
        raise RecordDropped(DropReason.MALFORMED_ARGUMENTS, f"arguments are a {type(raw).__name__}, not an object")
    return raw


def abstract(conv: Conversation, config: FilterConfig) -> Trajectory:
    """Turn one conversation into a trajectory, or raise `RecordDropped` with the reason."""
    messages = conv.messages
    first_user = next((i for i, m in enumerate(messages) if m.role == "user"), None)
    query = messages[first_user].content.strip() if first_user is not None else ""
    if not query:
        raise RecordDropped(DropReason.EMPTY_QUERY)

    turn: list[Message] = []
    for m in messages[first_user + 1 :]:
        if m.role == "user":
            if config.multi_turn == "drop":
                raise RecordDropped(DropReason.MULTI_TURN)
            break
        turn.append(m)

    catalog = {t["function"]["name"]: t["function"]["parameters"] for t in conv.tools}
    actions: list[Action] = []
    pending: dict[str, int] = {}  # tool_call_id -> action index awaiting its result
    unanswered: list[int] = []  # action indices in call order without a result yet
    final_answer = ""
    for m in turn:
        if m.role == "assistant":
            if m.tool_calls:
                rationale = " ".join(p for p in (m.reasoning, m.content) if p)
                for call in m.tool_calls:
                    actions.append(_action(call.name, call.arguments, rationale, catalog, config))
                    if call.id:
                        pending[call.id] = len(actions) - 1
                    unanswered.append(len(actions) - 1)
                final_answer = ""
            elif m.content:
                final_answer = m.content
        elif m.role == "tool":
            index = pending.pop(m.tool_call_id, None) if m.tool_call_id else None
            if index is None and unanswered:
                index = unanswered[0]
            if index is not None:
                if index in unanswered:
                    unanswered.remove(index)
                actions[index].result = m.content
                actions[index].failed = result_failed(m.content, config)

    if not actions:
        raise RecordDropped(DropReason.NO_TOOL_CALL)
    final_answer = final_answer.strip()
    if not final_answer:
        raise RecordDropped(DropReason.NO_FINAL_ANSWER)
    trajectory = Trajectory(
        source_row_id=conv.source_row_id,
        query=query,
        tools=conv.tools,
        actions=actions,
        final_answer=final_answer,
        generator=conv.generator,
        license=conv.license,
        category=conv.category,
    )
    size = len(query) + len(final_answer) + sum(len(a.rationale) + len(a.result or "") for a in actions)
    if size > config.max_chars:
        raise RecordDropped(DropReason.TOO_LONG, f"{size} characters > max_chars={config.max_chars}")
    return trajectory


def _action(name: str, raw_arguments: Any, rationale: str, catalog: dict[str, Any], config: FilterConfig) -> Action:
    if not name:
        raise RecordDropped(DropReason.MALFORMED_ARGUMENTS, "a tool call has no function name")
    if not is_valid_tool_name(name):
        raise RecordDropped(DropReason.INVALID_TOOL_NAME, f"{name[:60]!r} cannot be written in a plan")
    arguments = _decode_arguments(raw_arguments)
    if name not in catalog:
        raise RecordDropped(DropReason.UNKNOWN_TOOL, f"{name!r} is not in the tool catalog")
    if config.check_schemas and not arguments_match_schema(arguments, catalog[name]):
        raise RecordDropped(DropReason.SCHEMA_VIOLATION, f"arguments of {name!r} violate its parameter schema")
    return Action(tool=name, arguments=arguments, rationale=rationale, result=None, failed=False)
