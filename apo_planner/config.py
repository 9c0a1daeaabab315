"""Base class for every stage's configuration: strict, typed, with errors that list the valid keys."""

from __future__ import annotations

import difflib
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from apo_planner.errors import RecipeError

__all__ = ["RecipeError", "StrictConfig", "format_validation_error"]


class StrictConfig(BaseModel):
    """Unknown keys are errors (a typo must not silently fall back to a default)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    @classmethod
    def parse(cls, data: dict[str, Any], where: str = "recipe", origins: dict[str, str] | None = None) -> StrictConfig:
        """`origins`: dotted key -> where its value came from when not from `where` (an override)."""
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise RecipeError(format_validation_error(cls, exc, where, data, origins)) from None


def format_validation_error(
    cls: type[BaseModel], exc: ValidationError, where: str, data: Any = None, origins: dict[str, str] | None = None
) -> str:
    """Every error on its line, with the close matches of an unknown key and, for a value an override set,
    that override (not the recipe file) as its origin."""
    errors = exc.errors()
    paths = [".".join(str(p) for p in err["loc"]) for err in errors]
    overridden = {path: origin for path in paths for key, origin in (origins or {}).items()
                  if path == key or path.startswith(key + ".")}  # fmt: skip
    if overridden and len(overridden) == len(paths):
        where = ", ".join(dict.fromkeys(overridden.values()))
    lines = [f"invalid {where}:"]
    for err, path in zip(errors, paths, strict=True):
        origin = f" (from {overridden[path]})" if path in overridden and len(overridden) != len(paths) else ""
        if err["type"] == "extra_forbidden":
            valid = _valid_keys(cls, err["loc"][:-1], data)
            close = difflib.get_close_matches(str(err["loc"][-1]), valid, n=2)
            hint = f"did you mean {' or '.join(repr(c) for c in close)}? " if close else ""
            lines.append(f"  unknown key '{path}'{origin}; {hint}valid keys here: {', '.join(valid)}")
        else:
            lines.append(f"  {path}: {err['msg']} (got {err.get('input')!r}){origin}")
    return "\n".join(lines)


def _valid_keys(cls: type[BaseModel], loc: tuple[Any, ...], data: Any = None) -> list[str]:
    model: Any = cls
    for part in loc:
        field = model.model_fields.get(part) if isinstance(part, str) else None
        annotation = getattr(field, "annotation", None)
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return []
        data = data.get(part) if isinstance(data, dict) else None
        model = annotation
        if hasattr(model, "with_backend"):  # a role section: its keys depend on the backend it names
            backend = data.get("backend", model.default_backend) if isinstance(data, dict) else model.default_backend
            try:
                model = model.with_backend(backend)
            except ValidationError:
                return []
    return sorted(model.model_fields)
