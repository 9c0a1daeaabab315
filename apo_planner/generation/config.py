"""Backend configs and the role sections built from them.

Each registered backend has a config class (a `BackendConfig` whose `backend` field is a `Literal` of its
name). A role that generates (the synthesizer's `build.llm`, the planner's `eval.planner`) has a settings
class of its own (`RoleSettings`); its recipe section is flat, and its `backend` key picks which backend's
fields join the role's. That is a discriminated union on `backend`, dispatched through the registry rather
than spelled out as a `Union`, so a backend registered by another package is valid there too, and an
unknown name is answered with the registry's did-you-mean.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache
from typing import Annotated, Any, ClassVar, Self

from pydantic import Field, SerializeAsAny, ValidationError, WrapValidator

from apo_planner.config import StrictConfig
from apo_planner.registry import UnknownName


class BackendConfig(StrictConfig):
    """What every backend is configured with: which model, at which revision."""

    backend: str
    model: str = Field(description="Hub id or local model dir (openai: also the name the server answers to)")
    revision: str = Field(
        "main",
        description="Hub branch, tag or commit: resolved to its commit sha before the stage starts, loaded and "
        "served at that sha, and recorded (offline: the local snapshot's sha)",
    )
    tiny_model: bool = Field(False, description="create a tiny random model at `model` if absent (offline smoke)")


class RoleSettings(StrictConfig):
    """A role's own settings; the section it stands for also holds the fields of its backend's config.

    `RoleSettings.of(data)` validates a section; `section()` is the type a parent config annotates it with.
    Every validated section is an instance of both the role's class and its backend's config class.
    """

    default_backend: ClassVar[str] = "openai"
    backend_defaults: ClassVar[dict[str, dict[str, Any]]] = {}  # per backend: the role's defaults of its keys

    @classmethod
    def of(cls, data: Mapping[str, Any] | None = None, /, **values: Any) -> Self:
        data = {**(data or {}), **values}
        name = data.get("backend", cls.default_backend)
        data = {**cls.backend_defaults.get(name, {}), **data}
        combined = cls.with_backend(name)
        return combined.model_validate({**data, "backend": name})

    @classmethod
    def with_backend(cls, name: str) -> type[Self]:
        """The section's class for backend `name` (the role's settings with that backend's fields)."""
        from apo_planner.generation import BACKENDS

        try:
            backend = BACKENDS.get(name)
        except UnknownName as exc:
            raise ValidationError.from_exception_data(
                cls.__name__,
                [{"type": "value_error", "loc": ("backend",), "input": name, "ctx": {"error": ValueError(str(exc))}}],
            ) from None
        return _combined(cls, backend.config_class)

    @classmethod
    def section(cls) -> Any:
        """The annotation for a parent config's field: validated through `of`, dumped with every field."""

        def validate(value: Any, handler: Any) -> Any:
            if isinstance(value, cls) and isinstance(value, BackendConfig):
                return value
            if not isinstance(value, Mapping):
                return handler(value)  # pydantic's own "should be a dictionary" error
            return cls.of(value)

        return Annotated[SerializeAsAny[cls], WrapValidator(validate)]

    @classmethod
    def default(cls, **values: Any) -> Any:
        """A field default: the role's section on its default backend."""
        return Field(default_factory=lambda: cls.of(values))


@cache
def _combined(settings: type[RoleSettings], config: type[BackendConfig]) -> type:
    """One class per (role, backend): the role's fields override the backend's defaults (e.g. `model`)."""
    name = f"{settings.__name__}[{config.model_fields['backend'].default}]"
    return type(name, (settings, config), {"__module__": settings.__module__, "__doc__": settings.__doc__})


def valid_keys(settings: type[RoleSettings], data: Any) -> list[str] | None:
    """The keys a section with this `data` accepts (for 'unknown key' messages), or None if unknowable."""
    name = data.get("backend", settings.default_backend) if isinstance(data, Mapping) else settings.default_backend
    try:
        return sorted(settings.with_backend(name).model_fields)
    except ValidationError:
        return None
