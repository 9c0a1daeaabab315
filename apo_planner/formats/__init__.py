"""Trajectory formats: the one list of log shapes the toolkit reads, and how a source's format is found.

Each format is one module of this package that registers one `TrajectoryFormat`:

    @FORMATS.register("my_logs")
    class MyLogs(TrajectoryFormat):
        detection = "rows with a `turns` list of {speaker, text}"
        def sniff(self, row): ...
        def read(self, row): ...

Third-party packages add formats through the entry-point group `apo_planner.formats`. Everything that
needs the list (`build.format` validation, the CLI's `--format`, `apo-planner formats`, `check` and the
docs' table) asks `FORMATS`; nothing else names the formats.

A format is found by content: every format's `sniff` looks at the first rows of a source (`detect`). A
row that two formats claim, or a source none claims, is a `FormatError` naming the candidates and
`--format`. A source whose rows mix formats is read row by row (`reader_for`), each row by the format
that claims it.
"""

from __future__ import annotations

import pkgutil
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import orjson

from apo_planner.errors import UserError
from apo_planner.formats.records import Conversation, DropReason, Message, RecordDropped, ToolCall
from apo_planner.registry import Registry
from apo_planner.tools import normalize_tools

__all__ = [
    "Conversation",
    "Detection",
    "DropReason",
    "FormatError",
    "Message",
    "RecordDropped",
    "ToolCall",
    "TrajectoryFormat",
    "detect",
    "FORMATS",
    "markdown_table",
    "reader_for",
    "refresh_index",
]

SAMPLE_ROWS = 20  # rows of a source whose content decides its format
DOCS_FOLDER = "docs/formats"  # where the built-in formats' pages live in the repository


class FormatError(UserError):
    """A source whose format cannot be told from its rows: none claims them, or several do."""


