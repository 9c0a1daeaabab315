"""The planner arm of an evaluation: a planner shared by the benchmark's worker threads, and how its plan
reaches the executor (the injection template and position).

It is the `PlanSource` a benchmark's augmented handler asks for each entry. The planner runs in process
(transformers) or behind the server the eval stage starts; a failure to load is remembered, so every
entry falls back (counted) instead of each retrying the load.
"""

from __future__ import annotations

import copy
import threading
from pathlib import Path
from typing import Any

from apo_planner.evaluation.config import EvalError, InjectionConfig, PlannerRunConfig
from apo_planner.prompts import DEFAULT_INJECTION_TEMPLATE
from apo_planner.templating import environment
from apo_planner.tools import normalize_tools


class PlannerRuntime:
    """A planner shared by all of bfcl-eval's worker threads, loaded on first use (once: a failed
    load is remembered, so every entry falls back instead of each retrying the load)."""

    def __init__(
        self, config: PlannerRunConfig, injection: InjectionConfig, planner: Any = None, base_url: str | None = None
    ) -> None:
        self.config = config
        self.injection = injection
        self.base_url = base_url or config.server.base_url  # the eval stage sets it once its server is up
        self._planner = planner
        self._load_lock = threading.Lock()
        self._generate_lock = threading.Lock() if config.backend == "transformers" else None
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

                    c = self.config
                    if c.backend == "openai":
                        if not self.base_url:
                            raise EvalError("the planner's server has no base_url (eval.planner.server)")
                        self._planner = Planner.from_endpoint(
                            self.base_url,
                            c.model,
                            tokenizer=c.tokenizer,
                            timeout_s=c.timeout_s,
                            max_new_tokens=c.max_new_tokens,
                            constrained=c.constrained,
                            limits=c.grammar_limits(),
                            send_grammar=c.send_grammar,
                        )
                    else:
                        self._planner = Planner.from_pretrained(
                            c.model,
                            max_new_tokens=c.max_new_tokens,
                            constrained=c.constrained,
                            limits=c.grammar_limits(),
                        )
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
            planner = self.planner
            if self._generate_lock is not None:
                with self._generate_lock:
                    result = planner.plan_with_details(query, tools)
            else:
                result = planner.plan_with_details(query, tools)
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
