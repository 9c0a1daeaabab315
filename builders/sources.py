"""Opening a trajectory source as a `datasets` dataset, whatever it is.

Local JSON Lines (plain or gzip-compressed, `.jsonl.gz`) are read line by line as bytes into an
Arrow file of raw lines (decoded per record later), so one line that is not UTF-8 or not JSON, or
`arguments` that are a string in one row and a dict in the next, cannot break the whole file: it
becomes one counted drop naming its file and line. Parquet and Hub sources keep their columns. Hub
ids stream through `datasets` with the recipe's config, split and revision. What cannot be read at
all (no file, an empty source, a corrupt parquet or gzip file, an unreachable Hub, rows in no known
format or claimed by several) is a `SourceError` that says what to do.

The format is found from the first rows' content (`apo_planner.formats.detect`), unless `build.format`
names one. A format whose conversations span rows (OpenTelemetry spans, grouped by trace) has a local
JSON source regrouped here, one record per conversation, before the rows are read one by one.
"""

from __future__ import annotations

import glob
import gzip
import itertools
import logging
import os
import stat
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import datasets
import orjson
from datasets.arrow_writer import ArrowWriter

from apo_planner.artifacts import sha256_files
from apo_planner.builders.errors import SourceError
from apo_planner.formats import FORMATS, SAMPLE_ROWS, Detection, FormatError, detect

logger = logging.getLogger(__name__)

TEXT_COLUMN = "__raw_line__"  # the line's bytes: JSON decodes them directly (no str in between)
FILE_COLUMN = "__file__"
LINE_COLUMN = "__line__"  # 1-based, in its file
LINE_FEATURES = datasets.Features(
    {
        TEXT_COLUMN: datasets.Value("binary"),
        FILE_COLUMN: datasets.Value("string"),
        LINE_COLUMN: datasets.Value("int64"),
    }
)
_JSON_SUFFIXES = (".jsonl", ".json", ".ndjson")
_PARQUET_SUFFIXES = (".parquet",)
_GZIP = ".gz"  # any JSON source may be gzip-compressed: logs usually are
_FORMATS_HINT = (
    "JSON Lines (.jsonl, .jsonl.gz), a JSON array or object (.json) or parquet files of trajectories "
    "(`apo-planner formats` lists the formats read)"
)


@dataclass
class Source:
    dataset: datasets.Dataset | datasets.IterableDataset
    detection: Detection  # which format reads which row
    name: str  # provenance: Hub id, or "local:" + file names
    split: str
    revision: str  # Hub commit sha when resolvable, or the content hash of local files
    raw_text: bool  # rows are JSON text lines still to decode

    @property
    def format(self) -> str:
        """The format the rows are in, or `mixed` (stats.json counts the rows each format read)."""
        return self.detection.label

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


def _json_to_lines(path: Path, tmp_dir: Path) -> Path:
    """A `.json` file holding one array (or one object that spans lines, as an OTLP/JSON export does)
    becomes JSON Lines, so every source is read the same way."""
    with _open_bytes(path) as fh:
        head = fh.read(4096).lstrip()
    if head.startswith(b"{") and _kind(path) == ".json" and not _first_line_is_json(path):
        records: Any = None
        with _open_bytes(path) as fh:
            try:
                records = [orjson.loads(fh.read())]
            except orjson.JSONDecodeError:
                return path  # JSON Lines with a bad first line: that line costs itself
    elif head.startswith(b"["):
        try:
            with _open_bytes(path) as fh:
                records = orjson.loads(fh.read())
        except orjson.JSONDecodeError as exc:
            raise SourceError(
                f"{path} is not valid JSON ({exc}); fix it, or write one record per line (.jsonl) so a bad "
                "record costs only itself"
            ) from None
    else:
        return path
    out = tmp_dir / (path.name.removesuffix(_GZIP).removesuffix(".json") + ".jsonl")
    with out.open("wb") as fh:
        for r in records:
            fh.write(orjson.dumps(r) + b"\n")
    return out


def _first_line_is_json(path: Path) -> bool:
    with _open_bytes(path) as fh:
        try:
            return isinstance(orjson.loads(fh.readline()), dict)
        except orjson.JSONDecodeError:
            return False


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
    return {TEXT_COLUMN: raw, FILE_COLUMN: name, LINE_COLUMN: number}


def undecodable(raw: bytes) -> str:
    """Why a line's bytes are not a JSON document: not UTF-8 (where), or not JSON (what the parser said)."""
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return f"not UTF-8 (byte 0x{raw[exc.start]:02x} at column {exc.start + 1}); save the file as UTF-8"
    try:
        orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        return f"not JSON ({exc})"
    return "JSON"


def _read_lines(
    files: list[Path], names: list[str], limit: int | None, work_dir: Path
) -> tuple[datasets.Dataset, list[dict[str, Any]]]:
    """The lines into one Arrow file (memory stays flat whatever the files' size), and the first records,
    for format detection."""
    sample: list[dict[str, Any]] = []
    path = work_dir / "source-lines.arrow"
    with ArrowWriter(features=LINE_FEATURES, path=str(path)) as writer:
        for line in _lines(files, names, limit):
            writer.write(line)
            if len(sample) < SAMPLE_ROWS:
                try:
                    record = orjson.loads(line[TEXT_COLUMN])
                except orjson.JSONDecodeError:
                    continue
                if isinstance(record, dict):
                    sample.append(record)
        writer.finalize()
    return datasets.Dataset.from_file(str(path)), sample


