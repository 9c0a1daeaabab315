"""The one line between "your mistake" and "our bug".

`UserError` is the only thing the CLI reports as something the user can fix (one line, exit 2);
anything else is a bug (exit 1, the traceback in a log file). Each stage subclasses it once, so a
message can be traced to its stage and a caller can catch one stage's mistakes alone (distilabel's
`DistilabelUserError` habit). A builtin `ValueError` raised deep inside a library is therefore never
blamed on the user.
"""

from __future__ import annotations

import errno
import importlib.util


class UserError(Exception):
    """A mistake the user can fix; the message names the file or recipe key and what to write instead."""


class RecipeError(UserError):
    """A recipe or override that cannot be used."""


class MissingExtra(UserError):
    """A command needs an optional dependency group that is not installed."""


def require_extra(extra: str, *modules: str, what: str = "") -> None:
    """Refuse, in one line, a command whose extra is not installed (before any work starts)."""
    missing = [m for m in modules if module_missing(m)]
    if missing:
        need = f"{what} needs {', '.join(missing)}" if what else f"this needs {', '.join(missing)}"
        raise MissingExtra(
            f"{need}, which the '{extra}' extra installs: in the apo-planner checkout, "
            f"pip install -c constraints.txt -e '.[{extra}]' (torch==2.13.0 first)"
        )


def module_missing(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is None
    except (ImportError, ValueError):  # a parent package missing, or a module set to None in sys.modules
        return True


def machine_state_message(exc: BaseException) -> str | None:
    """The line for an `OSError` the user fixes on their machine (a full disk, a read-only or forbidden folder,
    a path that is not there), or None. Shared by the CLI and the training worker, which runs in its own process
    and must refuse these in one line too rather than report them as a bug."""
    if not isinstance(exc, OSError):
        return None
    where = f" {exc.filename}" if exc.filename else ""
    if exc.errno == errno.ENOSPC:
        return f"no space left on the device writing{where}; free space or point the output at another disk"
    if exc.errno == errno.EROFS:
        return f"read-only file system:{where}; write somewhere you may (--output, --set ...output=DIR)"
    if isinstance(exc, PermissionError):
        return f"permission denied:{where}; write somewhere you may (--output, --set ...output=DIR) or fix it"
    if isinstance(exc, (FileNotFoundError, IsADirectoryError, NotADirectoryError)) and where:
        return f"{exc.strerror or 'cannot open'}:{where}; check the path"
    return None
