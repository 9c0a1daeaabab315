"""The docs stay true: the generated reference equals what the code gives, the README's links lead to files
that exist, and the worked example of docs/extending/benchmarks.md runs through the real evaluation stage."""

import importlib
import json
import re
import sys
from types import SimpleNamespace

import pytest

from apo_planner.entry import reference
from tests.conftest import REPO
from tests.support.loopback import OpenAIStub

DOCS = REPO / "docs"


def test_the_committed_reference_pages_are_what_the_code_generates():
    stale = reference.stale(DOCS)
    assert not stale, f"stale reference pages {[str(p) for p in stale]}: run `python -m apo_planner.entry.reference`"


def test_the_cli_reference_has_every_subcommand_and_the_recipe_reference_every_section():
    cli, recipe = reference.cli_page(), reference.recipe_page()
    from apo_planner.entry.cli import build_parser

    for name, _, sub in reference._subcommands(build_parser()):
        assert f"## apo-planner {name} " in cli
        for action in sub._actions:
            for flag in action.option_strings:
                assert flag in cli, (name, flag)
    for section in ("build", "build.llm", "build.llm.server", "train", "train.lora", "eval.executor.server"):
        assert f"\n## {section} {{#" in recipe, section
    assert "`build.llm.concurrency` | `int` | `32` |" in recipe
    assert "trl.DPOConfig" in recipe and "train.output_dir" in recipe


def test_a_registry_table_lists_every_entry_with_the_columns_asked_for():
    from apo_planner.registry import Registry

    registry = Registry("thing", "apo_planner.tests.things")
    registry.register("b")(SimpleNamespace(title="B | b", size=2))
    registry.register("a")(SimpleNamespace(title="A", size=1))
    table = reference.registry_table(registry, [("title", "title"), ("double", lambda _n, e: 2 * e.size)])
    assert table.splitlines() == [
        "| name | title | double |",
        "|---|---|---|",
        "| `a` | A | 2 |",
        "| `b` | B \\| b | 4 |",
    ]


def test_the_check_mode_names_a_stale_page_and_writing_fixes_it(tmp_path, capsys):
    assert reference.main(["--docs", str(tmp_path), "--check"]) == 1
    assert "stale:" in capsys.readouterr().out
    assert reference.main(["--docs", str(tmp_path)]) == 0
    assert reference.main(["--docs", str(tmp_path), "--check"]) == 0


def test_every_relative_link_in_the_readme_leads_to_a_file():
    text = (REPO / "README.md").read_text(encoding="utf-8")
    links = re.findall(r"\]\(([^)\s]+)\)", text)
    local = [link.split("#")[0] for link in links if not re.match(r"[a-z]+:", link) and not link.startswith("#")]
    assert local, "the README links to the docs"
    missing = [link for link in local if not (REPO / link).exists()]
    assert not missing, missing


def _example_files(page):
    """The files a docs page spells out: each fenced block right after a `<!-- file: NAME -->` line."""
    text = page.read_text(encoding="utf-8")
    return dict(re.findall(r"<!-- file: (\S+) -->\n```\w*\n(.*?)\n```", text, flags=re.S))


@pytest.fixture
def tinycalls(tmp_path, monkeypatch):
    """The worked example's module imported from the page, registered for this test only."""
    from apo_planner.benchmarks import BENCHMARKS

    files = _example_files(DOCS / "extending" / "benchmarks.md")
    assert set(files) == {"tinycalls.py", "tinycalls_data/weather.jsonl"}
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text + "\n", encoding="utf-8")
    BENCHMARKS.names()  # load the built-ins first, so the restored registry still has them
    monkeypatch.setattr(BENCHMARKS, "_entries", dict(BENCHMARKS._entries))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "tinycalls", raising=False)
    module = importlib.import_module("tinycalls")
    yield module
    sys.modules.pop("tinycalls", None)


