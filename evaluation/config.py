"""Configuration of the evaluation stage (the recipe's `eval:` section)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from apo_planner.config import StrictConfig
from apo_planner.plan_grammar import GrammarLimits
from apo_planner.serving import ServerConfig

DEFAULT_EXECUTOR = "Qwen/Qwen3-30B-A3B-Instruct-2507-FC"


class ExecutorConfig(StrictConfig):
    """The large model that calls the tools: a bfcl-eval handler served over the OpenAI-compatible API."""

    handler: str = Field(DEFAULT_EXECUTOR, description="bfcl-eval model config entry whose handler runs the executor")
    server: ServerConfig = Field(
        default_factory=lambda: ServerConfig(engine="vllm", port=8000),
        description="the executor's server, started by the eval stage unless engine is external",
    )
    model_path: str | None = Field(None, description="local model dir (tokenizer + served name); default: Hub id")
    tiny_model: bool = Field(False, description="create a tiny random model at model_path if absent (smoke)")
    max_tokens: int | None = Field(None, gt=0, description="cap on generated tokens (bfcl-eval asks up to 4096)")
    temperature: float = 0.001
    num_threads: int = Field(8, gt=0)


class PlannerRunConfig(StrictConfig):
    """The planner in front of the executor, decoding under the catalog's plan grammar by default."""

    model: str = Field("runs/smoke/train/merged", description="merged planner dir or Hub id")
    backend: Literal["transformers", "openai"] = Field(
        "transformers", description="transformers: in process; openai: behind `server` (started by the eval stage)"
    )
    server: ServerConfig = Field(
        default_factory=lambda: ServerConfig(engine="vllm", port=8001), description="the planner's server (openai)"
    )
    tokenizer: str | None = None
    max_new_tokens: int = Field(512, gt=0)
    timeout_s: float = Field(120.0, gt=0)
    constrained: bool = Field(True, description="decode under the plan grammar of the entry's tool catalog")
    send_grammar: bool = Field(
        True, description="openai backend: send the grammar as vLLM `structured_outputs` (off for servers without)"
    )
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


class InjectionConfig(StrictConfig):
    position: Literal["system", "user"] = Field("system", description="prepend the plan to the system or user turn")
    template: str | None = Field(None, description="Jinja template of the injected text (default: bundled)")


GATE_KEYS = {"min_planned"}  # what the release decides with the results, not how they are made


class EvalConfig(StrictConfig):
    categories: list[str] = ["simple_java", "multiple", "parallel_multiple"]
    min_planned: float = Field(
        0.95, ge=0.0, le=1.0, description="the release publishes only when every category has this plan coverage"
    )
    limit: int | None = Field(None, ge=2, description="evaluate the first N entries of each category")
    output: str = "runs/smoke/eval"
    executor: ExecutorConfig = ExecutorConfig()
    planner: PlannerRunConfig = PlannerRunConfig()
    injection: InjectionConfig = InjectionConfig()
