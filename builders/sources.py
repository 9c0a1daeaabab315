"""Opening a trajectory source as a `datasets` dataset, whatever it is.

Local JSON Lines (plain or gzip-compressed, `.jsonl.gz`) are read line by line as bytes into an
Arrow file of raw lines (decoded per record later), so one line that is not UTF-8 or not JSON, or
`arguments` that are a string in one row and a dict in the next, cannot break the whole file: it
becomes one counted drop naming its file and line. Parquet and Hub sources keep their columns. Hub
ids stream through `datasets` with the recipe's config, split and revision. What cannot be read at
all (no file, an empty source, a corrupt parquet or gzip file, an unreachable Hub) is a
`SourceError` that says what to do.
"""

from __future__ import annotations

import glob
import gzip
import os
import stat
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import datasets
import orjson
from datasets.arrow_writer import ArrowWriter

from apo_planner.artifacts import sha256_files
from apo_planner.builders.errors import SourceError
from apo_planner.builders.readers import detect_format

TEXT_COLUMN = "__raw_line__"
FILE_COLUMN = "__file__"
LINE_COLUMN = "__line__"  # 1-based, in its file
ERROR_COLUMN = "__error__"  # why the line's bytes are not text, when they are not
LINE_FEATURES = datasets.Features(
    {
        TEXT_COLUMN: datasets.Value("string"),
        FILE_COLUMN: datasets.Value("string"),
        LINE_COLUMN: datasets.Value("int64"),
        ERROR_COLUMN: datasets.Value("string"),
    }
)
_JSON_SUFFIXES = (".jsonl", ".json", ".ndjson")
_PARQUET_SUFFIXES = (".parquet",)
_GZIP = ".gz"  # any JSON source may be gzip-compressed: logs usually are
_SAMPLE_RECORDS = 20  # records read to detect the format
_FORMATS_HINT = (
    "JSON Lines (.jsonl, .jsonl.gz), a JSON array (.json) or parquet files of Nemotron, OpenAI or ShareGPT rows"
)


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


def _kind(path: Path) -> str:
    """The suffix that says what a file holds, under a `.gz`: `x.jsonl.gz` -> `.jsonl`."""
    return Path(path.name.removesuffix(_GZIP)).suffix if path.name.endswith(_GZIP) else path.suffix


def _open_bytes(path: Path) -> IO[bytes]:
    return gzip.open(path, "rb") if path.name.endswith(_GZIP) else path.open("rb")


def local_files(source: str) -> list[Path]:
    path = Path(source)
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if _kind(p) in _JSON_SUFFIXES + _PARQUET_SUFFIXES)
    elif any(ch in source for ch in "*?["):
        files = sorted(Path(p) for p in glob.glob(source, recursive=True))
    else:
        files = [path] if path.exists() else []
    return [f for f in files if f.is_file()]


