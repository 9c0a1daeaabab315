"""The leaderboard submission: the handler `apo-planner eval` runs its planner arm through, exported as it is
(byte for byte for the paper recipe's settings, black-formatted), placed at exact anchor lines, and run by the
*stock* `bfcl generate` / `bfcl evaluate` CLIs from a copy of bfcl_eval without apo-planner, against
apo-planner's CPU planner server; a planner that refuses stops generation before the first entry."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from apo_planner.entry.cli import main, submission_pins
from apo_planner.entry.recipe import load_recipe
from apo_planner.evaluation.submission import GRAMMAR_MODULE, HANDLER_MODULE, Pinned, SubmissionError, export
from tests.conftest import REPO
from tests.support.loopback import OpenAIStub

PORTABLE = REPO / "apo_planner" / "portable"
PLANNER = "me/planner"
NAME = "me/planner+Qwen/Qwen3-30B-A3B-Instruct-2507-FC"
PINNED = Pinned(NAME, "Qwen3-30B-A3B-Instruct-2507 + planner (FC)", PLANNER, "v1.0.0", "me", "https://hf.co/me", "mit")
COMPARISON = {
    "baseline_model": "Qwen/Qwen3-30B-A3B-Instruct-2507-FC",
    "planner_model": "Qwen/Qwen3-30B-A3B-Instruct-2507-FC-APOPlanner",
    "other_mode_model": "Qwen/Qwen3-30B-A3B-Instruct-2507",
    "other_mode": "prompt",
    "planner_mode": "fc",
    "limit": None,
    "categories": [
        {
            "category": "multiple",
            "baseline": {"entries": 200, "accuracy": 94.5, "avg_calls": 1.0, "latency_s": 1.0},
            "other_mode": {"entries": 200, "accuracy": 93.0, "avg_calls": 1.0, "latency_s": 1.1},
            "planner": {
                "entries": 200,
                "accuracy": 95.0,
                "avg_calls": 1.0,
                "latency_s": 1.3,
                "planner": {"planned": 200, "fallbacks": {}, "tokens": 180.5},
            },
        }
    ],
}
# What a contributor's environment has: bfcl_eval (the patched copy first on the path), never apo-planner.
BLOCK = """import importlib.abc, sys

