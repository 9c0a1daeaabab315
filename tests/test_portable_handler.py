"""The leaderboard handler's planner client and the vLLM server it starts (`apo_planner.portable.apo_planner`):
the grammar field chosen from the server's /version, the probe that stops a run before its first entry, and
the argv and environment of the planner's `vllm serve` under `bfcl generate --backend vllm` (built and checked
here; no GPU runs it)."""

import pytest

from apo_planner.portable import apo_planner as handler
from apo_planner.portable.apo_planner import (
    SETTINGS,
    PlannerClient,
    PlannerServer,
    PlannerUnavailable,
    add_latency,
    entry_request,
)
from tests.support.loopback import OpenAIStub

ENTRY = {
    "id": "multiple_0",
    "question": [[{"role": "user", "content": "Weather in Oslo?"}]],
    "function": [{"name": "get_weather", "description": "", "parameters": {"type": "object", "properties": {}}}],
}


def _plan(request, n):
    return 200, "1. get_weather({})\n   why: the user asks for it", 0.0


@pytest.mark.parametrize(
    ("version", "field"),
    [
        ({"server": "apo-planner", "version": "0.1.0"}, "structured_outputs"),
        ({"version": "0.10.2"}, "structured_outputs"),
        ({"version": "0.33.1"}, "structured_outputs"),
        ({"version": "0.8.5"}, "guided_grammar"),  # bfcl's oss_eval_vllm extra pins it
        (None, None),  # no /version: neither vLLM nor apo-planner's server
    ],
)
def test_the_grammar_field_is_the_one_the_servers_version_takes_and_every_line_records_it(version, field, capsys):
    with OpenAIStub(_plan, model=SETTINGS.model, version=version) as stub:
        client = PlannerClient(SETTINGS, stub.base_url)
        client.probe()
        info = client.plan_for(ENTRY)
    assert client.grammar_field == field and info["grammar_field"] == field
    assert info["plan"] == "1. get_weather({})\n   why: the user asks for it"
    body = stub.requests[-1]
    sent = {k for k in ("structured_outputs", "guided_grammar") if k in body}
    assert sent == ({field} if field else set())
    if field == "structured_outputs":
        assert body["structured_outputs"]["grammar"].startswith("root ::=")
    assert (body["tool_choice"], body["temperature"], body["max_completion_tokens"]) == ("none", 0.0, 1024)
    warned = "the plan grammar is not sent" in capsys.readouterr().err
    assert warned == (field is None)


def test_send_grammar_overrides_what_version_says():
    settings = handler.replace(SETTINGS, send_grammar="none")
    with OpenAIStub(_plan, model=SETTINGS.model, version={"version": "0.33.1"}) as stub:
        client = PlannerClient(settings, stub.base_url)
        client.probe()
        client.plan_for(ENTRY)
    assert client.grammar_field is None and "structured_outputs" not in stub.requests[-1]


def test_a_planner_refusing_the_probe_stops_the_run_and_a_transient_failure_only_warns(capsys):
    with OpenAIStub(lambda request, n: (400, "", 0.0), model=SETTINGS.model) as stub:
        with pytest.raises(PlannerUnavailable, match=r"refused a plan request \(HTTP 400: stub error 400\)"):
            PlannerClient(SETTINGS, stub.base_url).probe()
    settings = handler.replace(SETTINGS, max_retries=0)
    with OpenAIStub(lambda request, n: (503, "", 0.0), model=SETTINGS.model) as stub:
        PlannerClient(settings, stub.base_url).probe()
    assert "the probe request failed (503); going on" in capsys.readouterr().err
    with OpenAIStub(_plan, model="someone/else") as stub:
        with pytest.raises(PlannerUnavailable, match="--served-model-name apo-planner/"):
            PlannerClient(SETTINGS, stub.base_url).probe()


def test_the_planner_s_latency_is_added_before_the_first_turn_of_bfcls_latency():
    assert add_latency(1.5, 0.25) == 1.75
    assert add_latency([[1.0, 2.0], [3.0]], 0.5) == [add_latency([1.0, 2.0], 0.5), [3.0]] == [[1.5, 2.0], [3.0]]
    query, tools = entry_request(ENTRY)
    assert query == "Weather in Oslo?" and tools[0]["function"]["name"] == "get_weather"


