"""An executor with the APO planner in front of it.

For each entry, the APO planner (a small model trained with Anchored Preference
Optimization to write the shortest sequence of tool calls that answers a request) writes
a plan from the entry's first user message and its tool catalog. The plan is put before
the executor's first turn; the executor's prompt format, decoding and checking are its
own handler's, unchanged. An entry whose plan fails (the reason is in its result line)
runs the executor alone.

The planner is an OpenAI-compatible server. `bfcl generate` starts it with `vllm serve`
next to the executor (whatever `--backend`), and stops it when generation ends; with
`APO_PLANNER_BASE_URL` set (or `--skip-server-setup`) the handler uses a running one.
Environment variables, all optional:

    APO_PLANNER_BASE_URL         a running planner server (default: start one)
    APO_PLANNER_PORT             its port (default: LOCAL_SERVER_PORT + 1, i.e. 1054)
    APO_PLANNER_DEVICES          its CUDA_VISIBLE_DEVICES (default: the GPU after the
                                 executor's --num-gpus, else the last one)
    APO_PLANNER_GPU_MEMORY_UTILIZATION   vLLM's --gpu-memory-utilization (default 0.9)
    APO_PLANNER_MAX_MODEL_LEN    vLLM's --max-model-len (default 16384)
    APO_PLANNER_MODEL            what vLLM loads (default: SETTINGS.model at its
                                 revision; a local folder works too)
    APO_PLANNER_SERVED_MODEL_NAME  the name requests use, --served-model-name of the
                                 started server (default: SETTINGS.model)
    APO_PLANNER_SEND_GRAMMAR     auto (ask /version), structured_outputs, guided_grammar
                                 or none (default: SETTINGS.send_grammar)
    APO_PLANNER_API_KEY          (default: EMPTY)
    APO_PLANNER_VLLM             the vllm executable (default: vllm)

Plans are decoded under the catalog's plan grammar (`apo_planner_grammar`), sent as
`structured_outputs` to vLLM >= 0.10.2 and to apo-planner's own server, as
`guided_grammar` to older vLLM, and not at all (with a warning, recorded in every result
line) to a server that says neither. Before the first entry, `bfcl generate` sends the
planner one real plan request and stops with one message if it is refused. Every result
line carries `planner` (the plan or why there is none, its tokens and latency, the
coverage so far); `apo_planner_coverage.json` beside the model's result files sums it up
per category (`bfcl evaluate` reads only `*_result.json`).

Cost: bfcl prices a self-hosted model by latency (total latency x an 8xH100 hourly price
/ 100 parallel requests) and counts no tokens. The planner's latency is added to each
entry's `latency`; its tokens are only in `planner`.
"""

import copy
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import openai
from bfcl_eval.constants.eval_config import LOCAL_SERVER_PORT
from bfcl_eval.model_handler.local_inference.base_oss_handler import OSSHandler
from bfcl_eval.model_handler.local_inference.qwen_fc import QwenFCHandler
from overrides import override

from .apo_planner_grammar import (
    GrammarLimits,
    PlanParseError,
    grammar_key,
    parse_plan_text,
    plan_grammar,
    render_plan_text,
)


@dataclass(frozen=True)
class PlannerSettings:
    """What the planner is asked and how its plan reaches the executor."""

    model: str  # the planner's Hub id: what its server serves, what requests name
    revision: str  # the revision it is served at
    system_prompt: str
    injection: str  # the text put before the executor's first turn; {plan}: the plan
    injection_position: str = "system"  # before the first system message, or the user's
    max_new_tokens: int = 1024
    limits: GrammarLimits = field(default_factory=GrammarLimits)
    send_grammar: str = "auto"  # auto | structured_outputs | guided_grammar | none
    timeout_s: float = 120.0
    max_retries: int = 2
    min_planned: float = 0.95  # the coverage below which the summary warns


