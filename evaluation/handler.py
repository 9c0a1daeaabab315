"""The planner-augmented BFCL handler.

`planner_handler(base_cls)` subclasses any bfcl-eval handler class: before the executor's first
query it asks the planner for a plan and injects the rendered plan into the first turn (system
prompt by default; position and wording from a Jinja template). Everything else (prompt format,
query, decoding, checking) is the base handler's own code. A planner error, timeout or
unparseable plan makes that entry run without a plan, recorded in the entry's result metadata;
the BFCL run never aborts.

bfcl-eval has no plugin hook: `register()` adds this run's entries to its `MODEL_CONFIG_MAPPING`
dict in this process (names without `_`, which bfcl-eval maps back from directory names). Nothing
happens at import. A module for an upstream leaderboard PR, which needs no apo-planner, is written
by `apo-planner submission` (`apo_planner.evaluation.submission`).
"""

from __future__ import annotations

import copy
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from apo_planner.evaluation.config import DEFAULT_EXECUTOR, EvalError, InjectionConfig, PlannerRunConfig
from apo_planner.templating import environment
from apo_planner.tools import normalize_tools

DEFAULT_INJECTION_TEMPLATE = Path(__file__).parent / "templates" / "plan_injection.jinja"
SUFFIX = "-APOPlanner"


class PlannerRuntime:
    """A planner shared by all of bfcl-eval's worker threads, loaded on first use (once: a failed
    load is remembered, so every entry falls back instead of each retrying the load)."""

    def __init__(
        self, config: PlannerRunConfig, injection: InjectionConfig, planner: Any = None, base_url: str | None = None
    ) -> None:
        self.config = config
        self.injection = injection
        self.base_url = base_url  # the eval stage sets it once the planner's server is up
        self._planner = planner
        self._load_lock = threading.Lock()
        self._load_error: Exception | None = None
        template_path = Path(injection.template) if injection.template else DEFAULT_INJECTION_TEMPLATE
        self.template = environment().from_string(template_path.read_text(encoding="utf-8"))

    @property
    def planner(self):
        with self._load_lock:
            if self._load_error is not None:
                raise self._load_error
            if self._planner is None:
                try:
                    from apo_planner.planner import Planner

                    self._planner = Planner.from_config(self.config, base_url=self.base_url)
                except Exception as exc:
                    self._load_error = exc
                    raise
            return self._planner

    def plan_for(self, test_entry: dict[str, Any]) -> dict[str, Any]:
        """Plan text to inject (or None) and what planning cost, for one BFCL entry."""
        first_turn = test_entry["question"][0] if test_entry.get("question") else []
        query = next((m.get("content", "") for m in first_turn if m.get("role") == "user"), "")
        tools = normalize_tools(test_entry.get("function", []))
        try:
            result = self.planner.plan_with_details(query, tools)  # an in-process model queues on its own lock
        except Exception as exc:  # loading failed: every entry falls back, the run goes on
            info = {
                "plan": None,
                "fallback": f"planner_error: {type(exc).__name__}: {exc}"[:300],
                "prompt_tokens": 0,
                "completion_tokens": 0,
                "latency": 0.0,
            }
        else:
            info = {
                "plan": result.plan.to_text() if result.plan else None,
                "fallback": result.error,
                "prompt_tokens": result.prompt_tokens,
                "completion_tokens": result.completion_tokens,
                "latency": round(result.latency_s, 4),
            }
        return info

    def inject(self, test_entry: dict[str, Any], plan_text: str) -> dict[str, Any]:
        """A copy of the entry with the rendered plan in its first turn."""
        entry = copy.deepcopy(test_entry)
        text = self.template.render(plan=plan_text).strip()
        first_turn = entry["question"][0]
        if self.injection.position == "system":
            if first_turn and first_turn[0].get("role") == "system":
                first_turn[0]["content"] = text + "\n\n" + first_turn[0]["content"]
            else:
                first_turn.insert(0, {"role": "system", "content": text})
        else:
            user = next(m for m in first_turn if m.get("role") == "user")
            user["content"] = text + "\n\n" + user["content"]
        return entry