class _NoApoPlanner(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {"apo_planner", "builders", "training", "evaluation", "cards", "entry", "tests"}:
            raise ModuleNotFoundError(f"No module named {name!r} (apo-planner is not installed here)")

sys.meta_path.insert(0, _NoApoPlanner())
"""


def _eval_dir(tmp_path, comparison=COMPARISON):
    (tmp_path / "eval").mkdir(exist_ok=True)
    (tmp_path / "eval" / "comparison.json").write_text(json.dumps(comparison))
    return tmp_path / "eval"


def _export(tmp_path, recipe=None, sets=(), pinned=PINNED, allow_partial=True):
    config = load_recipe(recipe, [f"eval.output={_eval_dir(tmp_path)}", *sets]).eval
    return export(config, pinned, allow_partial=allow_partial)


def test_the_paper_recipes_handler_is_the_repository_module_byte_for_byte(tmp_path):
    recipe = load_recipe("paper", [f"eval.output={_eval_dir(tmp_path)}"])
    done = export(recipe.eval, submission_pins(recipe), allow_partial=True)
    for module in (HANDLER_MODULE, GRAMMAR_MODULE):
        assert (done.folder / f"{module}.py").read_bytes() == (PORTABLE / f"{module}.py").read_bytes(), module
    assert done.files == [
        "apo_planner.py",
        "apo_planner_grammar.py",
        "model_config_entry.py",
        "supported_models.py",
        "SUPPORTED_MODELS.md",
        "PR_DESCRIPTION.md",
        "README.md",
        "pinned.json",
    ]
    assert sorted(p.name for p in done.folder.iterdir()) == sorted(done.files)


def test_the_exported_modules_are_black_formatted_and_import_only_what_a_bfcl_handler_may(tmp_path):
    black = pytest.importorskip("black")  # a dev dependency
    folder = _export(tmp_path).folder  # the smoke recipe's settings: other strings and bounds than the paper's
    allowed = {"bfcl_eval", "openai", "overrides"}  # overrides: bfcl-eval's own dependency, for @override
    for module in (HANDLER_MODULE, GRAMMAR_MODULE):
        source = (folder / f"{module}.py").read_text()
        assert black.format_str(source, mode=black.Mode(line_length=88)) == source, module
        imports = {
            line.split()[1].split(".")[0] for line in source.splitlines() if line.startswith(("import ", "from "))
        }
        assert imports - {""} <= allowed | set(sys.stdlib_module_names), imports
    handler = (folder / f"{HANDLER_MODULE}.py").read_text()
    assert '    model="me/planner",\n    revision="v1.0.0",\n' in handler and "__override__" not in handler
    assert "@override\n    def inference(" in handler
    # the run stops from bfcl's main thread (around spin_up_local_server), never from a worker's inference
    assert handler.count("SystemExit") == 1 and handler.index("SystemExit") < handler.index("def inference(")


def test_each_snippet_names_an_anchor_line_the_installed_files_have_exactly_once(tmp_path):
    import bfcl_eval

    folder = _export(tmp_path).folder
    package = Path(bfcl_eval.__file__).parent
    table = (REPO / "evaluation" / "data" / "gorilla_supported_models.md").read_text().splitlines()
    targets = {
        "model_config_entry.py": (package / "constants" / "model_config.py").read_text().splitlines(),
        "supported_models.py": (package / "constants" / "supported_models.py").read_text().splitlines(),
        "SUPPORTED_MODELS.md": table,
    }
    for name, lines in targets.items():
        anchors = _anchors((folder / name).read_text())
        assert anchors, name
        for _, anchor in anchors:
            assert lines.count(anchor) == 1, (name, anchor)
    entry = (folder / "model_config_entry.py").read_text()
    assert '    "me/planner+Qwen/Qwen3-30B-A3B-Instruct-2507-FC": ModelConfig(' in entry
    assert 'display_name="Qwen3-30B-A3B-Instruct-2507 + planner (FC)"' in entry


def test_partial_and_smoke_evaluations_are_refused_unless_allowed(tmp_path, capsys):
    _eval_dir(tmp_path, COMPARISON | {"limit": 4})
    sets = ["--set", f"eval.output={tmp_path / 'eval'}", "--set", "eval.submission.planner_repo=me/planner"]
    assert main(["submission", *sets]) == 2
    assert "covers the first 4 entries of each category (eval.limit)" in capsys.readouterr().err
    _eval_dir(tmp_path)
    assert main(["submission", *sets]) == 2  # the smoke recipe's executor is a tiny random model
    assert "eval.executor.tiny_model is set" in capsys.readouterr().err
    assert main(["submission", *sets, "--allow-partial"]) == 0
    out = capsys.readouterr().out
    assert "apo_planner.py, apo_planner_grammar.py, model_config_entry.py" in out
    assert "not verified by apo-planner" in out and "[ ] the planner me/planner is public on the Hub" in out
    assert "[ ] the full categories ran" in out
    folder = tmp_path / "eval" / "bfcl_submission"
    description = (folder / "PR_DESCRIPTION.md").read_text()
    assert "**Draft" in description
    assert "| multiple | 94.5 (1.0) | 93.0 (1.0) | 95.0 (1.0) | 200/200 planned | 1.0 → 1.3 | 180.5 |" in description
    assert "Token counts enter no column" in description and "CHANGELOG" not in description
    assert "CUDA_VISIBLE_DEVICES=4 vllm serve me/planner" in description and "APO_PLANNER_DEVICES=4" in description
    assert "--served-model-name me/planner" in description
    assert json.loads((folder / "pinned.json").read_text())["planner_repo"] == "me/planner"
    assert "- [ ] the full categories ran" in (folder / "README.md").read_text()


def test_a_draft_whose_plan_coverage_is_under_min_planned_is_refused(tmp_path):
    row = json.loads(json.dumps(COMPARISON["categories"][0]))
    row["planner"]["planner"] = {"planned": 150, "fallbacks": {"planner_error": 50}}
    _eval_dir(tmp_path, COMPARISON | {"categories": [row]})
    config = load_recipe(None, [f"eval.output={tmp_path / 'eval'}", "eval.min_planned=0.95"]).eval
    with pytest.raises(SubmissionError, match=r"plan coverage below eval.min_planned=0.95 \(multiple: 150/200"):
        export(config, PINNED, allow_partial=True)  # not even as a draft


def test_the_default_key_names_both_models_and_the_display_name_ends_in_the_mode():
    recipe = load_recipe(None, ["release.namespace=acme", "release.model_license=mit", "build.version=2.1.0"])
    pinned = submission_pins(recipe)
    assert pinned.org == "acme" and pinned.license == "mit" and pinned.planner_revision == "v2.1.0"
    assert pinned.planner_repo == recipe.release.model_repo_id and pinned.url.endswith(pinned.planner_repo)
    assert pinned.name == f"{pinned.planner_repo}+{recipe.eval.executor.handler}" and "Max" not in pinned.name
    assert pinned.display_name.endswith(" (FC)")


def test_a_planner_that_is_not_a_hub_id_cannot_be_pinned(tmp_path):
    config = load_recipe(None, [f"eval.output={tmp_path}"]).eval
    with pytest.raises(SubmissionError, match="not a Hub id"):
        export(config, Pinned(NAME, "x", "runs/smoke/train/merged", "v1", "me", "u", "mit"), allow_partial=True)


# --- the stock CLI ------------------------------------------------------------------------------


def _anchors(snippet: str) -> list[tuple[str, str]]:
    """(kind, line) for each `after:` / `after entry:` comment of a snippet file."""
    found = []
    for line in snippet.splitlines():
        for prefix, kind in (("# after entry: ", "entry"), ("# after: ", "line"), ("<!-- after: ", "line")):
            if line.startswith(prefix):
                found.append((kind, line[len(prefix) :].removesuffix(" -->")))
                break
    return found


def _apply(snippet: str, target: Path) -> None:
    """Insert each block of `snippet` (the lines after an anchor comment, up to the next comment) as its
    instructions say: after the anchor line, or after the `    ),` that closes the anchored entry."""
    lines = target.read_text(encoding="utf-8").splitlines()
    blocks: list[tuple[tuple[str, str], list[str]]] = []
    anchor = None
    for line in snippet.splitlines():
        found = _anchors(line)
        if found:
            anchor = found[0]
            blocks.append((anchor, []))
        elif anchor and line.strip() and not line.startswith(("#", "<!--")):
            blocks[-1][1].append(line)
    for (kind, text), block in blocks:
        at = lines.index(text)
        if kind == "entry":
            at = lines.index("    ),", at)
        lines[at + 1 : at + 1] = block
    target.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _bfcl_copy(tmp_path, folder):
    """A copy of the installed bfcl_eval with the submission applied, and a path that hides apo-planner."""
    import shutil

    import bfcl_eval

    site = tmp_path / "site"
    package = site / "bfcl_eval"
    shutil.copytree(Path(bfcl_eval.__file__).parent, package, ignore=shutil.ignore_patterns("__pycache__"))
    for module in (HANDLER_MODULE, GRAMMAR_MODULE):
        shutil.copy(folder / f"{module}.py", package / "model_handler" / "local_inference")
    _apply((folder / "model_config_entry.py").read_text(), package / "constants" / "model_config.py")
    _apply((folder / "supported_models.py").read_text(), package / "constants" / "supported_models.py")
    (site / "sitecustomize.py").write_text(BLOCK)
    return site


def _bfcl(site, project, args, **env):
    """The stock `bfcl` console script, in a process where bfcl_eval is the patched copy and apo-planner is
    not importable."""
    bfcl = Path(sys.executable).parent / "bfcl"
    environment = {
        **os.environ,
        "PYTHONPATH": str(site),
        "BFCL_PROJECT_ROOT": str(project),
        "TOKENIZERS_PARALLELISM": "false",
        **env,
    }
    return subprocess.run([str(bfcl), *args], env=environment, capture_output=True, text=True, timeout=600, cwd=project)


def _executor(request, n):
    return 200, '<tool_call>\n{"name": "f", "arguments": {}}\n</tool_call>', 0.0


IDS = ["multiple_0", "multiple_1", "live_parallel_multiple_0-0-0"]


def _project(tmp_path):
    project = tmp_path / "project"
    project.mkdir()
    ids = {"multiple": IDS[:2], "live_parallel_multiple": IDS[2:]}
    (project / "test_case_ids_to_generate.json").write_text(json.dumps(ids))
    return project


@pytest.fixture(scope="module")
def submission(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("submission")
    done = _export(tmp_path)  # the smoke recipe's planner settings (bounds a random planner keeps to)
    return tmp_path, done.folder, _bfcl_copy(tmp_path, done.folder)


@pytest.mark.slow
def test_the_stock_bfcl_cli_plans_every_entry_and_scores_with_the_submission_applied(submission, tmp_path, tiny):
    """The contributor's flow: the stock CLIs, apo-planner's CPU planner server (the handler's request, the
    grammar enforced), a tiny executor behind Hugging Face's `transformers serve` (answering at once)."""
    from apo_planner.evaluation.planner_arm import PlannerRuntime, planner_settings
    from apo_planner.serving import ServerConfig, serve, transformers_server
    from tests.support.scripted import terse_model

    _, folder, site = submission
    project = _project(tmp_path)
    executor_model = terse_model(tiny, tmp_path / "executor-model")
    config = ServerConfig(engine="transformers", port=0, startup_timeout_s=180)
    with (
        transformers_server(executor_model, tmp_path / "executor") as executor_url,
        serve(config, tiny, tmp_path / "planner", "planner", served_name=PLANNER) as planner_url,
    ):
        env = {"REMOTE_OPENAI_BASE_URL": executor_url, "REMOTE_OPENAI_TOKENIZER_PATH": str(executor_model)}
        env["APO_PLANNER_BASE_URL"] = planner_url
        common = ["--model", NAME, "--test-category", "multiple,live_parallel_multiple"]
        flags = ["--run-ids", "--skip-server-setup", f"--local-model-path={executor_model}", "--include-input-log"]
        generate = _bfcl(site, project, ["generate", *common, *flags], **env)
        assert generate.returncode == 0, generate.stdout[-3000:] + generate.stderr[-6000:]
        evaluate = _bfcl(site, project, ["evaluate", *common, "--partial-eval"])
        assert evaluate.returncode == 0, evaluate.stdout[-3000:] + evaluate.stderr[-6000:]
        # the eval's planner arm: the same module's client, asked for the same entries on the same server
        recipe = load_recipe(None, [f"eval.output={tmp_path / 'eval'}"])
        runtime = PlannerRuntime(planner_settings(recipe.eval, model=PLANNER, revision="v1.0.0"), planner_url)
        runtime.probe()
        from bfcl_eval.utils import load_dataset_entry

        entries = [e for c in ("multiple", "live_parallel_multiple") for e in load_dataset_entry(c) if e["id"] in IDS]
        eval_arm = {e["id"]: runtime.plan_for(e) for e in entries}
    (project / "bfcl_tail.txt").write_text(generate.stderr[-2500:] + generate.stdout[-1500:] + evaluate.stdout[-2000:])
    model_dir = project / "result" / NAME.replace("/", "_")
    lines = [json.loads(x) for path in sorted(model_dir.rglob("*_result.json")) for x in path.read_text().splitlines()]
    assert sorted(line["id"] for line in lines) == sorted(IDS)
    for line in lines:
        planner = line["planner"]
        assert planner["plan"] and planner["fallback"] is None, planner  # constrained: even a random planner plans
        assert planner["grammar_field"] == "structured_outputs"  # /version: apo-planner's server
        assert line["latency"] >= planner["latency"] > 0  # bfcl's latency (its cost) includes the planner's
        assert planner["coverage"]["planned"] == planner["coverage"]["entries"]
        same = {k: v for k, v in eval_arm[line["id"]].items() if k != "latency"}  # the eval's arm, same code
        assert {k: v for k, v in planner.items() if k not in ("latency", "coverage")} == same
        assert "A planner has drafted" in json.dumps(line["inference_log"])  # the executor's prompt had it
    coverage = json.loads((model_dir / "apo_planner_coverage.json").read_text())
    assert {c: (row["planned"], row["entries"]) for c, row in coverage["categories"].items()} == {
        "multiple": (2, 2),
        "live_parallel_multiple": (1, 1),
    }
    assert coverage["below_min_planned"] == []
    scores = project / "score" / NAME.replace("/", "_")
    assert sorted(p.name for p in scores.rglob("*_score.json")) == [
        "BFCL_v4_live_parallel_multiple_score.json",
        "BFCL_v4_multiple_score.json",
    ]
    assert (project / "score" / "data_overall.csv").is_file()
    assert json.loads((model_dir / "apo_planner_coverage.json").read_text()) == coverage  # evaluate left it alone


@pytest.mark.slow
def test_a_planner_that_refuses_requests_stops_the_stock_generate_before_the_first_entry(submission, tmp_path, tiny):
    _, _, site = submission
    project = _project(tmp_path)
    with (
        OpenAIStub(_executor, model=str(tiny)) as executor,
        OpenAIStub(lambda request, n: (422, "", 0.0), model=PLANNER) as planner,
    ):
        env = {"REMOTE_OPENAI_BASE_URL": executor.base_url, "REMOTE_OPENAI_TOKENIZER_PATH": str(tiny)}
        args = ["generate", "--model", NAME, "--test-category", "multiple", "--run-ids", "--skip-server-setup"]
        done = _bfcl(site, project, [*args, f"--local-model-path={tiny}"], APO_PLANNER_BASE_URL=planner.base_url, **env)
    (project / "bfcl_tail.txt").write_text(done.stderr[-2000:])
    assert done.returncode != 0
    message = f"the APO planner at {planner.base_url} refused a plan request (HTTP 422"
    assert message in done.stderr, done.stderr[-4000:]
    assert "Traceback" not in done.stderr and len(planner.requests) == 1  # the probe, once
    assert not executor.requests and not list((project / "result").rglob("*_result.json"))
