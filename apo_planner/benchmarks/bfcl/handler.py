"""The planner-augmented BFCL handlers and their registration in bfcl-eval.

The planner arm's handler is the leaderboard handler itself: `planner_handler(base_cls, plans, settings)`
combines `apo_planner.portable.apo_planner.APOPlannerHandler` (the module `apo-planner submission` exports)
with the executor's own handler class, exactly as the exported `APOPlannerQwenFCHandler` does, and gives it
this run's plan source (`PlanSource`: the planner, or the oracle and placebo plans of the diagnostic arms) and
settings (`apo_planner.evaluation.planner_arm.planner_settings`). Everything else (prompt format, query,
decoding, checking) is the executor handler's own code. A planner error, timeout or unusable plan makes that
entry run without a plan, recorded in its result line.

bfcl-eval has no plugin hook: `register()` adds this run's entries to its `MODEL_CONFIG_MAPPING`
dict in this process (names without `_`, which bfcl-eval maps back from directory names). Nothing
happens at import.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from apo_planner.benchmarks.base import BenchmarkError, PlanSource

SUFFIX = "-APOPlanner"
# The diagnostic arms that run the executor with another plan injected (the evaluation stage's oracle and
# placebo plan sources), each under its own registry name.
INJECTED_SUFFIXES = {"oracle": "-APOOracle", "placebo": "-APOPlacebo"}
PLAN_ONLY_SUFFIX = "-APOPlanOnly"  # the planner's plans scored as answers, no executor (never generates)


_MAX_TOKENS: dict[str, int] = {}
_SEEDS: dict[str, int] = {}  # registry name -> the `seed` its requests carry (one per repeat)
_SAMPLING: dict[str, tuple[Any, str]] = {}  # registry name -> (sampling for a token budget, the server's api)
_STOCK: dict[str, Any] = {}  # the stock bfcl-eval entries this process wrapped under their own names


class _ExecutorCompletions:
    """`client.completions` whose `create` never asks for more than `cap` new tokens and states every sampling
    field: bfcl-eval sends only the temperature, and a server's defaults must not pick the rest."""

    def __init__(self, completions: Any, cap: int | None, seed: int | None, sampling: tuple[Any, str] | None) -> None:
        self._completions = completions
        self._cap = cap
        self._seed = seed
        self._sampling = sampling

    def create(self, **kwargs: Any) -> Any:
        wanted = kwargs.get("max_tokens") or self._cap or 4096
        kwargs["max_tokens"] = min(wanted, self._cap) if self._cap else wanted
        if self._sampling is not None:
            from apo_planner.generation import sampling_fields

            sampling, api = self._sampling
            stated = sampling_fields(sampling(kwargs["max_tokens"]), api, "completions")
            stated["temperature"] = kwargs.get("temperature", stated["temperature"])  # bfcl-eval's own
            if self._seed is not None:
                stated["seed"] = self._seed
            stated.pop("max_tokens", None)
            kwargs["extra_body"] = {**stated, **(kwargs.get("extra_body") or {})}  # bfcl's stop_token_ids kept
        elif self._seed is not None:
            kwargs.setdefault("seed", self._seed)
        return self._completions.create(**kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._completions, name)


class _ExecutorClient:
    def __init__(self, client: Any, cap: int | None, seed: int | None, sampling: tuple[Any, str] | None) -> None:
        self._client = client
        self.completions = _ExecutorCompletions(client.completions, cap, seed, sampling)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


def _wrap_client(handler: Any) -> None:
    """bfcl-eval asks local servers for up to 4096 new tokens; a recipe may cap that (tiny CPU models). Every
    request also states the recipe's sampling fields (`eval.executor`) and its run's seed (`eval.repeats`)."""
    name = handler.registry_name
    cap, seed, sampling = _MAX_TOKENS.get(name), _SEEDS.get(name), _SAMPLING.get(name)
    if (cap is not None or seed is not None or sampling is not None) and hasattr(handler, "client"):
        handler.client = _ExecutorClient(handler.client, cap, seed, sampling)


def planner_handler(base_cls: type, plans: PlanSource | None, settings: Any, result_dir: Path | None = None) -> type:
    """The leaderboard handler in front of `base_cls` (a local executor's handler), asking `plans` for each entry's
    plan and injecting it as `settings` say; its executor client is wrapped as the executor-alone arms' is."""
    from bfcl_eval.model_handler.local_inference.base_oss_handler import OSSHandler

    from apo_planner.portable.apo_planner import APOPlannerHandler

    if not issubclass(base_cls, OSSHandler):
        raise BenchmarkError(
            f"{base_cls.__name__} is not a locally served bfcl-eval handler (OSSHandler): the planner arm serves "
            "its executor like bfcl's local models"
        )
    name = f"APOPlanner{base_cls.__name__}"
    namespace = {"plans": plans, "settings": settings, "result_dir": result_dir}
    return type(name, (APOPlannerHandler, executor_handler(base_cls)), namespace)


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
        raise BenchmarkError(f"bfcl-eval registry names cannot contain '_' (it maps directory names back): {name!r}")
    return name


