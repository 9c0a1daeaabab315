"""The release: every stage through the real code on tiny models, skipping what is up to date,
and the push to a loopback Hub that fails, resumes and never leaks the token."""

import json
import subprocess
import sys

import datasets
import pytest

from apo_planner.artifacts import EvalDir
from entry.cli import main
from tests.conftest import REPO, hub_env
from tests.support.hub import HubStub


@pytest.mark.slow
def test_release_runs_every_stage_stages_loadable_repos_and_a_rerun_does_no_work(tmp_path, capsys):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    sets = [
        f"build.output={tmp_path / 'ds'}",
        "build.synthesizer=rule",
        "build.limit=24",
        f"train.output={tmp_path / 'train'}",
        f"train.base_model={tmp_path / 'tiny'}",
        "train.max_steps=2",
        "train.preference_eval_limit=2",
        "train.logging_steps=1",
        f"eval.output={tmp_path / 'eval'}",
        "eval.limit=2",
        "eval.categories=[multiple]",
        f"eval.executor.model_path={tmp_path / 'tiny-exec'}",
        "eval.executor.max_tokens=8",
        f"release.output={tmp_path / 'release'}",
    ]
    argv = ["release", *[a for s in sets for a in ("--set", s)]]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "ran build, train, merge, eval, cards" in out and "nothing pushed" in out
    # the planner arm is a planner arm: every entry planned (constrained decoding), the executor saw it
    comparison = EvalDir(tmp_path / "eval").comparison()
    assert {c: (v.planned, v.entries) for c, v in comparison.coverage().items()} == {"multiple": (2, 2)}
    row = comparison.categories[0]
    assert row["planner"]["executor_input_tokens"] > row["baseline"]["executor_input_tokens"]
    assert "plan coverage: multiple" in out and "2/2 planned" in out
    staged = tmp_path / "release" / "apo-planner"
    ds = datasets.load_dataset(str(staged / "apo-planner-plans-smoke"))
    assert ds["train"].num_rows > 0
    model = AutoModelForCausalLM.from_pretrained(staged / "apo-planner-smoke")
    PeftModel.from_pretrained(
        AutoModelForCausalLM.from_pretrained(tmp_path / "tiny"), str(staged / "apo-planner-smoke-lora")
    )
    assert model.config.hidden_size == 64
    provenance = json.loads((tmp_path / "train" / "training_provenance.json").read_text())
    assert (
        provenance["dataset"]["fingerprint"] == json.loads((tmp_path / "ds" / "stats.json").read_text())["fingerprint"]
    )

    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "ran nothing; skipped build, train, merge, eval, cards" in out

    # --push against a loopback Hub: the adapter repo's creation keeps failing, so the first push
    # stops after the dataset; the re-run pushes only what is missing; the token never leaks.
    token = "hf_release_test_secret_token_42"
    push = [sys.executable, "-m", "entry.cli", *argv, "--push"]
    push += ["--set", "release.push.retries=2", "--set", "release.push.retry_wait_s=0.01"]
    adapter = "apo-planner/apo-planner-smoke-lora"
    with HubStub(token=token, faults={f"create {adapter}": [503, 503]}) as hub:
        env = hub_env(hub.url, token)
        runs = [subprocess.run(push, cwd=REPO, env=env, capture_output=True, text=True) for _ in range(3)]
        failed, resumed, again = runs
        assert failed.returncode == 2, failed.stderr
        assert f"create {adapter} failed after 2 attempts" in failed.stderr
        assert resumed.returncode == 0, resumed.stderr
        assert "release: push dataset is up to date" in resumed.stdout
        assert f"pushed {adapter}" in resumed.stdout and "pushed apo-planner/apo-planner-smoke -> " in resumed.stdout
        assert again.returncode == 0 and "ran nothing" in again.stdout
        for (_, repo_id), repo in hub.repos.items():
            assert len(repo.commits) == 2, repo_id  # the Hub's initial commit + exactly one upload
            pushed = {k: v for k, v in repo.files("v0.1.0").items() if k != ".gitattributes"}
            local = tmp_path / "release" / repo_id
            assert pushed == {p.relative_to(local).as_posix(): p.read_bytes() for p in local.rglob("*") if p.is_file()}
        assert sorted(hub.repos) == [
            ("dataset", "apo-planner/apo-planner-plans-smoke"),
            ("model", "apo-planner/apo-planner-smoke"),
            ("model", adapter),
        ]
        assert all(r.private for r in hub.repos.values())  # the smoke recipe's release.push.private
    assert not any(token in r.stdout + r.stderr for r in runs)
    assert not any(token.encode() in p.read_bytes() for p in tmp_path.rglob("*") if p.is_file())