def _planner(request, n):
    """Plans the right call for whichever city the query names (as a trained planner would)."""
    query = next(m["content"] for m in request["messages"] if m["role"] == "user")
    city = "Paris" if "Paris" in query else "Seoul"
    return 200, f'1. get_weather({{"city": "{city}"}})\n   why: the question asks for the weather', 0.0


def _executor(request, n):
    """Right only when the planner's plan is in the prompt: the planner arm must beat the executor alone."""
    messages = request["messages"]
    prompt = " ".join(m["content"] for m in messages)
    if "Plan:" in prompt:
        city = "Paris" if "Paris" in prompt.split("Plan:", 1)[1] else "Seoul"
    else:
        city = "London"
    return 200, json.dumps({"name": "get_weather", "arguments": {"city": city}}), 0.0


def test_the_worked_benchmark_example_runs_through_the_evaluation_stage(tinycalls, tmp_path):
    from apo_planner.artifacts import Comparison, EvalDir
    from apo_planner.benchmarks import BENCHMARKS
    from apo_planner.builders.config import BuildConfig
    from apo_planner.builders.decontamination import Decontaminator
    from apo_planner.evaluation.config import EvalConfig
    from apo_planner.evaluation.run import evaluate

    assert BENCHMARKS.get("tinycalls") is tinycalls.BENCHMARK
    BuildConfig(source="x.jsonl", decontamination={"benchmarks": ["bfcl", "tinycalls"]})
    assert Decontaminator.from_benchmarks(["tinycalls"], 8).questions["tinycalls"] == 2

    planner = OpenAIStub(replies=_planner, model="stub-planner")
    with OpenAIStub(replies=_executor, model="stub-executor") as stub, planner:
        config = EvalConfig(
            benchmark="tinycalls",
            categories=["all"],
            output=str(tmp_path / "eval"),
            executor={
                "handler": "stub-executor",
                "prompt_handler": None,
                "server": {"engine": "external", "base_url": stub.base_url},
            },
            planner={"model": "stub-planner", "server": {"engine": "external", "base_url": planner.base_url}},
        )
        result = evaluate(config)
        asked = len(stub.requests)
        evaluate(config)  # a re-run resumes from the result files: nothing is asked again
        assert len(stub.requests) == asked == 4

    folder = EvalDir(tmp_path / "eval")
    comparison = folder.comparison()
    assert comparison.benchmark == "tinycalls" and result.comparison["benchmark"] == "tinycalls"
    (row,) = comparison.categories
    assert (row["category"], row["baseline"]["accuracy"], row["planner"]["accuracy"]) == ("weather", 0.0, 100.0)
    assert str(comparison.coverage()["weather"]) == "2/2 planned"
    assert folder.comparison_markdown.is_file() and folder.comparison_plot.is_file()
    assert (folder.benchmark_root("tinycalls") / "result" / "planner.weather.jsonl").is_file()
    section = BENCHMARKS.get("tinycalls").card_section(Comparison.model_validate(comparison.model_dump()))
    assert "| weather | 0.0 | 100.0 | 2/2 planned |" in section


def test_the_worked_benchmark_example_is_lint_clean(tmp_path):
    import subprocess

    path = tmp_path / "tinycalls.py"
    path.write_text(_example_files(DOCS / "extending" / "benchmarks.md")["tinycalls.py"] + "\n", encoding="utf-8")
    config = ["--config", str(REPO / "pyproject.toml")]
    for command in (["check", *config, str(path)], ["format", "--check", *config, str(path)]):
        done = subprocess.run([sys.executable, "-m", "ruff", *command], capture_output=True, text=True)
        assert done.returncode == 0, done.stdout + done.stderr


def test_an_unknown_category_of_the_example_is_refused_with_the_valid_ones(tinycalls):
    from apo_planner.benchmarks import BenchmarkError

    with pytest.raises(BenchmarkError, match="valid: weather, all"):
        tinycalls.BENCHMARK.resolve(["wether"])
