"""OpenAI Responses API: `instructions`, `tools` and `input` items, plus optional `output` items.

Items of type `message` (content a string or `input_text`/`output_text` parts; a bare `{role, content}` is
a message too), `function_call {call_id, name, arguments}`, `function_call_output {call_id, output}` and
`reasoning` (its summary text is the calls' rationale). Results pair with calls by `call_id`. Tools are
flat (`{type: "function", name, parameters}`). Other items (built-in tool calls, custom tool calls,
images, encrypted reasoning) are skipped and counted. Page: docs/formats/openai_responses.md.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from apo_planner.formats import FORMATS, TrajectoryFormat
from apo_planner.formats._chat import loads_maybe, row_id, split_reasoning, text
from apo_planner.formats.records import Conversation, DropReason, Message, RecordDropped, ToolCall

ITEM_TYPES = frozenset(("message", "function_call", "function_call_output", "reasoning"))
_TEXT_PARTS = frozenset(("input_text", "output_text", "text", "summary_text", "reasoning_text"))
_ROLES = {"user": "user", "assistant": "assistant", "system": "system", "developer": "system"}


def _items(value: Any) -> bool:
    return isinstance(value, list) and any(
        isinstance(i, dict) and (i.get("type") in ITEM_TYPES or ("role" in i and "content" in i)) for i in value
    )


def _parts_text(content: Any, skipped: Counter[str]) -> str:
    if isinstance(content, str):
        return content
    if content is None:
        return ""
    if not isinstance(content, list):
        raise RecordDropped(DropReason.UNPARSEABLE_RECORD, f"item content is a {type(content).__name__}")
    texts = []
    for part in content:
        kind = part.get("type") if isinstance(part, dict) else None
        if kind in _TEXT_PARTS:
            texts.append(str(part.get("text") or ""))
        else:  # input_image, input_file, refusal, ...
            skipped[kind or "unknown"] += 1
    return "\n".join(texts)


@FORMATS.register("openai_responses")
class OpenAIResponses(TrajectoryFormat):
    detection = "`input`/`output` item lists: `message`, `function_call`, `function_call_output`, `reasoning`"

    def sniff(self, row: Any) -> bool:
        if "messages" in row or "conversations" in row:
            return False
        return _items(row.get("output")) or _items(row.get("input"))

    def read(self, row: dict[str, Any]) -> Conversation:
        skipped: Counter[str] = Counter()
        messages: list[Message] = []
        instructions = row.get("instructions")
        if instructions:
            messages.append(Message("system", _parts_text(instructions, skipped)))
        given = loads_maybe(row.get("input"), DropReason.UNPARSEABLE_RECORD, "input")
        if isinstance(given, str):
            given = [{"role": "user", "content": given}]
        produced = row.get("output")
        if not isinstance(given, list) or (produced is not None and not isinstance(produced, list)):
            raise RecordDropped(DropReason.UNPARSEABLE_RECORD, "input/output are not item lists")
        for item in [*given, *(produced or ())]:
            if not isinstance(item, dict):
                raise RecordDropped(DropReason.UNPARSEABLE_RECORD, "an item is not an object")
            self._item(item, messages, skipped)
        if row.get("tools") is None:
            raise RecordDropped(DropReason.NO_TOOL_CATALOG, "no 'tools'")
        return Conversation(
            source_row_id=row_id(row, ("id", "uuid", "conversation_id", "response_id")),
            messages=messages,
            tools=self.tools(row["tools"]),
            generator=str(row.get("model") or row.get("generator") or ""),
            license=str(row.get("license") or ""),
            category=str(row.get("category") or ""),
            skipped=dict(skipped),
        )

    @staticmethod
    def _item(item: dict[str, Any], messages: list[Message], skipped: Counter[str]) -> None:
        """One item into the conversation. Reasoning, assistant text and calls of one response are one
        assistant message: a new one starts after calls, results or another speaker."""
        kind = item.get("type")
        last = messages[-1] if messages and messages[-1].role == "assistant" else None
        if kind == "function_call":
            call = ToolCall(str(item.get("name") or ""), item.get("arguments"), item.get("call_id") or item.get("id"))
            if last is None:
                messages.append(Message("assistant", tool_calls=[call]))
            else:
                last.tool_calls.append(call)
        elif kind == "function_call_output":
            messages.append(Message("tool", text(item.get("output")), tool_call_id=item.get("call_id")))
        elif kind == "reasoning":
            summary = _parts_text(item.get("summary"), skipped) or _parts_text(item.get("content"), skipped)
            if not summary and item.get("encrypted_content"):
                skipped["encrypted_reasoning"] += 1
            if last is not None and not last.tool_calls and not last.content:
                last.reasoning = " ".join(p for p in (last.reasoning, summary.strip()) if p)
            else:
                messages.append(Message("assistant", reasoning=summary.strip()))
        elif kind == "message" or (kind is None and "role" in item):
            role = _ROLES.get(str(item.get("role")))
            body = _parts_text(item.get("content"), skipped)
            if role == "assistant":
                reasoning, visible = split_reasoning(body)
                if last is not None and not last.tool_calls and not last.content:
                    last.content = visible
                    last.reasoning = " ".join(p for p in (last.reasoning, reasoning) if p)
                else:
                    messages.append(Message("assistant", visible, reasoning))
            elif role is not None:
                messages.append(Message(role, body))
            else:
                skipped[f"role:{item.get('role')}"] += 1
        else:  # web_search_call, custom_tool_call, mcp_call, image_generation_call, item_reference, ...
            skipped[str(kind)] += 1
