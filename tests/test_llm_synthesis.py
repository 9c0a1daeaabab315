"""LLM synthesis: validation of answers, the in-process backend, the cache, the openai backend
against a real `transformers serve`, and fault injection (500s, timeouts, invalid output)."""

import gzip
import hashlib
import json

import datasets
import jsonschema
import pytest

from apo_planner.builders.build import build
from apo_planner.builders.config import LLMConfig
from apo_planner.builders.errors import NoPairs, SynthesisError
from apo_planner.builders.synthesis.llm import DEFAULT_TEMPLATE, parse_selection, selection_schema
from apo_planner.builders.synthesis.selection import InvalidSelection
from apo_planner.entry.recipe import load_recipe
from apo_planner.serving import ServerConfig, free_port, served_models
from tests.conftest import SMOKE_SOURCE
from tests.support.loopback import OpenAIStub, server_url


def _keep(*items):
    return json.dumps({"keep": [{"index": i, "rationale": "r", "depends_on": list(d)} for i, d in items]})


def test_valid_answer_becomes_a_selection_sorted_by_index():
    selection = parse_selection(_keep((2, (0,)), (0, ())), 3, 100)
    assert [k.index for k in selection.kept] == [0, 2]
    assert selection.kept[1].depends_on == (0,)
    assert selection.removed == {1: "not_selected"}


@pytest.mark.parametrize(
    "raw, reason",
    [
        ("not json", "unparseable_output"),
        ('{"keep": []}', "schema_mismatch"),
        ('{"keep": [{"index": 0}]}', "schema_mismatch"),
        (_keep((5, ())), "schema_mismatch"),
        (_keep((0, ()), (0, ())), "duplicate_index"),
        (_keep((0, (1,)), (1, ())), "bad_dependency"),
        (_keep((0, ()), (2, (1,))), "bad_dependency"),
        (_keep((0, ()), (1, ()), (2, ())), "no_redundancy"),
    ],
)
def test_invalid_answers_are_named(raw, reason):
    with pytest.raises(InvalidSelection) as info:
        parse_selection(raw, 3, 100)
    assert info.value.reason == reason


def _llm_config(tmp_path, limit=6, **llm):
    settings = {
        "backend": "transformers",
        "model": str(tmp_path / "tiny"),
        "tiny_model": True,
        "temperature": 1.0,
        "retry_temperature": 1.0,
        "max_tokens": 300,
        "plan_rationale_max_chars": 30,
        "cache": str(tmp_path / "cache.sqlite"),
        **llm,
    }
    overrides = [
        f"build.source={SMOKE_SOURCE}",
        f"build.output={tmp_path / 'ds'}",
        f"build.limit={limit}",
        "build.synthesizer=llm",
        *[f"build.llm.{k}={v}" for k, v in settings.items()],
    ]
    return load_recipe(None, overrides).build


def _answers_by_trajectory(config):
    """(number of calls, status, raw answers) for every cached answer of this build's trajectories."""
    from apo_planner.builders.source_abstraction import abstract_record
    from apo_planner.builders.sources import TEXT_COLUMN
    from apo_planner.builders.synthesis.llm import LLMSynthesizer
    from apo_planner.formats import Detection

    synthesizer = LLMSynthesizer(config.llm)
    out = []
    for line in gzip.decompress(SMOKE_SOURCE.read_bytes()).decode().splitlines()[: config.limit]:
        for row in abstract_record({TEXT_COLUMN: line}, Detection("nemotron"), config.filters, True):
            payload = row["trajectory"]
            answer = synthesizer.cache.get(synthesizer.key(payload)) if payload else None
            if answer is not None:
                out.append((len(json.loads(payload)["actions"]), answer.status, answer.raw))
    synthesizer.close()
    return out


