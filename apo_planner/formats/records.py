"""What a trajectory format's reader produces: one normalised conversation per record.

`Conversation` is the shape every format reads into (OpenAI-style chat messages plus an OpenAI-style
tool catalog), whatever the log looked like. What a reader cannot read is a `RecordDropped` with a
`DropReason`; the build counts drops by these names in stats.json. The reasons are one vocabulary for
the readers and the build steps after them, so they live here, beside the records.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class DropReason(StrEnum):
    """Every reason a record (or one user turn of it) can be skipped; stats.json counts them by these names."""

    UNDECODABLE_LINE = "undecodable_line"  # a JSON Lines line that is not UTF-8, not JSON or not an object
    AMBIGUOUS_FORMAT = "ambiguous_format"  # a row of a mixed source that several formats claim
    UNPARSEABLE_RECORD = "unparseable_record"
    UNPARSEABLE_METADATA = "unparseable_metadata"
    NO_TOOL_CATALOG = "no_tool_catalog"
    NO_MESSAGE_CONTENT = "no_message_content"  # a trace whose spans record calls but no messages (opt-in content)
    NO_GEN_AI_SPANS = "no_gen_ai_spans"  # a trace with neither inference messages nor execute_tool spans
    SEVERAL_TRACES = "several_traces"  # a span row holding more than one trace (read outside a trace file)
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
    id: str | None = None  # tool_call_id / tool_use_id / call_id: results pair by it where the log has one


@dataclass(slots=True)
class Message:
    role: str  # system | user | assistant | tool
    content: str = ""
    reasoning: str = ""  # <think> text, a thinking block, a reasoning item's summary
    tool_calls: list[ToolCall] = field(default_factory=list)
    tool_call_id: str | None = None  # a tool result: the call it answers (None: pair by order)
    failed: bool = False  # a tool result the log itself marks failed (Anthropic `is_error`, an ERROR span)


@dataclass(slots=True)
class Conversation:
    """A reader's output: chat messages, the tool catalog, and where the record came from. `skipped`
    counts content the reader saw and did not read (images, documents, redacted thinking), by kind.
    `history_turns` user turns at the start are history that another record holds (a trace per request
    re-sends the conversation so far): they are context for the later turns, not trajectories of this one."""

    source_row_id: str
    messages: list[Message]
    tools: list[dict[str, Any]]
    generator: str = ""
    license: str = ""
    category: str = ""
    skipped: dict[str, int] = field(default_factory=dict)
    history_turns: int = 0
