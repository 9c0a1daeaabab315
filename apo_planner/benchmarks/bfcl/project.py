"""Importing bfcl-eval the way it needs: `BFCL_PROJECT_ROOT` is read once, at first import, and
decides where every result and score file goes; so the root is set before anything imports it."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from apo_planner.benchmarks.base import BenchmarkError
from apo_planner.errors import MissingExtra


def use_project_root(root: str | Path) -> Path:
    """Point bfcl-eval at `root` unless it is already imported, and return the root in force.

    Results and scores are always written to explicit folders, so a second evaluation in the same
    process (another root wanted) still writes its own tree; only bfcl-eval's subset-id file and
    locks stay in the first root.
    """
    root = Path(root).resolve()
    root.mkdir(parents=True, exist_ok=True)
    if "bfcl_eval" in sys.modules or os.environ.get("BFCL_PROJECT_ROOT"):
        from bfcl_eval.constants.eval_config import PROJECT_ROOT

        return Path(PROJECT_ROOT).resolve()
    os.environ["BFCL_PROJECT_ROOT"] = str(root)
    return root


def valid_categories() -> list[str]:
    from bfcl_eval.constants.category_mapping import ALL_CATEGORIES, TEST_COLLECTION_MAPPING

    return sorted(TEST_COLLECTION_MAPPING) + sorted(ALL_CATEGORIES)


def resolve_categories(names: list[str]) -> list[str]:
    """Expand groups and check names; an unknown one lists the valid ones."""
    from bfcl_eval.utils import parse_test_category_argument

    try:
        return list(parse_test_category_argument(list(names)))
    except Exception as exc:
        raise BenchmarkError(f"{exc}. Valid categories and groups: {', '.join(valid_categories())}") from None


def data_dir() -> Path:
    """bfcl_eval's packaged data folder, found without importing bfcl_eval (which needs its root set first)."""
    import importlib.util

    spec = importlib.util.find_spec("bfcl_eval")
    if spec is None or not spec.submodule_search_locations:
        raise MissingExtra(
            "BFCL needs bfcl-eval (it ships the questions and the checker), which the 'eval' extra installs: "
            "pip install 'apo-planner[eval]'"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "data"