@pytest.mark.slow
def test_transformers_backend_with_a_random_tiny_model_only_produces_schema_valid_answers(tmp_path):
    config = _llm_config(tmp_path)
    result = build(config)
    answers = _answers_by_trajectory(config)
    assert answers, "the model was asked"
    for n, status, raws in answers:
        assert status in ("ok", "invalid") and 1 <= len(raws) <= config.llm.max_attempts
        for raw in raws:  # grammar output may hold raw control characters, hence strict=False
            answer = json.loads(raw, strict=False)
            if "\ufffd" in raw:  # the grammar admits byte tokens that decode as U+FFFD together: the string
                continue  # can then exceed maxLength (seen once in CI); the build validates after decoding
            jsonschema.validate(answer, selection_schema(n, 30))
    stats = result.stats
    assert stats["synthesis"]["synthesized"] == len(answers)
    assert stats["synthesis"]["model_calls"] == sum(len(r) for _, _, r in answers)
    assert stats["records_read"] == config.limit and stats["trajectories"] >= config.limit
    assert stats["pairs"] + sum(stats["selection_rejected"].values()) == stats["trajectories"]
    provenance = datasets.load_dataset(str(result.output))["train"][0]["provenance"]
    assert provenance["synthesizer_backend"] == "transformers"
    assert provenance["template_sha256"] == hashlib.sha256(DEFAULT_TEMPLATE.read_bytes()).hexdigest()
    sampling = json.loads(provenance["sampling_params"])
    assert sampling["constraint"] == "xgrammar"
    # the effective values, every field stated: no generation config of the model filled one in
    assert sampling["first_attempt"] == {
        "max_tokens": 300,
        "temperature": 1.0,
        "top_p": 1.0,
        "top_k": 0,
        "min_p": 0.0,
        "repetition_penalty": 1.0,
        "presence_penalty": 0.0,
        "frequency_penalty": 0.0,
        "seed": 0,
    }


def test_chosen_plans_only_contain_original_calls(tmp_path):
    result = build(_llm_config(tmp_path))
    rows = datasets.load_dataset(str(result.output))["train"]
    assert len(rows) > 0
    for row in rows:
        rejected = [(s["tool"], s["arguments"]) for s in row["rejected_plan"]]
        chosen = [(s["tool"], s["arguments"]) for s in row["chosen_plan"]]
        assert len(chosen) < len(rejected) and all(c in rejected for c in chosen)


def test_a_rerun_asks_the_model_nothing_and_gives_the_same_dataset(tmp_path):
    config = _llm_config(tmp_path)
    first = build(config).stats
    second = build(config).stats
    assert "model_calls" not in second["synthesis"] and second["synthesis"]["cache_hits"] > 0
    assert second["fingerprint"] == first["fingerprint"]


def test_changing_the_template_invalidates_the_cache(tmp_path):
    config = _llm_config(tmp_path, limit=3)
    build(config)
    template = tmp_path / "t.jinja"
    template.write_text(DEFAULT_TEMPLATE.read_text() + "\nBe brief.\n")
    again = build(_llm_config(tmp_path, limit=3, template=str(template))).stats
    assert again["synthesis"].get("cache_hits", 0) == 0 and again["synthesis"]["synthesized"] > 0


# --- the openai backend -------------------------------------------------------------------


@pytest.mark.slow
def test_the_build_starts_its_synthesizer_server_asks_it_over_http_and_stops_it(tmp_path):
    """`build.llm.server`: the same mechanism the eval stage uses (here `transformers serve`, vLLM on a
    GPU node) started only while answers are missing, on a free port, and stopped afterwards."""
    from apo_planner.tiny import make_tiny_model

    model = make_tiny_model(tmp_path / "tiny")
    config = _llm_config(
        tmp_path,
        limit=4,
        backend="openai",
        base_url="http://127.0.0.1:9/v1",  # nothing there: the started server's URL must be used
        model=str(model),
        tiny_model=False,
        structured_output="none",
        api="openai",  # transformers serve takes only the OpenAI API's fields
        max_tokens=40,
        concurrency=2,
    )
    server = ServerConfig(engine="transformers-serve", port=0, startup_timeout_s=180)
    config = config.model_copy(update={"llm": config.llm.model_copy(update={"server": server})})
    with pytest.raises(NoPairs) as nothing:
        build(config)
    # A random model without a grammar writes no JSON: every trajectory is asked max_attempts
    # times over real HTTP, then dropped with the reason counted (no pair left: no dataset written).
    stats = nothing.value.stats
    asked = stats["synthesis"]["synthesized"]
    assert asked > 0 and stats["synthesis"]["model_calls"] == 3 * asked
    assert "request_failed" not in stats["synthesis"]
    log = config.llm.server_workdir() / "synthesizer.log"
    assert served_models(server_url(log)) is None  # stopped with the synthesis
    # all answers cached: the re-run starts no server (the log is not rewritten)
    log.write_text("# marker\n")
    with pytest.raises(NoPairs) as again:
        build(config)
    assert again.value.stats["synthesis"]["cache_hits"] == asked
    assert log.read_text() == "# marker\n"


def test_a_synthesizer_server_needs_the_openai_backend():
    with pytest.raises(ValueError, match="server settings need backend openai"):
        LLMConfig.of(backend="transformers", server=ServerConfig(engine="transformers"))
    external = LLMConfig.of(server=ServerConfig(engine="external", base_url="http://x/v1"))
    assert not external.started  # someone else's server: checked, never started, its revision not pinned


