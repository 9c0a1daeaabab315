"""Configuration of the evaluation stage (the recipe's `eval:` section)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from apo_planner.config import StrictConfig
from apo_planner.errors import UserError
from apo_planner.plan_grammar import GrammarLimits
from apo_planner.serving import ServerConfig

DEFAULT_EXECUTOR = "Qwen/Qwen3-30B-A3B-Instruct-2507-FC"
DEFAULT_PROMPT_EXECUTOR = "Qwen/Qwen3-30B-A3B-Instruct-2507"  # the same model's prompt-mode entry
# The paper's Table 1 columns as BFCL categories; its "Parallel Multiple" is `live_parallel_multiple`
# (see apo_planner.evaluation.compare.PAPER_TABLE), so both parallel categories are evaluated.
DEFAULT_CATEGORIES = ["simple_java", "multiple", "parallel_multiple", "live_parallel_multiple"]


class ExecutorConfig(StrictConfig):
    """The large model that calls the tools: a bfcl-eval handler served over the OpenAI-compatible API."""

    handler: str = Field(
        DEFAULT_EXECUTOR, description="the executor's bfcl-eval entry in function-calling (FC) mode, run alone"
    )
    prompt_handler: str | None = Field(
        DEFAULT_PROMPT_EXECUTOR,
        description="the same model's prompt-mode bfcl-eval entry, run alone too, so a mode effect is not read as a "
        "planner effect (null: skip that arm); both entries are served by the one executor server",
    )
    server: ServerConfig = Field(
        default_factory=lambda: ServerConfig(engine="vllm", port=8000),
        description="the executor's server, started by the eval stage unless engine is external",
    )
    model_path: str | None = Field(None, description="local model dir (tokenizer + served name); default: Hub id")
    tiny_model: bool = Field(False, description="create a tiny random model at model_path if absent (smoke)")
    max_tokens: int | None = Field(None, gt=0, description="cap on generated tokens (bfcl-eval asks up to 4096)")
    temperature: float = Field(0.001, ge=0.0)
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


class SubmissionConfig(StrictConfig):
    """What `apo-planner submission` pins into the leaderboard handler; unset fields come from the release."""

    planner_repo: str | None = Field(None, description="the planner's Hub id (default: the release's merged model)")
    planner_revision: str | None = Field(None, description="its revision, a tag or commit (default: v<build.version>)")
    name: str | None = Field(None, description="the BFCL model key, no '_' (default: <planner_repo>-<executor>)")
    display_name: str | None = None
    org: str | None = Field(None, description="the planner's organisation (default: the release namespace)")
    url: str | None = Field(None, description="default: the planner's Hub page")
    license: str | None = Field(None, description="the planner's license (default: release.model_license)")
    planner_port: int = Field(1054, gt=0, description="where the PR's reproduction serves the planner")
    output: str | None = Field(None, description="the folder to write (default: <eval.output>/bfcl_submission)")


class EvalError(UserError):
    """An evaluation that cannot run as configured (an unknown category or entry, no planner server)."""


GATE_KEYS = {"min_planned", "submission"}  # what is decided or exported from the results, not how they are made


class EvalConfig(StrictConfig):
    categories: list[str] = Field(default_factory=lambda: list(DEFAULT_CATEGORIES))
    planner_mode: Literal["fc", "prompt"] = Field(
        "fc", description="which executor entry the planner arm runs on: the FC `handler` or the `prompt_handler`"
    )
    min_planned: float = Field(
        0.95, ge=0.0, le=1.0, description="the release publishes only when every category has this plan coverage"
    )
    limit: int | None = Field(None, ge=2, description="evaluate the first N entries of each category")
    output: str = "runs/smoke/eval"
    executor: ExecutorConfig = ExecutorConfig()
    planner: PlannerRunConfig = PlannerRunConfig()
    injection: InjectionConfig = InjectionConfig()
    submission: SubmissionConfig = SubmissionConfig()

    @model_validator(mode="after")
    def _planner_mode_has_an_entry(self) -> EvalConfig:
        if self.planner_mode == "prompt" and not self.executor.prompt_handler:
            raise ValueError("planner_mode prompt needs eval.executor.prompt_handler (the prompt-mode bfcl-eval entry)")
        return self
