"""The one line between "your mistake" and "our bug".

`UserError` is the only thing the CLI reports as something the user can fix (one line, exit 2);
anything else is a bug (exit 1, the traceback in a log file). Each stage subclasses it once, so a
message can be traced to its stage and a caller can catch one stage's mistakes alone (distilabel's
`DistilabelUserError` habit). A builtin `ValueError` raised deep inside a library is therefore never
blamed on the user.
"""

from __future__ import annotations

import importlib.util


class UserError(Exception):
    """A mistake the user can fix; the message names the file or recipe key and what to write instead."""


class RecipeError(UserError):
    """A recipe or override that cannot be used."""


class MissingExtra(UserError):
    """A command needs an optional dependency group that is not installed."""


def require_extra(extra: str, *modules: str, what: str = "") -> None:
    """Refuse, in one line, a command whose extra is not installed (before any work starts)."""
    missing = [m for m in modules if _missing(m)]
    if missing:
        need = f"{what} needs {', '.join(missing)}" if what else f"this needs {', '.join(missing)}"
        raise MissingExtra(f"{need}, which the '{extra}' extra installs: pip install 'apo-planner[{extra}]'")


def _missing(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is None
    except (ImportError, ValueError):  # a parent package missing, or a module set to None in sys.modules
        return True