_RUNTIMES: dict[str, PlannerRuntime] = {}
_MAX_TOKENS: dict[str, int] = {}
_SAMPLING: dict[str, tuple[Any, str]] = {}  # registry name -> (ExecutorConfig, its server's api)
_STOCK: dict[str, Any] = {}  # the stock bfcl-eval entries this process replaced, by name


class _ExecutorCompletions:
    """`client.completions` whose `create` never asks for more than `cap` new tokens and states every sampling
    field: bfcl-eval sends only the temperature, and a server's defaults must not pick the rest."""

    def __init__(self, completions: Any, cap: int | None, executor: Any, api: str) -> None:
        self._completions = completions
        self._cap = cap
        self._executor = executor
        self._api = api

    def create(self, **kwargs: Any) -> Any:
        from apo_planner.generation import sampling_fields

        wanted = kwargs.get("max_tokens") or self._cap or 4096
        kwargs["max_tokens"] = min(wanted, self._cap) if self._cap else wanted
        sampling = self._executor.sampling(kwargs["max_tokens"])
        stated = sampling_fields(sampling, self._api, "completions")
        stated["temperature"] = kwargs.get("temperature", sampling.temperature)  # bfcl-eval's own
        kwargs["extra_body"] = {**stated, **(kwargs.get("extra_body") or {})}  # bfcl's stop_token_ids kept
        return self._completions.create(**kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._completions, name)


class _ExecutorClient:
    def __init__(self, client: Any, cap: int | None, executor: Any, api: str) -> None:
        self._client = client
        self.completions = _ExecutorCompletions(client.completions, cap, executor, api)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


def _wrap_client(handler: Any) -> None:
    """bfcl-eval asks local servers for up to 4096 new tokens; a recipe may cap that (tiny CPU models). Every
    request also states the recipe's sampling fields (`eval.executor`)."""
    cap = _MAX_TOKENS.get(handler.registry_name)
    sampling = _SAMPLING.get(handler.registry_name)
    if hasattr(handler, "client") and (cap is not None or sampling is not None):
        executor, api = sampling if sampling is not None else (None, "openai")
        if executor is None:  # a cap without sampling settings (a caller of `register` without them)
            from apo_planner.evaluation.config import ExecutorConfig

            executor = ExecutorConfig()
        handler.client = _ExecutorClient(handler.client, cap, executor, api)


def planner_handler(base_cls: type) -> type:
    """Subclass `base_cls` so every entry is planned first (see module docstring)."""

    class PlannerAugmentedHandler(executor_handler(base_cls)):  # type: ignore[misc]
        def inference(self, test_entry: dict, include_input_log: bool, exclude_state_log: bool):
            runtime = _RUNTIMES.get(self.registry_name)
            info = runtime.plan_for(test_entry) if runtime else {"plan": None, "fallback": "no_planner_registered"}
            entry = runtime.inject(test_entry, info["plan"]) if runtime and info["plan"] else test_entry
            result, metadata = super().inference(entry, include_input_log, exclude_state_log)
            metadata["planner"] = info  # written into the result line next to bfcl-eval's own fields
            return result, metadata

        # bfcl-eval's handlers use `overrides.EnforceOverrides`; its @override decorator finds base
        # classes by name in module globals, which a class made in a factory does not have.
        inference.__override__ = True  # type: ignore[attr-defined]

    PlannerAugmentedHandler.__name__ = f"PlannerAugmented{base_cls.__name__}"
    PlannerAugmentedHandler.__qualname__ = PlannerAugmentedHandler.__name__
    return PlannerAugmentedHandler


def executor_handler(base_cls: type) -> type:
    """The executor alone, through the same query path (only the max_tokens cap and the stated sampling fields
    differ from stock)."""

    class ExecutorHandler(base_cls):  # type: ignore[misc, valid-type]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            _wrap_client(self)

    ExecutorHandler.__name__ = f"Capped{base_cls.__name__}"
    return ExecutorHandler


def _check_name(name: str) -> str:
    if "_" in name:
        raise EvalError(f"bfcl-eval registry names cannot contain '_' (it maps directory names back): {name!r}")
    return name


