"""Configuration of the evaluation stage (the recipe's `eval:` section)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, model_validator

from apo_planner.benchmarks import BENCHMARKS
from apo_planner.config import StrictConfig
from apo_planner.errors import UserError
from apo_planner.generation import Sampling
from apo_planner.plan_grammar import GrammarLimits
from apo_planner.serving import ServerConfig

DEFAULT_EXECUTOR = "Qwen/Qwen3-30B-A3B-Instruct-2507-FC"
DEFAULT_PROMPT_EXECUTOR = "Qwen/Qwen3-30B-A3B-Instruct-2507"  # the same model's prompt-mode entry
# The paper's Table 1 columns as BFCL categories; its "Parallel Multiple" is `live_parallel_multiple`
# (see apo_planner.benchmarks.bfcl.results.PAPER_TABLE), so both parallel categories are evaluated.
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
    revision: str = Field(
        "main",
        description="the executor's Hub revision: resolved to its commit before the stage starts, served at that sha "
        "(`vllm serve --revision`), its tokenizer read from that snapshot, and recorded in comparison.json",
    )
    max_tokens: int | None = Field(None, gt=0, description="cap on generated tokens (bfcl-eval asks up to 4096)")
    temperature: float = Field(
        0.001, ge=0.0, description="bfcl-eval's; vLLM raises a temperature below 0.01 to 0.01 (recorded as such)"
    )
    # bfcl-eval sends only the temperature; vLLM's default `--generation-config auto` filled in the rest from
    # the model's generation_config.json (Qwen3-30B-A3B-Instruct-2507: top_p 0.8, top_k 20), and so did the
    # leaderboard's runs. Stated in every request here instead, so no server's defaults decide them.
    top_p: float = Field(0.8, gt=0.0, le=1.0, description="stated in every executor request")
    top_k: int = Field(20, ge=0, description="stated in every executor request (vllm api; 0: off)")
    min_p: float = Field(0.0, ge=0.0, le=1.0, description="stated in every executor request (vllm api)")
    seed: int = Field(0, description="stated in every executor request")
    api: Literal["auto", "vllm", "openai"] = Field(
        "auto",
        description="what the executor's server understands (auto: openai for engine transformers-serve, else vllm)",
    )
    num_threads: int = Field(8, gt=0)

    @property
    def dialect(self) -> str:
        if self.api != "auto":
            return self.api
        return "openai" if self.server.engine == "transformers-serve" else "vllm"

    def sampling(self, max_tokens: int) -> Sampling:
        """Every sampling field of an executor request (bfcl-eval's temperature and token budget)."""
        return Sampling(
            max_tokens=max_tokens,
            temperature=self.temperature,
            top_p=self.top_p,
            top_k=self.top_k,
            min_p=self.min_p,
            seed=self.seed,
        )


class PlannerRunConfig(StrictConfig):
    """The planner in front of the executor, always a served model: the stage serves `model` (vLLM on GPUs,
    apo-planner's own server on CPU) and asks it through the leaderboard handler's client
    (`apo_planner.portable.apo_planner`), the code `apo-planner submission` exports. The in-process `Planner`
    (`apo-planner plan`, the Python API) decodes under the same grammar; it is not an evaluation arm."""

    model: str = Field(
        "runs/smoke/train/merged", description="merged planner dir or Hub id: what its server loads and answers to"
    )
    revision: str = Field(
        "main", description="the planner's Hub revision, resolved to its commit before the stage and served at it"
    )
    server: ServerConfig = Field(
        default_factory=lambda: ServerConfig(engine="transformers", port=0),
        description="the planner's server, started by the eval stage (vllm, transformers: apo-planner's CPU "
        "server) unless engine is external (base_url: a server someone else runs)",
    )
    api_key_env: str = Field("OPENAI_API_KEY", description="name of the env var holding the key (never the key)")
    timeout_s: float = Field(120.0, gt=0, description="per plan request")
    max_retries: int = Field(2, ge=0, description="retries of a request that failed transiently (5xx, 429, timeout)")
    max_new_tokens: int = Field(512, gt=0, description="a plan that stops here is truncated, and not injected")
    send_grammar: Literal["auto", "structured_outputs", "guided_grammar", "none"] = Field(
        "auto",
        description="the field the plan grammar is sent in: auto asks the server's /version (structured_outputs "
        "for vLLM >= 0.10.2 and apo-planner's server, guided_grammar for older vLLM, none otherwise, with a warning)",
    )
    max_steps: int = Field(8, gt=0, description="most steps a constrained plan may have")
    max_rationale_chars: int = Field(200, gt=0, description="longest `why:` line of a constrained plan")
    max_value_chars: int = Field(64, gt=0, description="longest string argument of a constrained plan")
    max_items: int = Field(16, gt=0, description="most items of an array or object argument of a constrained plan")

    @model_validator(mode="before")
    @classmethod
    def _no_backend_keys(cls, data: Any) -> Any:
        old = {"backend", "base_url", "structured_output", "constrained", "api", "tokenizer", "concurrency"}
        if isinstance(data, dict) and (given := sorted(old & set(data))):
            raise ValueError(
                f"{', '.join(given)}: the planner arm is always a served model now; give server.engine (transformers "
                "on CPU, vllm, or external with server.base_url) and send_grammar (none: unconstrained)"
            )
        return data

    @property
    def constrained(self) -> bool:
        return self.send_grammar != "none"

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
    name: str | None = Field(None, description="the BFCL model key, no '_' (default: <planner_repo>+<executor entry>)")
    display_name: str | None = Field(
        None, description="the leaderboard's name for it (default: \"<executor> + <planner> (FC)\", bfcl's style)"
    )
    org: str | None = Field(None, description="the planner's organisation (default: the release namespace)")
    url: str | None = Field(None, description="default: the planner's Hub page")
    license: str | None = Field(None, description="the planner's license (default: release.model_license)")
    output: str | None = Field(None, description="the folder to write (default: <eval.output>/bfcl_submission)")


class DiagnosticsConfig(StrictConfig):
    """The diagnostic arms, which tell a planner effect from an injection effect and a bad plan (off unless
    the recipe turns them on; the smoke recipe does)."""

    placebo: bool = Field(
        False,
        description="the executor with a placebo plan: as many steps as the planner's, catalog tools in "
        "catalog order without arguments (what the longer prompt does by itself)",
    )
    oracle: bool = Field(
        False,
        description="the executor with the entry's ground-truth calls as the plan, same template and "
        "position (the ceiling of what plan injection can do for this executor)",
    )
    plan_only: bool = Field(
        False,
        description="the planner's own plans scored as answers by the benchmark's checker, no executor "
        "(the planner's own accuracy; costs nothing: it reads the planner arm's plans)",
    )

    @property
    def arms(self) -> list[str]:
        return [name for name in ("placebo", "oracle", "plan_only") if getattr(self, name)]


class StatisticsConfig(StrictConfig):
    """How the comparison's intervals are computed (docs/evaluate-statistics.md)."""

    resamples: int = Field(2000, ge=100, description="paired-bootstrap resamples per interval")
    seed: int = Field(0, description="the bootstrap's seed: the same results give the same intervals")
    changes_listed: int = Field(20, ge=0, description="fixed / broken entries shown per baseline in changes.md")


class EvalError(UserError):
    """An evaluation that cannot run as configured (an unknown category or entry, no planner server)."""


GATE_KEYS = {"min_planned", "submission"}  # what is decided or exported from the results, not how they are made
# what is computed from the results (or adds runs beside them), not how run 1's result files are made
REPORT_KEYS = {"diagnostics", "repeats", "statistics"}


class EvalConfig(StrictConfig):
    benchmark: Annotated[str, AfterValidator(BENCHMARKS.validator())] = Field(
        "bfcl", description="which registered benchmark to evaluate on (docs/reference/registries.md lists them)"
    )
    categories: list[str] = Field(default_factory=lambda: list(DEFAULT_CATEGORIES))
    planner_mode: Literal["fc", "prompt"] = Field(
        "fc", description="which executor entry the planner arm runs on: the FC `handler` or the `prompt_handler`"
    )
    min_planned: float = Field(
        0.95, ge=0.0, le=1.0, description="the release publishes only when every category has this plan coverage"
    )
    limit: int | None = Field(None, ge=2, description="evaluate the first N entries of each category")
    repeats: int = Field(
        1,
        ge=1,
        description="run every arm this many times, run r with executor seed `executor.seed + r - 1`; the report "
        "shows the run-to-run spread next to the paired intervals (vLLM is not batch-invariant by default)",
    )
    diagnostics: DiagnosticsConfig = DiagnosticsConfig()
    statistics: StatisticsConfig = StatisticsConfig()
    output: str = "runs/smoke/eval"
    executor: ExecutorConfig = ExecutorConfig()
    planner: PlannerRunConfig = PlannerRunConfig()
    injection: InjectionConfig = InjectionConfig()
    submission: SubmissionConfig = SubmissionConfig()

    def run_seed(self, run: int) -> int:
        """The seed run `run` (1-based) states in every executor request (`executor.seed` in run 1)."""
        return self.executor.seed + run - 1

    @model_validator(mode="after")
    def _planner_mode_has_an_entry(self) -> EvalConfig:
        if self.planner_mode == "prompt" and not self.executor.prompt_handler:
            raise ValueError("planner_mode prompt needs eval.executor.prompt_handler (the prompt-mode bfcl-eval entry)")
        return self
