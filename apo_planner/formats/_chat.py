"""What the formats share: row ids, JSON that may be a string, `<think>` reasoning, OpenAI-style chat
messages (Nemotron and OpenAI chat rows hold them) and Hermes `<tool_call>` text (OpenAI chat and
ShareGPT). Readers are liberal: arguments as a JSON string or a dict, `content: null`, several calls per
turn, reasoning in a separate field. These run on every message of every row, so they avoid work that
the common shapes do not need.
"""

from __future__ import annotations

import ast
import hashlib
import json
import re
from typing import Any

import orjson

from apo_planner.formats.records import DropReason, Message, RecordDropped, ToolCall
from apo_planner.reasoning import split_reasoning  # noqa: F401 - the readers' one splitter

TOOLS_BLOCK_RE = re.compile(r"<tools>\s*(.*?)\s*</tools>", re.DOTALL)
BLOCK_TYPES = frozenset(("tool_use", "tool_result", "thinking", "redacted_thinking"))  # Anthropic content blocks


def content_id(row: dict[str, Any]) -> str:
    """Stable id for rows that carry none: a hash of the row's content, independent of file order."""
    return hashlib.sha256(orjson.dumps(row, option=orjson.OPT_SORT_KEYS, default=str)).hexdigest()[:32]


def row_id(row: dict[str, Any], keys: tuple[str, ...] = ("uuid", "id", "conversation_id")) -> str:
    for key in keys:
        value = row.get(key)
        if value is not None and value != "":
            return str(value)
    return content_id(row)


def loads_maybe(value: Any, reason: DropReason, what: str) -> Any:
    """`value` decoded when it is JSON text (exports store lists as strings), else as it is."""
    if isinstance(value, (bytes, str)):
        try:
            return orjson.loads(value)
        except orjson.JSONDecodeError as exc:
            raise RecordDropped(reason, f"{what} is not JSON: {exc}") from None
    return value