def _regroup(lines: datasets.Dataset, detection: Detection, work_dir: Path) -> datasets.Dataset:
    """Lines of a format whose conversations span rows, as one line per conversation (`records`; the
    format bounds what it holds meanwhile). Lines that are not JSON objects stay as they are, so each still
    costs one counted drop."""
    fmt = FORMATS.get(detection.primary)
    kept: list[dict[str, Any]] = []

    def rows() -> Iterator[dict[str, Any]]:
        for line in lines:
            try:
                row = orjson.loads(line[TEXT_COLUMN])
            except orjson.JSONDecodeError:
                row = None
            if isinstance(row, dict):
                yield row
            else:
                kept.append(line)

    path = work_dir / "source-records.arrow"
    with ArrowWriter(features=LINE_FEATURES, path=str(path)) as writer:
        for number, record in enumerate(fmt.records(rows()), start=1):
            writer.write({TEXT_COLUMN: orjson.dumps(record), FILE_COLUMN: f"{fmt.name} record", LINE_COLUMN: number})
        for line in kept:
            writer.write(line)
        writer.finalize()
    return datasets.Dataset.from_file(str(path))


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


def _detect(sample: Iterable[Any], fmt: str, source: str) -> Detection:
    sample = list(sample)
    if fmt == "auto" and not sample:
        raise SourceError(
            f"no line of source {source!r} is a JSON object, so its format cannot be detected; "
            f"expected {_FORMATS_HINT} (or pass --format)"
        )
    try:
        return detect(sample, fmt, where=f"source {source!r}")
    except FormatError as exc:
        raise SourceError(str(exc)) from None


def _open_local(source: str, files: list[Path], fmt: str, limit: int | None, work_dir: Path) -> Source:
    parquet = [f for f in files if _kind(f) in _PARQUET_SUFFIXES]
    json_files = [f for f in files if _kind(f) in _JSON_SUFFIXES]
    unread = [f for f in files if f not in parquet and f not in json_files]
    if unread and not (parquet or json_files):
        kinds = ", ".join(_JSON_SUFFIXES + _PARQUET_SUFFIXES)
        raise SourceError(
            f"source {source!r}: {', '.join(str(f) for f in unread[:3])} is not a file type build reads ({kinds}, "
            "optionally .gz); rename it, e.g. a .txt of JSON lines to .jsonl"
        )
    if unread:
        logger.warning("source %r: skipped %d file(s) of another type: %s", source, len(unread), unread[:3])
    if Path(source).is_dir():
        skipped = [p for p in Path(source).rglob("*") if p.is_file() and not p.name.startswith(".")]
        skipped = [p for p in skipped if _kind(p) not in _JSON_SUFFIXES + _PARQUET_SUFFIXES]
        if skipped:
            logger.warning(
                "source %r: skipped %d file(s) that are not .jsonl/.json/.ndjson/.parquet (e.g. %s)",
                source, len(skipped), skipped[0],
            )  # fmt: skip
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
        sample = ds.select(range(min(SAMPLE_ROWS, len(ds)))).to_list()
        raw_text = False
    else:
        work_dir.mkdir(parents=True, exist_ok=True)
        names = [f.name for f in json_files]
        json_files = [_json_to_lines(f, work_dir) for f in json_files]
        ds, sample = _read_lines(json_files, names, limit, work_dir)
        raw_text = True
    if len(ds) == 0:
        raise SourceError(
            f"source {source!r} is empty: {', '.join(str(f) for f in files)} hold(s) no record; "
            f"point --source (build.source) at {_FORMATS_HINT}"
        )
    if limit is not None and len(ds) > limit:  # JSON Lines stop reading at the limit already
        ds = ds.select(range(limit))
    detection = _detect(sample, fmt, source)
    if raw_text and FORMATS.get(detection.primary).groups_rows:
        ds = _regroup(ds, detection, work_dir)
    return Source(ds, detection, name, "train", revision, raw_text)


def _resolve_revision(repo_id: str, revision: str) -> str:
    """Pin the commit a build reads before it reads anything, so provenance names data that cannot move
    under it (offline: the local snapshot's commit; neither is one line naming build.revision)."""
    from apo_planner.pinning import PinError, resolve

    try:
        return resolve(repo_id, revision, "dataset", "build.revision")
    except PinError as exc:
        raise SourceError(f"build.source {repo_id}: {exc}") from None


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
        sample = list(itertools.islice(iter(ds), SAMPLE_ROWS)) if fmt == "auto" else [{}]
    except (OSError, ValueError) as exc:  # ConnectionError, DatasetNotFoundError, unknown split or config
        raise _hub_error(repo_id, exc) from None
    if not sample:
        raise SourceError(f"Hub dataset {repo_id!r} split {split!r} is empty")
    return Source(ds, _detect(sample, fmt, repo_id), repo_id, split, resolved, False)
