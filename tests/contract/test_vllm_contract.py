"""What the project sends vLLM 0.33, checked by vLLM's own code: server argv, request bodies, the sampling
they run with, plan grammars on real BFCL catalogs and the synthesis schema with the real Qwen3 vocabulary."""

from __future__ import annotations

import json
import statistics
import sys
import time
from pathlib import Path
from types import SimpleNamespace

SAMPLED = ("temperature", "top_p", "top_k", "min_p", "repetition_penalty", "presence_penalty", "frequency_penalty")
VOCAB = 151936  # Qwen3's embedding rows (config.json vocab_size), what vLLM hands xgrammar


def _argv(captured: Path) -> list[dict]:
    return json.loads((captured / "argv.json").read_text())


def _serve_parser():
    from vllm.entrypoints.cli.serve import ServeSubcommand
    from vllm.utils.argparse_utils import FlexibleArgumentParser

    parser = FlexibleArgumentParser(prog="vllm")
    ServeSubcommand().subparser_init(parser.add_subparsers(dest="subparser"))
    return parser


def test_every_roles_argv_parses_and_builds_engine_args_as_vllm_serve_would(captured, report, tmp_path, monkeypatch):
    """Offline, vLLM serves a Hub model from the local snapshot at `--revision` (the one the stage downloaded
    before starting it): the snapshot stands in here."""
    import huggingface_hub.constants as constants
    from vllm.engine.arg_utils import AsyncEngineArgs
    from vllm.entrypoints.common.cli_args import validate_parsed_serve_args

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    parser = _serve_parser()
    roles = _argv(captured)
    snapshots = {}
    for role in roles:
        if not Path(role["model"]).exists():
            folder = tmp_path / f"models--{role['model'].replace('/', '--')}" / "snapshots" / ("0" * 40)
            folder.mkdir(parents=True, exist_ok=True)
            snapshots[role["model"]] = str(folder)
    assert {(r["recipe"], r["role"]) for r in roles} >= {
        ("paper", "synthesizer"),
        ("paper", "executor"),
        ("paper", "planner"),
        ("smoke", "executor"),
    }
    for role in roles:
        args = parser.parse_args(role["argv"])
        validate_parsed_serve_args(args)
        if getattr(args, "model_tag", None):
            args.model = args.model_tag  # what `vllm serve`'s own cmd does first
        engine = AsyncEngineArgs.from_cli_args(args)
        assert engine.model == snapshots.get(role["model"], role["model"]), role
        assert engine.revision == ("0" * 40 if role["model"] in snapshots else None), role  # a folder has none
        assert engine.served_model_name in (role["model"], [role["model"]]), role
        so = engine.structured_outputs_config
        assert so.backend == "xgrammar" and so.disable_any_whitespace, role  # the in-process JSON rule
    report["argv"] = [
        f"{r['recipe']}/{r['role']} (batch_invariant={r['env'].get('VLLM_BATCH_INVARIANT')})" for r in roles
    ]


def test_the_batch_invariant_knob_is_what_vllm_reads(captured, monkeypatch):
    import vllm.envs as envs

    for role in _argv(captured):
        monkeypatch.setenv("VLLM_BATCH_INVARIANT", role["env"]["VLLM_BATCH_INVARIANT"])
        assert envs.VLLM_BATCH_INVARIANT is (role["env"]["VLLM_BATCH_INVARIANT"] == "1")


def _request(entry: dict):
    from vllm.entrypoints.openai.chat_completion.protocol import ChatCompletionRequest
    from vllm.entrypoints.openai.completion.protocol import CompletionRequest

    kind = ChatCompletionRequest if entry["endpoint"] == "chat" else CompletionRequest
    return kind.model_validate(entry["body"])


def test_every_body_the_project_sends_is_a_valid_vllm_request(bodies, report):
    sources: dict[str, int] = {}
    for entry in bodies:
        request = _request(entry)
        sources[entry["source"]] = sources.get(entry["source"], 0) + 1
        if entry["endpoint"] == "chat":  # `max_tokens` is deprecated for chat in vLLM 0.33
            assert "max_tokens" not in entry["body"] and request.max_completion_tokens, entry["source"]
        if "structured_outputs" in entry["body"]:
            assert request.structured_outputs is not None
    assert set(sources) >= {
        "synthesis (first_attempt)",
        "synthesis (retries)",
        "planner",
        "planner (eval stage)",
        "executor (bfcl-eval handler)",
        "submission handler (planner)",
    }
    report["bodies"] = sources


def _default_sampling(captured: Path, source: str) -> dict:
    """vLLM's `get_diff_sampling_param` for a server started with `--generation-config SOURCE`, on the model's
    real generation_config.json (read by vLLM's own `try_get_generation_config`)."""
    from vllm.config.model import ModelConfig

    shim = SimpleNamespace(
        generation_config=source,
        override_generation_config={},
        hf_config_path=None,
        model=str(captured / "tokenizer"),
        trust_remote_code=False,
        _hf_config_revision=None,
        revision=None,
        code_revision=None,
        config_format="auto",
        hf_token=None,
    )
    shim.try_get_generation_config = lambda: ModelConfig.try_get_generation_config(shim)
    return ModelConfig.get_diff_sampling_param(shim)


