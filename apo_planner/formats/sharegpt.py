"""ShareGPT / Hermes: `conversations` of `{from, value}` turns with calls as `<tool_call>` text.

Calls are `<tool_call>{"name", "arguments"}</tool_call>` blocks in `gpt` turns, results `<tool_response>`
blocks in `tool` (or `function_response`, `observation`) turns, paired with the calls by order; the
catalog is a `tools` column or the system prompt's `<tools>` block. Page: docs/formats/sharegpt.md.
"""

from __future__ import annotations

from typing import Any

from apo_planner.formats import TrajectoryFormat, formats
from apo_planner.formats._chat import TOOL_RESPONSE_RE, assistant_message, loads_maybe, row_id, text, tools_from_system
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


@formats.register("sharegpt")
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
            role = ROLES.get(str(turn.get("from", turn.get("role", ""))).lower())
            value = text(turn.get("value", turn.get("content")))
            if role == "assistant":
                messages.append(assistant_message(value, None))
            elif role == "tool":
                responses = TOOL_RESPONSE_RE.findall(value) or [value]
                messages.extend(Message(role="tool", content=r.strip()) for r in responses)
            elif role is not None:
                messages.append(Message(role=role, content=value))
        tools = row.get("tools")
        return Conversation(
            source_row_id=row_id(row),
            messages=messages,
            tools=self.tools(tools if tools not in (None, "", "[]") else tools_from_system(messages)),
            generator=str(row.get("generator") or row.get("model") or ""),
            license=str(row.get("license") or ""),
            category=str(row.get("category") or ""),
        )
