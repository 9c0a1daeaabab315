"""Nemotron: nvidia/Nemotron-Post-Training-Dataset-v1 `tool_calling` rows.

Columns `uuid, license, generator, version, category, reasoning, metadata, messages`: the tool catalog is
the `tools` of the JSON string `metadata`; messages are exactly `{role, content, tool_calls}` with
`<think>` reasoning inside assistant content, and tool results carry no call id, so they pair with the
calls by order. Page: docs/formats/nemotron.md.
"""

from __future__ import annotations

from typing import Any

import orjson

from apo_planner.formats import FORMATS, TrajectoryFormat
from apo_planner.formats._chat import chat_messages, has_blocks, is_chat, row_id
from apo_planner.formats.records import Conversation, DropReason, RecordDropped


@FORMATS.register("nemotron")
class Nemotron(TrajectoryFormat):
    detection = "chat `messages` and a `metadata` JSON string whose `tools` is the catalog (no `tools` column)"

    def sniff(self, row: Any) -> bool:
        if "tools" in row:
            return False
        metadata = row.get("metadata")
        if isinstance(metadata, str):
            catalog = '"tools"' in metadata
        elif isinstance(metadata, dict):
            catalog = "tools" in metadata
        else:
            return False
        messages = row.get("messages")
        return catalog and is_chat(messages) and not has_blocks(messages)

    def read(self, row: dict[str, Any]) -> Conversation:
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
            source_row_id=row_id(row),
            messages=chat_messages(row.get("messages")),
            tools=self.tools(metadata["tools"]),
            generator=str(row.get("generator") or ""),
            license=str(row.get("license") or ""),
            category=str(row.get("category") or ""),
        )
