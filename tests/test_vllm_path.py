"""The GPU path without a GPU: what the project sends vLLM and what it records. Every request states all
its sampling fields, the served JSON grammar has the in-process whitespace rule, every Hub revision is a
commit before a stage starts, weights are downloaded before a server's startup clock, and `check` names
a driver too old for the vLLM build. (`make contract` checks the same bodies and argv with vLLM's code.)"""

import json
import subprocess
import sys

import pytest

from apo_planner.builders.config import LLMConfig
from apo_planner.entry.check import CheckReport, check_devices
from apo_planner.entry.cli import served_roles
from apo_planner.entry.recipe import load_recipe
from apo_planner.generation import BACKENDS, GenerationRequest, Sampling, make_backend
from apo_planner.generation.base import VLLM_ONLY_FIELDS
from apo_planner.pinning import PinError, local_snapshot, resolve
from apo_planner.serving import VLLM_STRUCTURED_OUTPUTS, ServerConfig
from tests.conftest import REPO, WEATHER_TOOL, hub_env
from tests.support.hub import Commit, HubRepo, HubStub

PAPER = REPO / "recipes" / "paper.yaml"
SAMPLING_FIELDS = {"temperature", "top_p", "top_k", "min_p", "repetition_penalty", "presence_penalty", "seed"}


def _body(config, request):
    return json.loads(make_backend(config).request_body(request))


def test_every_request_body_states_all_its_sampling_fields_and_chat_names_max_completion_tokens():
    llm = load_recipe(PAPER, []).build.llm
    chat = _body(llm, GenerationRequest(Sampling(max_tokens=64, temperature=0.7), messages=[{"role": "user"}]))
    assert SAMPLING_FIELDS | {"frequency_penalty", "max_completion_tokens"} <= set(chat) and "max_tokens" not in chat
    assert (chat["top_k"], chat["min_p"], chat["top_p"]) == (0, 0.0, 1.0)  # so Qwen's top_k 20 never applies
    from apo_planner.evaluation.planner_arm import planner_settings
    from apo_planner.portable.apo_planner import PlannerClient

    planner = PlannerClient(planner_settings(load_recipe(PAPER, []).eval), "http://127.0.0.1:9/v1")
    planner.server, planner.grammar_field = "vllm", "structured_outputs"  # what /version told the handler
    plan = planner.sampling()  # the planner arm's request (the leaderboard handler's): greedy, every field stated
    assert SAMPLING_FIELDS | {"frequency_penalty", "max_completion_tokens"} <= set(plan)
    assert (plan["temperature"], plan["top_k"], plan["top_p"]) == (0.0, 0, 1.0)
    # a server that speaks only the OpenAI API (transformers serve, hosted APIs) is sent only those fields
    openai_only = LLMConfig.of(backend="openai", api="openai", structured_output="none")
    plain = _body(openai_only, GenerationRequest(Sampling(max_tokens=8), messages=[]))
    assert not set(VLLM_ONLY_FIELDS) & set(plain) and {"temperature", "top_p", "seed"} <= set(plain)


def test_recorded_sampling_is_what_vllm_runs_including_its_clamped_temperature():
    assert Sampling(max_tokens=1, temperature=0.001).effective("vllm")["temperature"] == 0.01
    assert Sampling(max_tokens=1, temperature=0.001).effective("vllm")["requested_temperature"] == 0.001
    greedy = Sampling(max_tokens=1, temperature=0.0, top_p=0.8, top_k=20).effective("vllm")
    assert (greedy["top_p"], greedy["top_k"]) == (1.0, 0)  # vLLM forces these at temperature 0
    unknown = Sampling(max_tokens=1, temperature=0.7).effective(None)
    assert unknown["top_k"] == "server default" and unknown["temperature"] == 0.7


def test_the_executor_record_names_its_commit_and_the_temperature_vllm_runs(monkeypatch):
    from apo_planner.evaluation.run import executor_info

    config = load_recipe(PAPER, []).eval
    record = executor_info(config, [], "a" * 40)
    assert record["revision"] == "a" * 40 and record["api"] == "vllm"
    assert record["sampling"]["requested"]["temperature"] == 0.001
    assert record["sampling"]["effective"]["temperature"] == 0.01
    assert record["sampling"]["effective"]["top_k"] == 20  # stated in every request, as the leaderboard ran
    # an executor behind transformers serve is sent only the OpenAI API's fields: top_k is not claimed
    served = load_recipe(None, ["eval.executor.server.engine=transformers-serve", "eval.executor.api=openai"]).eval
    smoke = executor_info(served, [], None)["sampling"]["effective"]
    assert smoke["top_k"] == smoke["min_p"] == smoke["repetition_penalty"] == "server default"


