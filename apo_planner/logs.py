"""Logging for every command and worker: one `apo_planner` logger tree, one handler, rank 0 only.

Progress and notes go through `logging` (`-v` / `--log-level` set the level); a command's result (a
table, a path, JSON) is printed to stdout by the entry layer. On a terminal the handler is rich's; in
a pipe, a CI log or a test it is plain lines, so a message is never wrapped or decorated. Under
`accelerate launch` every rank but 0 logs warnings and errors only (they would repeat rank 0's lines).
"""

from __future__ import annotations

import logging
import os
import sys

ROOT = "apo_planner"


def rank() -> int:
    """This process's rank under torch.distributed / accelerate (0 when not launched)."""
    for var in ("RANK", "LOCAL_RANK"):
        value = os.environ.get(var, "")
        if value.isdigit():
            return int(value)
    return 0


def setup(level: int | str = logging.INFO) -> logging.Logger:
    """(Re)configure the `apo_planner` loggers; idempotent, so tests and workers can call it again."""
    logger = logging.getLogger(ROOT)
    numeric = logging.getLevelName(level.upper()) if isinstance(level, str) else level
    if not isinstance(numeric, int):
        raise ValueError(f"unknown log level {level!r}; use DEBUG, INFO, WARNING or ERROR")
    logger.setLevel(numeric if rank() == 0 else max(numeric, logging.WARNING))
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
    if sys.stderr.isatty():
        from rich.logging import RichHandler

        handler: logging.Handler = RichHandler(show_time=False, show_path=False, markup=False)
    else:
        handler = _StderrHandler()
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger.addHandler(handler)
    logger.propagate = False
    return logger


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever `sys.stderr` is at the time (pytest's capture swaps it after setup)."""

    def __init__(self) -> None:
        super().__init__()

    @property
    def stream(self):  # type: ignore[override]
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:  # StreamHandler.__init__ assigns it
        pass
