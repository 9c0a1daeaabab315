"""The abstraction step over a whole source: every record becomes trajectories (as JSON) or named drops.

It runs as `datasets.map`, batched and with `num_proc` workers where the source is materialised. A
record yields one output row per trajectory it holds under `filters.multi_turn` (or one row naming why
it holds none); `record_start` marks a record's first row, so counts per source row survive the
flattening, and carries the format that read it and the content its reader skipped. Each record is read
by the format `apo_planner.formats.reader_for` picks (one format for most sources, row by row for a
source whose rows mix formats). One conversation's abstraction itself is
`apo_planner.builders.abstraction.turns`.
"""

from __future__ import annotations

from typing import Any

import datasets
import orjson

from apo_planner.builders.abstraction import turns
from apo_planner.builders.config import FilterConfig
from apo_planner.builders.sources import FILE_COLUMN, LINE_COLUMN, TEXT_COLUMN, Source, undecodable
from apo_planner.formats import Detection, reader_for
from apo_planner.formats.records import DropReason, RecordDropped

ABSTRACT_FEATURES = datasets.Features(
    {
        "source_row_id": datasets.Value("string"),
        "trajectory": datasets.Value("binary"),  # the trajectory's JSON (bytes: no str in between)
        "num_actions": datasets.Value("int64"),  # the trajectory's calls (what synthesis skips below 2 without parsing)
        "drop_reason": datasets.Value("string"),
        "drop_detail": datasets.Value("string"),
        "record_start": datasets.Value("bool"),
        "trajectory_chars": datasets.Value("int64"),  # what filters.max_chars compares; null when not measured
        "rationale_chars": datasets.List(datasets.Value("int64")),  # one per assistant message that made calls
        "format": datasets.Value("string"),  # record_start rows: the format that read the record
        "skipped": datasets.List(datasets.Value("string")),  # record_start rows: one kind per block not read
        "result_pairing": datasets.List(datasets.Value("string")),  # kept trajectories: how each result paired
    }
)
ABSTRACT_COLUMNS = tuple(ABSTRACT_FEATURES)


def _outcome(source_row_id: str, **values: Any) -> dict[str, Any]:
    return {
        "source_row_id": source_row_id,
        "trajectory": None,
        "num_actions": None,
        "drop_reason": None,
        "drop_detail": None,
        "record_start": False,
        "trajectory_chars": None,
        "rationale_chars": [],
        "format": None,
        "skipped": [],
        "result_pairing": [],
        **values,
    }


def _decode_line(row: dict[str, Any]) -> dict[str, Any]:
    """A raw JSON Lines row -> the record it holds, or `RecordDropped(undecodable_line)` naming the line."""
    raw = row[TEXT_COLUMN]
    try:
        record = orjson.loads(raw)
    except orjson.JSONDecodeError:
        record = None
    if record.__class__ is not dict:
        where = f"{row.get(FILE_COLUMN) or 'source'} line {row.get(LINE_COLUMN) or '?'}"
        why = undecodable(raw.encode() if isinstance(raw, str) else raw)
        why = f"JSON {type(record).__name__}, not an object" if why == "JSON" else why
        raise RecordDropped(DropReason.UNDECODABLE_LINE, f"{where}: {why}")
    return record


def abstract_record(
    row: dict[str, Any], detection: Detection, filters: FilterConfig, raw_text: bool
) -> list[dict[str, Any]]:
    """One record -> one output row per trajectory (or drop) it holds, the first marked `record_start`.
    Never raises for bad data: a bad record costs that record, a bad turn that turn."""
    source_row_id = ""
    fmt = None
    skipped: list[str] = []
    try:
        if raw_text:
            row = _decode_line(row)
        fmt = reader_for(row, detection)
        conversation = fmt.read(row)
        source_row_id = conversation.source_row_id
        for kind, count in conversation.skipped.items():
            skipped += [kind] * count
        out = []
        for turn in turns(conversation, filters):
            lengths = {"trajectory_chars": turn.chars, "rationale_chars": turn.rationale_chars}
            if turn.trajectory is not None:  # orjson serialises dataclasses natively
                payload = orjson.dumps(turn.trajectory)
                calls = len(turn.trajectory.actions)
                out.append(
                    _outcome(
                        source_row_id, trajectory=payload, num_actions=calls, result_pairing=turn.pairing, **lengths
                    )
                )
            else:
                assert turn.drop is not None
                detail = turn.drop.detail or ""
                out.append(
                    _outcome(source_row_id, drop_reason=turn.drop.reason.value, drop_detail=detail[:300], **lengths)
                )
    except RecordDropped as drop:
        out = [_outcome(source_row_id, drop_reason=drop.reason.value, drop_detail=drop.detail[:300])]
    except Exception as exc:  # a reader bug on strange data must cost one record, not the run
        detail = f"{type(exc).__name__}: {exc}"[:300]
        out = [_outcome(source_row_id, drop_reason=DropReason.UNPARSEABLE_RECORD.value, drop_detail=detail)]
    out[0]["record_start"] = True
    out[0]["format"] = fmt.name if fmt is not None else None
    out[0]["skipped"] = skipped
    return out


def abstract_batch(
    batch: dict[str, list[Any]], detection: Detection, filters: FilterConfig, raw_text: bool
) -> dict[str, list]:
    """`abstract_record` over a column-major batch, the shape `datasets.map(batched=True)` passes; the
    output may have more rows than the input (one per trajectory)."""
    names = list(batch)
    out: dict[str, list[Any]] = {c: [] for c in ABSTRACT_COLUMNS}
    for values in zip(*(batch[n] for n in names), strict=True):
        for result in abstract_record(dict(zip(names, values, strict=True)), detection, filters, raw_text):
            for c in ABSTRACT_COLUMNS:
                out[c].append(result[c])
    return out


def abstract_source(
    source: Source, filters: FilterConfig, num_proc: int = 1
) -> datasets.Dataset | datasets.IterableDataset:
    """The abstraction step over a whole source, parallel where the source is materialised."""
    kwargs: dict[str, Any] = {
        "batched": True,
        "batch_size": 512,
        "features": ABSTRACT_FEATURES,
        "fn_kwargs": {"detection": source.detection, "filters": filters, "raw_text": source.raw_text},
        "remove_columns": source.dataset.column_names,
    }
    if isinstance(source.dataset, datasets.Dataset):
        kwargs |= {"num_proc": num_proc if num_proc > 1 else None, "desc": "abstracting"}
    return source.dataset.map(abstract_batch, **kwargs)
