"""The plan-injected arms of an evaluation: the planner, and the oracle and placebo plans of the diagnostic
arms, each a `PlanSource` the benchmark's augmented handler asks for every entry.

The planner arm is the leaderboard handler's own client (`apo_planner.portable.apo_planner.PlannerClient`),
asked through the server the eval stage started, with the settings this module builds from the recipe
(`planner_settings`): the request, prompt, truncation rule, plan check, injected text and cost accounting of
`apo-planner eval` are the ones `apo-planner submission` exports. Its plans are kept per entry for the run,
so the placebo arm can match each plan's length without asking the planner twice; how any plan reaches the
executor (the injection template and position) is the handler's, the same for all three sources.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from apo_planner.evaluation.config import EvalConfig, EvalError, InjectionConfig
from apo_planner.plan import Plan, PlanStep
from apo_planner.prompts import DEFAULT_INJECTION_TEMPLATE, PLANNER_SYSTEM_PROMPT
from apo_planner.templating import environment

if TYPE_CHECKING:
    from apo_planner.portable.apo_planner import PlannerClient, PlannerSettings

PLACEBO_RATIONALE = "a tool of the catalog"
PLAN_SLOT = "{plan}"  # where the handler's injection text takes the plan
_RENDERED = "\x00PLAN\x00"


def injection_text(config: InjectionConfig) -> str:
    """The injection template rendered once, with `{plan}` where the plan goes (the handler fills it in)."""
    path = Path(config.template) if config.template else DEFAULT_INJECTION_TEMPLATE
    text = environment().from_string(path.read_text(encoding="utf-8")).render(plan=_RENDERED).strip()
    if text.count(_RENDERED) != 1 or PLAN_SLOT in text:
        raise EvalError(
            f"eval.injection.template {path}: use {{{{ plan }}}} exactly once, as it is (the leaderboard handler puts "
            f"the plan's text there), and no literal {PLAN_SLOT}"
        )
    return text.replace(_RENDERED, PLAN_SLOT)


def planner_settings(config: EvalConfig, model: str | None = None, revision: str | None = None) -> PlannerSettings:
    """The handler's settings for this recipe: its planner (served as `model`, the recipe's by default), the
    system prompt training used, the injection, the decoding bounds and the coverage gate."""
    from apo_planner.portable.apo_planner import PlannerSettings

    p = config.planner
    return PlannerSettings(
        model=model or p.model,
        revision=revision or p.revision,
        system_prompt=PLANNER_SYSTEM_PROMPT,
        injection=injection_text(config.injection),
        injection_position=config.injection.position,
        max_new_tokens=p.max_new_tokens,
        limits=p.grammar_limits(),
        send_grammar=p.send_grammar,
        timeout_s=p.timeout_s,
        max_retries=p.max_retries,
        min_planned=config.min_planned,
    )


def _no_plan(reason: str) -> dict[str, Any]:
    return {"plan": None, "fallback": reason, "prompt_tokens": 0, "completion_tokens": 0, "latency": 0.0, "steps": 0}


class PlannerRuntime:
    """The planner arm: the handler's client on the planner's server (`base_url`, set once it is up), shared by
    the benchmark's worker threads, each entry's answer kept for the run (the placebo arm reads it too)."""

    def __init__(self, settings: PlannerSettings, base_url: str | None = None, api_key: str = "EMPTY") -> None:
        self.settings = settings
        self.base_url = base_url
        self.api_key = api_key
        self._client: PlannerClient | None = None
        self._plans: dict[str, dict[str, Any]] = {}  # entry id -> what plan_for returned, this run
        self._lock = threading.Lock()

    @property
    def client(self) -> PlannerClient:
        with self._lock:
            if self._client is None:
                if self.base_url is None:
                    raise EvalError("the planner arm has no server: eval.planner.server")
                from apo_planner.portable.apo_planner import PlannerClient

                self._client = PlannerClient(self.settings, self.base_url, api_key=self.api_key)
            return self._client

    def inject(self, test_entry: dict[str, Any], plan: str) -> dict[str, Any]:
        """A copy of the entry with `plan` where the handler puts it (for benchmarks with their own handler)."""
        from apo_planner.portable.apo_planner import inject

        return inject(test_entry, plan, self.settings)

    def probe(self) -> None:
        """The handler's probe, before the first entry: a planner that refuses stops the run in one line."""
        from apo_planner.portable.apo_planner import PlannerUnavailable

        try:
            self.client.probe()
        except PlannerUnavailable as exc:
            raise EvalError(f"eval.planner: {exc}") from None

    def reset(self) -> None:
        """Forget this run's plans (a repeat plans again)."""
        with self._lock:
            self._plans.clear()

    def plan_for(self, test_entry: dict[str, Any]) -> dict[str, Any]:
        """The handler's answer for one entry, asked once per entry and run."""
        key = str(test_entry.get("id", ""))
        with self._lock:
            if key and key in self._plans:
                return self._plans[key]
        info = self.client.plan_for(test_entry)
        if key:
            with self._lock:
                info = self._plans.setdefault(key, info)
        return info


