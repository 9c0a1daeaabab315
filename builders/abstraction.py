"""Action abstraction and filtering: a `Conversation` becomes trajectories or named drops.

A trajectory is what one user turn led to: the request, the catalog, the earlier turns as
context, every call in order (tool, decoded arguments, the reasoning that preceded it, its result,
whether it failed) and the final answer. `filters.multi_turn` says which turns count: `each`
(every user turn that led to tool calls), `first` (only the first user message) or `drop`
(records with more than one user message are skipped). Turns that cannot teach a planner anything
are dropped with a reason; their lengths are measured either way, so the build can report what
its length filter removed.

Results pair with their calls by id where the log has ids (`tool_call_id`, `tool_use_id`, `call_id`), and
by order where it has none (Nemotron). A result whose id matches no call of its turn is counted
(`orphan_result`) and attached to nothing; a call no result answers keeps `result: None` and is counted
(`no_result`). Neither shifts the pairing of the other calls.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from apo_planner.builders.config import FilterConfig
from apo_planner.builders.records import Action, Trajectory
from apo_planner.builders.validation import schema_validator
from apo_planner.formats.records import Conversation, DropReason, Message, RecordDropped
from apo_planner.plan import is_valid_tool_name
from apo_planner.prompts import context_messages

BY_ID, BY_ORDER, ORPHAN_RESULT, NO_RESULT = "by_id", "by_order", "orphan_result", "no_result"
PAIRING = (BY_ID, BY_ORDER, ORPHAN_RESULT, NO_RESULT)  # what stats.json's `pairing` counts


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
        if obj.__class__ is dict:
            get = obj.get
            if get("error") or get("errors") or get("exception") or get("error_message"):  # error keys
                return True
            status = get("status")
            return (isinstance(status, str) and status.lower() in ("error", "failed", "failure")) or (
                get("success") is False
            )
    for pattern in config.compiled_failure_patterns:
        if pattern.search(stripped):
            return True
    return False


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


@dataclass(slots=True)
class Turn:
    """One user turn's outcome: a trajectory or the reason it cannot teach, with what was measured
    before the verdict (`chars`: what `max_chars` compares; one rationale length per assistant
    message that made calls)."""

    trajectory: Trajectory | None = None
    drop: RecordDropped | None = None
    chars: int | None = None
    rationale_chars: list[int] = field(default_factory=list)
    pairing: list[str] = field(default_factory=list)  # one PAIRING name per result or unanswered call


def _spans(messages: list[Message]) -> list[tuple[int, list[Message]]]:
    """(index of each user message, the messages up to the next one)."""
    users = [i for i, m in enumerate(messages) if m.role == "user"]
    return [(u, messages[u + 1 : nxt]) for u, nxt in zip(users, [*users[1:], len(messages)], strict=True)]


def _calls(span: list[Message]) -> bool:
    for m in span:
        if m.tool_calls and m.role == "assistant":
            return True
    return False


def turns(conv: Conversation, config: FilterConfig) -> list[Turn]:
    """Every trajectory the record holds under `config.multi_turn`, each kept or dropped with its reason;
    raises `RecordDropped` when the record as a whole has none to offer."""
    spans = list(enumerate(_spans(conv.messages)))[conv.history_turns :]  # (turn index, (user, messages))
    if not spans or not any(conv.messages[u].content.strip() for _, (u, _) in spans):
        raise RecordDropped(DropReason.EMPTY_QUERY)
    if config.multi_turn == "drop" and len(spans) > 1:
        raise RecordDropped(DropReason.MULTI_TURN)
    if config.multi_turn != "each":
        spans = spans[:1]
        if not conv.messages[spans[0][1][0]].content.strip():
            raise RecordDropped(DropReason.EMPTY_QUERY)
    chosen = [(n, u, span) for n, (u, span) in spans if _calls(span)]
    if not chosen:
        raise RecordDropped(DropReason.NO_TOOL_CALL)
    catalog = _Catalog(conv.tools, config.check_schemas)
    out = []
    for n, u, span in chosen:
        turn = Turn()
        try:
            turn.trajectory = _trajectory(conv, u, span, n, config, turn, catalog)
        except RecordDropped as drop:
            turn.drop = drop
        out.append(turn)
    return out


class _Catalog:
    """A conversation's tools by name, each schema's validator looked up once per conversation."""

    __slots__ = ("parameters", "validators", "check")

    def __init__(self, tools: list[dict[str, Any]], check: bool) -> None:
        self.parameters = {t["function"]["name"]: t["function"]["parameters"] for t in tools}
        self.validators: dict[str, Any] = {}
        self.check = check

    def valid(self, name: str, arguments: dict[str, Any]) -> bool:
        validator = self.validators.get(name)
        if validator is None:
            validator = self.validators[name] = schema_validator(self.parameters[name])
        return validator.is_valid(arguments)


def abstract(conv: Conversation, config: FilterConfig) -> Trajectory:
    """The record's first trajectory, or `RecordDropped` with the reason (single-turn records and tests)."""
    first = turns(conv, config)[0]
    if first.drop is not None:
        raise first.drop
    assert first.trajectory is not None
    return first.trajectory


