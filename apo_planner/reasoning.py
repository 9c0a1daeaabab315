"""`<think>` reasoning told apart from visible text, once for every reader of model output.

Trajectory readers keep the reasoning (it becomes a call's rationale), the planner's context drops it,
and plan parsing skips it before the first step: all three call `split_reasoning`.
"""

from __future__ import annotations

OPEN, CLOSE = "<think>", "</think>"


def _find_close(text: str, pos: int) -> int:
    """`text.find("</think>", pos)`, by searching for '<' alone: several times faster on the thousands of
    non-ASCII characters a reasoning trace has, where '<' is rare."""
    while (pos := text.find("<", pos)) >= 0:
        if text.startswith(CLOSE, pos):
            return pos
        pos += 1
    return -1


def split_reasoning(text: str) -> tuple[str, str]:
    """(reasoning, visible text). A `<think>` block is reasoning; an unclosed one runs to the end. A `</think>`
    left over closes reasoning a chat template opened in the prompt, so everything before the last such close
    is reasoning too. Plain `find`, not a regex: real traces run to thousands of characters on every message."""
    start = text.find(OPEN)
    if start < 0 and CLOSE not in text:
        return "", text.strip()
    if start >= 0:  # one block and nothing after it: the common case, without the general loop
        end = _find_close(text, start + len(OPEN))
        after = end + len(CLOSE)
        if end >= 0 and text.find(OPEN, after) < 0 and text.find(CLOSE, after) < 0:
            visible = text[after:] if start == 0 else text[:start] + text[after:]
            if CLOSE not in visible:
                return text[start + len(OPEN) : end].strip(), visible.strip()
    reasoning, visible, pos = [], [], 0
    while (start := text.find(OPEN, pos)) >= 0:
        visible.append(text[pos:start])
        end = text.find(CLOSE, start)
        reasoning.append(text[start + len(OPEN) : end if end >= 0 else len(text)].strip())
        pos = end + len(CLOSE) if end >= 0 else len(text)
    visible.append(text[pos:])
    rest = "".join(visible)
    if CLOSE in rest:  # opened before this text began
        before, _, rest = rest.rpartition(CLOSE)
        reasoning.insert(0, before.strip())
    return " ".join(reasoning), rest.strip()


def visible_text(text: str) -> str:
    """What a reader of the answer sees: `text` without its reasoning."""
    return split_reasoning(text)[1]
