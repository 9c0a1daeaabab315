"""Recipes: one YAML file configures a whole run; `--set key=value` overrides any knob.

Each stage owns its config class (next to its code, like a TRL trainer and its config); the
recipe only composes them. `--recipe smoke` names a recipe shipped in the package
(`apo_planner.recipes`), a path names a file. Relative `build.source` paths resolve against the
recipe's folder when they exist there, else against the shipped recipes' folder (where a published
recipe's `data/…` source lives), so recipes work from any working directory.
"""

from __future__ import annotations

import difflib
import hashlib
from pathlib import Path
from typing import Any

import yaml
from pydantic import model_validator

from apo_planner import recipes
from apo_planner.builders.config import BuildConfig
from apo_planner.cards.config import ReleaseConfig
from apo_planner.config import RecipeError, StrictConfig
from apo_planner.evaluation.config import EvalConfig
from apo_planner.training.config import TrainConfig

DEFAULT_RECIPE = recipes.shipped()[recipes.DEFAULT]


class Recipe(StrictConfig):
    name: str
    build: BuildConfig
    train: TrainConfig = TrainConfig()
    eval: EvalConfig = EvalConfig()
    release: ReleaseConfig = ReleaseConfig()

    @model_validator(mode="after")
    def _release_names_the_base_model(self) -> Recipe:
        """`release.base` unset: the model repo ids take the training base model's name."""
        if self.release.base is None:  # frozen config: set once, while it is being validated
            object.__setattr__(self, "release", self.release.with_base_model(self.train.base_model))
        return self

    def sha256(self) -> str:
        """Hash of the resolved recipe (after overrides): what a run was configured with."""
        return hashlib.sha256(self.model_dump_json().encode()).hexdigest()


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """yaml's error as 'PROBLEM at line L, column C' (its own text spans several lines)."""
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    problem = getattr(exc, "problem", None) or getattr(exc, "context", None) or str(exc).splitlines()[0]
    return f"{problem} at line {mark.line + 1}, column {mark.column + 1}" if mark else problem


def parse_override(text: str) -> tuple[list[str], Any]:
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise RecipeError(f"override {text!r} is not key=value (e.g. --set build.limit=100)")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as exc:
        raise RecipeError(
            f"override {text!r}: the value is not YAML ({_yaml_problem(exc)}); quote it, e.g. --set '{key}=\"...\"'"
        ) from None
    return key.strip().split("."), value


def read_recipe_file(path: Path) -> dict[str, Any]:
    """The recipe's YAML mapping; what is wrong with the file names it, and where."""
    if not path.is_file():
        shipped = ", ".join(recipes.shipped())
        close = difflib.get_close_matches(str(path), list(recipes.shipped()), n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise RecipeError(
            f"recipe {path} not found; {hint}pass --recipe FILE or the name of a shipped recipe ({shipped})"
        )
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise RecipeError(f"recipe {path} is not UTF-8 text (byte offset {exc.start}); save it as UTF-8") from None
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise RecipeError(
            f"recipe {path} is not valid YAML: {_yaml_problem(exc)}; check the indentation and quoting there"
        ) from None
    if not isinstance(data, dict):
        raise RecipeError(f"recipe {path} must be a YAML mapping (build:, train:, ...), not a {type(data).__name__}")
    return data


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    for text in overrides:
        path, value = parse_override(text)
        node = data
        for part in path[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise RecipeError(f"override {text!r}: '{part}' is a value, not a section")
            node = child
        node[path[-1]] = value
    return data


_KINDS = {list: "a list", int: "a number", float: "a number", str: "a string", bool: "true/false"}


def check_sections(data: dict[str, Any], where: str, overrides: list[str] | None = None) -> None:
    """Each stage's section is a mapping of keys (a list or a number there would fail deep inside)."""
    for name, field in Recipe.model_fields.items():
        annotation = field.annotation
        if name not in data or not (isinstance(annotation, type) and issubclass(annotation, StrictConfig)):
            continue
        value = data[name]
        if value is not None and not isinstance(value, dict):
            by = next((o for o in reversed(overrides or []) if o.partition("=")[0].strip() == name), None)
            origin = f"--set {by}" if by else where
            raise RecipeError(
                f"{origin}: '{name}' must be a section of keys ({name}: then indented key: value lines), "
                f"not {_KINDS.get(type(value), 'a ' + type(value).__name__)} ({value!r:.60})"
            )
        if value is None:
            data[name] = {}  # `train:` with nothing under it: the defaults


def recipe_path(name_or_path: str | Path | None) -> Path:
    """A shipped recipe's file for its name (`smoke`, `paper`), else the path as given."""
    if name_or_path is None:
        return DEFAULT_RECIPE
    text = str(name_or_path)
    shipped = recipes.shipped()
    if text in shipped and not Path(text).is_file():
        return shipped[text]
    return Path(text)


def load_recipe(path: str | Path | None = None, overrides: list[str] | None = None) -> Recipe:
    """Read a recipe (a shipped one by name, default smoke, or a file), apply overrides, validate strictly."""
    path_ = recipe_path(path)
    data = apply_overrides(read_recipe_file(path_), overrides or [])
    check_sections(data, f"recipe {path_}", overrides)
    source = (data.get("build") or {}).get("source")
    if isinstance(source, str) and not Path(source).is_absolute() and not Path(source).exists():
        for folder in (path_.parent, recipes.FOLDER):  # beside the recipe, else among the shipped recipes' data
            if (folder / source).exists():
                data["build"]["source"] = str(folder / source)
                break
    origins = {".".join(parse_override(o)[0]): f"--set {o}" for o in overrides or []}
    return Recipe.parse(data, where=f"recipe {path_}", origins=origins)