# ---- pinned by `apo-planner submission` ---------------------------------------------
SETTINGS = PlannerSettings(
    model="apo-planner/apo-planner-qwen3-4b-instruct-2507",
    revision="v1.0.0",
    system_prompt=(
        "You are a planner for a tool-calling assistant. Given the user's request and "
        "the available tools, write the shortest sequence of tool calls that answers "
        "it: no duplicate calls, no calls whose result is not needed. Write one "
        "numbered line per call, `N. tool_name({json arguments})`, followed by ` after "
        "K` when it needs the result of step K, and an indented `why:` line giving the "
        "reason."
    ),
    injection=(
        "A planner has drafted the tool calls for this request. Follow it unless the "
        "request clearly needs something else; do not repeat calls.\nPlan:\n{plan}"
    ),
    injection_position="system",
    max_new_tokens=1024,
    limits=GrammarLimits(
        max_steps=8,
        max_rationale_chars=200,
        max_string_chars=64,
        max_items=16,
        max_digits=12,
        max_depth=3,
    ),
    send_grammar="auto",
    timeout_s=120.0,
    max_retries=2,
    min_planned=0.95,
)
# ---- end of pinned settings ---------------------------------------------------------

GRAMMAR_FIELDS = ("structured_outputs", "guided_grammar")
STRUCTURED_OUTPUTS_SINCE = (0, 10, 2)  # vLLM's `structured_outputs` field; before it:
# `guided_grammar` (bfcl's `oss_eval_vllm` extra pins vllm 0.8.5)
COVERAGE_FILE = "apo_planner_coverage.json"
PROBE_QUERY = "What is the weather in Paris today?"
PROBE_TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "The current weather in a city.",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
            },
        },
    }
]


class PlannerUnavailable(RuntimeError):
    """The planner cannot plan for this run (not reachable, another model, refused)."""


def entry_request(test_entry: dict) -> tuple[str, list[dict[str, Any]]]:
    """An entry's first user message and its functions (BFCL's, or already OpenAI
    tools) as OpenAI tools."""
    first_turn = test_entry["question"][0] if test_entry.get("question") else []
    users = (m.get("content", "") for m in first_turn if m.get("role") == "user")
    tools = []
    for function in test_entry.get("function") or []:
        if isinstance(function, dict) and isinstance(function.get("function"), dict):
            function = function["function"]  # {"type": "function", "function": {...}}
        if isinstance(function, dict) and isinstance(function.get("name"), str):
            parameters = function.get("parameters")
            if not isinstance(parameters, dict):
                parameters = {"type": "object", "properties": {}}
            tool = {
                "name": function["name"],
                "description": function.get("description") or "",
                "parameters": parameters,
            }
            tools.append({"type": "function", "function": tool})
    return next(users, ""), tools


def inject(test_entry: dict, plan: str, settings: PlannerSettings) -> dict:
    """A copy of the entry with the plan's text before its first system or user turn."""
    entry = copy.deepcopy(test_entry)
    text = settings.injection.replace("{plan}", plan)
    first_turn = entry["question"][0]
    if settings.injection_position == "system":
        if first_turn and first_turn[0].get("role") == "system":
            first_turn[0]["content"] = text + "\n\n" + first_turn[0]["content"]
        else:
            first_turn.insert(0, {"role": "system", "content": text})
    else:
        user = next(m for m in first_turn if m.get("role") == "user")
        user["content"] = text + "\n\n" + user["content"]
    return entry


def add_latency(value: Any, seconds: float) -> Any:
    """bfcl's `latency`: a number for single-turn entries, nested lists (turns, steps)
    for multi-turn ones; the planner's request precedes the first of them."""
    if isinstance(value, list) and value:
        return [add_latency(value[0], seconds), *value[1:]]
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return value + seconds
    return seconds if value is None else value


def _reason(info: dict) -> str:
    return (info.get("fallback") or "none").split(":")[0]


def _say(message: str) -> None:
    print(f"APO planner: {message}", file=sys.stderr, flush=True)


