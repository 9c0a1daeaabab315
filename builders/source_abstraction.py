"""The abstraction step over a whole source: every record becomes a trajectory (as JSON) or a named drop.

It runs as `datasets.map`, batched and with `num_proc` workers where the source is materialised;
one conversation's abstraction itself is `builders.abstraction.abstract`.
"""

from __future__ import annotations

from typing import Any

import datasets
import orjson

from builders.abstraction import abstract
from builders.config import FilterConfig
from builders.readers import get_reader
from builders.records import DropReason, RecordDropped
from builders.sources import TEXT_COLUMN, Source

ABSTRACT_COLUMNS = ("source_row_id", "trajectory", "drop_reason", "drop_detail")
ABSTRACT_FEATURES = datasets.Features({c: datasets.Value("string") for c in ABSTRACT_COLUMNS})
BLANK_LINE = "blank_line"  # not a drop: an empty line of a JSON Lines file is no record at all


def abstract_record(row: dict[str, Any], fmt: str, filters: FilterConfig, raw_text: bool) -> dict[str, Any]:
    """One record -> {trajectory JSON | drop reason}. Never raises for bad data."""
    source_row_id = ""
    try:
        if raw_text:
            line = row[TEXT_COLUMN]
            if not line.strip():
                return {
                    "source_row_id": "",
                    "trajectory": None,
                    "drop_reason": BLANK_LINE,
                    "drop_detail": None,
                }
            try:
                row = orjson.loads(line)
            except orjson.JSONDecodeError as exc:
                raise RecordDropped(DropReason.UNPARSEABLE_RECORD, f"line is not JSON: {exc}") from None
            if not isinstance(row, dict):
                raise RecordDropped(DropReason.UNPARSEABLE_RECORD, "line is not a JSON object")
        conversation = get_reader(fmt)(row)
        source_row_id = conversation.source_row_id
        trajectory = abstract(conversation, filters)
        payload = orjson.dumps(trajectory).decode()  # orjson serialises dataclasses natively
        return {
            "source_row_id": source_row_id,
            "trajectory": payload,
            "drop_reason": None,
            "drop_detail": None,
        }
    except RecordDropped as drop:
        return {
            "source_row_id": source_row_id,
            "trajectory": None,
            "drop_reason": drop.reason.value,
            "drop_detail": drop.detail[:300],
        }
    except Exception as exc:  # a reader bug on strange data must cost one record, not the run
        return {
            "source_row_id": source_row_id,
            "trajectory": None,
            "drop_reason": DropReason.UNPARSEABLE_RECORD.value,
            "drop_detail": f"{type(exc).__name__}: {exc}"[:300],
        }


def abstract_batch(batch: dict[str, list[Any]], fmt: str, filters: FilterConfig, raw_text: bool) -> dict[str, list]:
    """`abstract_record` over a column-major batch, the shape `datasets.map(batched=True)` passes."""
    names = list(batch)
    out: dict[str, list[Any]] = {c: [] for c in ABSTRACT_COLUMNS}
    for values in zip(*(batch[n] for n in names), strict=True):
        result = abstract_record(dict(zip(names, values, strict=True)), fmt, filters, raw_text)
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
        "fn_kwargs": {"fmt": source.format, "filters": filters, "raw_text": source.raw_text},
        "remove_columns": source.dataset.column_names,
    }
    if isinstance(source.dataset, datasets.Dataset):
        kwargs |= {"num_proc": num_proc if num_proc > 1 else None, "desc": "abstracting"}
    return source.dataset.map(abstract_batch, **kwargs)
