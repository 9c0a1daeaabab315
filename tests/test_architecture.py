"""The house reads top-down: entry layer -> stages -> core. A stage never imports another stage or
the entry layer, and the core imports no stage, so each layer can be read (and copied) alone."""

import ast

from tests.conftest import REPO

LAYERS = {"entry": 0, "builders": 1, "training": 1, "evaluation": 1, "cards": 1, "apo_planner": 2}


def _imported_packages(path):
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            yield from (a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module.split(".")[0]


def test_every_import_between_top_level_packages_points_down():
    wrong = []
    for package, layer in LAYERS.items():
        for path in sorted((REPO / package).rglob("*.py")):
            for target in _imported_packages(path):
                if target in LAYERS and target != package and LAYERS[target] <= layer:
                    wrong.append(f"{path.relative_to(REPO)} imports {target}")
    assert not wrong, "\n".join(wrong)


def test_the_library_ships_no_test_support():
    for package in LAYERS:
        for path in (REPO / package).rglob("*.py"):
            assert "tests" not in set(_imported_packages(path)), path