class TrajectoryFormat:
    """One log format: how its rows are recognised, how one row becomes a `Conversation`, and how its tool
    catalog is normalised. `name` is set when the format is registered."""

    name: str = ""
    detection: str = ""  # one line for people: what `sniff` looks for
    docs: str = ""  # its documentation page (default: docs/formats/<name>.md); a URL for third-party formats

    def sniff(self, row: Mapping[str, Any]) -> bool:
        """Whether `row` is this format's, judged by its content (the shapes of its messages, blocks or
        items), never by column names alone. Cheap: it runs on every row of a mixed source."""
        raise NotImplementedError

    def read(self, row: dict[str, Any]) -> Conversation:
        """One row as a conversation; what cannot be read raises `RecordDropped` with a named reason."""
        raise NotImplementedError

    def tools(self, raw: Any) -> list[dict[str, Any]]:
        """The row's tool catalog in the OpenAI shape (from OpenAI, bare-function, Anthropic `input_schema`
        or MCP `inputSchema` definitions, as a list, a JSON string or an MCP `tools/list` result)."""
        if isinstance(raw, (str, bytes)):
            try:
                raw = orjson.loads(raw)
            except orjson.JSONDecodeError as exc:
                raise RecordDropped(DropReason.NO_TOOL_CATALOG, f"tools is not JSON: {exc}") from None
        if not isinstance(raw, (list, dict)):
            raise RecordDropped(DropReason.NO_TOOL_CATALOG, "tool catalog is not a list")
        tools = normalize_tools(raw)
        if not tools:
            raise RecordDropped(DropReason.NO_TOOL_CATALOG, "no usable tool definitions")
        return tools

    def records(self, rows: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        """The records a file's rows hold, in order. One row is one record for most formats; a format whose
        conversations span rows (trace spans) regroups them here, before rows are read one by one."""
        yield from rows

    @property
    def groups_rows(self) -> bool:
        """Whether `records` regroups rows (the source then reads the whole file before abstraction)."""
        return type(self).records is not TrajectoryFormat.records

    @property
    def docs_page(self) -> str:
        return self.docs or f"{DOCS_FOLDER}/{self.name}.md"


class FormatRegistry(Registry[TrajectoryFormat]):
    """`Registry` whose entries are format instances: registering a class (or an entry point naming one)
    instantiates it and gives it the registered name."""

    def register(self, name: str) -> Callable[[Any], Any]:
        add = super().register(name)

        def add_format(obj: Any) -> Any:
            instance = obj() if isinstance(obj, type) else obj
            if not isinstance(instance, TrajectoryFormat):
                raise TypeError(f"trajectory format {name!r} is a {type(instance).__name__}, not a TrajectoryFormat")
            instance.name = name
            add(instance)
            return obj

        return add_format


# Built-in FORMATS: every public module of this package (importing one registers its format).
FORMATS: FormatRegistry = FormatRegistry(
    "trajectory format",
    "apo_planner.formats",
    builtins=tuple(f"{__name__}.{m.name}" for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_")),
)


@dataclass(frozen=True)
class Detection:
    """What a source's first rows are: `primary` reads every row no other format claims (a forced format
    reads every row); `found` counts the sampled rows per format."""

    primary: str
    found: tuple[tuple[str, int], ...] = ()
    forced: bool = False

    @property
    def mixed(self) -> bool:
        return len(self.found) > 1

    @property
    def label(self) -> str:
        """What stats.json's `format` says: the format, or `mixed` when the first rows mix several."""
        return "mixed" if self.mixed else self.primary


def _claims(row: Mapping[str, Any]) -> list[str]:
    return [name for name, fmt in FORMATS if fmt.sniff(row)]


def _force_hint(names: Iterable[str]) -> str:
    return " or ".join(f"--format {n}" for n in names) + " (build.format)"


def detect(rows: Iterable[Any], forced: str = "auto", where: str = "the source") -> Detection:
    """The format of a source from its first rows' content (`forced`, unless 'auto'). Raises `FormatError`
    when no row is in a known format, or when one row is claimed by several."""
    if forced != "auto":
        FORMATS.get(forced)  # an unknown name: did-you-mean
        return Detection(forced, forced=True)
    found: Counter[str] = Counter()
    seen = 0
    for row in rows:
        if not isinstance(row, Mapping):
            continue
        seen += 1
        claims = _claims(row)
        if len(claims) > 1:
            raise FormatError(
                f"{where}: a row matches several trajectory formats ({', '.join(claims)}); pass {_force_hint(claims)}"
            )
        if claims:
            found[claims[0]] += 1
    if not found:
        what = f"none of the first {seen} rows" if seen else "no row"
        raise FormatError(
            f"{where}: {what} is in a known trajectory format ({', '.join(FORMATS.names())}; "
            f"`apo-planner formats` shows what each looks like); pass --format NAME (build.format) to force one"
        )
    ordered = tuple(sorted(found.items(), key=lambda kv: (-kv[1], kv[0])))
    return Detection(ordered[0][0], ordered)


def reader_for(row: Mapping[str, Any], detection: Detection) -> TrajectoryFormat:
    """The format that reads `row`: the forced one; else the primary when it claims the row, else the one
    other format that does. A row nobody claims goes to the primary, whose reader names what is wrong."""
    primary = FORMATS.get(detection.primary)
    if detection.forced or primary.sniff(row):
        return primary
    claims = [fmt for name, fmt in FORMATS if name != detection.primary and fmt.sniff(row)]
    if len(claims) > 1:
        names = ", ".join(f.name for f in claims)
        raise RecordDropped(DropReason.AMBIGUOUS_FORMAT, f"the row matches several formats ({names})")
    return claims[0] if claims else primary


TABLE_START, TABLE_END = "<!-- formats-table:", "<!-- formats-table: end -->"


def markdown_table(relative_to: str = DOCS_FOLDER) -> str:
    """The formats as a Markdown table (name, detection rule, docs link), for docs/formats/index.md; links
    to built-in pages are relative to `relative_to`."""
    lines = ["| format | detected when a row… | docs |", "| --- | --- | --- |"]
    for name, fmt in FORMATS:
        page = fmt.docs_page
        if "://" not in page:
            page = str(PurePosixPath(page).relative_to(relative_to)) if page.startswith(relative_to + "/") else page
        lines.append(f"| `{name}` | {fmt.detection} | [{name}]({page}) |")
    return "\n".join(lines) + "\n"


def refresh_index(index: Path) -> bool:
    """Rewrite the table of formats in a docs page (between its `<!-- formats-table: ... -->` line and
    `<!-- formats-table: end -->`) from the registry; True when it changed."""
    text = index.read_text(encoding="utf-8")
    start = text.index(TABLE_START)
    start = text.index("-->", start) + len("-->\n")
    end = text.index(TABLE_END, start)
    new = text[:start] + markdown_table() + text[end:]
    if new != text:
        index.write_text(new, encoding="utf-8")
    return new != text