def _stub_config(tmp_path, stub, **llm):
    settings = {"max_retries": 3, "timeout_s": 2, "concurrency": 4, **llm}
    return _llm_config(
        tmp_path, limit=8, backend="openai", base_url=stub.base_url, model=stub.model, tiny_model=False, **settings
    )


def _first_valid(request):
    """A selection keeping all calls but the first, for whatever trajectory the prompt shows."""
    n = request["messages"][0]["content"].count("\n[")
    return _keep(*[(i, ()) for i in range(1, n)]) if n > 1 else _keep((0, ()))


@pytest.mark.slow
def test_http_500s_and_timeouts_are_retried_then_succeed(tmp_path):
    seen: dict[str, int] = {}

    def replies(request, n):  # per trajectory: a 500, then a timeout, then the answer
        prompt = request["messages"][0]["content"]
        seen[prompt] = seen.get(prompt, 0) + 1
        if seen[prompt] == 1:
            return 500, None, 0.0
        if seen[prompt] == 2:
            return 200, _first_valid(request), 3.0  # longer than timeout_s=2
        return 200, _first_valid(request), 0.0

    with OpenAIStub(replies) as stub:
        stats = build(_stub_config(tmp_path, stub)).stats
    assert stats["pairs"] > 0 and "request_failed" not in stats["synthesis"]
    assert len(stub.requests) == 3 * stats["synthesis"]["model_calls"]  # each answer took two retries
    assert stats["synthesis"]["request_retries"] == 2 * stats["synthesis"]["model_calls"]
    assert "structured_outputs" in stub.requests[0]  # the recipe default, sent as vLLM's extra body


def test_requests_that_keep_failing_are_recorded_not_cached_and_a_rerun_completes_them(tmp_path):
    with OpenAIStub(lambda request, n: (500, None, 0.0)) as stub, pytest.raises(NoPairs) as nothing:
        build(_stub_config(tmp_path, stub, max_retries=1))  # no pairs: no dataset written, the reasons named
    failed = nothing.value.stats
    assert failed["synthesis"]["request_failed"] > 0 and failed["pairs"] == 0 and "request_failed" in str(nothing.value)
    assert failed["selection_rejected"]["request_failed"] == failed["synthesis"]["request_failed"]
    assert "stub error 500" in failed["request_failure_examples"][0]
    with OpenAIStub(lambda request, n: (200, _first_valid(request), 0.0)) as stub:
        healed = build(_stub_config(tmp_path, stub)).stats
    assert healed["synthesis"]["synthesized"] == failed["synthesis"]["request_failed"]
    assert healed["pairs"] > 0 and "request_failed" not in healed["selection_rejected"]


def test_invalid_output_is_asked_again_then_dropped_with_its_reason(tmp_path):
    with OpenAIStub(lambda request, n: (200, "I think calls 1 and 2.", 0.0)) as stub, pytest.raises(NoPairs) as nothing:
        build(_stub_config(tmp_path, stub, max_attempts=2))
    stats = nothing.value.stats
    asked = stats["synthesis"]["synthesized"]
    assert len(stub.requests) == 2 * asked and stats["selection_rejected"]["unparseable_output"] == asked
    seeds = {r["seed"] for r in stub.requests}
    assert len(seeds) == len(stub.requests)  # each attempt samples differently


def test_the_structured_output_mode_reaches_the_server(tmp_path):
    with OpenAIStub(lambda request, n: (200, _first_valid(request), 0.0)) as stub:
        build(_stub_config(tmp_path, stub, structured_output="response_format"))
        assert stub.requests[0]["response_format"]["type"] == "json_schema"
    with OpenAIStub(lambda request, n: (200, _first_valid(request), 0.0)) as stub:
        build(_stub_config(tmp_path / "b", stub, structured_output="structured_outputs"))
        schema = stub.requests[0]["structured_outputs"]["json"]
        assert schema["properties"]["keep"]["items"]["required"] == ["index", "rationale", "depends_on"]


def test_a_missing_server_is_a_clear_error(tmp_path):
    config = _llm_config(
        tmp_path,
        backend="openai",
        base_url=f"http://127.0.0.1:{free_port()}/v1",
        tiny_model=False,
        model="x",
        max_retries=0,
    )
    with pytest.raises(SynthesisError, match="make serve-synth"):
        build(config)


def test_changing_the_consistency_checks_asks_the_model_again(tmp_path):
    config = _llm_config(tmp_path, limit=3)
    first = build(config).stats["synthesis"]
    relaxed = config.model_copy(update={"consistency": config.consistency.model_copy(update={"enabled": False})})
    again = build(relaxed).stats["synthesis"]
    assert first["synthesized"] > 0 and again.get("cache_hits", 0) == 0 and again["synthesized"] == first["synthesized"]
