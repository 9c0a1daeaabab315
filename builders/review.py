"""A seeded sample of pairs for a person to read before releasing: `DIR/review.md` (and `review.json`,
which the dataset card embeds from).

The sample is the pairs whose seeded hash of the id is smallest (a bottom-k sample): the same pairs
whatever order rows arrive in and however the build is sharded, and a shard only has to carry its
own smallest few for the merge to find the overall ones. Each entry shows the original calls beside
what became of them, with the results the rows themselves do not carry.
"""

from __future__ import annotations

import hashlib
import heapq
from pathlib import Path
from typing import Any

import orjson

from apo_planner.artifacts import DatasetDir, write_json
from apo_planner.builders.records import Trajectory
from apo_planner.builders.synthesis.selection import Selection
from apo_planner.plan import Plan
from apo_planner.templating import environment

TEMPLATE = Path(__file__).parent / "templates" / "review.md.jinja"
_SPARE = 4  # candidates per sampled pair: dedupe and decontamination may remove some after pairing
_CELL_CHARS = 240


def _cell(text: str, limit: int = _CELL_CHARS) -> str:
    """One markdown table cell: one line, pipes escaped, long values cut."""
    text = " ".join(text.split()).replace("|", "\\|")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _call(tool: str, arguments: dict[str, Any]) -> str:
    return f"{tool}({orjson.dumps(arguments).decode()})"


class ReviewSample:
    """The `size` pairs of smallest seeded id hash among those offered, with a few spare."""

    def __init__(self, size: int, seed: int) -> None:
        self.size, self.seed = size, seed
        self._heap: list[tuple[int, str, dict[str, Any]]] = []  # (-rank, id, entry): the largest rank on top

    def rank(self, row_id: str) -> int:
        return int(hashlib.sha256(f"{self.seed}\0{row_id}".encode()).hexdigest()[:16], 16)

    def _push(self, rank: int, row_id: str, make: Any) -> None:
        capacity = self.size * _SPARE
        if not capacity:
            return
        if len(self._heap) < capacity:
            heapq.heappush(self._heap, (-rank, row_id, make()))
        elif -self._heap[0][0] > rank:
            heapq.heapreplace(self._heap, (-rank, row_id, make()))

    def offer(
        self, row: dict[str, Any], trajectory: Trajectory, selection: Selection, chosen: Plan, hints: dict[int, str]
    ) -> None:
        """A pair as made; the entry is only assembled when it enters the sample. `hints` names, per
        removed call, what the rules would call it (shown beside a model's bare `not_selected`)."""
        self._push(self.rank(row["id"]), row["id"], lambda: _entry(row, trajectory, selection, chosen, hints))

    def merge(self, other: dict[str, Any]) -> None:
        """Add a shard's `as_dict()` candidates."""
        for entry in other.get("candidates", []):
            self._push(self.rank(entry["id"]), entry["id"], lambda entry=entry: entry)

    def as_dict(self) -> dict[str, Any]:
        return {"size": self.size, "seed": self.seed, "candidates": self.candidates()}

    def candidates(self) -> list[dict[str, Any]]:
        return [entry for _, _, entry in sorted(self._heap, key=lambda item: (-item[0], item[1]))]

    def write(self, output: Path, released_ids: set[str]) -> dict[str, Any] | None:
        """`review.md` and `review.json` for the pairs still in the dataset (none, and no stale files, when
        the sample is off); returns what stats.json records."""
        folder = DatasetDir(output)
        if not self.size:
            folder.review_file.unlink(missing_ok=True)
            folder.review_json.unlink(missing_ok=True)
            return None
        picked = [entry for entry in self.candidates() if entry["id"] in released_ids][: self.size]
        template = environment(trim=True).from_string(TEMPLATE.read_text(encoding="utf-8"))
        for entry in picked:
            entry["markdown"] = template.render(pairs=[entry], seed=self.seed, header=False)
        write_json(folder.review_json, {"seed": self.seed, "pairs": picked})
        folder.review_file.write_text(template.render(pairs=picked, seed=self.seed, header=True), encoding="utf-8")
        return {"size": len(picked), "seed": self.seed, "file": folder.review_file.name}


def _entry(
    row: dict[str, Any], trajectory: Trajectory, selection: Selection, chosen: Plan, hints: dict[int, str]
) -> dict[str, Any]:
    position = {k.index: p for p, k in enumerate(selection.kept)}
    calls = []
    for i, action in enumerate(trajectory.actions):
        call = {
            "index": i,
            "call": _cell(_call(action.tool, action.arguments)),
            "result": _cell(action.result or "(no result)"),
            "failed": action.failed,
        }
        if i in position:
            step = chosen.steps[position[i]]
            call["kept"] = {
                "step": position[i] + 1,  # numbered as the plan's text numbers its steps (1-based)
                "rationale": _cell(step.rationale),
                "depends_on": [d + 1 for d in step.depends_on],
            }
        else:
            reason = selection.removed.get(i, "not_selected")
            hint = hints.get(i)
            call["removed"] = reason if not hint or hint == reason else f"{reason} (rules: {hint})"
        calls.append(call)
    return {
        "id": row["id"],
        "query": _cell(trajectory.query, 600),
        "context_messages": len(trajectory.context),
        "calls": calls,
        "final_answer": _cell(trajectory.final_answer, 600),
        "num_calls_chosen": row["num_calls_chosen"],
        "num_calls_rejected": row["num_calls_rejected"],
    }
