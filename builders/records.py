"""What the builder turns conversations into: the action abstraction.

A format's reader produces a `Conversation` (`apo_planner.formats.records`); `Trajectory` is the action
abstraction that synthesis, pairing and the dataset are built from.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


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
