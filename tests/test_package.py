"""The package as a user installs it: one import namespace, shipped recipes, a release from any folder."""

import os
import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

import pytest

from apo_planner.entry.recipe import DEFAULT_RECIPE, load_recipe, recipe_path
from tests.conftest import REPO


def test_shipped_recipes_are_named_and_a_path_names_a_file(tmp_path):
    assert recipe_path("smoke") == DEFAULT_RECIPE and recipe_path(None) == DEFAULT_RECIPE
    assert recipe_path("paper").name == "paper.yaml" and recipe_path("paper").is_file()
    own = tmp_path / "smoke"  # a file that happens to be called like a shipped recipe wins: it is a path
    own.write_text("name: mine\nbuild:\n  source: x.jsonl\n")
    assert recipe_path(str(own)) == own
    assert load_recipe(str(own)).name == "mine"


def test_the_smoke_recipe_finds_its_shipped_trajectories_from_any_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    source = Path(load_recipe("smoke").build.source)
    assert source.is_file() and source.name == "smoke_trajectories.jsonl.gz"


def _wheel(tmp_path: Path) -> Path:
    out = tmp_path / "wheel"
    command = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", str(out), str(REPO)]
    run = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    (wheel,) = out.glob("apo_planner-*.whl")
    return wheel


def _top_level(wheel: Path) -> set[str]:
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
    return {n.split("/")[0] for n in names if not n.split("/")[0].endswith((".dist-info", ".data"))}


@pytest.mark.slow
def test_the_wheel_installs_one_namespace_and_releases_offline_from_an_empty_folder(tmp_path):
    """Installed with --no-deps into a fresh venv that borrows this venv's dependencies (nothing is
    downloaded), the console script runs the whole smoke release in an empty folder, away from the
    checkout."""
    wheel = _wheel(tmp_path)
    assert _top_level(wheel) == {"apo_planner"}
    with zipfile.ZipFile(wheel) as archive:
        shipped = set(archive.namelist())
    for data in ("apo_planner/recipes/smoke.yaml", "apo_planner/recipes/paper.yaml"):
        assert data in shipped, data
    assert any(n.startswith("apo_planner/recipes/data/smoke_trajectories") for n in shipped)

    fresh = tmp_path / "venv"
    venv.EnvBuilder(with_pip=False).create(fresh)
    purelib = Path(sysconfig.get_path("purelib", vars={"base": str(fresh), "platbase": str(fresh)}))
    # this venv's site-packages after the fresh one's own: its dependencies, not its editable apo-planner
    # (.pth files of an added folder are not processed, so the editable finder stays out)
    (purelib / "borrowed-dependencies.pth").write_text(sysconfig.get_path("purelib") + "\n")
    python = fresh / "bin" / "python"
    install = [str(python), "-m", "pip", "install", "--no-deps", "--no-index", str(wheel)]
    run = subprocess.run(install, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]

    work = tmp_path / "empty"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "BFCL_PROJECT_ROOT")}
    env |= {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    where = subprocess.run(
        [str(python), "-c", "import apo_planner.builders, sys; print(apo_planner.builders.__file__)"],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
    )
    assert where.stdout.startswith(str(fresh)), where.stdout + where.stderr  # not the checkout
    release = subprocess.run(
        [str(fresh / "bin" / "apo-planner"), "release"], cwd=work, env=env, capture_output=True, text=True, timeout=2400
    )
    assert release.returncode == 0, release.stderr[-4000:]
    assert (work / "release").is_dir() and (work / "runs" / "smoke" / "eval" / "comparison.json").is_file()
    staged = sorted((work / "release").glob("*/*"))  # release/<namespace>/<repo>
    assert len(staged) == 3 and all((repo / "README.md").is_file() for repo in staged), staged
