"""Base class for every stage's configuration: strict, typed, with errors that list the valid keys."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from apo_planner.errors import RecipeError

__all__ = ["RecipeError", "StrictConfig", "format_validation_error"]


class StrictConfig(BaseModel):
    """Unknown keys are errors (a typo must not silently fall back to a default)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    @classmethod
    def parse(cls, data: dict[str, Any], where: str = "recipe") -> StrictConfig:
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise RecipeError(format_validation_error(cls, exc, where, data)) from None


def format_validation_error(cls: type[BaseModel], exc: ValidationError, where: str, data: Any = None) -> str:
    lines = [f"invalid {where}:"]
    for err in exc.errors():
        path = ".".join(str(p) for p in err["loc"])
        if err["type"] == "extra_forbidden":
            valid = _valid_keys(cls, err["loc"][:-1], data)
            lines.append(f"  unknown key '{path}'; valid keys here: {', '.join(valid)}")
        else:
            lines.append(f"  {path}: {err['msg']} (got {err.get('input')!r})")
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
