"""Decontamination: the planner must not be trained on the questions it is evaluated on.

Every user question of the BFCL data files shipped inside `bfcl_eval` is cut into word n-grams;
a dataset query sharing any n-gram with them (or equal to a question shorter than n words) is
removed and counted. Matching is on lowercased word tokens, so punctuation and spacing
differences do not hide a copy.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from apo_planner.errors import MissingExtra

_WORD_RE = re.compile(r"\w+", re.UNICODE)


def words(text: str) -> list[str]:
    return _WORD_RE.findall(text.lower())


def ngrams(tokens: list[str], n: int) -> Iterator[tuple[str, ...]]:
    if len(tokens) < n:
        if tokens:
            yield tuple(tokens)
        return
    for i in range(len(tokens) - n + 1):
        yield tuple(tokens[i : i + n])


def bfcl_data_dir() -> Path:
    """bfcl_eval's packaged data folder, found without importing bfcl_eval (which needs set-up)."""
    import importlib.util

    spec = importlib.util.find_spec("bfcl_eval")
    if spec is None or not spec.submodule_search_locations:
        raise MissingExtra(
            "build.decontamination needs bfcl-eval (it ships the questions to decontaminate against), which the "
            "'eval' extra installs: pip install 'apo-planner[eval]'; or set build.decontamination.enabled=false"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "data"


def bfcl_questions(pattern: str = "BFCL_v4_*.json") -> Iterator[tuple[str, str]]:
    """(entry id, user question text) for every user turn of every matching BFCL data file."""
    for path in sorted(bfcl_data_dir().glob(pattern)):
        with path.open("rb") as fh:
            for line in fh:
                try:
                    entry = orjson.loads(line)
                except orjson.JSONDecodeError:
                    break  # not a file of entries (e.g. the format-sensitivity index)
                if not isinstance(entry, dict):
                    break
                for turn in entry.get("question") or []:
                    for message in turn if isinstance(turn, list) else [turn]:
                        if isinstance(message, dict) and message.get("role") == "user" and message.get("content"):
                            yield entry.get("id", path.stem), str(message["content"])


@dataclass
class Decontaminator:
    n: int
    index: dict[tuple[str, ...], str] = field(default_factory=dict)  # n-gram -> a BFCL id holding it
    questions: int = 0

    @classmethod
    def from_questions(cls, questions: Iterable[tuple[str, str]], n: int) -> Decontaminator:
        self = cls(n=n)
        for entry_id, text in questions:
            self.questions += 1
            for gram in ngrams(words(text), n):
                self.index.setdefault(gram, entry_id)
        return self

    @classmethod
    def from_bfcl(cls, n: int, pattern: str = "BFCL_v4_*.json") -> Decontaminator:
        return cls.from_questions(bfcl_questions(pattern), n)

    def match(self, query: str) -> str | None:
        """The id of a BFCL entry the query overlaps with, or None."""
        for gram in ngrams(words(query), self.n):
            hit = self.index.get(gram)
            if hit is not None:
                return hit
        return None
