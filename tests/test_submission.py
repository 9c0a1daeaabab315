"""The leaderboard submission: a handler that lives inside a copy of bfcl_eval the way a gorilla PR adds
it, imports without apo-planner, plans every entry against a loopback planner server, fails at start
when the planner is unreachable, and puts the planner's cost where bfcl's cost/latency columns read it."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from apo_planner.entry.cli import main, submission_pins
from apo_planner.entry.recipe import load_recipe
from apo_planner.evaluation.submission import HANDLER_MODULE, Pinned, SubmissionError, export
from tests.support.loopback import OpenAIStub

NAME = "me/planner-with-exec-FC"
PINNED = Pinned(NAME, "planner + exec", "me/planner", "v1.0.0", "me", "https://huggingface.co/me/planner", "mit", 1054)
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
                "planner": {"planned": 200, "fallbacks": {}},
            },
        }
    ],
}
RUN = r"""
import importlib.abc, json, os, sys
from pathlib import Path

BLOCKED = {"apo_planner", "builders", "training", "evaluation", "cards", "entry", "tests"}

class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {name!r} (apo-planner is not installed here)")

sys.meta_path.insert(0, Block())
import bfcl_eval
assert bfcl_eval.__file__.startswith(os.environ["BFCL_COPY"]), bfcl_eval.__file__
from bfcl_eval.constants.model_config import MODEL_CONFIG_MAPPING
from bfcl_eval._llm_response_generation import build_handler
from bfcl_eval.utils import load_dataset_entry

name, stock, category, tiny, result_dir, score_dir = sys.argv[1:7]
assert name in MODEL_CONFIG_MAPPING
out = {"entries": []}
try:
    for model in (stock, name):
        handler = build_handler(model, 0.001)
        handler.spin_up_local_server(1, 0.9, "vllm", True, tiny)
        for entry in load_dataset_entry(category)[:3]:
            result, metadata = handler.inference(entry, False, False)
            out["entries"].append({"model": model, "id": entry["id"], **metadata})
            line = {"id": entry["id"], "result": result, **metadata}
            handler.write(line, result_dir=Path(result_dir), update_mode=True)
except SystemExit as exc:
    out["error"] = str(exc)