class PlannerClient:
    """The planner's server, asked once per entry (thread-safe).

    One chat request: the planner's system prompt and the entry's first user message,
    the catalog as `tools` (so the server renders them with the model's own chat
    template, as in training) with `tool_choice` none, every sampling field stated
    (greedy), and the catalog's plan grammar. A plan that stopped at `max_new_tokens`,
    does not parse or names a tool outside the catalog is no plan.
    """

    def __init__(
        self,
        settings: PlannerSettings,
        base_url: str,
        model: str | None = None,
        api_key: str = "EMPTY",
    ) -> None:
        self.settings = settings
        self.base_url = base_url.rstrip("/")
        self.model = model or settings.model
        self.api_key = api_key
        self.grammar_field: str | None = None
        self.server: str | None = None  # apo-planner or vllm, from /version
        self._client = openai.OpenAI(
            base_url=self.base_url,
            api_key=api_key,
            timeout=settings.timeout_s,
            max_retries=settings.max_retries,
        )
        self._lock = threading.Lock()  # the grammar cache
        self._probe_lock = threading.Lock()
        self._grammars: dict[str, str] = {}
        self._probed = False
        self._refused: str | None = None  # why the probe stopped (asked lazily)

    # ---- before the first entry ----------------------------------------------------

    def probe(self) -> None:
        """Once: the server serves the planner, which grammar field it takes, and one
        real plan request is answered. A refusal raises `PlannerUnavailable`; a server
        error or timeout (transient) is only a warning."""
        with self._probe_lock:
            if self._probed:
                return
            try:
                served = [m.id for m in self._client.models.list().data]
            except openai.APIError as exc:
                raise PlannerUnavailable(
                    f"the APO planner is not reachable at {self.base_url} "
                    f"({type(exc).__name__}: {exc}); start it, or set "
                    "APO_PLANNER_BASE_URL to where it runs"
                ) from None
            if served and self.model not in served:
                raise PlannerUnavailable(
                    f"{self.base_url} serves {served}, not {self.model!r}: serve the "
                    f"planner with `--served-model-name {self.model}`, or set "
                    "APO_PLANNER_SERVED_MODEL_NAME to the name it serves"
                )
            self.server, version = self._version()
            self.grammar_field = self._choose_grammar_field(version)
            try:
                response = self._request(PROBE_QUERY, PROBE_TOOLS)
            except (openai.APIConnectionError, openai.APITimeoutError) as exc:
                _say(f"the probe request to {self.base_url} failed ({exc}); going on")
            except openai.APIStatusError as exc:
                if exc.status_code < 500 and exc.status_code not in (408, 409, 429):
                    raise PlannerUnavailable(
                        f"the APO planner at {self.base_url} refused a plan request "
                        f"(HTTP {exc.status_code}: {_message(exc)}); no entry would "
                        "get a plan"
                    ) from None
                _say(f"the probe request failed ({exc.status_code}); going on")
            else:
                info = self._check(response, PROBE_TOOLS)
                if not info["plan"]:
                    _say(f"the probe request got no plan ({info['fallback']})")
            self._probed = True

    def _probe_once(self) -> None:
        """The probe, for a caller that did not run it before the first entry (outside
        `bfcl generate`); its refusal is kept, so later entries do not ask again."""
        if self._probed:
            return
        if self._refused is None:
            try:
                self.probe()
                return
            except PlannerUnavailable as exc:
                self._refused = str(exc)
        raise PlannerUnavailable(self._refused)

    def _version(self) -> tuple[str | None, tuple[int, ...] | None]:
        """(server, version) from `GET /version`: apo-planner's server names itself,
        vLLM gives its version; anything else (None, None)."""
        root = self.base_url.removesuffix("/v1")
        headers = {"Authorization": f"Bearer {self.api_key}"}
        request = urllib.request.Request(root + "/version", headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                body = json.loads(response.read().decode())
        except (OSError, ValueError):
            return None, None
        if not isinstance(body, dict):
            return None, None
        if body.get("server") == "apo-planner":
            return "apo-planner", None
        match = re.match(r"(\d+)\.(\d+)(?:\.(\d+))?", str(body.get("version", "")))
        if not match:
            return None, None
        return "vllm", tuple(int(part or 0) for part in match.groups())

    def _choose_grammar_field(self, version: tuple[int, ...] | None) -> str | None:
        choice = self.settings.send_grammar
        if choice != "auto":
            return choice if choice in GRAMMAR_FIELDS else None
        if self.server == "apo-planner" or (
            version and version >= STRUCTURED_OUTPUTS_SINCE
        ):
            return "structured_outputs"
        if version:
            return "guided_grammar"
        _say(
            f"{self.base_url} is neither vLLM nor apo-planner's server (no /version): "
            "the plan grammar is not sent, plans are only checked (every result line "
            "records grammar_field null); set APO_PLANNER_SEND_GRAMMAR to send one"
        )
        return None

    # ---- one entry -------------------------------------------------------------------

    def grammar(self, tools: list[dict[str, Any]]) -> str:
        """The catalog's plan grammar, cached (BFCL repeats catalogs); ValueError when
        no tool has a usable name."""
        key = grammar_key(tools, self.settings.limits)
        with self._lock:
            if key not in self._grammars:
                self._grammars[key] = plan_grammar(tools, self.settings.limits)
            return self._grammars[key]

    def sampling(self) -> dict[str, Any]:
        """Every sampling field of a plan request (greedy): no server default applies.
        top_k, min_p and repetition_penalty are vLLM's (and apo-planner's server's)."""
        fields = {
            "max_completion_tokens": self.settings.max_new_tokens,
            "temperature": 0.0,
            "top_p": 1.0,
            "presence_penalty": 0.0,
            "frequency_penalty": 0.0,
            "seed": 0,
        }
        if self.server or self.grammar_field:
            fields |= {"top_k": 0, "min_p": 0.0, "repetition_penalty": 1.0}
        return fields

    def _request(self, query: str, tools: list[dict[str, Any]]) -> Any:
        extra = self.sampling()
        if self.grammar_field == "structured_outputs":
            extra["structured_outputs"] = {"grammar": self.grammar(tools)}
        elif self.grammar_field == "guided_grammar":
            extra["guided_grammar"] = self.grammar(tools)
        messages = [
            {"role": "system", "content": self.settings.system_prompt},
            {"role": "user", "content": query},
        ]
        return self._client.chat.completions.create(
            model=self.model,
            messages=messages,
            tools=tools,
            tool_choice="none",  # the template shows the catalog; the plan is text
            extra_body=extra,
        )

    def _check(self, response: Any, tools: list[dict[str, Any]]) -> dict[str, Any]:
        choice = response.choices[0]
        usage = response.usage
        info = _no_plan(None) | {
            "prompt_tokens": usage.prompt_tokens if usage else 0,
            "completion_tokens": usage.completion_tokens if usage else 0,
        }
        if choice.finish_reason == "length":
            limit = self.settings.max_new_tokens
            return info | {"fallback": f"truncated_plan: stopped at {limit} tokens"}
        try:
            steps = parse_plan_text((choice.message.content or "").strip())
        except PlanParseError as exc:
            return info | {"fallback": f"unparseable_plan: {exc}"[:300]}
        names = {tool["function"]["name"] for tool in tools}
        unknown = [step["tool"] for step in steps if step["tool"] not in names]
        if unknown:
            return info | {"fallback": f"unknown_tool: {unknown[0]}"[:300]}
        return info | {"plan": render_plan_text(steps), "steps": len(steps)}

    def plan_for(self, test_entry: dict) -> dict[str, Any]:
        """The plan to inject (None, with the reason in `fallback`) and what it cost."""
        started = time.perf_counter()
        query, tools = entry_request(test_entry)
        try:
            self.grammar(tools)
            self._probe_once()
        except ValueError as exc:
            info = _no_plan(f"no_usable_tool: {exc}")
        except PlannerUnavailable as exc:
            info = _no_plan(f"planner_error: {exc}"[:300])
        else:
            try:
                info = self._check(self._request(query, tools), tools)
            except openai.BadRequestError as exc:
                too_long = "maximum context length" in _message(exc)
                why = "prompt_too_long" if too_long else "planner_error"
                info = _no_plan(f"{why}: {_message(exc)}"[:300])
            except Exception as exc:  # the server failed; the entry runs without a plan
                info = _no_plan(f"planner_error: {type(exc).__name__}: {exc}"[:300])
        info["latency"] = round(time.perf_counter() - started, 4)
        info["grammar_field"] = self.grammar_field
        return info


def _no_plan(reason: str | None) -> dict[str, Any]:
    return {
        "plan": None,
        "fallback": reason,
        "prompt_tokens": 0,
        "completion_tokens": 0,
        "latency": 0.0,
        "steps": 0,
    }


def _message(exc: openai.APIStatusError) -> str:
    body = exc.body if isinstance(exc.body, dict) else {}
    error = body.get("error", body)
    message = error.get("message") if isinstance(error, dict) else None
    return str(message or body.get("message") or exc.message)


class PlannerServer:
    """`vllm serve` for the planner, started by the handler under `bfcl generate`
    (without `--skip-server-setup`) next to the executor's server, and stopped with it.
    Its settings come from the `APO_PLANNER_*` environment variables (module docstring).
    """

    def __init__(self, settings: PlannerSettings, served_name: str) -> None:
        executor_port = int(os.getenv("LOCAL_SERVER_PORT", LOCAL_SERVER_PORT))
        self.port = int(os.getenv("APO_PLANNER_PORT", executor_port + 1))
        host = os.getenv("LOCAL_SERVER_ENDPOINT", "localhost")
        self.base_url = f"http://{host}:{self.port}/v1"
        model = os.getenv("APO_PLANNER_MODEL", settings.model)
        revision = [] if Path(model).exists() else ["--revision", settings.revision]
        self.command = [
            os.getenv("APO_PLANNER_VLLM", "vllm"),
            "serve",
            model,
            *revision,
            "--served-model-name",
            served_name,
            "--port",
            str(self.port),
            "--gpu-memory-utilization",
            os.getenv("APO_PLANNER_GPU_MEMORY_UTILIZATION", "0.9"),
            "--max-model-len",
            os.getenv("APO_PLANNER_MAX_MODEL_LEN", "16384"),
        ]
        self.log = Path(tempfile.gettempdir()) / f"apo-planner-vllm-{self.port}.log"
        self.devices: str | None = None
        self._process: subprocess.Popen | None = None

    def environment(self, num_gpus: int) -> dict[str, str]:
        """The server's environment: its own CUDA_VISIBLE_DEVICES
        (`APO_PLANNER_DEVICES`, else the GPU after the executor's `num_gpus`)."""
        env = dict(os.environ)
        self.devices = os.getenv("APO_PLANNER_DEVICES") or _next_gpu(num_gpus)
        if self.devices:
            env["CUDA_VISIBLE_DEVICES"] = self.devices
        return env

    def launch(self, num_gpus: int) -> None:
        """Start it (loading goes on while bfcl starts the executor's server)."""
        if _answers(self.base_url):
            raise PlannerUnavailable(
                f"something already answers at {self.base_url}: set "
                f"APO_PLANNER_BASE_URL={self.base_url} to use it as the planner, or "
                "APO_PLANNER_PORT to start the planner elsewhere"
            )
        env = self.environment(num_gpus)
        devices = self.devices or "inherited"
        _say(f"{' '.join(self.command)} (GPUs {devices}; log {self.log})")
        with self.log.open("w") as log:
            self._process = subprocess.Popen(
                self.command,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its engine workers go with it
            )

    def wait(self) -> None:
        """Until it answers `/v1/models`; its log's end if it exits first."""
        assert self._process is not None
        while not _answers(self.base_url):
            if self._process.poll() is not None:
                lines = self.log.read_text(errors="replace").splitlines(True)
                raise PlannerUnavailable(
                    f"the planner's vLLM server exited ({self._process.returncode}); "
                    f"the end of {self.log}:\n{''.join(lines[-20:])}"
                )
            time.sleep(2)
        _say(f"serving at {self.base_url}")

    def stop(self) -> None:
        if self._process is None or self._process.poll() is not None:
            return
        os.killpg(self._process.pid, signal.SIGTERM)
        try:
            self._process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self._process.pid, signal.SIGKILL)
            self._process.wait()


