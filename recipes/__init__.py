"""The recipes shipped with the package: `smoke` (CPU, offline, the default) and `paper` (GPU, Hub).

`--recipe smoke` names one of these; anything with a `/` or a `.yaml` suffix is a file path. The smoke
recipe's trajectories ship beside it (`data/`), so a release runs from any working directory.
"""

from __future__ import annotations

from pathlib import Path

FOLDER = Path(__file__).resolve().parent
DEFAULT = "smoke"


def shipped() -> dict[str, Path]:
    """Recipe name -> its YAML file, for every recipe in the package."""
    return {p.stem: p for p in sorted(FOLDER.glob("*.yaml"))}
