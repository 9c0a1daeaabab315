"""The planner at inference: a model that turns (query, tools) into a `Plan`.

Two ways to run the released planner, one prompt format (`apo_planner.prompts.planner_prompt`,
rendered by the planner's own chat template with the tools, exactly as in training):
- `Planner.from_pretrained(path_or_hub_id)`: transformers, in process;
- `Planner.from_endpoint(base_url, model)`: an OpenAI-compatible server (`vllm serve MERGED_DIR`),
  called on `/v1/completions` with the prompt rendered locally, so the server cannot re-template it.

Both decode under the catalog's plan grammar by default (`apo_planner.plan_grammar`): xgrammar in
process, vLLM's `structured_outputs.grammar` through an endpoint. A constrained plan always parses
and names only catalog tools; every answer is validated anyway, since not every server enforces a
grammar (`transformers serve` ignores it).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from apo_planner.plan import Plan, PlanParseError, parse_plan
from apo_planner.plan_grammar import GrammarLimits, grammar_key, plan_grammar
from apo_planner.prompts import planner_prompt
from apo_planner.tools import tool_names


@dataclass
class PlanResult:
    """A plan (or the reason there is none) with what it cost."""

    plan: Plan | None
    text: str
    error: str | None
    prompt_tokens: int
    completion_tokens: int
    latency_s: float


@dataclass
class Generation:
    """What one engine call returned; `truncated` when it stopped at `max_new_tokens`."""

    text: str
    prompt_tokens: int
    completion_tokens: int
    truncated: bool = False


# (prompt, max_new_tokens, grammar EBNF or None) -> Generation
Generate = Callable[[str, int, str | None], Generation]


class Planner:
    """A tokenizer (for the prompt) and an engine; `constrained` decodes under the catalog's grammar."""

    def __init__(
        self,
        tokenizer: Any,
        generate: Generate,
        max_new_tokens: int = 512,
        constrained: bool = True,
        limits: GrammarLimits | None = None,
        max_context: int | None = None,
    ) -> None:
        self.tokenizer = tokenizer
        self._generate = generate
        self.max_new_tokens = max_new_tokens
        self.constrained = constrained
        self.limits = limits or GrammarLimits()
        self.max_context = max_context  # the model's context in tokens (None: unknown, not checked)
        self._grammars: dict[str, str] = {}

    # --- construction ---------------------------------------------------------------------

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
        """Load a merged planner (local dir or Hub id) with transformers; grammars compile with xgrammar
        once per catalog (BFCL repeats catalogs) and mask the logits at every step."""
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        revision = None if Path(model).is_dir() else revision
        tokenizer = AutoTokenizer.from_pretrained(model, revision=revision)
        lm = AutoModelForCausalLM.from_pretrained(model, revision=revision, dtype=dtype)
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        lm.to(device).eval()
        compiled: dict[str, Any] = {}
        compiler: list[Any] = []

        def processors(grammar: str | None) -> list[Any]:
            if grammar is None:
                return []
            import xgrammar as xgr
            from xgrammar.contrib.hf import LogitsProcessor

            if not compiler:
                info = xgr.TokenizerInfo.from_huggingface(tokenizer, vocab_size=lm.config.vocab_size)
                compiler.append(xgr.GrammarCompiler(info))
            if grammar not in compiled:
                compiled[grammar] = compiler[0].compile_grammar(grammar)
            return [LogitsProcessor(compiled[grammar])]  # stateful: a fresh one per generation

        def generate(prompt: str, max_new_tokens: int, grammar: str | None) -> Generation:
            inputs = tokenizer(prompt, return_tensors="pt", add_special_tokens=False).to(device)
            with torch.no_grad():
                out = lm.generate(
                    **inputs, max_new_tokens=max_new_tokens, do_sample=False, logits_processor=processors(grammar)
                )
            new = out[0, inputs["input_ids"].shape[1] :]
            ended = len(new) > 0 and int(new[-1]) in _eos_ids(lm, tokenizer)
            return Generation(
                tokenizer.decode(new, skip_special_tokens=True),
                inputs["input_ids"].shape[1],
                len(new),
                truncated=len(new) >= max_new_tokens and not ended,
            )

        context = getattr(lm.config, "max_position_embeddings", None)
        return cls(tokenizer, generate, max_new_tokens, constrained, limits, max_context=context)

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
    ) -> Planner:
        """A planner served by vLLM (or any OpenAI-compatible server with /v1/completions).

        With `send_grammar`, a constrained request carries vLLM's `structured_outputs: {"grammar": EBNF}`;
        turn it off for servers that reject unknown fields (the answer is still validated)."""
        import openai
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(tokenizer or model)
        client = openai.OpenAI(
            base_url=base_url,
            api_key=os.environ.get(api_key_env) or "EMPTY",
            timeout=timeout_s,
            max_retries=max_retries,
        )

        def generate(prompt: str, max_new_tokens: int, grammar: str | None) -> Generation:
            extra = {"structured_outputs": {"grammar": grammar}} if grammar is not None and send_grammar else None
            response = client.completions.create(
                model=model, prompt=prompt, max_tokens=max_new_tokens, temperature=0.0, extra_body=extra
            )
            usage = response.usage
            choice = response.choices[0]
            return Generation(
                choice.text or "",
                usage.prompt_tokens if usage else 0,
                usage.completion_tokens if usage else 0,
                truncated=choice.finish_reason == "length",
            )

        context = tok.model_max_length if 0 < tok.model_max_length < 10**8 else None  # else transformers' "unset"
        return cls(tok, generate, max_new_tokens, constrained, limits, max_context=context)

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
            if length >= self.max_context:
                why = f"prompt_too_long: the prompt is {length} tokens, the model's context {self.max_context}"
                return PlanResult(None, "", why, length, 0, time.perf_counter() - started)
        try:
            grammar = self.grammar(tools)
        except ValueError as exc:
            return PlanResult(None, "", f"no_usable_tool: {exc}"[:300], 0, 0, time.perf_counter() - started)
        try:
            out = self._generate(self.render_prompt(query, tools, context), self.max_new_tokens, grammar)
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


def _eos_ids(model: Any, tokenizer: Any) -> set[int]:
    eos = model.generation_config.eos_token_id
    ids = set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
    if tokenizer.eos_token_id is not None:
        ids.add(tokenizer.eos_token_id)
    return ids
