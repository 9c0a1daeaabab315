"""The planner at inference: a model that turns (query, tools) into a `Plan`.

Two ways to run the released planner, one prompt format (`apo_planner.prompts.planner_prompt`,
rendered by the planner's own chat template with the tools, exactly as in training), both through the
generation layer (`apo_planner.generation`):
- `Planner.from_pretrained(path_or_hub_id)`: `backend: transformers`, in process;
- `Planner.from_endpoint(base_url, model)`: `backend: openai`, an OpenAI-compatible server
  (`vllm serve MERGED_DIR`) called on `/v1/completions` with the prompt rendered locally, so the server
  cannot re-template it. Its requests are built by the same code as the synthesizer's.

Both decode under the catalog's plan grammar by default (`apo_planner.plan_grammar`): xgrammar in
process, vLLM's `structured_outputs.grammar` through an endpoint. A constrained plan always parses
and names only catalog tools; every answer is validated anyway, since not every server enforces a
grammar (`transformers serve` refuses the field: send `structured_output: none` there).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from pydantic import Field

from apo_planner.generation import Backend, Constraint, Generation, GenerationRequest, RoleSettings, Sampling
from apo_planner.generation import make_backend as _make_backend
from apo_planner.pinning import SHA
from apo_planner.plan import Plan, PlanParseError, parse_plan
from apo_planner.plan_grammar import GrammarLimits, grammar_key, plan_grammar
from apo_planner.prompts import planner_prompt
from apo_planner.serving import ServerConfig
from apo_planner.tools import tool_names

__all__ = ["Generation", "PlanResult", "Planner", "PlannerConfig"]


class PlannerConfig(RoleSettings):
    """The planner as a recipe section (`eval.planner`): its backend (`backend` and that backend's keys) and
    how it plans. Plans are greedy; every request states that with all its sampling fields."""

    default_backend: ClassVar[str] = "transformers"
    backend_defaults: ClassVar[dict[str, dict[str, Any]]] = {
        "openai": {"server": ServerConfig(engine="vllm", port=8001)}  # the eval stage serves the merged model
    }

    model: str = Field("runs/smoke/train/merged", description="merged planner dir or Hub id")
    tokenizer: str | None = Field(None, description="openai: where the prompt's tokenizer comes from (default: model)")
    max_new_tokens: int = Field(512, gt=0)
    constrained: bool = Field(True, description="decode under the plan grammar of the entry's tool catalog")
    max_steps: int = Field(8, gt=0, description="most steps a constrained plan may have")
    max_rationale_chars: int = Field(200, gt=0, description="longest `why:` line of a constrained plan")
    max_value_chars: int = Field(64, gt=0, description="longest string argument of a constrained plan")
    max_items: int = Field(16, gt=0, description="most items of an array or object argument of a constrained plan")

    def grammar_limits(self) -> GrammarLimits:
        return GrammarLimits(
            max_steps=self.max_steps,
            max_rationale_chars=self.max_rationale_chars,
            max_string_chars=self.max_value_chars,
            max_items=self.max_items,
        )


@dataclass
class PlanResult:
    """A plan (or the reason there is none) with what it cost."""

    plan: Plan | None
    text: str
    error: str | None
    prompt_tokens: int
    completion_tokens: int
    latency_s: float


class Planner:
    """A tokenizer (for the prompt) and a generation backend; `constrained` decodes under the catalog's grammar."""

    def __init__(
        self,
        tokenizer: Any,
        backend: Backend,
        max_new_tokens: int = 512,
        constrained: bool = True,
        limits: GrammarLimits | None = None,
        max_context: int | None = None,
    ) -> None:
        self.tokenizer = tokenizer
        self.backend = backend
        self.max_new_tokens = max_new_tokens
        self.constrained = constrained
        self.limits = limits or GrammarLimits()
        self.max_context = max_context  # the model's context in tokens (None: unknown, not checked)
        self._grammars: dict[str, str] = {}

    # --- construction ---------------------------------------------------------------------

    @classmethod
    def from_config(cls, config: PlannerConfig, base_url: str | None = None) -> Planner:
        """The planner a recipe section describes. `base_url`: the server the stage started for it (openai)."""
        backend = _make_backend(config)
        if base_url is not None:
            backend.urls = [base_url]
        backend.pin()
        tokenizer = getattr(backend, "tokenizer", None)  # in process: the model's own, loaded with it
        if tokenizer is None:
            from transformers import AutoTokenizer

            source = config.tokenizer or config.model
            pinned = backend.identity().revision  # the served model's commit, when the stage pinned it
            local = config.tokenizer is not None or Path(source).exists()
            revision = None if local else pinned if SHA.match(pinned) else config.revision
            tokenizer = AutoTokenizer.from_pretrained(source, revision=revision)
        context = getattr(backend, "max_context", None)  # in process: the model's; served: the tokenizer's
        if context is None and 0 < (tokenizer.model_max_length or 0) < 10**8:  # else transformers' "unset"
            context = tokenizer.model_max_length
        return cls(
            tokenizer, backend, config.max_new_tokens, config.constrained, config.grammar_limits(), max_context=context
        )

    @classmethod
    def from_pretrained(
        cls,
        model: str | Path,
        revision: str | None = None,
        device: str | None = None,
        dtype: str = "auto",
        max_new_tokens: int = 512,
        constrained: bool = True,
        limits: GrammarLimits | None = None,
    ) -> Planner:
        """Load a merged planner (local dir or Hub id, pinned to its commit) with transformers; grammars
        compile with xgrammar once per catalog (BFCL repeats catalogs) and mask the logits at every step."""
        config = PlannerConfig.of(
            backend="transformers",
            model=str(model),
            revision=revision or "main",
            device=device,
            dtype=dtype,
            max_new_tokens=max_new_tokens,
            constrained=constrained,
        )
        planner = cls.from_config(config)
        planner.limits = limits or planner.limits
        return planner

    @classmethod
    def from_endpoint(
        cls,
        base_url: str,
        model: str,
        tokenizer: str | Path | None = None,
        api_key_env: str = "OPENAI_API_KEY",
        timeout_s: float = 60.0,
        max_retries: int = 2,
        max_new_tokens: int = 512,
        constrained: bool = True,
        limits: GrammarLimits | None = None,
        send_grammar: bool = True,
        api: str = "auto",
    ) -> Planner:
        """A planner served by vLLM (or any OpenAI-compatible server with /v1/completions).

        With `send_grammar`, a constrained request carries vLLM's `structured_outputs: {"grammar": EBNF}`;
        turn it off for servers that reject unknown fields (the answer is still validated). `api openai`: a
        server that takes only the OpenAI API's fields (`transformers serve`)."""
        config = PlannerConfig.of(
            backend="openai",
            base_url=base_url,
            server=None,
            model=model,
            tokenizer=str(tokenizer) if tokenizer else None,
            api=api,
            api_key_env=api_key_env,
            timeout_s=timeout_s,
            max_retries=max_retries,
            max_new_tokens=max_new_tokens,
            constrained=constrained,
            # the grammar travels only in vLLM's field: a server speaking only the OpenAI API is not sent it
            structured_output="structured_outputs" if send_grammar and api != "openai" else "none",
        )
        planner = cls.from_config(config)
        planner.limits = limits or planner.limits
        return planner

    # --- planning -------------------------------------------------------------------------

    def render_prompt(
        self, query: str, tools: list[dict[str, Any]], context: list[dict[str, Any]] | None = None
    ) -> str:
        """`context`: the conversation's earlier messages (OpenAI style), reduced as in training."""
        return self.tokenizer.apply_chat_template(
            planner_prompt(query, context), tools=tools or None, tokenize=False, add_generation_prompt=True
        )

    def grammar(self, tools: list[dict[str, Any]]) -> str | None:
        """The catalog's plan grammar (cached per catalog), or None when decoding is unconstrained."""
        if not self.constrained:
            return None
        key = grammar_key(tools, self.limits)
        if key not in self._grammars:
            self._grammars[key] = plan_grammar(tools, self.limits)
        return self._grammars[key]

    def plan_with_details(
        self, query: str, tools: list[dict[str, Any]], context: list[dict[str, Any]] | None = None
    ) -> PlanResult:
        """Never raises for model or parse failures: they come back as `error`, its first word a reason
        callers count (`prompt_too_long`, `planner_error`, `no_usable_tool`, `truncated_plan`,
        `unparseable_plan`, `unknown_tool`) before they fall back. `context`: earlier messages of a
        multi-turn conversation."""
        started = time.perf_counter()
        if self.max_context:  # a prompt the model cannot read whole: refused, not truncated into a bad plan
            rendered = self.render_prompt(query, tools, context)
            length = len(self.tokenizer(rendered, add_special_tokens=False)["input_ids"])
            if length + self.max_new_tokens > self.max_context:  # the plan must fit beside the prompt
                why = f"prompt_too_long: the prompt is {length} tokens, the model's context {self.max_context}"
                return PlanResult(None, "", why, length, 0, time.perf_counter() - started)
        try:
            grammar = self.grammar(tools)
        except ValueError as exc:
            return PlanResult(None, "", f"no_usable_tool: {exc}"[:300], 0, 0, time.perf_counter() - started)
        try:
            out = self.backend.generate(
                GenerationRequest(
                    Sampling(max_tokens=self.max_new_tokens),  # greedy, every field stated
                    prompt=self.render_prompt(query, tools, context),
                    constraint=Constraint.grammar(grammar) if grammar is not None else None,
                )
            )
        except Exception as exc:  # the server or the model failed; the caller decides what to do
            return PlanResult(
                None, "", f"planner_error: {type(exc).__name__}: {exc}"[:300], 0, 0, time.perf_counter() - started
            )
        latency = time.perf_counter() - started

        def failed(reason: str) -> PlanResult:
            return PlanResult(None, out.text, reason[:300], out.prompt_tokens, out.completion_tokens, latency)

        try:
            plan = parse_plan(out.text)
        except PlanParseError as exc:
            if out.truncated:
                return failed(f"truncated_plan: stopped at max_new_tokens={self.max_new_tokens} ({exc})")
            return failed(f"unparseable_plan: {exc}")
        known = tool_names(tools)
        unknown = [s.tool for s in plan.steps if s.tool not in known]
        if unknown:
            return failed(f"unknown_tool: {unknown[0]}")
        return PlanResult(plan, out.text, None, out.prompt_tokens, out.completion_tokens, latency)

    def plan(self, query: str, tools: list[dict[str, Any]], context: list[dict[str, Any]] | None = None) -> Plan:
        """The plan for `query` given OpenAI-style `tools` (and earlier messages); ValueError when there is none."""
        result = self.plan_with_details(query, tools, context)
        if result.plan is None:
            raise ValueError(result.error)
        return result.plan
