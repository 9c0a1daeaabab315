"""The pairing step: each abstracted trajectory becomes a chosen/rejected row, a counted drop or a
counted rejected selection; records, trajectories per record and lengths are counted on the way.
The row's layout itself is `apo_planner.builders.pairs.make_row`."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import datasets
import orjson
from tqdm.auto import tqdm

from apo_planner.builders.config import BuildConfig
from apo_planner.builders.pairs import make_row
from apo_planner.builders.records import Trajectory
from apo_planner.builders.stats import BuildStats
from apo_planner.builders.synthesis import Synthesizer
from apo_planner.builders.synthesis.agreement import Agreement
from apo_planner.builders.synthesis.consistency import check_consistency, unsourced_answer_values
from apo_planner.builders.synthesis.rule import RuleSynthesizer
from apo_planner.builders.synthesis.selection import (
    InvalidSelection,
    Selection,
    original_plan,
    result_values,
    selected_plan,
)
from apo_planner.formats.records import DropReason


def _measure_row(row: dict[str, Any], stats: BuildStats) -> None:
    prompt = sum(len(m["content"]) for m in row["prompt"]) + len(row["tools"])
    completion = max(len(row["chosen"][0]["content"]), len(row["rejected"][0]["content"]))
    stats.measure("prompt_chars", prompt)
    stats.measure("pair_chars", prompt + completion)


def _reference(rules: RuleSynthesizer, trajectory: Trajectory, config: BuildConfig) -> Selection | None:
    """The rules' selection of a trajectory when it passes the same checks (removing nothing is a
    judgement too), else None."""
    selection = rules.select(trajectory)
    try:
        check_consistency(trajectory, selection, config.consistency)
    except InvalidSelection:
        return None
    return selection


def pair_rows(
    abstracted: datasets.Dataset,
    synthesizer: Synthesizer,
    config: BuildConfig,
    base_provenance: dict[str, str],
    id_namespace: str,
    stats: BuildStats,
) -> Iterator[dict[str, Any]]:
    """Rows in source order, lazily (the caller streams them to disk); counts land in `stats`.
    A trajectory seen twice (the same source row and turn) yields one row: the first."""
    seen_ids: set[str] = set()
    records = kept = 0  # source rows so far; trajectories of the current one
    rules = RuleSynthesizer(config.rule)  # the reference a model synthesizer is compared with
    if synthesizer.name != "rule":
        stats.agreement = stats.agreement or Agreement()
    for record in tqdm(abstracted, total=len(abstracted), desc="pairing", unit="traj", mininterval=1.0):
        if record["record_start"]:
            if records:
                stats.trajectories_per_record[kept] += 1
            records, kept = records + 1, 0
            stats.counts["records_read"] += 1
            if record["format"]:
                stats.formats[record["format"]] += 1
            stats.skipped_content.update(record["skipped"])
        if record["trajectory_chars"] is not None:
            stats.measure("trajectory_chars", record["trajectory_chars"])
        for chars in record["rationale_chars"]:
            stats.measure("rationale_chars", chars)
        if record["drop_reason"]:
            stats.drop(record["drop_reason"], record["drop_detail"])
            continue
        stats.counts["trajectories"] += 1
        stats.result_pairing.update(record["result_pairing"])
        kept += 1
        trajectory = Trajectory.from_dict(orjson.loads(record["trajectory"]))
        try:
            selection = synthesizer.select(trajectory, record["trajectory"])
            selection.validate(len(trajectory.actions))
            check_consistency(trajectory, selection, config.consistency)
        except InvalidSelection as bad:
            stats.selection_rejected[bad.reason] += 1
            if stats.agreement is not None and bad.reason == "no_redundancy":  # the model removed nothing
                stats.agreement.add(trajectory, None, _reference(rules, trajectory, config), rules)
            continue
        reference = selection if synthesizer.name == "rule" else _reference(rules, trajectory, config)
        if stats.agreement is not None:
            stats.agreement.add(trajectory, selection, reference, rules)
        chosen = selected_plan(trajectory, selection)
        rejected = original_plan(trajectory, config.rule.rationale_max_chars)
        row = make_row(trajectory, chosen, rejected, selection.removed, base_provenance, id_namespace)
        if row["id"] in seen_ids:
            stats.counts["duplicate_records"] += 1
            where = f"source row {trajectory.source_row_id}, user turn {trajectory.turn}"
            stats.drop(DropReason.DUPLICATE_RECORD.value, f"{where} seen before")
            continue
        seen_ids.add(row["id"])
        stats.removed_calls_by_reason.update(selection.removed.values())
        stats.answer_sources["pairs"] += 1
        kept_calls = [k.index for k in selection.kept]
        stats.answer_sources["kept"] += not unsourced_answer_values(trajectory, kept_calls)
        # values are matched in JSON results only: a pair that dropped a free-text result was not checked there
        stats.answer_sources["unchecked"] += any(
            a.result and not a.failed and not result_values(a.result)
            for i, a in enumerate(trajectory.actions)
            if i not in kept_calls
        )
        stats.review.offer(row, trajectory, selection, chosen, reference.removed if reference else {})
        stats.counts["pairs"] += 1
        stats.counts["calls_chosen_total"] += len(chosen)
        stats.counts["calls_rejected_total"] += len(rejected)
        _measure_row(row, stats)
        yield row
    if records:
        stats.trajectories_per_record[kept] += 1
