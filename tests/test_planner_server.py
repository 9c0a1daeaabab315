"""apo-planner's CPU planner server (`server.engine: transformers`, `apo_planner.generation.openai_server`):
vLLM's constraint fields enforced with xgrammar on a random tiny model, vLLM's refusals, and its routes over
HTTP as the stage starts it."""

import json
import re

import pytest

from apo_planner.generation.inprocess import TransformersBackend, TransformersConfig
from apo_planner.generation.openai_server import RequestError, Server

NAME = "me/planner"
SCHEMA = {
    "type": "object",
    "properties": {"city": {"enum": ["Oslo", "Paris"]}, "days": {"type": "boolean"}},
    "required": ["city", "days"],
    "additionalProperties": False,
}


@pytest.fixture(scope="module")
def server(tiny):
    backend = TransformersBackend(TransformersConfig(model=str(tiny)))
    backend.check()
    return Server(backend, NAME)


def _text(server, constraint, endpoint="completions", **body):
    request = {"model": NAME, "max_tokens": 48, "temperature": 0.0, "seed": 0, **constraint, **body}
    if endpoint == "completions":
        request.setdefault("prompt", "Weather?")
    else:
        request.setdefault("messages", [{"role": "user", "content": "Weather?"}])
    out = server.generate(request, endpoint)
    choice = out["choices"][0]
    assert choice["finish_reason"] == "stop", out  # every constraint here ends within the budget
    return choice["text"] if endpoint == "completions" else choice["message"]["content"]


@pytest.mark.parametrize(
    ("constraint", "check"),
    [
        ({"structured_outputs": {"grammar": 'root ::= "plan " [0-9] [0-9]'}}, r"plan \d\d"),
        ({"guided_grammar": 'root ::= "plan " [0-9] [0-9]'}, r"plan \d\d"),
        ({"structured_outputs": {"regex": "[ab]{3}-[0-9]"}}, r"[ab]{3}-[0-9]"),
        ({"structured_outputs": {"choice": ["yes", "no, thanks"]}}, r"yes|no, thanks"),
        ({"guided_choice": ["yes", "no, thanks"]}, r"yes|no, thanks"),
    ],
)
def test_a_random_model_writes_exactly_what_each_constraint_field_allows(server, constraint, check):
    for endpoint in ("completions", "chat"):
        assert re.fullmatch(check, _text(server, constraint, endpoint)), (constraint, endpoint)


@pytest.mark.parametrize(
    "constraint",
    [
        {"structured_outputs": {"json": SCHEMA}},
        {"guided_json": SCHEMA},
        {"response_format": {"type": "json_schema", "json_schema": {"name": "w", "schema": SCHEMA}}},
    ],
)
def test_json_schemas_are_enforced_without_free_whitespace(server, constraint):
    import jsonschema

    text = _text(server, constraint, "chat")
    jsonschema.validate(json.loads(text), SCHEMA)
    assert text == json.dumps(json.loads(text), separators=(",", ":"))


def test_the_chat_route_renders_the_catalog_with_the_models_template_and_only_without_tool_calls(server):
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]
    text = _text(server, {"guided_choice": ["ok"]}, "chat", tools=tools, tool_choice="none")
    assert text == "ok"
    with pytest.raises(RequestError, match="tool_choice"):
        server.generate({"model": NAME, "messages": [{"role": "user", "content": "q"}], "tools": tools}, "chat")


def test_what_it_would_not_apply_is_refused_as_vllm_refuses_it(server):
    ask = {"model": NAME, "prompt": "q", "max_tokens": 4}
    with pytest.raises(RequestError, match=r"unsupported fields \['guided_decoding_backend'\]"):
        server.generate(ask | {"guided_decoding_backend": "outlines"}, "completions")
    with pytest.raises(RequestError, match="only one kind of structured output"):
        server.generate(ask | {"guided_regex": "a", "guided_choice": ["b"]}, "completions")
    with pytest.raises(RequestError, match=r"structured_outputs: unsupported keys \['xml'\]"):
        server.generate(ask | {"structured_outputs": {"xml": "<a/>"}}, "completions")
    with pytest.raises(RequestError) as missing:
        server.generate(ask | {"model": "someone/else"}, "completions")
    assert missing.value.status == 404
    with pytest.raises(RequestError, match="maximum context length is 4096 tokens"):
        server.generate(ask | {"prompt": "word " * 5000}, "completions")


@pytest.mark.slow
def test_the_stage_serves_it_over_http_with_models_version_and_both_routes(tiny, tmp_path):
    import openai
    import requests

    from apo_planner.serving import ServerConfig, serve

    config = ServerConfig(engine="transformers", port=0, startup_timeout_s=180)
    with serve(config, tiny, tmp_path, "planner", served_name=NAME) as base_url:
        assert [m["id"] for m in requests.get(f"{base_url}/models", timeout=10).json()["data"]] == [NAME]
        version = requests.get(base_url.removesuffix("/v1") + "/version", timeout=10).json()
        assert version["server"] == "apo-planner" and version["engine"] == "transformers"
        client = openai.OpenAI(base_url=base_url, api_key="EMPTY", max_retries=0)
        extra = {"structured_outputs": {"choice": ["yes", "no"]}, "top_k": 0}
        chat = client.chat.completions.create(
            model=NAME, messages=[{"role": "user", "content": "q"}], max_completion_tokens=8, extra_body=extra
        )
        text = client.completions.create(model=NAME, prompt="q", max_tokens=8, extra_body=extra)
        assert chat.choices[0].message.content in ("yes", "no") and text.choices[0].text in ("yes", "no")
        with pytest.raises(openai.BadRequestError, match="unsupported fields"):
            client.completions.create(model=NAME, prompt="q", max_tokens=8, extra_body={"best_of": 2})