def test_every_executor_request_states_the_recipes_sampling_fields():
    from apo_planner.benchmarks.bfcl.handler import _ExecutorCompletions

    sent = []

    class Completions:
        def create(self, **kwargs):
            sent.append(kwargs)

    executor = load_recipe(PAPER, []).eval.executor
    _ExecutorCompletions(Completions(), None, None, (executor.sampling, "vllm")).create(
        model="m", prompt="p", temperature=0.001, max_tokens=100, extra_body={"stop_token_ids": [7]}
    )
    extra = sent[0]["extra_body"]
    assert extra["top_k"] == 20 and extra["top_p"] == 0.8 and extra["seed"] == 0 and extra["min_p"] == 0.0
    assert extra["temperature"] == 0.001 and extra["stop_token_ids"] == [7] and sent[0]["max_tokens"] == 100


def test_the_synthesizer_server_argv_carries_the_json_whitespace_rule_and_the_pinned_commit():
    role = served_roles(load_recipe(PAPER, []))["synthesizer"]
    argv = role.config.command(role.model, role.model, 8000, "b" * 40)
    flag = argv.index("--structured-outputs-config")
    assert json.loads(argv[flag + 1]) == {"backend": "xgrammar", "disable_any_whitespace": True}
    assert argv[argv.index("--revision") + 1] == "b" * 40
    assert json.loads(VLLM_STRUCTURED_OUTPUTS)["disable_any_whitespace"] is True
    with pytest.raises(ValueError, match="apo-planner sets these itself"):
        ServerConfig(engine="vllm", args=["--structured-outputs-config.backend", "guidance"])


def test_batch_invariance_is_a_recipe_knob_that_reaches_the_vllm_process_either_way():
    assert ServerConfig(engine="vllm", batch_invariant=True).environment()["VLLM_BATCH_INVARIANT"] == "1"
    assert ServerConfig(engine="vllm").environment()["VLLM_BATCH_INVARIANT"] == "0"  # not inherited by chance
    recipe = load_recipe(PAPER, ["build.llm.server.batch_invariant=true"])
    assert recipe.build.llm.server.environment()["VLLM_BATCH_INVARIANT"] == "1"
    with pytest.raises(ValueError, match="setting of the vllm engine"):
        ServerConfig(engine="transformers", batch_invariant=True)


def test_an_unknown_backend_gets_a_did_you_mean_and_the_valid_names(capsys):
    from apo_planner.entry.cli import main

    assert main(["recipe", "--set", "build.llm.backend=opena"]) == 2
    err = capsys.readouterr().err
    assert "unknown generation backend 'opena'; did you mean 'openai'?" in err and "transformers" in err


def test_a_registered_backend_is_a_valid_recipe_section_with_its_own_keys(monkeypatch):
    from typing import Literal

    from apo_planner.generation import Backend, BackendConfig, Generation, Identity

    class EchoConfig(BackendConfig):
        backend: Literal["echo-test"] = "echo-test"
        prefix: str = ""

    class Echo(Backend):
        name = "echo-test"
        config_class = EchoConfig

        def identity(self):
            return Identity(self.name, self.config.model, "local", None, "none")

        async def agenerate(self, request):
            return Generation(self.config.prefix + request.messages[0]["content"], 1, 1)

    BACKENDS.names()  # the built-ins loaded, then a copy of the list: the project's registry stays as it was
    monkeypatch.setattr(BACKENDS, "_entries", dict(BACKENDS._entries))
    BACKENDS.register("echo-test")(Echo)
    config = load_recipe(None, ["build.llm.backend=echo-test", "build.llm.prefix=echo"]).build.llm
    assert isinstance(config, LLMConfig) and config.prefix == "echo" and config.plan_rationale_max_chars == 40
    assert isinstance(make_backend(config), Echo)


def test_offline_a_revision_pins_to_the_local_snapshot_and_without_one_is_a_one_line_error(tmp_path, monkeypatch):
    import huggingface_hub.constants as constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    sha = "c" * 40
    (tmp_path / "models--org--model" / "snapshots" / sha).mkdir(parents=True)
    (tmp_path / "models--org--model" / "refs").mkdir()
    (tmp_path / "models--org--model" / "refs" / "main").write_text(sha)
    assert local_snapshot("org/model", "main") == sha and resolve("org/model", "main", key="k") == sha
    with pytest.raises(PinError) as missing:
        resolve("org/other", "main", key="eval.executor.revision")
    assert str(missing.value).startswith("eval.executor.revision: cannot pin org/other@main") and "\n" not in str(
        missing.value
    )