print("RESULT " + json.dumps(out))
"""


@pytest.fixture
def bfcl_copy(tmp_path):
    """A copy of the installed bfcl_eval with the exported files added where the PR adds them."""
    import bfcl_eval

    config = load_recipe(None, [f"eval.output={tmp_path / 'eval'}", "eval.executor.tiny_model=false"]).eval
    (tmp_path / "eval").mkdir()
    (tmp_path / "eval" / "comparison.json").write_text(json.dumps(COMPARISON))
    folder = export(config, PINNED)
    package = tmp_path / "site" / "bfcl_eval"
    shutil.copytree(Path(bfcl_eval.__file__).parent, package, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(folder / f"{HANDLER_MODULE}.py", package / "model_handler" / "local_inference")
    snippet = (folder / "model_config_entry.py").read_text().splitlines()
    import_line = next(line for line in snippet if line.startswith("from "))
    entry = "\n".join(line for line in snippet if line.startswith("    "))
    model_config = package / "constants" / "model_config.py"
    text = model_config.read_text()
    text = text.replace("local_inference_model_map = {", "local_inference_model_map = {\n" + entry, 1)
    first_import = text.index("from bfcl_eval.model_handler")
    model_config.write_text(text[:first_import] + import_line + "\n" + text[first_import:])
    return tmp_path / "site", folder


def _run(site, tmp_path, tiny, executor_url, planner_url):
    project = tmp_path / "project"
    project.mkdir(exist_ok=True)
    env = {
        **os.environ,
        "PYTHONPATH": str(site),
        "BFCL_COPY": str(site),
        "BFCL_PROJECT_ROOT": str(project),
        "REMOTE_OPENAI_BASE_URL": executor_url,
        "REMOTE_OPENAI_TOKENIZER_PATH": str(tiny),
        "APO_PLANNER_BASE_URL": planner_url,
    }
    args = [NAME, "Qwen/Qwen3-30B-A3B-Instruct-2507-FC", "multiple", str(tiny), str(project / "result")]
    args.append(str(project / "score"))
    done = subprocess.run(
        [sys.executable, "-c", RUN, *args], env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path
    )
    line = next((x for x in done.stdout.splitlines() if x.startswith("RESULT ")), None)
    assert line, done.stdout[-2000:] + done.stderr[-4000:]
    return json.loads(line[len("RESULT ") :]), project


def _executor(request, n):
    return 200, '<tool_call>\n{"name": "f", "arguments": {}}\n</tool_call>', 0.0


def _planner(request, n):
    tool = request["tools"][0]["function"]["name"]
    return 200, f"1. {tool}({{}})\n   why: the request needs it", 0.05


@pytest.mark.slow
def test_the_exported_handler_runs_inside_bfcl_without_apo_planner_and_plans_every_entry(bfcl_copy, tmp_path, tiny):
    site, folder = bfcl_copy
    source = (folder / f"{HANDLER_MODULE}.py").read_text()
    imports = {line.split()[1].split(".")[0] for line in source.splitlines() if line.startswith(("import ", "from "))}
    assert imports <= {
        "hashlib",
        "json",
        "os",
        "re",
        "threading",
        "time",
        "dataclasses",
        "typing",
        "openai",
        "bfcl_eval",
    }
    assert '"me/planner"' in source and '"v1.0.0"' in source and "PLANNER_PORT = 1054" in source
    with OpenAIStub(_executor, model=str(tiny)) as executor, OpenAIStub(_planner, model="me/planner") as planner:
        out, project = _run(site, tmp_path, tiny, executor.base_url, planner.base_url)
    assert "error" not in out, out
    stock = [e for e in out["entries"] if e["model"] != NAME]
    planned = [e for e in out["entries"] if e["model"] == NAME]
    assert len(planned) == 3 and all(e["planner"]["plan"] and not e["planner"]["fallback"] for e in planned)
    assert all("structured_outputs" in r and r["tool_choice"] == "none" for r in planner.requests)
    assert len(planner.requests) == 3
    plan_prompts = [r["prompt"] for r in executor.requests if "A planner has drafted" in r["prompt"]]
    assert len(plan_prompts) == 3
    for base, entry in zip(stock, planned, strict=True):  # the planner's tokens and time are the entry's
        assert entry["input_token_count"] == base["input_token_count"] + entry["planner"]["prompt_tokens"]
        assert entry["output_token_count"] == base["output_token_count"] + entry["planner"]["completion_tokens"]
        assert entry["latency"] >= entry["planner"]["latency"] >= 0.05
    lines = [
        json.loads(x)
        for x in next((project / "result" / NAME.replace("/", "_")).glob("**/*multiple_result.json"))
        .read_text()
        .splitlines()
    ]
    assert [x["latency"] for x in lines] == [e["latency"] for e in planned]  # what bfcl's latency column sums


@pytest.mark.slow
def test_an_unreachable_planner_stops_generation_at_its_start(bfcl_copy, tmp_path, tiny):
    site, _ = bfcl_copy
    with OpenAIStub(_executor, model=str(tiny)) as executor:
        out, _ = _run(site, tmp_path, tiny, executor.base_url, "http://127.0.0.1:9/v1")
    assert "the APO planner is not reachable at http://127.0.0.1:9/v1" in out["error"]
    assert "vllm serve me/planner --revision v1.0.0 --port 1054" in out["error"]
    assert [e["model"] for e in out["entries"]] == ["Qwen/Qwen3-30B-A3B-Instruct-2507-FC"] * 3  # no planned entry ran


def test_partial_and_smoke_evaluations_are_refused_unless_allowed(tmp_path, capsys):
    (tmp_path / "eval").mkdir()
    (tmp_path / "eval" / "comparison.json").write_text(json.dumps(COMPARISON | {"limit": 4}))
    sets = ["--set", f"eval.output={tmp_path / 'eval'}", "--set", "eval.submission.planner_repo=me/planner"]
    assert main(["submission", *sets]) == 2
    assert "covers the first 4 entries of each category (eval.limit)" in capsys.readouterr().err
    (tmp_path / "eval" / "comparison.json").write_text(json.dumps(COMPARISON))
    assert main(["submission", *sets]) == 2  # the smoke recipe's executor is a tiny random model
    assert "eval.executor.tiny_model is set" in capsys.readouterr().err
    assert main(["submission", *sets, "--allow-partial"]) == 0
    folder = tmp_path / "eval" / "bfcl_submission"
    description = (folder / "PR_DESCRIPTION.md").read_text()
    assert (
        "**Draft" in description
        and "| multiple | 94.5 (1.0) | 93.0 (1.0) | 95.0 (1.0) | 200/200 planned |" in description
    )
    assert "--port 1053" in description and "--port 1054" in description and "CHANGELOG" not in description
    assert json.loads((folder / "pinned.json").read_text())["planner_repo"] == "me/planner"


def test_the_entry_carries_the_planner_releases_org_url_and_license_not_the_executors():
    recipe = load_recipe(None, ["release.namespace=acme", "release.model_license=mit", "build.version=2.1.0"])
    pinned = submission_pins(recipe)
    assert pinned.org == "acme" and pinned.license == "mit" and pinned.planner_revision == "v2.1.0"
    assert pinned.planner_repo == recipe.release.model_repo_id and pinned.url.endswith(pinned.planner_repo)
    assert pinned.name.endswith("-with-Qwen3-30B-A3B-Instruct-2507-FC")


def test_a_planner_that_is_not_a_hub_id_cannot_be_pinned(tmp_path):
    config = load_recipe(None, [f"eval.output={tmp_path}"]).eval
    with pytest.raises(SubmissionError, match="not a Hub id"):
        export(config, Pinned(NAME, "x", "runs/smoke/train/merged", "v1", "me", "u", "mit", 1054), allow_partial=True)
