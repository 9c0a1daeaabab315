"""Decontamination: the planner must not be trained on the questions it is evaluated on.

Every question of every benchmark the recipe names (`build.decontamination.benchmarks`; each
benchmark of the `apo_planner.benchmarks` registry supplies its own) is cut into word n-grams; a
dataset query sharing any n-gram with them (or equal to a question shorter than n words) is removed
and counted. Matching is on lowercased word tokens, so punctuation and spacing
differences do not hide a copy.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

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


@dataclass
class Decontaminator:
    n: int
    index: dict[tuple[str, ...], str] = field(default_factory=dict)  # n-gram -> an entry id holding it
    questions: Counter[str] = field(default_factory=Counter)  # per benchmark

    def add(self, questions: Iterable[tuple[str, str]], benchmark: str = "questions") -> Decontaminator:
        """Index (entry id, text) pairs; a hit names the entry as `benchmark/id`."""
        for entry_id, text in questions:
            self.questions[benchmark] += 1
            for gram in ngrams(words(text), self.n):
                self.index.setdefault(gram, f"{benchmark}/{entry_id}")
        return self

    @classmethod
    def from_questions(
        cls, questions: Iterable[tuple[str, str]], n: int, benchmark: str = "questions"
    ) -> Decontaminator:
        return cls(n=n).add(questions, benchmark)

    @classmethod
    def from_benchmarks(cls, names: Iterable[str], n: int) -> Decontaminator:
        from apo_planner.benchmarks import BENCHMARKS

        self = cls(n=n)
        for name in names:
            self.add(BENCHMARKS.get(name).decontamination_queries(), name)
        return self

    @staticmethod
    def require(names: Iterable[str]) -> None:
        """Before any work: each benchmark to decontaminate against must be there to read its questions."""
        from apo_planner.benchmarks import BENCHMARKS

        for name in names:
            what = f"build.decontamination against {name} (or set build.decontamination.enabled=false)"
            BENCHMARKS.get(name).require(what)

    def match(self, query: str) -> str | None:
        """`benchmark/entry id` of an entry the query overlaps with, or None."""
        for gram in ngrams(words(query), self.n):
            hit = self.index.get(gram)
            if hit is not None:
                return hit
        return None
