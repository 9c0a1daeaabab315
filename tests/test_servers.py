"""Served roles: a stage's server is ready only when it serves the expected model, and it is gone
when the stage ends, fails or is interrupted; a server that never comes up fails with its log."""

import os
import signal
import stat
import subprocess
import sys
import time

import pytest

from apo_planner.serving import ServerConfig, ServerError, serve, served_models
from tests.conftest import REPO
from tests.support.loopback import OpenAIStub, server_url


def _fake_engine(tmp_path, body: str):
    """An executable standing in for an engine binary: prints, then does what `body` says."""
    script = tmp_path / "fake-engine"
    script.write_text(
        f"#!/bin/sh\necho 'loading weights'\necho 'CUDA out of memory: tried to allocate 20 GiB'\n{body}\n"
    )
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return ServerConfig(engine="vllm", binary=str(script), port=0, startup_timeout_s=2)


def test_a_server_that_never_becomes_ready_fails_with_its_log_tail(tmp_path):
    with pytest.raises(ServerError, match="after 2 s") as hung:
        with serve(_fake_engine(tmp_path, "sleep 60"), "some/model", tmp_path, "executor"):
            pass
    assert "CUDA out of memory" in str(hung.value)
    with pytest.raises(ServerError, match="exited with code 3") as died:
        with serve(_fake_engine(tmp_path, "exit 3"), "some/model", tmp_path, "planner"):
            pass
    assert "CUDA out of memory" in str(died.value)


def test_an_external_server_serving_another_model_is_refused():
    with OpenAIStub(model="Qwen/Qwen3-30B-A3B-Instruct-2507") as stub:
        config = ServerConfig(engine="external", base_url=stub.base_url)
        with pytest.raises(ServerError, match="not 'runs/paper/train/merged'"):
            with serve(config, "runs/paper/train/merged", REPO, "planner"):
                pass
        with serve(config, "Qwen/Qwen3-30B-A3B-Instruct-2507", REPO, "executor") as base_url:
            assert base_url == stub.base_url


@pytest.mark.slow
def test_a_started_server_is_stopped_after_success_and_after_failure(tmp_path, tiny):
    config = ServerConfig(engine="transformers", port=0, startup_timeout_s=180)
    with serve(config, tiny, tmp_path / "ok", "executor") as base_url:
        assert served_models(base_url) is not None
    assert served_models(base_url) is None
    with pytest.raises(RuntimeError, match="the stage failed"):
        with serve(config, tiny, tmp_path / "failed", "executor") as base_url:
            assert served_models(base_url) is not None
            raise RuntimeError("the stage failed")
    assert served_models(base_url) is None


@pytest.mark.slow
def test_a_started_server_is_stopped_when_the_stage_is_interrupted(tmp_path, tiny):
    code = (
        "import sys, time; from pathlib import Path; from apo_planner.serving import ServerConfig, serve\n"
        "config = ServerConfig(engine='transformers', port=0, startup_timeout_s=180)\n"
        "with serve(config, sys.argv[1], Path(sys.argv[2]), 'executor'):\n"
        "    print('ready', flush=True); time.sleep(600)\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code, str(tiny), str(tmp_path)], cwd=REPO, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout.readline().strip() == "ready"
    base_url = server_url(tmp_path / "executor.log")
    assert served_models(base_url) is not None
    os.kill(proc.pid, signal.SIGINT)  # Ctrl-C
    proc.wait(timeout=60)
    deadline = time.monotonic() + 30
    while served_models(base_url) is not None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert served_models(base_url) is None


@pytest.mark.slow
def test_apo_planner_serve_starts_a_role_as_its_stage_would_until_ctrl_c(tmp_path, tiny):
    command = [sys.executable, "-m", "apo_planner.entry.cli", "serve", "executor"]
    command += ["--set", f"eval.executor.model_path={tiny}", "--set", f"eval.output={tmp_path / 'eval'}"]
    proc = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    line = proc.stdout.readline()
    assert line.startswith(f"executor serving {tiny} at http://"), line
    base_url = line.split(" at ")[1].split()[0]
    assert served_models(base_url) is not None and (tmp_path / "eval" / "executor.log").is_file()
    os.kill(proc.pid, signal.SIGINT)
    assert proc.wait(timeout=60) == 0
    assert served_models(base_url) is None


def test_serving_a_role_the_recipe_does_not_start_says_which_it_does(capsys, monkeypatch, tmp_path):
    from apo_planner.entry.cli import main

    monkeypatch.chdir(tmp_path)  # the recipe's relative paths: nothing may be written for a refusal

    assert main(["serve", "synthesizer"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("apo-planner serve: error: the recipe serves no synthesizer (build.synthesizer")
    assert err.endswith("it serves executor, planner") and "\n" not in err
    assert not (tmp_path / "runs" / "smoke" / "models").exists()  # no tiny executor made for nothing


def test_a_vllm_role_serves_its_hub_model_at_the_pinned_revision_under_the_name_clients_send(tmp_path):
    config = ServerConfig(engine="vllm", port=8000, args=["--tensor-parallel-size", "4"])
    command = config.command("Qwen/Qwen3-30B-A3B-Instruct-2507", "Qwen/Qwen3-30B-A3B-Instruct-2507", 8000, "abc123")
    assert command[1:5] == ["serve", "Qwen/Qwen3-30B-A3B-Instruct-2507", "--revision", "abc123"]
    assert command[-2:] == ["--tensor-parallel-size", "4"] and "--served-model-name" in command
    assert "--revision" not in config.command(str(tmp_path), "merged", 8000, "main")  # a local folder has none