class OraclePlans:
    """The oracle arm's plans: each entry's ground-truth calls (from the benchmark), injected as the planner's
    would be. What the executor scores with them is the ceiling of plan injection for this executor."""

    def __init__(self, oracle_plan: Any, settings: PlannerSettings) -> None:
        self._oracle_plan = oracle_plan  # Benchmark.oracle_plan
        self.settings = settings

    def inject(self, test_entry: dict[str, Any], plan: str) -> dict[str, Any]:
        from apo_planner.portable.apo_planner import inject

        return inject(test_entry, plan, self.settings)

    def plan_for(self, test_entry: dict[str, Any]) -> dict[str, Any]:
        plan = self._oracle_plan(test_entry)
        if plan is None:
            return _no_plan("no_oracle_plan: the benchmark has no ground-truth calls for this entry")
        return {**_no_plan(""), "plan": plan.to_text(), "fallback": None, "steps": len(plan)}


def placebo_plan(tools: list[dict[str, Any]], steps: int) -> Plan | None:
    """A plan of `steps` steps that says nothing about the entry: the catalog's tools in catalog order (again
    from the first when the plan is longer than the catalog), no arguments, the same rationale on every step."""
    names = [t["function"]["name"] for t in tools]
    if not names or steps < 1:
        return None
    return Plan(steps=[PlanStep(tool=names[i % len(names)], rationale=PLACEBO_RATIONALE) for i in range(steps)])


class PlaceboPlans:
    """The placebo arm's plans: for each entry, a plan as long as the planner's (`placebo_plan`), injected the
    same way; an entry the planner had no plan for gets none either. It measures what the longer prompt does
    by itself. The planner's answers are kept for the run; an entry whose planner-arm result was resumed from
    disk is planned again (the same plan under greedy decoding)."""

    def __init__(self, planner: PlannerRuntime) -> None:
        self._planner = planner
        self.settings = planner.settings

    def inject(self, test_entry: dict[str, Any], plan: str) -> dict[str, Any]:
        return self._planner.inject(test_entry, plan)

    def plan_for(self, test_entry: dict[str, Any]) -> dict[str, Any]:
        from apo_planner.portable.apo_planner import entry_request

        planned = self._planner.plan_for(test_entry)
        if not planned.get("plan"):
            return _no_plan("no_planner_plan: the planner arm had no plan for this entry")
        _, tools = entry_request(test_entry)
        plan = placebo_plan(tools, int(planned.get("steps") or 1))
        if plan is None:
            return _no_plan("no_usable_tool: the entry has no tools")
        return {**_no_plan(""), "plan": plan.to_text(), "fallback": None, "steps": len(plan)}
