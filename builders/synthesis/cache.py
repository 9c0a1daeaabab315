"""A persistent, content-addressed cache of synthesizer answers (SQLite, one row per answer).

Keys hash everything that determines an answer: the trajectory's content, the model and its
revision, the prompt template's sha256 and the sampling parameters. Each answer is committed in the
event-loop turn after it arrives (answers arriving together share one transaction), so a build
killed at any point (kill -9 included) loses at most the requests in flight, and a re-run asks
the model only for what is missing.
"""

from __future__ import annotations

import hashlib
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

import orjson

from apo_planner.builders.errors import BuildError

_SCHEMA = """
CREATE TABLE IF NOT EXISTS answers (
    key TEXT PRIMARY KEY,
    status TEXT NOT NULL,          -- 'ok' or 'invalid'
    selection TEXT,                -- the validated selection (JSON) when ok
    reason TEXT,                   -- why the last attempt was rejected when invalid
    raw TEXT NOT NULL,             -- every raw model output, in attempt order (JSON list)
    attempts INTEGER NOT NULL,
    created REAL NOT NULL
)
"""


def cache_key(*parts: object) -> str:
    return hashlib.sha256(orjson.dumps(parts, option=orjson.OPT_SORT_KEYS)).hexdigest()


@dataclass(frozen=True)
class CachedAnswer:
    status: str
    selection: dict | None
    reason: str | None
    raw: list[str]
    attempts: int


class CacheError(BuildError):
    """The answer cache cannot be opened or written (a read-only folder, a full disk, not a database)."""


class AnswerCache:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._db = sqlite3.connect(self.path, timeout=60)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute(_SCHEMA)
            self._db.commit()
        except sqlite3.Error as exc:
            raise self._error(exc) from None

    def _error(self, exc: sqlite3.Error) -> CacheError:
        return CacheError(
            f"synthesis cache {self.path}: {exc}; point build.llm.cache at a writable file on a disk with space"
        )

    def get(self, key: str) -> CachedAnswer | None:
        row = self._db.execute(
            "SELECT status, selection, reason, raw, attempts FROM answers WHERE key = ?", (key,)
        ).fetchone()
        if row is None:
            return None
        status, selection, reason, raw, attempts = row
        return CachedAnswer(status, orjson.loads(selection) if selection else None, reason, orjson.loads(raw), attempts)

    def __contains__(self, key: str) -> bool:
        return self._db.execute("SELECT 1 FROM answers WHERE key = ?", (key,)).fetchone() is not None

    def put(self, key: str, answer: CachedAnswer, commit: bool = True) -> None:
        """Store an answer; `commit=False` leaves it to the caller's next `commit` (answers that land together
        share one transaction)."""
        try:
            self._db.execute(
                "INSERT OR REPLACE INTO answers VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    key,
                    answer.status,
                    orjson.dumps(answer.selection).decode() if answer.selection is not None else None,
                    answer.reason,
                    orjson.dumps(answer.raw).decode(),
                    answer.attempts,
                    time.time(),
                ),
            )
            if commit:
                self._db.commit()
        except sqlite3.Error as exc:  # "database or disk is full": the run stops, what was committed stays
            raise self._error(exc) from None

    def commit(self) -> None:
        try:
            self._db.commit()
        except sqlite3.Error as exc:
            raise self._error(exc) from None

    def close(self) -> None:
        self._db.close()
