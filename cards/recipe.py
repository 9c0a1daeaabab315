"""The recipe that travels with every released repo (distilabel's `pipeline.yaml` habit).

What a person who finds the dataset or the planner on the Hub needs to run it again: the resolved
recipe (every default filled in, overrides applied), made portable and safe to publish. Paths inside
apo-planner's shipped recipes folder (`apo_planner.recipes`: the smoke source ships under its `data/`)
become relative to it, and the recipe loader finds them there, so the recipe runs as is wherever
apo-planner is installed; other paths are kept, since a rebuild needs those files.
Secrets never travel: the recipe has no token field (`train.hub_token` is refused when it is read),
and anything that still looks like one (an `hf_…` token, a `*token`/`*secret`/`*password`/`*api_key`
value, credentials in a URL, the token in use) is replaced before the file is written.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from apo_planner import recipes

RECIPE_FILE = "recipe.yaml"
SOURCE_ROOT = recipes.FOLDER  # what every installation has: paths inside it are published relative to it
REDACTED = "<redacted>"

_TOKEN = re.compile(r"\b(?:hf|api_org)_[A-Za-z0-9]{8,}")
_SECRET_KEY = re.compile(r"(token|secret|password|passwd|api_?key|credentials?)$", re.IGNORECASE)
_URL_USERINFO = re.compile(r"(?<=://)[^/@\s]+@")


def _redact(text: str, secrets: Iterable[str]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, REDACTED)
    return _URL_USERINFO.sub(f"{REDACTED}@", _TOKEN.sub(REDACTED, text))


def _portable(text: str, root: Path) -> str:
    if not os.path.isabs(text):
        return text
    try:
        return Path(text).resolve().relative_to(root).as_posix()
    except ValueError:  # outside the shipped recipes
        return text


def shippable_recipe(
    recipe: Mapping[str, Any], root: Path = SOURCE_ROOT, secrets: Iterable[str] = ()
) -> dict[str, Any]:
    """The resolved recipe as it can be published and run again (see the module docstring); `secrets`
    are extra strings to remove wherever they appear (the caller passes the token it holds)."""
    secrets = [s for s in secrets if s]
    root = root.resolve()

    def clean(key: str, value: Any) -> Any:
        if isinstance(value, Mapping):
            return {k: clean(str(k), v) for k, v in value.items()}
        if isinstance(value, list):
            return [clean(key, v) for v in value]
        if isinstance(value, str):
            if value and _SECRET_KEY.search(key):
                return REDACTED
            return _portable(_redact(value, secrets), root)
        return value

    return clean("", recipe)


def recipe_yaml(recipe: Mapping[str, Any], header: str = "") -> str:
    """YAML text of an already shippable recipe, in the recipe's own key order, under a comment header."""
    comment = "".join(f"# {line}\n".replace("# \n", "#\n") for line in header.splitlines())
    return comment + yaml.safe_dump(dict(recipe), sort_keys=False, allow_unicode=True, width=120)