def text(content: Any) -> str:
    """Content as text: strings as they are, anything else as its JSON."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    return orjson.dumps(content).decode()


def content_text(content: Any) -> Any:
    """Content parts (`[{"type": "text", "text": ...}]`) joined into one string; other content as it is
    (the same rule as `apo_planner.prompts.content_text`, which the planner applies)."""
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return content


def _blocks(text_: str, tag: str, unclosed: bool) -> tuple[list[str], str]:
    """The contents of every `<tag>…</tag>` in `text_` (stripped) and the text around them; an unclosed
    block runs to the end when `unclosed`, else it is not a block. Plain `find`: a lazy regex walks every
    character of long results."""
    opening, closing = f"<{tag}>", f"</{tag}>"
    blocks, rest, pos = [], [], 0
    while (start := text_.find(opening, pos)) >= 0:
        end = text_.find(closing, start + len(opening))
        if end < 0 and not unclosed:
            break
        rest.append(text_[pos:start])
        blocks.append(text_[start + len(opening) : end if end >= 0 else len(text_)].strip())
        pos = end + len(closing) if end >= 0 else len(text_)
    rest.append(text_[pos:])
    return blocks, "".join(rest)


def tool_responses(text_: str) -> list[str]:
    """The results a Hermes tool turn holds: each `<tool_response>` block, else the whole turn."""
    if "<tool_response>" not in text_:
        return [text_.strip()]
    return _blocks(text_, "tool_response", unclosed=False)[0] or [text_.strip()]


def hermes_calls(text_: str) -> tuple[list[ToolCall], str]:
    """Calls written as `<tool_call>{"name":..., "arguments":...}</tool_call>`; returns them and the rest."""
    calls = []
    found, rest = _blocks(text_, "tool_call", unclosed=True)
    for block in found:
        try:
            obj = orjson.loads(block)
        except orjson.JSONDecodeError:
            calls.append(ToolCall(name="", arguments=block))  # malformed: the abstraction step names it
            continue
        if not isinstance(obj, dict):
            calls.append(ToolCall(name="", arguments=block))
            continue
        arguments = obj["arguments"] if "arguments" in obj else obj.get("parameters")
        calls.append(ToolCall(name=str(obj.get("name", "")), arguments=arguments, id=obj.get("id")))
    return calls, rest.strip()


def structured_calls(raw_calls: Any) -> list[ToolCall]:
    """OpenAI `tool_calls` entries (`{id, type, function: {name, arguments}}`, or the function alone)."""
    calls = []
    for call in raw_calls or ():
        if not isinstance(call, dict):
            calls.append(ToolCall("", call))
            continue
        function = call.get("function")
        if not isinstance(function, dict):
            function = call
        name = function.get("name")
        arguments = function["arguments"] if "arguments" in function else function.get("parameters")
        calls.append(ToolCall(name if isinstance(name, str) else str(name or ""), arguments, call.get("id")))
    return calls


def assistant_message(content: Any, raw_calls: Any, reasoning_field: Any = None) -> Message:
    reasoning, visible = split_reasoning(content) if content.__class__ is str else ("", "")
    if reasoning_field and isinstance(reasoning_field, str) and reasoning_field.strip():
        reasoning = (reasoning_field.strip() + " " + reasoning).strip()
    if raw_calls:
        calls = structured_calls(raw_calls)
    elif "<tool_call>" in visible:
        calls, visible = hermes_calls(visible)
    else:
        calls = []
    return Message("assistant", visible, reasoning, calls)


def chat_messages(raw_messages: Any) -> list[Message]:
    """OpenAI-style chat messages (`{role, content, tool_calls}`, `role: tool` results) as `Message`s."""
    raw_messages = loads_maybe(raw_messages, DropReason.UNPARSEABLE_RECORD, "messages")
    if not isinstance(raw_messages, list):
        raise RecordDropped(DropReason.UNPARSEABLE_RECORD, "messages is not a list")
    messages = []
    append = messages.append
    for m in raw_messages:
        if m.__class__ is not dict and not isinstance(m, dict):
            raise RecordDropped(DropReason.UNPARSEABLE_RECORD, "a message is not an object")
        get = m.get
        role = get("role")
        content = get("content")
        if content.__class__ is list:
            content = content_text(content)
        if role == "assistant":
            raw_calls = get("tool_calls")
            if not raw_calls and isinstance(get("function_call"), dict):
                raw_calls = [m["function_call"]]
            append(assistant_message(content, raw_calls, get("reasoning_content") or get("reasoning")))
        elif role == "tool" or role == "function" or role == "ipython":
            append(Message("tool", content if content.__class__ is str else text(content), "", [], get("tool_call_id")))
        elif role == "user" or role == "system":
            append(Message(role, content if content.__class__ is str else text(content)))
        elif role == "developer":
            append(Message("system", text(content)))
    return messages


def tools_from_system(messages: list[Message]) -> Any:
    """The catalog a Hermes-style system prompt carries in a `<tools>` block."""
    for m in messages:
        if m.role == "system" and "<tools>" in m.content:
            block = TOOLS_BLOCK_RE.search(m.content)
            if block:
                return parse_tools_block(block.group(1))
    raise RecordDropped(DropReason.NO_TOOL_CATALOG, "no 'tools' column and no <tools> block")


def parse_tools_block(block: str) -> list[Any]:
    """A `<tools>` block: one JSON list or object, or several objects one after another (Hermes prompts
    put one per line or space-separated), or the same as a Python literal (single quotes)."""
    try:
        parsed = orjson.loads(block)
        return parsed if isinstance(parsed, list) else [parsed]
    except orjson.JSONDecodeError:
        pass
    decoder, tools, pos = json.JSONDecoder(), [], 0
    try:
        while pos < len(block):
            obj, pos = decoder.raw_decode(block, pos)
            tools.append(obj)
            while pos < len(block) and block[pos] in " \t\r\n,":
                pos += 1
        return tools
    except json.JSONDecodeError:
        pass
    try:
        parsed = ast.literal_eval(block.strip())
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        raise RecordDropped(DropReason.NO_TOOL_CATALOG, "<tools> block is not JSON") from None
    return list(parsed) if isinstance(parsed, (list, tuple)) else [parsed]


def has_blocks(messages: list[Any]) -> bool:
    """Whether any message's content is a list holding an Anthropic tool_use/tool_result/thinking block."""
    for m in messages:
        if m.__class__ is dict:  # the readers that follow name what else is wrong
            content = m.get("content")
            if content.__class__ is list:
                for block in content:
                    if block.__class__ is dict and block.get("type") in BLOCK_TYPES:
                        return True
    return False


def is_chat(messages: Any) -> bool:
    """A non-empty list of `{role, ...}` messages (OpenAI chat, Nemotron and Anthropic rows all are)."""
    return isinstance(messages, list) and bool(messages) and isinstance(messages[0], dict) and "role" in messages[0]
