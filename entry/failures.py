"""How a failure reaches the person at the terminal: one line, and an exit status that says whose it is.

- exit 2: a `UserError` (every stage's mistakes subclass it), or the machine's state the user can change
  (a full disk, a folder they may not write, a path that is not there, a network or Hub that cannot be
  reached, a model that cannot be loaded); the line names the path or key and the fix.
- exit 1: anything else is a bug. The line says so and where the full traceback was written.
- exit 130: Ctrl-C.
"""

from __future__ import annotations

import os
import re
import tempfile
import time
import traceback
from pathlib import Path

from apo_planner.errors import UserError, machine_state_message

LOG_DIR_ENV = "APO_PLANNER_LOG_DIR"  # where tracebacks of unexpected errors go (default: <tmp>/apo-planner)


def one_line(text: object) -> str:
    """A (possibly multi-line) message as one line: `a:\n  b\n  c` -> `a: b; c`."""
    out = ""
    for line in (part.strip() for part in str(text).splitlines()):
        if line:
            out += line if not out else (" " if out.endswith((":", ".")) else "; ") + line
    return out


def offline() -> bool:
    return any(
        os.environ.get(v, "").lower() in ("1", "true", "yes", "on") for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    )


def _network_error(exc: BaseException) -> bool:
    return isinstance(exc, (ConnectionError, TimeoutError)) or type(exc).__module__.split(".")[0] in (
        "httpx",
        "httpx2",
        "requests",
        "urllib3",
    )


def user_message(exc: BaseException, model: str | None = None) -> str | None:
    """The line for a failure the user can fix, or None when it is a bug. `model`: what the command was
    loading, for errors (transformers' "couldn't connect") that do not say."""
    message = one_line(exc) or type(exc).__name__
    if isinstance(exc, UserError):
        return message
    if type(exc).__name__ == "HFValidationError":  # a path that is not there, taken for a Hub id
        named = re.findall(r"'([^']+)'", message)
        what = model or (named[-1] if named else "the model")
        return f"{what!r} is no folder here and not a Hub id (owner/name); check the path, or train/merge first"
    if not isinstance(exc, OSError) and not _network_error(exc):
        return None
    if (machine := machine_state_message(exc)) is not None:
        return machine
    if model and model.startswith((".", "/", "~")) and not Path(model).expanduser().exists():
        return f"model {model!r}: no such folder; give a merged model folder or a Hub id"
    if model and model not in message:
        message = f"cannot load model {model!r}: {message}"
    if _network_error(exc) or "connect" in message.lower():
        message += " (HF_HUB_OFFLINE is set: unset it or use local paths)" if offline() else " (check the network)"
    return message


def write_traceback(command: str, exc: BaseException) -> Path | None:
    """The full traceback in a log file of its own, so the terminal keeps one line; None if it cannot be written."""
    folder = Path(os.environ.get(LOG_DIR_ENV) or Path(tempfile.gettempdir()) / "apo-planner")
    path = folder / f"{command}-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.log"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(traceback.format_exception(exc)), encoding="utf-8")
    except OSError:
        return None
    return path


def report(command: str, exc: BaseException, model: str | None = None) -> tuple[str, int]:
    """The error line (without the `apo-planner CMD: error: ` prefix) and the exit status."""
    message = user_message(exc, model)
    if message is not None:
        return message, 2
    summary = one_line(str(exc).split("\n", 1)[0])[:300] or type(exc).__name__
    log = write_traceback(command, exc)
    where = f"the traceback is in {log}" if log else "rerun with --debug for the traceback"
    return f"unexpected {type(exc).__name__}: {summary} (a bug: {where}; --debug prints it; please report it)", 1