def test_check_names_a_driver_too_old_for_the_vllm_builds_cuda(tmp_path):
    binary = tmp_path / "vllm"
    binary.write_text("")
    recipe = load_recipe(PAPER, [f"eval.executor.server.binary={binary}"])
    report = CheckReport()
    check_devices(recipe, report, gpus=lambda: 8, driver=lambda: "550.54.15", cuda=lambda exe: "13.0")
    [problem] = [p for p in report.problems if p.startswith("eval.executor.server: ") and "driver" in p]
    assert "CUDA 13.0" in problem and "580" in problem and "550.54.15" in problem


@pytest.mark.slow
def test_a_vllm_role_downloads_its_pinned_snapshot_before_the_server_starts(tmp_path):
    """The server is started only once the whole snapshot is in the cache it reads (the fake engine looks)."""
    sha = "d" * 40
    repo = HubRepo("model", False, commits=[sha], snapshots={sha: {"config.json": b"{}", "w.bin": b"x" * 1000}})
    repo.branches["main"] = sha
    repo.log[sha] = Commit("init", "2026-01-01T00:00:00.000Z")
    engine = tmp_path / "engine"
    snapshot = tmp_path / "hf" / "hub" / "models--org--model" / "snapshots" / sha / "w.bin"
    engine.write_text(f"#!/bin/sh\ntest -f {snapshot} && echo 'weights were there' && echo \"$@\"\nexit 3\n")
    engine.chmod(0o755)
    code = (
        "import sys; from pathlib import Path\n"
        "from apo_planner.pinning import resolve\nfrom apo_planner.serving import ServerConfig, ServerError, serve\n"
        "sha = resolve('org/model', 'main')\n"
        f"config = ServerConfig(engine='vllm', binary={str(engine)!r}, port=0, startup_timeout_s=5)\n"
        "try:\n    with serve(config, 'org/model', Path(sys.argv[1]), 'executor', revision=sha): pass\n"
        "except ServerError as exc: print(exc)\n"
    )
    with HubStub(token="hf_x") as hub:
        hub.repos[("model", "org/model")] = repo
        env = hub_env(hub.url, "hf_x") | {"HF_HOME": str(tmp_path / "hf")}
        out = subprocess.run([sys.executable, "-c", code, str(tmp_path)], env=env, capture_output=True, text=True)
    assert "weights were there" in out.stdout, out.stdout + out.stderr
    assert f"--revision {sha}" in out.stdout


def test_in_process_json_is_compact_as_vllms_disable_any_whitespace_so_there_is_one_json_grammar():
    import xgrammar as xgr

    from apo_planner.builders.synthesis.llm import selection_schema
    from apo_planner.generation.inprocess import JSON_SEPARATORS
    from apo_planner.tiny import build_tokenizer

    tokenizer = build_tokenizer()
    compiler = xgr.GrammarCompiler(xgr.TokenizerInfo.from_huggingface(tokenizer))
    schema = json.dumps(selection_schema(3, 40))  # as the backend compiles it: the served order of keys
    answer = {"keep": [{"index": 0, "rationale": "r", "depends_on": []}]}

    def accepted(text):
        matcher = xgr.GrammarMatcher(
            compiler.compile_json_schema(schema, any_whitespace=False, separators=JSON_SEPARATORS)
        )
        return all(matcher.accept_token(i) for i in tokenizer(text, add_special_tokens=False)["input_ids"])

    compact = json.dumps(answer, separators=(",", ":"))
    assert accepted(compact) and not accepted(json.dumps(answer)) and not accepted(compact.replace(":", ":  ", 1))


def test_reasoning_is_split_once_for_readers_the_planner_context_and_plan_parsing():
    from apo_planner.formats import FORMATS
    from apo_planner.plan import parse_plan
    from apo_planner.prompts import context_messages
    from apo_planner.reasoning import split_reasoning

    text = "<think>check the city</think>It is sunny."
    assert split_reasoning(text) == ("check the city", "It is sunny.")
    assert split_reasoning("opened in the prompt</think>answer") == ("opened in the prompt", "answer")
    assert context_messages([{"role": "assistant", "content": text}]) == [
        {"role": "assistant", "content": "It is sunny."}
    ]
    messages = [{"role": "user", "content": "q"}, {"role": "assistant", "content": text}]
    row = {"messages": messages, "tools": [WEATHER_TOOL]}
    assert FORMATS.get("openai").read(row).messages[-1].content == "It is sunny."
    assert parse_plan("<think>plan it</think>\n1. f({})\n   why: r").tools == ["f"]
