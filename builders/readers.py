"""Readers: one function per log format, each turning a raw row into a `Conversation`.

Formats:
- ``nemotron``: nvidia/Nemotron-Post-Training-Dataset-v1 ``tool_calling`` rows (`messages`, and the
  tool catalog inside the JSON string `metadata`).
- ``openai``: OpenAI chat-messages exports (`messages` + `tools`), including the legacy
  `function_call` field and Hermes `<tool_call>` blocks inside assistant text.
- ``sharegpt``: ShareGPT/Hermes (`conversations` of `{from, value}`), tools in a `tools` column or
  in the system prompt's `<tools>` block.

Readers are liberal: arguments as a JSON string or a dict, `content: null`, several calls per
turn, `<think>` blocks, reasoning in a separate field. What they cannot read is a `RecordDropped`.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable
from typing import Any

import orjson

from apo_planner.builders.errors import SourceError
from apo_planner.builders.records import Conversation, DropReason, Message, RecordDropped, ToolCall
from apo_planner.prompts import content_text
from apo_planner.reasoning import split_reasoning
from apo_planner.tools import normalize_tool

FORMATS = ("nemotron", "openai", "sharegpt")

_TOOL_CALL_RE = re.compile(r"<tool_call>\s*(.*?)\s*(?:</tool_call>|$)", re.DOTALL)
_TOOL_RESPONSE_RE = re.compile(r"<tool_response>\s*(.*?)\s*</tool_response>", re.DOTALL)
_TOOLS_BLOCK_RE = re.compile(r"<tools>\s*(.*?)\s*</tools>", re.DOTALL)

_SHAREGPT_ROLES = {
    "system": "system",
    "human": "user",
    "user": "user",
    "gpt": "assistant",
    "assistant": "assistant",
    "function_call": "assistant",
    "tool": "tool",
    "function": "tool",
    "observation": "tool",
    "function_response": "tool",
    "ipython": "tool",
}


def detect_format(columns: Iterable[str]) -> str:
    """Pick a reader from the columns a source has (first match wins)."""
    cols = set(columns)
    if "conversations" in cols:
        return "sharegpt"
    if "messages" in cols and "metadata" in cols and "tools" not in cols:
        return "nemotron"
    if "messages" in cols:
        return "openai"
    raise SourceError(
        f"cannot detect the log format from columns {sorted(cols)}; expected 'messages' (+ 'metadata' for "
        f"Nemotron, + 'tools' for OpenAI) or 'conversations' (ShareGPT). Pass --format one of {FORMATS}."
    )


def content_id(row: dict[str, Any]) -> str:
    """Stable id for rows that carry none: a hash of the row's content, independent of file order."""
    return hashlib.sha256(orjson.dumps(row, option=orjson.OPT_SORT_KEYS, default=str)).hexdigest()[:32]


def _row_id(row: dict[str, Any]) -> str:
    for key in ("uuid", "id", "conversation_id"):
        value = row.get(key)
        if value not in (None, ""):
            return str(value)
    return content_id(row)


def _loads_maybe(value: Any, reason: DropReason, what: str) -> Any:
    if isinstance(value, (bytes, str)):
        try:
            return orjson.loads(value)
        except orjson.JSONDecodeError as exc:
            raise RecordDropped(reason, f"{what} is not JSON: {exc}") from None
    return value


def _tool_catalog(raw: Any) -> list[dict[str, Any]]:
    raw = _loads_maybe(raw, DropReason.NO_TOOL_CATALOG, "tools")
    if isinstance(raw, dict):
        raw = [raw]
    if not isinstance(raw, list):
        raise RecordDropped(DropReason.NO_TOOL_CATALOG, "tool catalog is not a list")
    tools = [t for t in (normalize_tool(t) for t in raw) if t is not None]
    if not tools:
        raise RecordDropped(DropReason.NO_TOOL_CATALOG, "no usable tool definitions")
    return tools


def _hermes_calls(text: str) -> tuple[list[ToolCall], str]:
    """Calls written as `<tool_call>{"name":..., "arguments":...}</tool_call>`; returns them and the rest."""
    calls = []
    for block in _TOOL_CALL_RE.findall(text):
        try:
            obj = orjson.loads(block)
        except orjson.JSONDecodeError:
            calls.append(ToolCall(name="", arguments=block))  # malformed: the abstraction step names it
            continue
        if not isinstance(obj, dict):
            calls.append(ToolCall(name="", arguments=block))
            continue
        calls.append(ToolCall(name=str(obj.get("name", "")), arguments=obj.get("arguments", obj.get("parameters"))))
    return calls, _TOOL_CALL_RE.sub("", text).strip()


def _structured_calls(raw_calls: Any) -> list[ToolCall]:
    calls = []
    for call in raw_calls or ():
        if not isinstance(call, dict):
            calls.append(ToolCall(name="", arguments=call))
            continue
        function = call.get("function") if isinstance(call.get("function"), dict) else call
        calls.append(
            ToolCall(
                name=str(function.get("name") or ""),
                arguments=function.get("arguments", function.get("parameters")),
                id=call.get("id"),
            )
        )
    return calls


def _assistant_message(content: Any, raw_calls: Any, reasoning_field: Any = None) -> Message:
    text = content if isinstance(content, str) else ""
    reasoning, visible = split_reasoning(text)
    if isinstance(reasoning_field, str) and reasoning_field.strip():
        reasoning = (reasoning_field.strip() + " " + reasoning).strip()
    calls = _structured_calls(raw_calls)
    if not calls and "<tool_call>" in visible:
        calls, visible = _hermes_calls(visible)
    return Message(role="assistant", content=visible, reasoning=reasoning, tool_calls=calls)


