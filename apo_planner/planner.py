"""The planner at inference: a model that turns (query, tools) into a `Plan`.

Two ways to run the released planner, one prompt format (`apo_planner.prompts.planner_prompt`,
rendered by the planner's own chat template with the tools, exactly as in training):
- `Planner.from_pretrained(path_or_hub_id)`: transformers, in process;
- `Planner.from_endpoint(base_url, model)`: an OpenAI-compatible server (`vllm serve MERGED_DIR`),
  called on `/v1/completions` with the prompt rendered locally, so the server cannot re-template it.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from apo_planner.plan import Plan, PlanParseError, parse_plan
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


class Planner:
    def __init__(self, tokenizer: Any, generate: Any, max_new_tokens: int = 512) -> None:
        self.tokenizer = tokenizer
        self._generate = generate
        self.max_new_tokens = max_new_tokens

    # --- construction ---------------------------------------------------------------------

    @classmethod
    def from_pretrained(
        cls,
        model: str | Path,
        revision: str | None = None,
        device: str | None = None,
        dtype: str = "auto",
        max_new_tokens: int = 512,
    ) -> Planner:
        """Load a merged planner (local dir or Hub id) with transformers."""
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        revision = None if Path(model).is_dir() else revision
        tokenizer = AutoTokenizer.from_pretrained(model, revision=revision)
        lm = AutoModelForCausalLM.from_pretrained(model, revision=revision, dtype=dtype)
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        lm.to(device).eval()

        def generate(prompt: str, max_new_tokens: int) -> tuple[str, int, int]:
            inputs = tokenizer(prompt, return_tensors="pt", add_special_tokens=False).to(device)
            with torch.no_grad():
                out = lm.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False)
            new = out[0, inputs["input_ids"].shape[1] :]
            return tokenizer.decode(new, skip_special_tokens=True), inputs["input_ids"].shape[1], len(new)

        return cls(tokenizer, generate, max_new_tokens)

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
    ) -> Planner:
        """A planner served by vLLM (or any OpenAI-compatible server with /v1/completions)."""
        import openai
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(tokenizer or model)
        client = openai.OpenAI(
            base_url=base_url,
            api_key=os.environ.get(api_key_env) or "EMPTY",
            timeout=timeout_s,
            max_retries=max_retries,
        )

        def generate(prompt: str, max_new_tokens: int) -> tuple[str, int, int]:
            response = client.completions.create(model=model, prompt=prompt, max_tokens=max_new_tokens, temperature=0.0)
            usage = response.usage
            return (
                response.choices[0].text,
                usage.prompt_tokens if usage else 0,
                usage.completion_tokens if usage else 0,
            )

        return cls(tok, generate, max_new_tokens)

    # --- planning -------------------------------------------------------------------------

    def render_prompt(self, query: str, tools: list[dict[str, Any]]) -> str:
        return self.tokenizer.apply_chat_template(
            planner_prompt(query), tools=tools or None, tokenize=False, add_generation_prompt=True
        )

    def plan_with_details(self, query: str, tools: list[dict[str, Any]]) -> PlanResult:
        """Never raises for model or parse failures: they come back as `error` (callers fall back)."""
        started = time.perf_counter()
        try:
            text, prompt_tokens, completion_tokens = self._generate(
                self.render_prompt(query, tools), self.max_new_tokens
            )
        except Exception as exc:  # the server or the model failed; the caller decides what to do
            return PlanResult(
                None, "", f"planner_error: {type(exc).__name__}: {exc}"[:300], 0, 0, time.perf_counter() - started
            )
        latency = time.perf_counter() - started
        try:
            plan = parse_plan(text)
        except PlanParseError as exc:
            return PlanResult(None, text, f"unparseable_plan: {exc}"[:300], prompt_tokens, completion_tokens, latency)
        known = tool_names(tools)
        unknown = [s.tool for s in plan.steps if s.tool not in known]
        if unknown:
            return PlanResult(
                None, text, f"unknown_tool: {unknown[0]}"[:300], prompt_tokens, completion_tokens, latency
            )
        return PlanResult(plan, text, None, prompt_tokens, completion_tokens, latency)

    def plan(self, query: str, tools: list[dict[str, Any]]) -> Plan:
        """The plan for `query` given OpenAI-style `tools`; raises ValueError when there is none."""
        result = self.plan_with_details(query, tools)
        if result.plan is None:
            raise ValueError(result.error)
        return result.plan
