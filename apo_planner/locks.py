"""One writer per output folder: an exclusive lock held while a command writes it.

The lock is `fcntl.flock` on a file beside the folder (`.NAME.lock`), not in it: a folder replaced
atomically (`apo_planner.artifacts.atomic_dir`) is a new directory, and a lock inside the old one
would no longer exclude anybody. The kernel drops the lock when its process ends however it ends
(kill -9 included), so a lock left by a killed run is simply taken; the file keeps the PID and
command of its holder, to name it to a second run, and a finished run empties it, so a record found
by the next run is a killed run's (one log line says it was taken over).
Locks are reentrant within a process: `release` holds its folder and runs stages that lock theirs.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

from apo_planner.errors import UserError

logger = logging.getLogger(__name__)

try:
    import fcntl
except ImportError:  # not POSIX: no locking (documented in docs/troubleshooting/faults.md)
    fcntl = None  # type: ignore[assignment]

_held: dict[Path, int] = {}  # lock file -> depth, for this process


class OutputLocked(UserError):
    """Another run is writing the same output folder."""


def lock_path(folder: Path) -> Path:
    folder = Path(folder).resolve()
    return folder.with_name(f".{folder.name}.lock")


def _holder(path: Path) -> dict:
    try:
        return json.loads(path.read_text() or "{}")
    except (OSError, ValueError):
        return {}


def pid_alive(pid: int) -> bool:
    """Whether a process with this PID exists here (someone else's counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextlib.contextmanager
def output_lock(folder: str | Path, command: str, *, shared: bool = False) -> Iterator[None]:
    """Hold the folder's lock for the block, or refuse in one line naming the process that holds it. `shared`:
    many holders at once (the shards of one build, side by side), none while someone holds it alone (the merge
    or a whole build, which replace the folder the shards write into)."""
    path = lock_path(Path(folder))
    if path in _held or fcntl is None:
        _held[path] = _held.get(path, 0) + 1
        try:
            yield
        finally:
            _held[path] -= 1
            if not _held[path]:
                del _held[path]
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
        except BlockingIOError:
            who = _holder(path)
            by = f"PID {who['pid']} (apo-planner {who.get('command', '?')})" if who.get("pid") else "another process"
            on = f" on {who['host']}" if who.get("host") and who["host"] != socket.gethostname() else ""
            raise OutputLocked(
                f"{Path(folder)} is being written by {by}{on}; wait for it to finish or write somewhere else "
                f"(lock: {path})"
            ) from None
        previous = _holder(path)
        if previous.get("pid") and previous.get("host") == socket.gethostname() and not pid_alive(previous["pid"]):
            logger.info(
                "%s: took over the lock of a run that did not finish (PID %s, apo-planner %s)",
                Path(folder),
                previous["pid"],
                previous.get("command", "?"),
            )
        record = {"pid": os.getpid(), "host": socket.gethostname(), "command": command, "since": time.time()}
        if not shared:  # a shared holder leaves the record alone: the others still hold the lock
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps(record).encode(), 0)
        _held[path] = 1
        try:
            yield
        finally:
            del _held[path]
            if not shared:
                os.ftruncate(fd, 0)  # a finished run leaves no holder: a record found later is a killed run's
    finally:
        os.close(fd)  # releases the lock; the file stays (removing it would race with the next locker)