def _trajectory(
    conv: Conversation,
    user: int,
    span: list[Message],
    turn_index: int,
    config: FilterConfig,
    turn: Turn,
    catalog: _Catalog,
) -> Trajectory:
    """One user turn -> a trajectory; the lengths it measures land in `turn` even when it is dropped."""
    query = conv.messages[user].content.strip()
    if not query:
        raise RecordDropped(DropReason.EMPTY_QUERY, f"user turn {turn_index} is empty")
    context = (
        context_messages(
            {"role": m.role, "content": m.content, "tool_calls": m.tool_calls} for m in conv.messages[:user]
        )
        if user
        else []
    )
    actions: list[Action] = []
    pending: dict[str, list[int]] = {}  # call id -> indices of the actions with that id still awaiting a result
    unanswered: list[int] = []  # action indices in call order without a result yet
    pairing = turn.pairing
    final_answer = ""
    for m in span:
        role = m.role
        if role == "assistant":
            if m.tool_calls:
                reasoning, content = m.reasoning, m.content
                rationale = f"{reasoning} {content}" if reasoning and content else reasoning or content
                turn.rationale_chars.append(len(rationale))  # once per message, however many calls share it
                for call in m.tool_calls:
                    actions.append(_action(call.name, call.arguments, rationale, catalog, config))
                    if call.id:
                        pending.setdefault(call.id, []).append(len(actions) - 1)
                    unanswered.append(len(actions) - 1)
                final_answer = ""
            elif m.content:
                final_answer = m.content
        elif role == "tool":
            if m.tool_call_id:  # the log says which call this answers: that one, or none
                # (a call an id-less result already took, in a log that mixes both, is no longer waiting)
                waiting = [i for i in pending.get(m.tool_call_id, []) if i in unanswered]
                index = waiting[0] if waiting else None
                if index is not None:
                    pending[m.tool_call_id].remove(index)
                how = BY_ID
            else:  # no id (Nemotron): the earliest call still awaiting one
                index = unanswered[0] if unanswered else None
                how = BY_ORDER
            if index is None:
                pairing.append(ORPHAN_RESULT)
                continue
            pairing.append(how)
            unanswered.remove(index)
            action = actions[index]
            action.result = m.content
            action.failed = m.failed or result_failed(m.content, config)
    pairing.extend(NO_RESULT for _ in unanswered)

    final_answer = final_answer.strip()
    if not final_answer:
        raise RecordDropped(DropReason.NO_FINAL_ANSWER, f"user turn {turn_index} ends without an answer")
    turn.chars = (
        len(query)
        + sum(len(c["content"]) for c in context)
        + len(final_answer)
        + sum(turn.rationale_chars)
        + sum(len(a.result or "") for a in actions)
    )
    if turn.chars > config.max_chars:
        raise RecordDropped(DropReason.TOO_LONG, f"{turn.chars} characters > max_chars={config.max_chars}")
    return Trajectory(
        source_row_id=conv.source_row_id,
        query=query,
        tools=conv.tools,
        actions=actions,
        final_answer=final_answer,
        generator=conv.generator,
        license=conv.license,
        category=conv.category,
        context=context,
        turn=turn_index,
    )


def _action(name: str, raw_arguments: Any, rationale: str, catalog: _Catalog, config: FilterConfig) -> Action:
    if not name:
        raise RecordDropped(DropReason.MALFORMED_ARGUMENTS, "a tool call has no function name")
    if not is_valid_tool_name(name):
        raise RecordDropped(DropReason.INVALID_TOOL_NAME, f"{name[:60]!r} cannot be written in a plan")
    arguments = _decode_arguments(raw_arguments)
    if name not in catalog.parameters:
        raise RecordDropped(DropReason.UNKNOWN_TOOL, f"{name!r} is not in the tool catalog")
    if catalog.check and not catalog.valid(name, arguments):
        raise RecordDropped(DropReason.SCHEMA_VIOLATION, f"arguments of {name!r} violate its parameter schema")
    return Action(name, arguments, rationale, None, False)
