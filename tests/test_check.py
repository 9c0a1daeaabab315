"""`apo-planner check`: the smoke recipe passes; the paper recipe on a machine that is not ready lists
every problem at once, one line each, without a traceback and without downloading anything."""

import subprocess
import sys

from apo_planner.entry.check import CheckReport, check_devices
from apo_planner.entry.cli import main
from apo_planner.entry.recipe import load_recipe
from tests.conftest import REPO, hub_env
from tests.support.hub import HubStub


def test_the_smoke_recipe_passes_the_check(capsys):
    assert main(["check"]) == 0
    out = capsys.readouterr().out
    assert "check (smoke): ok" in out and "source: 64 rows probed, format nemotron" in out


def test_the_paper_recipe_on_this_machine_names_every_missing_piece_at_once(capsys, monkeypatch, tmp_path):
    import huggingface_hub.constants

    import apo_planner.entry.check

    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_TOKEN_PATH", str(tmp_path / "hf" / "token"))  # no stored login
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # whatever the environment says
    monkeypatch.setattr(apo_planner.entry.check, "_gpu_count", lambda: 0)  # the same answer on a GPU machine
    monkeypatch.chdir(tmp_path)  # no .venv-vllm here
    monkeypatch.setattr("apo_planner.serving.DEFAULT_VLLM", ".venv-vllm-absent/bin/vllm")  # nor in the checkout
    assert main(["check", "--recipe", str(REPO / "recipes" / "paper.yaml"), "--push"]) == 2
    err = capsys.readouterr().err
    problems = err.strip().splitlines()
    assert all(line.startswith("apo-planner check: problem: ") for line in problems), err  # no traceback
    text = "\n".join(problems)
    assert "no Hugging Face token" in text and "offline mode" in text  # token and Hub access
    assert "engine vllm but .venv-vllm-absent/bin/vllm does not exist" in text and "make vllm-env" in text
    assert "needs a GPU and none is visible" in text
    assert "build.source: nvidia/Nemotron-Post-Training-Dataset-v1 is a Hub dataset and the Hub is offline" in text
    assert not (tmp_path / "hf" / "hub").exists()  # nothing was downloaded


def test_roles_that_run_together_may_not_share_gpus():
    recipe = load_recipe(
        REPO / "recipes" / "paper.yaml",
        ["eval.executor.server.devices=[0,1]", "eval.planner.server.devices=[1]", "train.num_processes=4"],
    )
    report = CheckReport()
    check_devices(recipe, report, gpus=lambda: 2)
    assert any("both use GPUs [1]" in p for p in report.problems)
    assert any("train.num_processes=4" in p for p in report.problems)
    assert not any("none is visible" in p for p in report.problems)


def test_check_push_refuses_a_namespace_the_token_cannot_write_before_any_stage(tmp_path):
    token = "hf_check_test_secret_token_7"
    release = [
        sys.executable,
        "-m",
        "apo_planner.entry.cli",
        "release",
        "--push",
        "--set",
        f"build.output={tmp_path / 'ds'}",
    ]
    with HubStub(token=token, user="me", orgs={"team": "read"}) as hub:
        env = hub_env(hub.url, token)
        ok = subprocess.run(
            [sys.executable, "-m", "apo_planner.entry.cli", "check", "--push", "--set", "release.namespace=me"],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
        )
        refused = subprocess.run(
            [*release, "--set", "release.namespace=team"], cwd=REPO, env=env, capture_output=True, text=True
        )
    assert ok.returncode == 0, ok.stderr
    assert refused.returncode == 2 and "only read access in the organisation 'team'" in refused.stderr
    assert "Traceback" not in refused.stderr and token not in refused.stderr + refused.stdout
    assert not (tmp_path / "ds").exists()  # refused before the build started


def test_a_pair_longer_than_max_length_is_a_problem_when_training_would_stop_on_it(capsys, tiny):
    sets = ["train.max_length=64", "train.overlong=error", f"train.base_model={tiny}"]  # a tokenizer to measure with
    assert main(["check", *[a for s in sets for a in ("--set", s)]]) == 2
    assert "train.overlong is error; raise max_length or set train.overlong=drop" in capsys.readouterr().err