def _answers(base_url: str) -> bool:
    try:
        with urllib.request.urlopen(base_url + "/models", timeout=5) as response:
            return response.status == 200
    except (OSError, ValueError):
        return False


def _next_gpu(num_gpus: int) -> str | None:
    """The GPU after the executor's (bfcl serves it on the first `num_gpus` visible
    ones), or the last visible one on a smaller node; None when none is known."""
    visible = os.getenv("CUDA_VISIBLE_DEVICES")
    if visible:
        gpus = [g.strip() for g in visible.split(",") if g.strip()]
    else:
        try:
            listed = subprocess.run(
                ["nvidia-smi", "--query-gpu=index", "--format=csv,noheader"],
                capture_output=True,
                text=True,
                timeout=30,
            ).stdout
        except (OSError, subprocess.SubprocessError):
            return None
        gpus = listed.split()
    if not gpus:
        return None
    used = max(int(num_gpus or 1), 1)
    return gpus[used] if used < len(gpus) else gpus[-1]


class Coverage:
    """Entries asked and planned so far by one handler (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.asked = 0
        self.planned = 0

    def count(self, info: dict) -> dict[str, int]:
        with self._lock:
            self.asked += 1
            self.planned += bool(info.get("plan"))
            return {"planned": self.planned, "entries": self.asked}


def coverage_summary(model_dir: Path, settings: PlannerSettings) -> dict[str, Any]:
    """Plan coverage per category from the result files of one model."""
    categories: dict[str, dict[str, Any]] = {}
    for path in sorted(model_dir.rglob("*_result.json")):
        category = path.name.split("_", 2)[-1].removesuffix("_result.json")
        entries = planned = 0
        fallbacks: Counter = Counter()
        for line in path.read_text(encoding="utf-8").splitlines():
            if not line.strip():
                continue
            info = json.loads(line).get("planner")
            entries += 1
            if isinstance(info, dict) and info.get("plan"):
                planned += 1
            else:
                fallbacks[_reason(info) if isinstance(info, dict) else "no_plan"] += 1
        categories[category] = {
            "entries": entries,
            "planned": planned,
            "coverage": round(planned / entries, 4) if entries else None,
            "fallbacks": dict(fallbacks),
        }
    below = [
        name
        for name, row in categories.items()
        if row["coverage"] is not None and row["coverage"] < settings.min_planned
    ]
    return {
        "planner": settings.model,
        "revision": settings.revision,
        "min_planned": settings.min_planned,
        "categories": categories,
        "below_min_planned": below,
    }


class APOPlannerHandler(OSSHandler):
    """The planner in front of an executor's handler: `class X(APOPlannerHandler,
    ExecutorHandler)`. Only these methods are its own; all else is the executor's."""

    settings: PlannerSettings = SETTINGS
    plans: Any = None  # where plans come from (`plan_for`); None: the planner server
    result_dir: Path | None = (
        None  # where generation writes (None: what bfcl writes to)
    )

    def __init__(self, model_name, temperature, registry_name, is_fc_model, **kwargs):
        super().__init__(model_name, temperature, registry_name, is_fc_model, **kwargs)
        self._coverage = Coverage()
        self._planner_server: PlannerServer | None = None
        self._own_client = self.plans is None
        if self._own_client:
            send_grammar = os.getenv(
                "APO_PLANNER_SEND_GRAMMAR", self.settings.send_grammar
            )
            self.settings = replace(self.settings, send_grammar=send_grammar)
            served_name = os.getenv(
                "APO_PLANNER_SERVED_MODEL_NAME", self.settings.model
            )
            base_url = os.getenv("APO_PLANNER_BASE_URL")
            if (
                not base_url
            ):  # started in spin_up_local_server, or a server already there
                self._planner_server = PlannerServer(self.settings, served_name)
                base_url = self._planner_server.base_url
            api_key = os.getenv("APO_PLANNER_API_KEY", "EMPTY")
            self.plans = PlannerClient(self.settings, base_url, served_name, api_key)
            # bfcl marks spin_up_local_server and write final: on this instance only,
            # the planner starts and is probed around the first (bfcl generate calls it
            # from its main thread before the first entry), and the second tells where
            # the results, and so the coverage summary, go (`--result-dir`)
            self.spin_up_local_server = self._spin_up_with_planner
            if self.result_dir is None:
                self.write = self._write_remembering_where

    def _spin_up_with_planner(
        self,
        num_gpus,
        gpu_memory_utilization,
        backend,
        skip_server_setup,
        *args,
        **kwargs,
    ):
        """bfcl's executor server, the planner's vLLM server beside it (unless
        `--skip-server-setup` or `APO_PLANNER_BASE_URL`), then one real plan request:
        a planner that cannot plan stops the run here, before the first entry."""
        if skip_server_setup:  # the planner runs already, where the client looks
            self._planner_server = None
        try:
            if self._planner_server is not None:
                self._planner_server.launch(num_gpus)
            type(self).spin_up_local_server(
                self,
                num_gpus,
                gpu_memory_utilization,
                backend,
                skip_server_setup,
                *args,
                **kwargs,
            )
            if self._planner_server is not None:
                self._planner_server.wait()
            self.plans.probe()
        except PlannerUnavailable as exc:
            self._stop_planner()
            raise SystemExit(f"APO planner: {exc}") from None  # bfcl's main thread

    def _stop_planner(self) -> None:
        if self._planner_server is not None:
            self._planner_server.stop()

    @override
    def inference(
        self, test_entry: dict, include_input_log: bool, exclude_state_log: bool
    ):
        info = dict(self.plans.plan_for(test_entry))
        info["coverage"] = self._coverage.count(info)
        entry = (
            inject(test_entry, info["plan"], self.settings)
            if info["plan"]
            else test_entry
        )
        result, metadata = super().inference(
            entry, include_input_log, exclude_state_log
        )
        metadata["latency"] = add_latency(metadata.get("latency"), info["latency"])
        metadata["planner"] = info
        return result, metadata

    def _write_remembering_where(self, result, result_dir, update_mode=False):
        self.result_dir = Path(result_dir)  # where the coverage summary goes
        return type(self).write(self, result, result_dir, update_mode=update_mode)

    @override
    def shutdown_local_server(self):
        super().shutdown_local_server()
        self._stop_planner()
        if self.result_dir is None:
            return
        model_dir = self.result_dir / self.registry_dir_name
        if not model_dir.is_dir():
            return
        summary = coverage_summary(model_dir, self.settings)
        path = model_dir / COVERAGE_FILE
        path.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
        for name, row in summary["categories"].items():
            _say(f"{name}: {row['planned']}/{row['entries']} entries planned")
        if summary["below_min_planned"]:
            below = ", ".join(summary["below_min_planned"])
            _say(f"coverage under {self.settings.min_planned:.0%} in {below} ({path})")


# ---- the executor --------------------------------------------------------------------
class APOPlannerQwenFCHandler(APOPlannerHandler, QwenFCHandler):
    """Qwen3-30B-A3B-Instruct-2507 (FC) behind the APO planner."""