def _file_kind(path: Path) -> str:
    mode = path.stat().st_mode
    for test, kind in (
        (stat.S_ISFIFO, "a named pipe (FIFO)"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
    ):
        if test(mode):
            return kind
    return "not a regular file"


def content_hash(files: list[Path]) -> str:
    """Revision of a local source: its files' bytes in the given order (names left out, so renaming
    a file keeps it)."""
    return sha256_files(files)[:16]


def _json_array_to_lines(path: Path, tmp_dir: Path) -> Path:
    """A `.json` file holding one array becomes JSON Lines, so every source is read the same way."""
    with _open_bytes(path) as fh:
        head = fh.read(4096).lstrip()
    if not head.startswith(b"["):
        return path
    try:
        with _open_bytes(path) as fh:
            records = orjson.loads(fh.read())
    except orjson.JSONDecodeError as exc:
        raise SourceError(
            f"{path} is not valid JSON ({exc}); fix it, or write one record per line (.jsonl) so a bad record "
            "costs only itself"
        ) from None
    out = tmp_dir / (path.name.removesuffix(_GZIP).removesuffix(".json") + ".jsonl")
    with out.open("wb") as fh:
        for r in records:
            fh.write(orjson.dumps(r) + b"\n")
    return out


def _lines(files: list[Path], names: list[str], limit: int | None) -> Iterator[dict[str, Any]]:
    """Every non-blank line (at most `limit`) with its file and number: its text, or why its bytes are not
    UTF-8 text."""
    seen = 0
    for path, name in zip(files, names, strict=True):
        try:
            with _open_bytes(path) as fh:
                for number, raw in enumerate(fh, start=1):
                    if number == 1:
                        raw = raw.removeprefix(b"\xef\xbb\xbf")  # a UTF-8 byte order mark
                    raw = raw.rstrip(b"\r\n")
                    if not raw.strip():
                        continue
                    if limit is not None and seen >= limit:
                        return
                    seen += 1
                    yield _line(raw, name, number)
        except (gzip.BadGzipFile, EOFError, zlib.error) as exc:
            raise SourceError(
                f"{path} is not a complete gzip file ({exc}); re-compress it, or pass it uncompressed"
            ) from None


def _line(raw: bytes, name: str, number: int) -> dict[str, Any]:
    try:
        return {TEXT_COLUMN: raw.decode("utf-8"), FILE_COLUMN: name, LINE_COLUMN: number, ERROR_COLUMN: None}
    except UnicodeDecodeError as exc:
        error = f"not UTF-8 (byte 0x{raw[exc.start]:02x} at column {exc.start + 1}); save the file as UTF-8"
        return {TEXT_COLUMN: None, FILE_COLUMN: name, LINE_COLUMN: number, ERROR_COLUMN: error}


def _read_lines(
    files: list[Path], names: list[str], limit: int | None, work_dir: Path
) -> tuple[datasets.Dataset, set[str]]:
    """The lines into one Arrow file (memory stays flat whatever the files' size), and the columns of the
    first records, for format detection."""
    columns: set[str] = set()
    sampled = 0
    path = work_dir / "source-lines.arrow"
    with ArrowWriter(features=LINE_FEATURES, path=str(path)) as writer:
        for line in _lines(files, names, limit):
            writer.write(line)
            if sampled < _SAMPLE_RECORDS and line[TEXT_COLUMN] is not None:
                try:
                    record = orjson.loads(line[TEXT_COLUMN])
                except orjson.JSONDecodeError:
                    continue
                if isinstance(record, dict):
                    columns |= record.keys()
                    sampled += 1
        writer.finalize()
    return datasets.Dataset.from_file(str(path)), columns


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
        return _open_local(source, files, fmt, limit, work_dir or Path(".cache"))
    if Path(source).exists() and not Path(source).is_dir():  # there, but no file to read (a FIFO, a device)
        raise SourceError(
            f"source {source!r} is {_file_kind(Path(source))}, not a regular file; give a file, glob or folder "
            f"(--source / build.source); expected {_FORMATS_HINT}"
        )
    if (
        _kind(Path(source)) in _JSON_SUFFIXES + _PARQUET_SUFFIXES
        or source.startswith((".", "/"))
        or Path(source).is_dir()
    ):
        what = "folder holds no .jsonl/.json/.parquet file" if Path(source).is_dir() else "matches no file"
        raise SourceError(
            f"source {source!r} {what}; check the path (--source / build.source); expected {_FORMATS_HINT}"
        )
    return _open_hub(source, fmt, split, config_name, revision, streaming, limit)


def _detect(columns: set[str], fmt: str, source: str) -> str:
    if fmt != "auto":
        return fmt
    if not columns:
        raise SourceError(
            f"no line of source {source!r} is a JSON object, so its format cannot be detected; "
            f"expected {_FORMATS_HINT} (or pass --format)"
        )
    try:
        return detect_format(columns)
    except ValueError as exc:
        raise SourceError(f"source {source!r}: {exc}") from None


def _open_local(source: str, files: list[Path], fmt: str, limit: int | None, work_dir: Path) -> Source:
    parquet = [f for f in files if _kind(f) in _PARQUET_SUFFIXES]
    json_files = [f for f in files if _kind(f) in _JSON_SUFFIXES]
    if parquet and json_files:
        raise SourceError(f"source {source!r} mixes parquet and JSON files; point --source at one kind")
    name = "local:" + ",".join(f.name for f in files[:5]) + (f",+{len(files) - 5}" if len(files) > 5 else "")
    revision = content_hash(files)
    if parquet:
        try:
            ds = datasets.load_dataset("parquet", data_files=[str(f) for f in parquet], split="train")
        except Exception as exc:  # pyarrow's and datasets' errors for a file that is not parquet
            cause = exc.__cause__ or exc
            raise SourceError(
                f"cannot read parquet source {source!r} ({type(cause).__name__}: {str(cause)[:200]}); "
                "check that every file is a complete parquet file"
            ) from None
        columns = set(ds.column_names)
        raw_text = False
    else:
        work_dir.mkdir(parents=True, exist_ok=True)
        names = [f.name for f in json_files]
        json_files = [_json_array_to_lines(f, work_dir) for f in json_files]
        ds, columns = _read_lines(json_files, names, limit, work_dir)
        raw_text = True
    if len(ds) == 0:
        raise SourceError(
            f"source {source!r} is empty: {', '.join(str(f) for f in files)} hold(s) no record; "
            f"point --source (build.source) at {_FORMATS_HINT}"
        )
    if limit is not None and len(ds) > limit:  # JSON Lines stop reading at the limit already
        ds = ds.select(range(limit))
    return Source(ds, _detect(columns, fmt, source), name, "train", revision, raw_text)


def _resolve_revision(repo_id: str, revision: str) -> str:
    """Pin the commit a build read, so provenance names data that cannot move under it."""
    try:
        from huggingface_hub import HfApi

        return HfApi().dataset_info(repo_id, revision=revision).sha or revision
    except Exception:  # offline, gated or unknown: keep the name the recipe gave
        return revision


def _hub_error(repo_id: str, exc: Exception) -> SourceError:
    """What to do when a Hub dataset cannot be opened: offline, unreachable, unknown or gated."""
    offline = any(
        os.environ.get(v, "").lower() in ("1", "true", "yes", "on") for v in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")
    )
    why = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}"
    if offline:
        advice = "HF_HUB_OFFLINE/HF_DATASETS_OFFLINE is set: unset it, or point --source at local files"
    elif isinstance(exc, (ConnectionError, TimeoutError)):
        advice = "check the network (and HF_ENDPOINT), or point --source at local files"
    else:
        advice = (
            "check the id, build.config_name, build.split and build.revision; log in (`hf auth login`) for gated data"
        )
    return SourceError(f"cannot open Hub dataset {repo_id!r} ({why}); {advice}")


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
    try:
        ds: Any = datasets.load_dataset(repo_id, name=config_name, split=split, revision=resolved, streaming=streaming)
        if limit is not None:
            ds = ds.take(limit) if streaming else ds.select(range(min(limit, len(ds))))
        columns = ds.column_names or list((ds.features or {}).keys())
        if not columns:
            columns = list(next(iter(ds)).keys())
    except StopIteration:
        raise SourceError(f"Hub dataset {repo_id!r} split {split!r} is empty") from None
    except (OSError, ValueError) as exc:  # ConnectionError, DatasetNotFoundError, unknown split or config
        raise _hub_error(repo_id, exc) from None
    return Source(ds, _detect(set(columns), fmt, repo_id), repo_id, split, resolved, False)
