"""Opening a trajectory source as a `datasets` dataset, whatever it is.

Local JSON Lines are loaded as raw text lines (decoded per record later), so one malformed line,
or `arguments` that are a string in one row and a dict in the next, cannot break Arrow's schema
inference for the whole file; it becomes one counted drop. Parquet and Hub sources keep their
columns. Hub ids stream through `datasets` with the recipe's config, split and revision.
"""

from __future__ import annotations

import glob
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets
import orjson

from apo_planner.artifacts import sha256_files
from builders.readers import detect_format

TEXT_COLUMN = "__raw_line__"
_JSON_SUFFIXES = (".jsonl", ".json", ".ndjson")
_PARQUET_SUFFIXES = (".parquet",)


@dataclass
class Source:
    dataset: datasets.Dataset | datasets.IterableDataset
    format: str
    name: str  # provenance: Hub id, or "local:" + file names
    split: str
    revision: str  # Hub commit sha when resolvable, or the content hash of local files
    raw_text: bool  # rows are JSON text lines still to decode

    @property
    def id_namespace(self) -> str:
        """What row ids are scoped by: the Hub repo, or 'local' so renaming a file keeps its ids."""
        return "local" if self.name.startswith("local:") else self.name


def local_files(source: str) -> list[Path]:
    path = Path(source)
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.suffix in _JSON_SUFFIXES + _PARQUET_SUFFIXES)
    elif any(ch in source for ch in "*?["):
        files = sorted(Path(p) for p in glob.glob(source, recursive=True))
    else:
        files = [path] if path.exists() else []
    return [f for f in files if f.is_file()]


def content_hash(files: list[Path]) -> str:
    """Revision of a local source: its files' bytes in the given order (names left out, so renaming
    a file keeps it)."""
    return sha256_files(files)[:16]


def _sample_columns(files: list[Path], n: int = 20) -> set[str]:
    columns: set[str] = set()
    seen = 0
    for f in files:
        with f.open("rb") as fh:
            for line in fh:
                try:
                    obj = orjson.loads(line)
                except orjson.JSONDecodeError:
                    continue
                if isinstance(obj, dict):
                    columns |= obj.keys()
                    seen += 1
                if seen >= n:
                    return columns
    return columns


def _json_array_to_lines(path: Path, tmp_dir: Path) -> Path:
    """A `.json` file holding one array becomes JSON Lines, so every source is read the same way."""
    with path.open("rb") as fh:
        head = fh.read(4096).lstrip()
    if not head.startswith(b"["):
        return path
    records = orjson.loads(path.read_bytes())
    out = tmp_dir / (path.stem + ".jsonl")
    with out.open("wb") as fh:
        for r in records:
            fh.write(orjson.dumps(r) + b"\n")
    return out


def open_source(
    source: str,
    fmt: str = "auto",
    *,
    split: str = "train",
    config_name: str | None = None,
    revision: str = "main",
    streaming: bool = True,
    limit: int | None = None,
    work_dir: Path | None = None,
) -> Source:
    files = local_files(source)
    if files:
        return _open_local(files, fmt, limit, work_dir or Path(".cache"))
    if Path(source).suffix in _JSON_SUFFIXES + _PARQUET_SUFFIXES or source.startswith((".", "/")):
        raise FileNotFoundError(f"source {source!r} matches no file")
    return _open_hub(source, fmt, split, config_name, revision, streaming, limit)


def _open_local(files: list[Path], fmt: str, limit: int | None, work_dir: Path) -> Source:
    parquet = [f for f in files if f.suffix in _PARQUET_SUFFIXES]
    json_files = [f for f in files if f.suffix in _JSON_SUFFIXES]
    if parquet and json_files:
        raise ValueError("a source mixes parquet and JSON files; point --source at one kind")
    name = "local:" + ",".join(f.name for f in files[:5]) + (f",+{len(files) - 5}" if len(files) > 5 else "")
    revision = content_hash(files)
    if parquet:
        ds = datasets.load_dataset("parquet", data_files=[str(f) for f in parquet], split="train")
        columns = set(ds.column_names)
        raw_text = False
    else:
        work_dir.mkdir(parents=True, exist_ok=True)
        json_files = [_json_array_to_lines(f, work_dir) for f in json_files]
        ds = datasets.load_dataset("text", data_files=[str(f) for f in json_files], split="train")
        ds = ds.rename_column("text", TEXT_COLUMN)
        columns = _sample_columns(json_files)
        raw_text = True
    if limit is not None:
        ds = ds.select(range(min(limit, len(ds))))
    return Source(ds, detect_format(columns) if fmt == "auto" else fmt, name, "train", revision, raw_text)


def _resolve_revision(repo_id: str, revision: str) -> str:
    """Pin the commit a build read, so provenance names data that cannot move under it."""
    try:
        from huggingface_hub import HfApi

        return HfApi().dataset_info(repo_id, revision=revision).sha or revision
    except Exception:  # offline, gated or unknown: keep the name the recipe gave
        return revision


def _open_hub(
    repo_id: str,
    fmt: str,
    split: str,
    config_name: str | None,
    revision: str,
    streaming: bool,
    limit: int | None,
) -> Source:
    resolved = _resolve_revision(repo_id, revision)
    ds: Any = datasets.load_dataset(repo_id, name=config_name, split=split, revision=resolved, streaming=streaming)
    if limit is not None:
        ds = ds.take(limit) if streaming else ds.select(range(min(limit, len(ds))))
    columns = ds.column_names or list((ds.features or {}).keys())
    if not columns:
        columns = list(next(iter(ds)).keys())
    return Source(ds, detect_format(columns) if fmt == "auto" else fmt, repo_id, split, resolved, False)
