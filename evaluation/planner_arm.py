"""The plan-injected arms of an evaluation: the planner shared by the benchmark's worker threads, the oracle
and placebo plans of the diagnostic arms, and how any plan reaches the executor (the injection template and
position, the same for all three).

Each is a `PlanSource` a benchmark's augmented handler asks for each entry. The planner runs in process
(transformers) or behind the server the eval stage starts; a failure to load is remembered, so every
entry falls back (counted) instead of each retrying the load. Its plans are kept per entry for the run, so
the placebo arm can match each plan's length without asking the planner twice.
"""

from __future__ import annotations

import copy
import threading
from pathlib import Path
from typing import Any

from apo_planner.evaluation.config import InjectionConfig, PlannerRunConfig
from apo_planner.plan import Plan, PlanStep
from apo_planner.prompts import DEFAULT_INJECTION_TEMPLATE
from apo_planner.templating import environment
from apo_planner.tools import normalize_tools

PLACEBO_RATIONALE = "a tool of the catalog"


class Injection:
    """How a plan reaches the executor: the template's text, prepended to the system or the user turn."""

    def __init__(self, config: InjectionConfig) -> None:
        self.config = config
        template_path = Path(config.template) if config.template else DEFAULT_INJECTION_TEMPLATE
        self.template = environment().from_string(template_path.read_text(encoding="utf-8"))

    def inject(self, test_entry: dict[str, Any], plan_text: str) -> dict[str, Any]:
        """A copy of the entry with the rendered plan in its first turn."""
        entry = copy.deepcopy(test_entry)
        text = self.template.render(plan=plan_text).strip()
        first_turn = entry["question"][0]
        if self.config.position == "system":
            if first_turn and first_turn[0].get("role") == "system":
                first_turn[0]["content"] = text + "\n\n" + first_turn[0]["content"]
            else:
                first_turn.insert(0, {"role": "system", "content": text})
        else:
            user = next(m for m in first_turn if m.get("role") == "user")
            user["content"] = text + "\n\n" + user["content"]
        return entry


def entry_request(test_entry: dict[str, Any]) -> tuple[str, list[dict[str, Any]]]:
    """The request and tool catalog of a benchmark entry (its first user turn and its functions)."""
    first_turn = test_entry["question"][0] if test_entry.get("question") else []
    query = next((m.get("content", "") for m in first_turn if m.get("role") == "user"), "")
    return query, normalize_tools(test_entry.get("function", []))


def _no_plan(reason: str) -> dict[str, Any]:
    return {"plan": None, "fallback": reason, "prompt_tokens": 0, "completion_tokens": 0, "latency": 0.0}


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
        self._injection = Injection(injection)
        self.template = self._injection.template
        self._plans: dict[str, dict[str, Any]] = {}  # entry id -> what plan_for returned, this run
        self._plans_lock = threading.Lock()

    def reset(self) -> None:
        """Forget this run's plans (a repeat plans again)."""
        with self._plans_lock:
            self._plans.clear()

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
        """Plan text to inject (or None) and what planning cost, for one benchmark entry; asked once per entry
        and run (the placebo arm reads the same answer)."""
        key = str(test_entry.get("id", ""))
        with self._plans_lock:
            if key and key in self._plans:
                return self._plans[key]
        info = self._plan(test_entry)
        if key:
            with self._plans_lock:
                info = self._plans.setdefault(key, info)
        return info

    def _plan(self, test_entry: dict[str, Any]) -> dict[str, Any]:
        query, tools = entry_request(test_entry)
        try:
            result = self.planner.plan_with_details(query, tools)  # an in-process model queues on its own lock
        except Exception as exc:  # loading failed: every entry falls back, the run goes on
            info = _no_plan(f"planner_error: {type(exc).__name__}: {exc}"[:300])
        else:
            info = {
                "plan": result.plan.to_text() if result.plan else None,
                "fallback": result.error,
                "prompt_tokens": result.prompt_tokens,
                "completion_tokens": result.completion_tokens,
                "latency": round(result.latency_s, 4),
                "steps": len(result.plan) if result.plan else 0,
            }
        return info

    def inject(self, test_entry: dict[str, Any], plan_text: str) -> dict[str, Any]:
        """A copy of the entry with the rendered plan in its first turn."""
        return self._injection.inject(test_entry, plan_text)


class OraclePlans:
    """The oracle arm's plans: each entry's ground-truth calls (from the benchmark), injected as the planner's
    would be. What the executor scores with them is the ceiling of plan injection for this executor."""

    def __init__(self, oracle_plan: Any, injection: InjectionConfig) -> None:
        self._oracle_plan = oracle_plan  # Benchmark.oracle_plan
        self._injection = Injection(injection)

    def plan_for(self, test_entry: dict[str, Any]) -> dict[str, Any]:
        plan = self._oracle_plan(test_entry)
        if plan is None:
            return _no_plan("no_oracle_plan: the benchmark has no ground-truth calls for this entry")
        return {**_no_plan(""), "plan": plan.to_text(), "fallback": None, "steps": len(plan)}

    def inject(self, test_entry: dict[str, Any], plan_text: str) -> dict[str, Any]:
        return self._injection.inject(test_entry, plan_text)


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

    def __init__(self, planner: PlannerRuntime, injection: InjectionConfig) -> None:
        self._planner = planner
        self._injection = Injection(injection)

    def plan_for(self, test_entry: dict[str, Any]) -> dict[str, Any]:
        planned = self._planner.plan_for(test_entry)
        if not planned.get("plan"):
            return _no_plan("no_planner_plan: the planner arm had no plan for this entry")
        _, tools = entry_request(test_entry)
        plan = placebo_plan(tools, int(planned.get("steps") or planned["plan"].count("\n   why:") or 1))
        if plan is None:
            return _no_plan("no_usable_tool: the entry has no tools")
        return {**_no_plan(""), "plan": plan.to_text(), "fallback": None, "steps": len(plan)}

    def inject(self, test_entry: dict[str, Any], plan_text: str) -> dict[str, Any]:
        return self._injection.inject(test_entry, plan_text)
