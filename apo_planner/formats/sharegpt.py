"""ShareGPT / Hermes: `conversations` of `{from, value}` turns with calls as `<tool_call>` text.

Calls are `<tool_call>{"name", "arguments"}</tool_call>` blocks in `gpt` turns, results `<tool_response>`
blocks in `tool` (or `function_response`, `observation`) turns, paired with the calls by order; the
catalog is a `tools` column or the system prompt's `<tools>` block. Page: docs/formats/sharegpt.md.
"""

from __future__ import annotations

from typing import Any

from apo_planner.formats import FORMATS, TrajectoryFormat
from apo_planner.formats._chat import assistant_message, loads_maybe, row_id, text, tool_responses, tools_from_system
from apo_planner.formats.records import Conversation, DropReason, Message, RecordDropped

ROLES = {
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


def _turns(row: Any) -> Any:
    turns = row.get("conversations")
    if turns is None:  # some exports keep ShareGPT turns under `messages`
        messages = row.get("messages")
        if isinstance(messages, list) and messages and isinstance(messages[0], dict) and "from" in messages[0]:
            return messages
    return turns


@FORMATS.register("sharegpt")
class ShareGPT(TrajectoryFormat):
    detection = "`conversations` (or `messages`) of `{from, value}` turns, calls as `<tool_call>` text"

    def sniff(self, row: Any) -> bool:
        turns = _turns(row)
        if isinstance(turns, str):  # stored as JSON text
            return turns.lstrip().startswith("[") and '"from"' in turns
        if not isinstance(turns, list) or not turns or not isinstance(turns[0], dict):
            return False
        first = turns[0]
        return ("from" in first and "value" in first) or (
            "role" in first and isinstance(first.get("content"), str) and "conversations" in row
        )

    def read(self, row: dict[str, Any]) -> Conversation:
        turns = loads_maybe(_turns(row), DropReason.UNPARSEABLE_RECORD, "conversations")
        if not isinstance(turns, list):
            raise RecordDropped(DropReason.UNPARSEABLE_RECORD, "conversations is not a list")
        messages: list[Message] = []
        for turn in turns:
            if not isinstance(turn, dict):
                raise RecordDropped(DropReason.UNPARSEABLE_RECORD, "a turn is not an object")
            speaker = turn["from"] if "from" in turn else turn.get("role", "")
            role = ROLES.get(speaker.lower() if isinstance(speaker, str) else str(speaker).lower())
            value = turn["value"] if "value" in turn else turn.get("content")
            if value.__class__ is not str:
                value = text(value)
            if role == "assistant":
                messages.append(assistant_message(value, None))
            elif role == "tool":
                messages.extend(Message("tool", r) for r in tool_responses(value))
            elif role is not None:
                messages.append(Message(role, value))
        tools = row.get("tools")
        return Conversation(
            source_row_id=row_id(row),
            messages=messages,
            tools=self.tools(tools if tools not in (None, "", "[]") else tools_from_system(messages)),
            generator=str(row.get("generator") or row.get("model") or ""),
            license=str(row.get("license") or ""),
            category=str(row.get("category") or ""),
        )