def test_the_effective_sampling_is_what_the_project_records_whatever_the_servers_generation_config(
    captured, bodies, report
):
    """Every field is stated, so `--generation-config auto` (Qwen's top_k 20 etc.) and `vllm` give the same
    SamplingParams, and those are the values the project records (vLLM's clamping included)."""
    auto, neutral = _default_sampling(captured, "auto"), _default_sampling(captured, "vllm")
    assert auto["top_k"] == 20 and auto["top_p"] == 0.8 and neutral == {}  # the defaults that would leak in
    clamped = set()
    for entry in bodies:
        request = _request(entry)
        budget = entry["body"].get("max_completion_tokens") or entry["body"].get("max_tokens")
        runs = [request.to_sampling_params(budget, defaults) for defaults in (auto, neutral)]
        for params in runs:
            effective = {name: getattr(params, name) for name in SAMPLED} | {"seed": params.seed}
            effective["max_tokens"] = params.max_tokens
            assert effective == {k: entry["recorded"][k] for k in effective}, entry["source"]
        if entry["body"]["temperature"] != runs[0].temperature:
            clamped.add(f"{entry['source']}: {entry['body']['temperature']} -> {runs[0].temperature}")
    report["generation_config_auto"] = auto
    report["clamped_temperatures"] = sorted(clamped)


def _xgrammar_backend(tokenizer, disable_any_whitespace: bool = True):
    from vllm.config.structured_outputs import StructuredOutputsConfig
    from vllm.v1.structured_output.backend_xgrammar import XgrammarBackend

    config = SimpleNamespace(
        structured_outputs_config=StructuredOutputsConfig(
            backend="xgrammar", disable_any_whitespace=disable_any_whitespace
        ),
        model_config=SimpleNamespace(hf_config=SimpleNamespace(model_type="qwen3_moe")),
        speculative_config=None,
    )
    return XgrammarBackend(vllm_config=config, tokenizer=tokenizer, vocab_size=VOCAB)


def _validate(tokenizer, **constraint) -> None:
    """`SamplingParams._validate_structured_outputs` exactly as the server runs it for a request."""
    from vllm.config.structured_outputs import StructuredOutputsConfig
    from vllm.sampling_params import SamplingParams, StructuredOutputsParams

    params = SamplingParams(structured_outputs=StructuredOutputsParams(**constraint))
    model_config = SimpleNamespace(is_diffusion=False)
    so = StructuredOutputsConfig(backend="xgrammar", disable_any_whitespace=True)
    params._validate_structured_outputs(model_config, so, tokenizer)


def _accepts(grammar, tokenizer, text: str) -> bool:
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    return grammar.accept_tokens("r", ids) and grammar.accept_tokens("r", [tokenizer.eos_token_id])


def test_every_plan_grammar_of_the_bfcl_catalogs_validates_and_compiles_and_admits_only_catalog_plans(
    captured, tokenizer, report
):
    from vllm.v1.structured_output.backend_types import StructuredOutputOptions

    grammars = json.loads((captured / "grammars.json").read_text())
    backend = _xgrammar_backend(tokenizer)
    times, categories = [], set()
    for item in grammars:
        _validate(tokenizer, grammar=item["grammar"])
        started = time.perf_counter()
        compiled = backend.compile_grammar(StructuredOutputOptions.GRAMMAR, item["grammar"])
        times.append(time.perf_counter() - started)
        assert _accepts(compiled, tokenizer, item["plan"]), item["plan"]
        compiled.reset()
        assert not _accepts(compiled, tokenizer, item["outside"])
        categories.add(item["category"])
    ordered = sorted(times[1:]) or times
    report["plan_grammars"] = {
        "distinct": len(grammars),
        "categories": sorted(categories),
        "first_compile_s": round(times[0], 2),
        "compile_ms_p50": round(1000 * statistics.median(ordered), 1),
        "compile_ms_p95": round(1000 * ordered[int(0.95 * (len(ordered) - 1))], 1),
        "compile_ms_max": round(1000 * ordered[-1], 1),
    }


def test_the_selection_schema_compiles_served_exactly_as_in_process(captured, tokenizer, report):
    """vLLM with `disable_any_whitespace` and the in-process path (xgrammar, the project's separators) accept the
    same strings: compact JSON, nothing spaced or padded (a served model cannot pad until max_tokens)."""
    import xgrammar as xgr
    from vllm.v1.structured_output.backend_types import StructuredOutputOptions

    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the checkout's core constant, nothing else
    from apo_planner.generation.inprocess import JSON_SEPARATORS

    served = _xgrammar_backend(tokenizer)
    loose = _xgrammar_backend(tokenizer, disable_any_whitespace=False)  # vLLM's default: any whitespace
    info = xgr.TokenizerInfo.from_huggingface(tokenizer, vocab_size=VOCAB)
    in_process = xgr.GrammarCompiler(info)
    padded_by_default = 0
    schemas = json.loads((captured / "schemas.json").read_text())
    for item in schemas:
        schema = json.dumps(item["schema"])
        _validate(tokenizer, json=item["schema"])
        for text in (item["compact"], item["spaced"], item["padded"]):
            vllm_says = _accepts(served.compile_grammar(StructuredOutputOptions.JSON, schema), tokenizer, text)
            matcher = xgr.GrammarMatcher(
                in_process.compile_json_schema(schema, any_whitespace=False, separators=JSON_SEPARATORS)
            )
            ids = tokenizer(text, add_special_tokens=False)["input_ids"]
            ours = all(matcher.accept_token(i) for i in ids) and matcher.accept_token(tokenizer.eos_token_id)
            assert vllm_says == ours == (text == item["compact"]), (item["num_actions"], text)
        padded_by_default += _accepts(
            loose.compile_grammar(StructuredOutputOptions.JSON, schema), tokenizer, item["padded"]
        )
    assert padded_by_default == len(schemas)  # what the whitespace config prevents
    report["selection_schemas"] = {
        "num_actions": [s["num_actions"] for s in schemas],
        "padded_without_config": padded_by_default,
    }