def test_the_planner_s_vllm_server_takes_its_port_devices_and_memory_from_the_environment(monkeypatch):
    for name in list(handler.os.environ):
        if name.startswith("APO_PLANNER_") or name in ("LOCAL_SERVER_PORT", "CUDA_VISIBLE_DEVICES"):
            monkeypatch.delenv(name)
    monkeypatch.setattr(handler, "_next_gpu", lambda num_gpus: None)  # no nvidia-smi here
    default = PlannerServer(SETTINGS, SETTINGS.model)
    assert default.base_url == "http://localhost:1054/v1"  # bfcl's LOCAL_SERVER_PORT 1053 + 1
    assert default.command == [
        "vllm",
        "serve",
        SETTINGS.model,
        "--revision",
        SETTINGS.revision,
        "--served-model-name",
        SETTINGS.model,
        "--port",
        "1054",
        "--gpu-memory-utilization",
        "0.9",
        "--max-model-len",
        "16384",
    ]
    monkeypatch.undo()
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1,2,3,4,5,6,7")
    assert handler._next_gpu(4) == "4" and handler._next_gpu(8) == "7" and handler._next_gpu(1) == "1"
    monkeypatch.setenv("APO_PLANNER_PORT", "2000")
    monkeypatch.setenv("APO_PLANNER_MODEL", "/models/merged")  # a local folder: served under the Hub id
    monkeypatch.setenv("APO_PLANNER_GPU_MEMORY_UTILIZATION", "0.5")
    monkeypatch.setenv("APO_PLANNER_DEVICES", "6,7")
    monkeypatch.setenv("APO_PLANNER_VLLM", "/opt/vllm/bin/vllm")
    server = PlannerServer(SETTINGS, "served/name")
    assert server.command[:3] == ["/opt/vllm/bin/vllm", "serve", "/models/merged"]
    assert "--revision" in server.command  # /models/merged does not exist here, so it is taken as a Hub id
    assert server.command[server.command.index("--served-model-name") + 1] == "served/name"
    assert server.command[server.command.index("--gpu-memory-utilization") + 1] == "0.5"
    assert server.base_url.endswith(":2000/v1") and server.environment(4)["CUDA_VISIBLE_DEVICES"] == "6,7"


def test_the_handler_starts_stops_and_probes_the_planner_server_around_bfcls_server_setup(tmp_path, monkeypatch):
    """`bfcl generate --backend vllm`: a stand-in `vllm` (APO_PLANNER_VLLM) that serves a stub planner on the
    port it is given; the executor's own set-up is bfcl's (here skipped: its endpoint is a stub too)."""
    import sys

    script = tmp_path / "vllm"
    script.write_text(
        f"#!{sys.executable}\n"
        "import sys, threading\n"
        f"sys.path[:0] = {sys.path!r}\n"
        "from tests.support.loopback import OpenAIStub\n"
        "argv = sys.argv\n"
        "port = int(argv[argv.index('--port') + 1])\n"
        "name = argv[argv.index('--served-model-name') + 1]\n"
        "reply = lambda request, n: (200, '1. get_weather({})\\n   why: asked', 0.0)\n"
        "stub = OpenAIStub(reply, model=name, version={'version': '0.33.1'})\n"
        "stub._port = port\n"
        "with stub:\n"
        "    threading.Event().wait()\n"
    )
    script.chmod(0o755)
    from apo_planner.serving import free_port

    port = free_port()
    monkeypatch.delenv("APO_PLANNER_BASE_URL", raising=False)
    monkeypatch.setenv("APO_PLANNER_VLLM", str(script))
    monkeypatch.setenv("APO_PLANNER_PORT", str(port))
    monkeypatch.setenv("APO_PLANNER_DEVICES", "3")
    from bfcl_eval.model_handler.local_inference.qwen_fc import QwenFCHandler

    class Handler(handler.APOPlannerHandler, QwenFCHandler):
        pass

    instance = Handler("Qwen/Qwen3-4B", 0.001, "x", True)
    calls = []
    monkeypatch.setattr(QwenFCHandler, "spin_up_local_server", lambda self, *a, **k: calls.append(a))
    instance.spin_up_local_server(4, 0.9, "vllm", False, None)
    try:
        assert calls == [(4, 0.9, "vllm", False, None)]  # bfcl's own set-up, as bfcl called it
        assert instance.plans.grammar_field == "structured_outputs"  # probed: vLLM 0.33 answered
        assert instance._planner_server.devices == "3" and handler._answers(f"http://localhost:{port}/v1")
    finally:
        instance.shutdown_local_server()
    assert not handler._answers(f"http://localhost:{port}/v1")  # stopped with bfcl's server
