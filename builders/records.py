"""What the builder reads and what it turns records into.

`Conversation` is the one normalised shape every reader produces (OpenAI-style chat messages
plus an OpenAI-style tool catalog); `Trajectory` is the action abstraction that synthesis,
pairing and the dataset are built from. Dropping a record is a value (`Dropped`), never an
exception that escapes the pipeline.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class DropReason(StrEnum):
    """Every reason a record (or one user turn of it) can be skipped; stats.json counts them by these names."""

    UNDECODABLE_LINE = "undecodable_line"  # a JSON Lines line that is not UTF-8, not JSON or not an object
    UNPARSEABLE_RECORD = "unparseable_record"
    UNPARSEABLE_METADATA = "unparseable_metadata"
    NO_TOOL_CATALOG = "no_tool_catalog"
    EMPTY_QUERY = "empty_query"
    MULTI_TURN = "multi_turn"
    NO_TOOL_CALL = "no_tool_call"
    MALFORMED_ARGUMENTS = "malformed_arguments"
    UNKNOWN_TOOL = "unknown_tool"
    INVALID_TOOL_NAME = "invalid_tool_name"
    SCHEMA_VIOLATION = "schema_violation"
    NO_FINAL_ANSWER = "no_final_answer"
    TOO_LONG = "too_long"
    DUPLICATE_RECORD = "duplicate_record"


class RecordDropped(Exception):
    """Raised inside a reader/abstraction step and turned into a counted drop at the step boundary."""

    def __init__(self, reason: DropReason, detail: str = "") -> None:
        super().__init__(f"{reason.value}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(slots=True)
class ToolCall:
    name: str
    arguments: Any  # raw: a JSON string or an already-decoded dict, as the export had it
    id: str | None = None


@dataclass(slots=True)
class Message:
    role: str  # system | user | assistant | tool
    content: str = ""
    reasoning: str = ""  # <think> text or a separate reasoning field
    tool_calls: list[ToolCall] = field(default_factory=list)
    tool_call_id: str | None = None


@dataclass(slots=True)
class Conversation:
    """A reader's output: chat messages, the tool catalog, and where the record came from."""

    source_row_id: str
    messages: list[Message]
    tools: list[dict[str, Any]]
    generator: str = ""
    license: str = ""
    category: str = ""


@dataclass(slots=True)
class Action:
    """One tool call of the original trajectory, with what surrounded it."""

    tool: str
    arguments: dict[str, Any]
    rationale: str
    result: str | None
    failed: bool


@dataclass(slots=True)
class Trajectory:
    """What one user turn led to. `context` holds the earlier turns as the planner sees them
    (`apo_planner.prompts.context_messages`); `turn` is the user turn's index in the conversation."""

    source_row_id: str
    query: str
    tools: list[dict[str, Any]]
    actions: list[Action]
    final_answer: str
    generator: str = ""
    license: str = ""
    category: str = ""
    context: list[dict[str, str]] = field(default_factory=list)
    turn: int = 0

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Trajectory:
        data = dict(data)
        data["actions"] = [Action(**a) for a in data["actions"]]
        return cls(**data)
