"""Registries: the one list of each kind of extension (trajectory formats, generation backends, benchmarks).

Modelled on lm-evaluation-harness's `lm_eval/api/registry.py`: an entry registers itself by name where
it is defined, everything that needs the list (config validation, CLI choices, `check`, the docs'
tables) asks the registry, and an unknown name is answered with the closest valid ones. Third-party
packages add entries through a Python entry-point group, loaded the first time the list is read:

    [project.entry-points."apo_planner.formats"]
    my_logs = "my_package.formats:MyLogs"

Built-in entries are named by module path and imported only when the list is read, so importing a
registry costs nothing and a rule build never imports the benchmark's heavy dependencies.
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Callable, Iterator
from importlib.metadata import entry_points
from typing import Generic, TypeVar

from apo_planner.errors import UserError

T = TypeVar("T")


class UnknownName(UserError):
    """A name no entry of the registry has; the message lists the close and the valid ones."""


class Registry(Generic[T]):
    """Named entries of one kind. `kind` names them in messages; `group` is the entry-point group."""

    def __init__(self, kind: str, group: str, builtins: tuple[str, ...] = ()) -> None:
        self.kind = kind
        self.group = group
        self._builtins = builtins  # modules whose import registers the built-in entries
        self._entries: dict[str, T] = {}
        self._loaded = False

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator (or call) that adds `obj` under `name`; a name registered twice is a bug."""

        def add(obj: T) -> T:
            if name in self._entries and self._entries[name] is not obj:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._entries[name] = obj
            return obj

        return add

    def _load(self) -> None:
        if self._loaded:
            return
        self._loaded = True
        for module in self._builtins:
            importlib.import_module(module)
        for point in entry_points(group=self.group):
            if point.name not in self._entries:
                self.register(point.name)(point.load())

    def names(self) -> list[str]:
        self._load()
        return sorted(self._entries)

    def get(self, name: str) -> T:
        self._load()
        try:
            return self._entries[name]
        except KeyError:
            raise UnknownName(self.unknown(name)) from None

    def unknown(self, name: str, extra: tuple[str, ...] = ()) -> str:
        """'unknown KIND 'x'; did you mean …? (valid: …)' for a name this registry does not have; `extra`:
        names a caller accepts beside the entries (e.g. 'auto')."""
        valid = [*self.names(), *extra]
        close = difflib.get_close_matches(name, valid, n=3, cutoff=0.6)
        hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
        return f"unknown {self.kind} {name!r}{hint} (valid: {', '.join(valid)})"

    def __contains__(self, name: object) -> bool:
        self._load()
        return name in self._entries

    def __iter__(self) -> Iterator[tuple[str, T]]:
        self._load()
        return iter(sorted(self._entries.items()))

    def validator(self, *extra: str) -> Callable[[str], str]:
        """A pydantic `AfterValidator` that accepts the registered names (and `extra` ones such as 'auto')."""

        def check(name: str) -> str:
            if name not in extra and name not in self:
                raise ValueError(self.unknown(name, extra))
            return name

        return check
