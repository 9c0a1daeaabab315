"""Recipes: one YAML file configures a whole run; `--set key=value` overrides any knob.

Each stage owns its config class (next to its code, like a TRL trainer and its config); the
recipe only composes them. Relative `build.source` paths resolve against the recipe's folder
when they exist there, so bundled recipes work from any working directory.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import yaml
from pydantic import model_validator

from apo_planner.config import RecipeError, StrictConfig
from builders.config import BuildConfig
from cards.config import ReleaseConfig
from evaluation.config import EvalConfig
from training.config import TrainConfig

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_RECIPE = REPO_ROOT / "recipes" / "smoke.yaml"


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
        bundled = ", ".join(str(p.relative_to(REPO_ROOT)) for p in sorted(DEFAULT_RECIPE.parent.glob("*.yaml")))
        raise RecipeError(f"recipe {path} not found; pass --recipe FILE (bundled: {bundled})")
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


def load_recipe(path: str | Path | None = None, overrides: list[str] | None = None) -> Recipe:
    """Read a recipe (default: the offline smoke recipe), apply overrides, validate strictly."""
    recipe_path = Path(path) if path else DEFAULT_RECIPE
    data = apply_overrides(read_recipe_file(recipe_path), overrides or [])
    source = (data.get("build") or {}).get("source")
    if isinstance(source, str) and not Path(source).is_absolute() and not Path(source).exists():
        beside = recipe_path.parent / source
        if beside.exists():
            data["build"]["source"] = str(beside)
    return Recipe.parse(data, where=f"recipe {recipe_path}")
