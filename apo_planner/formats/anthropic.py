"""Anthropic Messages: `messages` of content blocks, a top-level `system`, tools with `input_schema`.

Assistant content holds `text`, `thinking` (read as the calls' rationale), `redacted_thinking` (counted,
not read) and `tool_use {id, name, input}` blocks; several `tool_use` blocks in one turn are parallel
calls. User content holds the text and the `tool_result {tool_use_id, content, is_error}` blocks, which
pair with their calls by id (`is_error: true` marks the call failed). Image and document blocks are
skipped and counted. Page: docs/formats/anthropic.md.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from apo_planner.formats import FORMATS, TrajectoryFormat
from apo_planner.formats._chat import has_blocks, is_chat, loads_maybe, row_id, split_reasoning, text
from apo_planner.formats.records import Conversation, DropReason, Message, RecordDropped, ToolCall

_OPENAI_ROLES = frozenset(("tool", "function", "developer", "ipython"))  # roles the Messages API has not


def _is_anthropic_catalog(tools: Any) -> bool:
    return isinstance(tools, list) and any(isinstance(t, dict) and "input_schema" in t for t in tools)


def _blocks(content: Any) -> list[Any]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    if content is None:
        return []
    if not isinstance(content, list):
        raise RecordDropped(DropReason.UNPARSEABLE_RECORD, f"message content is a {type(content).__name__}")
    return content


def _block_text(content: Any, skipped: Counter[str]) -> str:
    """A `system` prompt or a `tool_result`'s content: a string or text blocks; other blocks are counted."""
    parts = []
    for block in _blocks(content):
        if isinstance(block, dict) and block.get("type") == "text":
            parts.append(str(block.get("text") or ""))
        else:
            skipped[block.get("type", "unknown") if isinstance(block, dict) else "unknown"] += 1
    return "\n".join(parts)


@FORMATS.register("anthropic")
class AnthropicMessages(TrajectoryFormat):
    detection = "`messages` content holds `tool_use`/`tool_result`/`thinking` blocks, or the tools have `input_schema`"

    def sniff(self, row: Any) -> bool:
        messages = row.get("messages")
        if not is_chat(messages):
            return False
        for m in messages:
            if isinstance(m, dict) and (
                m.get("tool_calls") or m.get("function_call") or m.get("role") in _OPENAI_ROLES
            ):
                return False
        return has_blocks(messages) or _is_anthropic_catalog(row.get("tools"))

    def read(self, row: dict[str, Any]) -> Conversation:
        raw = loads_maybe(row.get("messages"), DropReason.UNPARSEABLE_RECORD, "messages")
        if not isinstance(raw, list):
            raise RecordDropped(DropReason.UNPARSEABLE_RECORD, "messages is not a list")
        skipped: Counter[str] = Counter()
        messages: list[Message] = []
        system = row.get("system")
        if system:
            messages.append(Message("system", _block_text(system, skipped)))
        for m in raw:
            if not isinstance(m, dict):
                raise RecordDropped(DropReason.UNPARSEABLE_RECORD, "a message is not an object")
            role = m.get("role")
            if role == "assistant":
                messages.append(self._assistant(m.get("content"), skipped))
            elif role == "user":
                messages.extend(self._user(m.get("content"), skipped))
            elif role == "system":  # not the API's, but logs that keep it in the list
                messages.append(Message("system", _block_text(m.get("content"), skipped)))
        if row.get("tools") is None:
            raise RecordDropped(DropReason.NO_TOOL_CATALOG, "no 'tools'")
        return Conversation(
            source_row_id=row_id(row),
            messages=messages,
            tools=self.tools(row["tools"]),
            generator=str(row.get("model") or row.get("generator") or ""),
            license=str(row.get("license") or ""),
            category=str(row.get("category") or ""),
            skipped=dict(skipped),
        )

    @staticmethod
    def _assistant(content: Any, skipped: Counter[str]) -> Message:
        texts, thoughts, calls = [], [], []
        for block in _blocks(content):
            kind = block.get("type") if isinstance(block, dict) else None
            if kind == "text":
                texts.append(str(block.get("text") or ""))
            elif kind == "tool_use":
                calls.append(ToolCall(str(block.get("name") or ""), block.get("input"), block.get("id")))
            elif kind == "thinking":
                thoughts.append(str(block.get("thinking") or "").strip())
            elif kind is None:
                raise RecordDropped(DropReason.UNPARSEABLE_RECORD, "an assistant content block is not a typed object")
            else:  # redacted_thinking (encrypted), server tools, images: counted, not read
                skipped[kind] += 1
        reasoning, visible = split_reasoning("\n".join(texts))
        reasoning = " ".join(t for t in (*thoughts, reasoning) if t)
        return Message("assistant", visible, reasoning, calls)

    @staticmethod
    def _user(content: Any, skipped: Counter[str]) -> list[Message]:
        """The tool results a user message carries, or the user's words. Text beside tool results is not a
        new request (it is counted as `text_beside_tool_result`)."""
        texts, results = [], []
        for block in _blocks(content):
            kind = block.get("type") if isinstance(block, dict) else None
            if kind == "text":
                texts.append(str(block.get("text") or ""))
            elif kind == "tool_result":
                result = block.get("content")
                result = text(result) if isinstance(result, dict) else _block_text(result, skipped)
                results.append(
                    Message("tool", result, tool_call_id=block.get("tool_use_id"), failed=block.get("is_error") is True)
                )
            elif kind is None:
                raise RecordDropped(DropReason.UNPARSEABLE_RECORD, "a user content block is not a typed object")
            else:
                skipped[kind] += 1
        if results:
            if any(t.strip() for t in texts):
                skipped["text_beside_tool_result"] += 1
            return results
        return [Message("user", "\n".join(texts))]
