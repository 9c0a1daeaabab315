"""The release: every stage through the real code on tiny models, skipping what is up to date,
and the push to a loopback Hub that fails, resumes and never leaks the token."""

import json
import subprocess
import sys

import datasets
import pytest

from apo_planner.artifacts import EvalDir
from apo_planner.entry.cli import main
from apo_planner.entry.release import ReleaseState, ReleaseStopped, Stage, run_stages
from apo_planner.serving import served_models
from tests.conftest import REPO, hub_env
from tests.support.hub import HubStub
from tests.support.loopback import server_url


@pytest.mark.slow
def test_release_runs_every_stage_stages_loadable_repos_and_a_rerun_does_no_work(tmp_path, capsys):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    argv = _tiny_release(
        tmp_path,
        "train.max_steps=2",
        "train.preference_eval=true",
        "train.preference_eval_limit=2",
        "train.logging_steps=1",
        "train.num_processes=2",  # through the same launcher as a GPU node: accelerate, gloo on CPU
    )
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "ran build, train, merge, eval, cards" in out and "nothing pushed" in out
    placement = json.loads((tmp_path / "train" / "training_provenance.json").read_text())["placement"]
    assert placement["world_size"] == 2
    # the executor's server was started by the eval stage and stopped with it
    assert served_models(server_url(tmp_path / "eval" / "executor.log")) is None
    # the planner arm is a planner arm: every entry planned (constrained decoding), the executor saw it
    comparison = EvalDir(tmp_path / "eval").comparison()
    assert {c: (v.planned, v.entries) for c, v in comparison.coverage().items()} == {"multiple": (2, 2)}
    row = comparison.categories[0]
    assert row["planner"]["executor_input_tokens"] > row["baseline"]["executor_input_tokens"]
    assert "plan coverage: multiple" in out and "2/2 planned" in out
    # what the planner learned (held-out plans, base -> merged with paired intervals) and every difference
    generation = json.loads((tmp_path / "train" / "metrics.json").read_text())["plan_generation"]
    assert generation["prompts"] == 2 and generation["decoding"]["max_steps"] == 2  # eval.planner's decoding
    assert "held-out plans, base -> merged: exact_match" in out and "95% CI, 2 prompts" in out
    for pair in comparison.statistics.pairs:
        assert pair.delta_accuracy.signed() in out and f"{pair.p_value:g}" in out
    staged = tmp_path / "release" / "apo-planner"
    ds = datasets.load_dataset(str(staged / "apo-planner-pairs-smoke"))
    assert ds["train"].num_rows > 0
    model = AutoModelForCausalLM.from_pretrained(staged / "apo-planner-tiny-smoke")
    PeftModel.from_pretrained(
        AutoModelForCausalLM.from_pretrained(tmp_path / "tiny"), str(staged / "apo-planner-tiny-smoke-lora")
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
    push = [sys.executable, "-m", "apo_planner.entry.cli", *argv, "--push"]
    push += ["--set", "release.push.retries=2", "--set", "release.push.retry_wait_s=0.01"]
    adapter = "apo-planner/apo-planner-tiny-smoke-lora"
    with HubStub(token=token, orgs={"apo-planner": "write"}, faults={f"create {adapter}": [503, 503]}) as hub:
        env = hub_env(hub.url, token)
        runs = [subprocess.run(push, cwd=REPO, env=env, capture_output=True, text=True) for _ in range(3)]
        failed, resumed, again = runs
        assert failed.returncode == 2, failed.stderr
        assert f"create {adapter} failed after 2 attempts" in failed.stderr
        assert resumed.returncode == 0, resumed.stderr
        log = resumed.stderr  # progress lines are logged to stderr (issue 24); the summary table is stdout
        assert "release: push dataset is up to date" in log
        assert f"pushed {adapter}" in log
        assert "pushed apo-planner/apo-planner-tiny-smoke -> " in log
        assert again.returncode == 0 and "ran nothing" in again.stdout
        for (_, repo_id), repo in hub.repos.items():
            assert len(repo.commits) == 2, repo_id  # the Hub's initial commit + exactly one upload
            pushed = {k: v for k, v in repo.files("v0.1.0").items() if k != ".gitattributes"}
            local = tmp_path / "release" / repo_id
            assert pushed == {p.relative_to(local).as_posix(): p.read_bytes() for p in local.rglob("*") if p.is_file()}
        assert sorted(hub.repos) == [
            ("dataset", "apo-planner/apo-planner-pairs-smoke"),
            ("model", "apo-planner/apo-planner-tiny-smoke"),
            ("model", adapter),
        ]
        assert all(r.private for r in hub.repos.values())  # the smoke recipe's release.push.private
    assert not any(token in r.stdout + r.stderr for r in runs)
    assert not any(token.encode() in p.read_bytes() for p in tmp_path.rglob("*") if p.is_file())


def _tiny_release(tmp_path, *extra):
    sets = [
        f"build.output={tmp_path / 'ds'}",
        "build.synthesizer=rule",
        "build.limit=24",
        f"train.output={tmp_path / 'train'}",
        f"train.base_model={tmp_path / 'tiny'}",
        "train.max_steps=1",
        "train.preference_eval=false",
        "train.plan_eval.limit=2",
        f"eval.output={tmp_path / 'eval'}",
        "eval.limit=2",
        "eval.categories=[multiple]",
        f"eval.executor.model_path={tmp_path / 'tiny-exec'}",
        "eval.executor.max_tokens=8",
        f"release.output={tmp_path / 'release'}",
        *extra,
    ]
    return ["release", *[a for s in sets for a in ("--set", s)]]


@pytest.mark.slow
def test_a_planner_that_falls_back_too_often_stops_the_release_before_anything_is_published(tmp_path, capsys):
    # a token budget too small for any plan: every entry falls back (truncated_plan)
    assert main(_tiny_release(tmp_path, "eval.planner.max_new_tokens=4")) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("apo-planner release: error:")]
    assert len(errors) == 1, errors  # one line, no traceback
    assert "stopped after eval, before publishing anything" in errors[0] and "multiple: 0/2 planned" in errors[0]
    assert "truncated_plan 2" in errors[0]
    assert (tmp_path / "eval" / "comparison.json").is_file()  # measured and reported, but nothing staged
    assert [p.name for p in (tmp_path / "release").iterdir()] == [".release_state.json"]


def test_a_gate_stops_the_table_before_the_stages_that_publish(tmp_path):
    ran = []

    def stage(name, gate=None):
        return Stage(name, lambda: name, [], lambda: ran.append(name), gate)

    def refuse():
        raise ReleaseStopped("coverage 0/4")

    stages = [stage("eval", refuse), stage("cards"), stage("push model")]
    with pytest.raises(ReleaseStopped, match="stopped after eval, before publishing anything: coverage 0/4"):
        run_stages(stages, ReleaseState(tmp_path / "state.json"), log=lambda _: None)
    assert ran == ["eval"]
    # a stage that claims success without its outputs stops the release too
    missing = Stage("train", lambda: "k", [tmp_path / "adapter_config.json"], lambda: None)
    with pytest.raises(ReleaseStopped, match="train finished without writing"):
        run_stages([missing, stage("cards")], ReleaseState(tmp_path / "state2.json"), log=lambda _: None)