def _openai_messages(raw_messages: Any) -> list[Message]:
    raw_messages = _loads_maybe(raw_messages, DropReason.UNPARSEABLE_RECORD, "messages")
    if not isinstance(raw_messages, list):
        raise RecordDropped(DropReason.UNPARSEABLE_RECORD, "messages is not a list")
    messages = []
    for m in raw_messages:
        if not isinstance(m, dict):
            raise RecordDropped(DropReason.UNPARSEABLE_RECORD, "a message is not an object")
        role = m.get("role")
        content = content_text(m.get("content"))
        if role == "assistant":
            raw_calls = m.get("tool_calls")
            if not raw_calls and isinstance(m.get("function_call"), dict):
                raw_calls = [m["function_call"]]
            messages.append(_assistant_message(content, raw_calls, m.get("reasoning_content") or m.get("reasoning")))
        elif role in ("tool", "function", "ipython"):
            messages.append(Message(role="tool", content=_text(content), tool_call_id=m.get("tool_call_id")))
        elif role in ("user", "system", "developer"):
            messages.append(Message(role="system" if role == "developer" else role, content=_text(content)))
    return messages


def _text(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    return orjson.dumps(content).decode()


def read_nemotron(row: dict[str, Any]) -> Conversation:
    metadata = row.get("metadata")
    if isinstance(metadata, (str, bytes)):
        try:
            metadata = orjson.loads(metadata)
        except orjson.JSONDecodeError as exc:
            raise RecordDropped(DropReason.UNPARSEABLE_METADATA, str(exc)) from None
    if not isinstance(metadata, dict):
        raise RecordDropped(DropReason.UNPARSEABLE_METADATA, "metadata is not a JSON object")
    if "tools" not in metadata:
        raise RecordDropped(DropReason.NO_TOOL_CATALOG, "metadata has no 'tools'")
    return Conversation(
        source_row_id=_row_id(row),
        messages=_openai_messages(row.get("messages")),
        tools=_tool_catalog(metadata["tools"]),
        generator=str(row.get("generator") or ""),
        license=str(row.get("license") or ""),
        category=str(row.get("category") or ""),
    )


def read_openai(row: dict[str, Any]) -> Conversation:
    messages = _openai_messages(row.get("messages"))
    tools = row.get("tools")
    if tools is None and isinstance(row.get("metadata"), (str, dict)):
        return read_nemotron(row)
    if tools is None:
        tools = _tools_from_system(messages)
    return Conversation(
        source_row_id=_row_id(row),
        messages=messages,
        tools=_tool_catalog(tools),
        generator=str(row.get("generator") or row.get("model") or ""),
        license=str(row.get("license") or ""),
        category=str(row.get("category") or ""),
    )


def _tools_from_system(messages: list[Message]) -> Any:
    for m in messages:
        if m.role == "system" and "<tools>" in m.content:
            block = _TOOLS_BLOCK_RE.search(m.content)
            if block:
                return _parse_tools_block(block.group(1))
    raise RecordDropped(DropReason.NO_TOOL_CATALOG, "no 'tools' column and no <tools> block")


def _parse_tools_block(text: str) -> list[Any]:
    try:
        parsed = orjson.loads(text)
        return parsed if isinstance(parsed, list) else [parsed]
    except orjson.JSONDecodeError:
        pass
    tools = []  # one JSON object per line, as Hermes prompts often have
    for line in text.splitlines():
        line = line.strip()
        if line:
            try:
                tools.append(orjson.loads(line))
            except orjson.JSONDecodeError:
                raise RecordDropped(DropReason.NO_TOOL_CATALOG, "<tools> block is not JSON") from None
    return tools


def read_sharegpt(row: dict[str, Any]) -> Conversation:
    turns = _loads_maybe(row.get("conversations"), DropReason.UNPARSEABLE_RECORD, "conversations")
    if not isinstance(turns, list):
        raise RecordDropped(DropReason.UNPARSEABLE_RECORD, "conversations is not a list")
    messages: list[Message] = []
    for turn in turns:
        if not isinstance(turn, dict):
            raise RecordDropped(DropReason.UNPARSEABLE_RECORD, "a turn is not an object")
        role = _SHAREGPT_ROLES.get(str(turn.get("from", turn.get("role", ""))).lower())
        value = _text(turn.get("value", turn.get("content")))
        if role == "assistant":
            messages.append(_assistant_message(value, None))
        elif role == "tool":
            responses = _TOOL_RESPONSE_RE.findall(value) or [value]
            messages.extend(Message(role="tool", content=r.strip()) for r in responses)
        elif role is not None:
            messages.append(Message(role=role, content=value))
    tools = row.get("tools")
    return Conversation(
        source_row_id=_row_id(row),
        messages=messages,
        tools=_tool_catalog(tools if tools not in (None, "", "[]") else _tools_from_system(messages)),
        generator=str(row.get("generator") or row.get("model") or ""),
        license=str(row.get("license") or ""),
        category=str(row.get("category") or ""),
    )


READERS: dict[str, Callable[[dict[str, Any]], Conversation]] = {
    "nemotron": read_nemotron,
    "openai": read_openai,
    "sharegpt": read_sharegpt,
}


def get_reader(fmt: str) -> Callable[[dict[str, Any]], Conversation]:
    try:
        return READERS[fmt]
    except KeyError:
        raise SourceError(f"unknown format {fmt!r}; valid formats: {', '.join(FORMATS)} (or 'auto')") from None
