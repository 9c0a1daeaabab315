"""One Jinja environment for every template the toolkit renders (prompts, cards, reports, task YAML).

Missing values fail loudly (`StrictUndefined`): a card or a prompt must never render a blank where
a number or a field was meant to be.
"""

from __future__ import annotations

from pathlib import Path

import jinja2


def environment(*, trim: bool = False) -> jinja2.Environment:
    """`trim` removes the newline after a block tag and the indentation before it (documents with
    loops); prompts keep every character as written."""
    env = jinja2.Environment(
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,
        trim_blocks=trim,
        lstrip_blocks=trim,
    )
    env.policies["json.dumps_kwargs"] = {"ensure_ascii": False, "sort_keys": False}
    return env


def render_file(path: str | Path, *, trim: bool = False, **values: object) -> str:
    return environment(trim=trim).from_string(Path(path).read_text(encoding="utf-8")).render(**values)
