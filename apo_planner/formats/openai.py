"""OpenAI chat: exports of chat-completions `messages` with a `tools` catalog.

Assistant messages carry `tool_calls` (`{id, type, function: {name, arguments}}`, or the legacy
`function_call`), or Hermes `<tool_call>` blocks in their text; results are `role: tool` messages that
name their call with `tool_call_id`, and pair with it by that id. Page: docs/formats/openai.md.
"""

from __future__ import annotations

from typing import Any

from apo_planner.formats import FORMATS, TrajectoryFormat
from apo_planner.formats._chat import chat_messages, has_blocks, is_chat, row_id, tools_from_system
from apo_planner.formats.records import Conversation


def _anthropic_tools(tools: Any) -> bool:
    return isinstance(tools, list) and any(isinstance(t, dict) and "input_schema" in t for t in tools)


def _metadata_catalog(row: Any) -> bool:
    metadata = row.get("metadata")
    return ('"tools"' in metadata) if isinstance(metadata, str) else isinstance(metadata, dict) and "tools" in metadata


@FORMATS.register("openai")
class OpenAIChat(TrajectoryFormat):
    detection = "chat `messages` (`tool_calls`, `role: tool` results) with a `tools` column or a system `<tools>` block"

    def sniff(self, row: Any) -> bool:
        messages = row.get("messages")
        if not is_chat(messages) or has_blocks(messages):
            return False
        tools = row.get("tools")
        if tools is not None:
            return not _anthropic_tools(tools)
        if _metadata_catalog(row):
            return False  # Nemotron keeps its catalog there
        return any(
            isinstance(m, dict)
            and m.get("role") == "system"
            and isinstance(m.get("content"), str)
            and "<tools>" in m["content"]
            for m in messages
        )

    def read(self, row: dict[str, Any]) -> Conversation:
        tools = row.get("tools")
        if tools is None and isinstance(row.get("metadata"), (str, dict)):
            return FORMATS.get("nemotron").read(row)  # forced --format openai on Nemotron rows
        messages = chat_messages(row.get("messages"))
        return Conversation(
            source_row_id=row_id(row),
            messages=messages,
            tools=self.tools(tools if tools is not None else tools_from_system(messages)),
            generator=str(row.get("generator") or row.get("model") or ""),
            license=str(row.get("license") or ""),
            category=str(row.get("category") or ""),
        )