@dataclass(frozen=True)
class Arms:
    """The registry names of one evaluation's arms: the executor alone in FC mode, the executor alone
    in prompt mode (None when skipped), the planner in front of the executor in `planner_mode`, the
    diagnostic arms with another plan injected there (`injected`: oracle, placebo), and the planner's plans
    scored without an executor (`plan_only`)."""

    fc: str
    prompt: str | None
    planner: str
    planner_mode: str = "fc"
    injected: dict[str, str] = field(default_factory=dict)  # arm -> registry name
    plan_only: str | None = None
    entries: dict[str, str] = field(default_factory=dict)  # mode -> bfcl-eval's own entry it runs

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
        """Every entry that generates (the executor answers)."""
        return [m for m in (self.fc, self.prompt, self.planner, *self.injected.values()) if m]


def _entry(mapping: dict[str, Any], name: str, fc: bool) -> Any:
    if name not in mapping:
        raise BenchmarkError(f"unknown bfcl-eval model {name!r}; valid names: {', '.join(sorted(mapping))}")
    entry = mapping[name]
    if entry.is_fc_model != fc:
        key = "eval.executor.handler" if fc else "eval.executor.prompt_handler"
        mode = "FC" if fc else "prompt"
        raise BenchmarkError(f"{key}: bfcl-eval entry {name!r} is not a {mode}-mode entry; name the model's {mode} one")
    return entry


def register(
    executor: str,
    runtime: PlanSource | None = None,
    settings: Any = None,
    max_tokens: int | None = None,
    prompt_executor: str | None = None,
    planner_mode: str = "fc",
    injected: dict[str, PlanSource] | None = None,
    plan_only: bool = False,
    seed: int | None = None,
    sampling: tuple[Any, str] | None = None,
    result_dir: Path | None = None,
) -> Arms:
    """Register this run's entries: the planner-augmented one on the `planner_mode` executor entry (and one
    per `injected` plan source, same handler; `settings`: the handler's `PlannerSettings`, the recipe's
    defaults with none), with a token cap or a seed wrapped copies of the executor
    entries under their own names, and with `plan_only` an entry that only decodes and scores the planner's
    plans. `sampling`: (sampling for a token budget, the server's api), whose fields every executor request
    states; the stock entries' names then run through that client too (the stock entry is kept aside in this
    process, so registering again wraps the original). `result_dir`: where generation writes (the planner-augmented
    entries write their coverage summary beside their results)."""
    from bfcl_eval.constants.model_config import MODEL_CONFIG_MAPPING, ModelConfig

    stock = {name: _STOCK.get(name, MODEL_CONFIG_MAPPING.get(name)) for name in (executor, prompt_executor) if name}
    mapping = {**MODEL_CONFIG_MAPPING, **{k: v for k, v in stock.items() if v is not None}}
    bases = {"fc": (executor, _entry(mapping, executor, True))}
    if prompt_executor:
        bases["prompt"] = (prompt_executor, _entry(mapping, prompt_executor, False))
    if planner_mode not in bases:
        raise BenchmarkError(f"the planner arm runs on the {planner_mode} executor entry, and none is set")
    entries: dict[str, tuple[type, str, Any]] = {}
    names: dict[str, str] = {}
    for mode, (name, base) in bases.items():
        names[mode] = _check_name(name if max_tokens is None else f"{name}-Max{max_tokens}")
        if names[mode] != name or seed is not None or sampling is not None:
            _STOCK.setdefault(name, base)
            cap = f" (max {max_tokens} tokens)" if max_tokens is not None else ""
            entries[names[mode]] = (executor_handler(base.model_handler), f"{base.display_name}{cap}", base)
    name, base = bases[planner_mode]
    if settings is None:
        from apo_planner.portable.apo_planner import SETTINGS

        settings = SETTINGS
    planned = _check_name(name + SUFFIX)
    handler = planner_handler(base.model_handler, runtime, settings, result_dir)
    entries[planned] = (handler, f"{base.display_name} + APO planner", base)
    diagnostic = {arm: _check_name(name + INJECTED_SUFFIXES[arm]) for arm in injected or {}}
    for arm, entry_name in diagnostic.items():
        source = (injected or {})[arm]
        entries[entry_name] = (
            planner_handler(base.model_handler, source, settings, result_dir),
            f"{base.display_name} + {arm} plan",
            base,
        )
    scored = _check_name(names[planner_mode] + PLAN_ONLY_SUFFIX) if plan_only else None
    if scored:  # plans are written as Qwen FC answers (the ground-truth anchor's format): decoded by that handler
        from bfcl_eval.model_handler.local_inference.qwen_fc import QwenFCHandler

        entries[scored] = (QwenFCHandler, "APO planner's plans, no executor", base)
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
            is_fc_model=True if entry_name == scored else base.is_fc_model,
            underscore_to_dot=base.underscore_to_dot,
        )
        if max_tokens is not None:
            _MAX_TOKENS[entry_name] = max_tokens
        for table, value in ((_SEEDS, seed), (_SAMPLING, sampling)):
            if value is not None:
                table[entry_name] = value
            else:
                table.pop(entry_name, None)
    return Arms(
        fc=names["fc"],
        prompt=names.get("prompt"),
        planner=planned,
        planner_mode=planner_mode,
        injected=diagnostic,
        plan_only=scored,
        entries={mode: name for mode, (name, _) in bases.items()},
    )
