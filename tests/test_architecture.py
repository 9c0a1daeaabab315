"""The house reads top-down: entry layer -> stages -> core, in one import namespace.

Each top-level folder of the checkout installs as one part of `apo_planner` (the stages and the entry
layer as its subpackages). A stage never imports another stage or the entry layer, the core imports no
stage, nothing imports the folders by their own names, and neither the library nor the benchmarks
import test support.
"""

import ast
import tomllib

from tests.conftest import REPO

# folder in the checkout -> (its import name, its layer: 0 entry, 1 stage, 2 core)
FOLDERS = {
    "entry": ("apo_planner.entry", 0),
    "builders": ("apo_planner.builders", 1),
    "training": ("apo_planner.training", 1),
    "evaluation": ("apo_planner.evaluation", 1),
    "cards": ("apo_planner.cards", 1),
    "apo_planner": ("apo_planner", 2),
    "recipes": ("apo_planner.recipes", 2),
}
STAGES = {name for name, layer in FOLDERS.values() if layer == 1}


def _imports(path):
    """Absolute module names a file imports, relative imports resolved against its package."""
    package = _module_of(path).rsplit(".", 1)[0] if path.name != "__init__.py" else _module_of(path)
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                yield ".".join([*base, *([node.module] if node.module else [])])
            elif node.module:
                yield node.module


def _module_of(path):
    rel = path.relative_to(REPO).with_suffix("")
    folder, *rest = rel.parts
    name = ".".join([FOLDERS[folder][0], *rest]) if folder in FOLDERS else ".".join(rel.parts)
    return name.removesuffix(".__init__")


def _layer(module):
    """(part, layer) of an `apo_planner` module: the stage or entry subpackage it is in, else the core."""
    parts = module.split(".")
    if parts[0] != "apo_planner":
        return None
    if len(parts) > 1:
        for name, layer in FOLDERS.values():
            if name.split(".")[1:] == parts[1:2]:
                return name, layer
    return "apo_planner", 2


def _sources(folder):
    return sorted((REPO / folder).rglob("*.py"))


def test_every_import_between_layers_points_down():
    wrong = []
    for folder in FOLDERS:
        for path in _sources(folder):
            here, layer = _layer(_module_of(path))
            for target in _imports(path):
                found = _layer(target)
                if found is None or found[0] == here:
                    continue
                there, target_layer = found
                if target_layer < layer or (target_layer == layer and there in STAGES):
                    wrong.append(f"{path.relative_to(REPO)} imports {target}")
    assert not wrong, "\n".join(wrong)


def test_nothing_imports_the_folders_by_their_own_names():
    old = {folder for folder in FOLDERS if folder != "apo_planner"}
    wrong = []
    for folder in [*FOLDERS, "tests", "benchmarks"]:
        for path in _sources(folder):
            wrong += [f"{path.relative_to(REPO)} imports {t}" for t in _imports(path) if t.split(".")[0] in old]
    assert not wrong, "\n".join(wrong)


def test_neither_the_library_nor_the_benchmarks_import_test_support():
    for folder in [*FOLDERS, "benchmarks"]:
        for path in _sources(folder):
            assert not [t for t in _imports(path) if t.split(".")[0] == "tests"], path


def test_the_wheel_maps_every_folder_and_lists_every_package():
    """pyproject's package-dir maps each folder to its import name, and every folder holding Python is
    a listed package (a package left out of the list would be missing from the wheel)."""
    tool = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    mapping = tool["package-dir"]
    assert {v: k for k, v in mapping.items()} == {folder: name for folder, (name, _) in FOLDERS.items()}
    expected = set()
    for folder in FOLDERS:
        for init in (REPO / folder).rglob("*.py"):
            expected.add(_module_of(init.parent / "__init__.py"))
    assert set(tool["packages"]) == expected


def _string_collections(tree):
    """Every literal tuple, list, set (a `Literal[...]` too) or dict-key collection of strings in a module."""
    for node in ast.walk(tree):
        if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
            items = node.elts
        elif isinstance(node, ast.Dict):
            items = [k for k in node.keys if k is not None]
        else:
            continue
        strings = [i.value for i in items if isinstance(i, ast.Constant) and isinstance(i.value, str)]
        if strings:
            yield node.lineno, strings


def test_the_format_registry_is_the_only_list_of_formats():
    """No list of trajectory-format names outside `apo_planner/formats/` (config choices, CLI choices,
    detection order, a table of readers): everything that needs the formats asks the registry."""
    from apo_planner.formats import FORMATS

    names = set(FORMATS.names())
    assert len(names) >= 6
    wrong = []
    for folder in FOLDERS:
        for path in _sources(folder):
            if path.is_relative_to(REPO / "apo_planner" / "formats"):
                continue
            for line, strings in _string_collections(ast.parse(path.read_text(encoding="utf-8"))):
                if len(names.intersection(strings)) >= 2:
                    wrong.append(f"{path.relative_to(REPO)}:{line} lists {sorted(names.intersection(strings))}")
    assert not wrong, "\n".join(wrong)
