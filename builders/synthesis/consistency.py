"""Selections checked against the trajectory they came from: the mistakes that are decidable without a
judge model, whatever synthesizer made them.

Each check is a named rejection reason (an LLM answer that fails one is asked again with a new seed,
like any invalid answer; a rule selection that fails one gives no pair). Values are matched by the
one rule `selection.value_sources` also uses for dependency edges: scalar values of at least
`MIN_VALUE_CHARS` characters, found as text.

- `kept_duplicate_call`: two kept calls with the same tool, arguments and result (a repeat whose result
  differed did something new, and the rule synthesizer keeps it too);
- `kept_failure_dropped_retry`: a kept failed call whose later successful retry (same tool) was dropped;
- `uses_dropped_result`: a kept call's argument value that only a dropped call's result produced
  (not the user, not a kept call);
- `dropped_answer_source`: a dropped call's result value that the final answer uses and that nothing
  kept (nor the user) provides;
- `dropped_reported_tool`: the last successful call of a tool that no kept call uses any more, when the
  final answer holds a value of its result that no kept call provides, even one the user also said
  (conservative; `build.consistency.dropped_reported_tool`).
"""

from __future__ import annotations

import orjson

from apo_planner.builders.config import ConsistencyConfig
from apo_planner.builders.records import Trajectory
from apo_planner.builders.synthesis.selection import InvalidSelection, Selection, result_values, value_sources

CHECKS_VERSION = 1  # part of the LLM answer cache key: bump when a check changes what is accepted


def _user_text(trajectory: Trajectory) -> str:
    """What the user (or the conversation before this turn) said: values there need no call."""
    return "\n".join([trajectory.query, *(m.get("content") or "" for m in trajectory.context)])


def _kept_text(trajectory: Trajectory, kept: list[int]) -> str:
    """What the kept calls put on the table: their results and the values they were called with."""
    actions = trajectory.actions
    return "\n".join((actions[i].result or "") + "\n" + orjson.dumps(actions[i].arguments).decode() for i in kept)


def unsourced_answer_values(trajectory: Trajectory, kept: list[int]) -> list[tuple[str, int]]:
    """(value, dropped call) for each value the final answer uses that only a dropped successful call's
    result holds: nothing kept provides it and the user did not say it. Empty when the kept calls
    explain the answer (the `dropped_answer_source` check, and the build's answer-source share)."""
    return _unsourced(trajectory, set(kept), _user_text(trajectory), _kept_text(trajectory, kept))


def _unsourced(trajectory: Trajectory, kept: set[int], user: str, from_kept: str) -> list[tuple[str, int]]:
    answer = trajectory.final_answer
    return [
        (value, i)
        for i, action in enumerate(trajectory.actions)
        if i not in kept and not action.failed
        for value in result_values(action.result)
        if value in answer and value not in user and value not in from_kept
    ]


def check_consistency(trajectory: Trajectory, selection: Selection, config: ConsistencyConfig) -> None:
    """Raise InvalidSelection with the first check the selection fails; a structurally valid selection
    (`Selection.validate`) is assumed."""
    if not config.enabled:
        return
    actions = trajectory.actions
    kept = [k.index for k in selection.kept]
    kept_set = set(kept)
    dropped = [i for i in range(len(actions)) if i not in kept_set]

    seen: dict[bytes, int] = {}
    for i in kept:
        call = orjson.dumps(actions[i].arguments, option=orjson.OPT_SORT_KEYS)
        key = b"\0".join((actions[i].tool.encode(), call, (actions[i].result or "").encode()))
        if key in seen:
            raise InvalidSelection("kept_duplicate_call", f"calls {seen[key]} and {i}: {actions[i].tool}")
        seen[key] = i

    for i in kept:
        if actions[i].failed:
            tool = actions[i].tool
            retry = next((j for j in dropped if j > i and actions[j].tool == tool and not actions[j].failed), None)
            if retry is not None:
                raise InvalidSelection("kept_failure_dropped_retry", f"kept failed call {i}, dropped its retry {retry}")

    user = _user_text(trajectory)
    sources = value_sources(actions)
    for j in kept:
        for value, found in sources[j].items():
            if value not in user and not any(i in kept_set for i in found):
                detail = f"call {j} uses {value[:40]!r} from dropped call {found[-1]}"
                raise InvalidSelection("uses_dropped_result", detail)

    answer = trajectory.final_answer
    from_kept = _kept_text(trajectory, kept)
    unsourced = _unsourced(trajectory, kept_set, user, from_kept)
    if unsourced:
        value, i = unsourced[0]
        raise InvalidSelection("dropped_answer_source", f"the answer uses {value[:40]!r} from dropped call {i}")

    if config.dropped_reported_tool:
        kept_tools = {actions[i].tool for i in kept}
        for i in dropped:
            tool = actions[i].tool
            if actions[i].failed or tool in kept_tools:
                continue
            later = [j for j in range(i + 1, len(actions)) if actions[j].tool == tool and not actions[j].failed]
            if later:
                continue  # not the tool's last successful call
            # the user may have said the value too (an address to ship to): only a kept call explains it away
            if any(value in answer and value not in from_kept for value in result_values(actions[i].result)):
                detail = f"dropped call {i} is the last {tool} call and the answer reports it"
                raise InvalidSelection("dropped_reported_tool", detail)