@dataclass(frozen=True)
class Arms:
    """The registry names of one evaluation's arms: the executor alone in FC mode, the executor alone
    in prompt mode (None when skipped), and the planner in front of the executor in `planner_mode`."""

    fc: str
    prompt: str | None
    planner: str
    planner_mode: str = "fc"

    @property
    def baseline(self) -> str:
        """The executor alone in the planner arm's mode: the paired comparison."""
        return self.fc if self.planner_mode == "fc" else self.prompt  # type: ignore[return-value]

    @property
    def other_mode(self) -> str | None:
        """The executor alone in the other mode: what tells a mode effect from a planner effect."""
        return self.prompt if self.planner_mode == "fc" else self.fc

    @property
    def models(self) -> list[str]:
        return [m for m in (self.fc, self.prompt, self.planner) if m]


def _entry(mapping: dict[str, Any], name: str, fc: bool) -> Any:
    if name not in mapping:
        raise EvalError(f"unknown bfcl-eval model {name!r}; valid names: {', '.join(sorted(mapping))}")
    entry = mapping[name]
    if entry.is_fc_model != fc:
        key = "eval.executor.handler" if fc else "eval.executor.prompt_handler"
        mode = "FC" if fc else "prompt"
        raise EvalError(f"{key}: bfcl-eval entry {name!r} is not a {mode}-mode entry; name the model's {mode} one")
    return entry


def register(
    executor: str = DEFAULT_EXECUTOR,
    runtime: PlannerRuntime | None = None,
    max_tokens: int | None = None,
    prompt_executor: str | None = None,
    planner_mode: str = "fc",
    sampling: tuple[Any, str] | None = None,
) -> Arms:
    """Register this run's entries: the planner-augmented one on the `planner_mode` executor entry and,
    with a token cap, capped copies of the executor entries (stock entries otherwise). `sampling`:
    (`ExecutorConfig`, its server's api), whose fields every executor request states (the stock entries'
    names then run through that client too)."""
    from bfcl_eval.constants.model_config import MODEL_CONFIG_MAPPING, ModelConfig

    stock = {name: _STOCK.get(name, MODEL_CONFIG_MAPPING.get(name)) for name in (executor, prompt_executor) if name}
    mapping = {**MODEL_CONFIG_MAPPING, **{k: v for k, v in stock.items() if v is not None}}
    bases = {"fc": (executor, _entry(mapping, executor, True))}
    if prompt_executor:
        bases["prompt"] = (prompt_executor, _entry(mapping, prompt_executor, False))
    if planner_mode not in bases:
        raise EvalError(f"the planner arm runs on the {planner_mode} executor entry, and none is set")
    entries: dict[str, tuple[type, str, Any]] = {}
    names: dict[str, str] = {}
    for mode, (name, base) in bases.items():
        names[mode] = _check_name(name if max_tokens is None else f"{name}-Max{max_tokens}")
        if names[mode] != name or sampling is not None:
            _STOCK.setdefault(name, base)
            display = base.display_name if max_tokens is None else f"{base.display_name} (max {max_tokens} tokens)"
            entries[names[mode]] = (executor_handler(base.model_handler), display, base)
    name, base = bases[planner_mode]
    planned = _check_name(name + SUFFIX)
    entries[planned] = (planner_handler(base.model_handler), f"{base.display_name} + APO planner", base)
    for entry_name, (handler, display, base) in entries.items():
        MODEL_CONFIG_MAPPING[entry_name] = ModelConfig(
            model_name=base.model_name,
            display_name=display,
            url=base.url,
            org=base.org,
            license=base.license,
            model_handler=handler,
            input_price=None,
            output_price=None,
            is_fc_model=base.is_fc_model,
            underscore_to_dot=base.underscore_to_dot,
        )
        if max_tokens is not None:
            _MAX_TOKENS[entry_name] = max_tokens
        if sampling is not None:
            _SAMPLING[entry_name] = sampling
    if runtime is not None:
        _RUNTIMES[planned] = runtime
    return Arms(fc=names["fc"], prompt=names.get("prompt"), planner=planned, planner_mode=planner_mode)
