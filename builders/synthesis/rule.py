"""The deterministic synthesizer: removes what is redundant by construction, no model needed.

Rules, applied in call order:
- ``retried_failure``: a failed call that a later call to the same tool retried;
- ``repeated_verification``: a read-only call (its MCP `readOnlyHint` says so, or, without annotations,
  its name starts with a verification verb) repeating an earlier kept call's exact arguments;
- ``exact_duplicate``: any other call repeating an earlier kept call's tool, arguments and result.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter

import orjson

from apo_planner.builders.config import RuleConfig
from apo_planner.builders.records import Trajectory
from apo_planner.builders.synthesis.selection import KeptCall, Selection, infer_dependencies, short_rationale
from apo_planner.tools import read_only_hints

BACKEND = "rule"


class RuleSynthesizer:
    """Selections by the rules above; deterministic, no model, nothing to prepare."""

    name = "rule"
    backend = BACKEND

    def __init__(self, config: RuleConfig) -> None:
        self.config = config
        prefixes = "|".join(re.escape(p) for p in sorted(config.verification_prefixes, key=len, reverse=True))
        # a verb prefix followed by a word boundary in snake, kebab, dotted or camel case
        self._read_only = re.compile(rf"^(?i:{prefixes})(?:$|[_.\-]|(?<=[a-z])(?=[A-Z]))")
        self.stats: Counter[str] = Counter()  # rules cost nothing worth counting
        self.failures: list[str] = []  # nor can they fail a request
        self.throughput = None  # nor send one

    @property
    def provenance(self) -> dict[str, str]:
        rules = json.dumps(self.config.model_dump(mode="json"), sort_keys=True)
        return {
            "synthesizer_model": "rule",
            "synthesizer_revision": "",
            "synthesizer_backend": BACKEND,
            "template_sha256": hashlib.sha256(rules.encode()).hexdigest(),
            "sampling_params": "{}",
        }

    def is_read_only(self, tool: str, hints: dict[str, bool] | None = None) -> bool:
        """What the catalog's MCP annotations say (`apo_planner.tools.read_only_hints`), else the name."""
        if hints and tool in hints:
            return hints[tool]
        return bool(self._read_only.match(tool.rsplit(".", 1)[-1]))

    def prepare(self, abstracted: object) -> None:
        """Nothing to precompute: rules are cheap and run at selection time."""

    def close(self) -> None:
        pass

    def select(self, trajectory: Trajectory, payload: bytes | None = None) -> Selection:
        """The rules in call order; `payload` is unused (rules read the trajectory). The caller validates,
        so a trajectory with nothing redundant is rejected there as `no_redundancy`."""
        actions = trajectory.actions
        removed: dict[int, str] = {}
        for i, action in enumerate(actions):
            if action.failed and any(later.tool == action.tool for later in actions[i + 1 :]):
                removed[i] = "retried_failure"
        seen: dict[bytes, int] = {}
        hints = read_only_hints(trajectory.tools)
        for i, action in enumerate(actions):
            if i in removed:
                continue
            key = action.tool.encode() + b"\0" + orjson.dumps(action.arguments, option=orjson.OPT_SORT_KEYS)
            earlier = seen.get(key)
            if earlier is None:
                seen[key] = i
            elif self.is_read_only(action.tool, hints):
                removed[i] = "repeated_verification"
            elif action.result is None or action.result == actions[earlier].result:
                removed[i] = "exact_duplicate"
        deps = infer_dependencies(actions)
        kept_set = [i for i in range(len(actions)) if i not in removed]
        kept = tuple(
            KeptCall(
                index=i,
                rationale=short_rationale(actions[i].rationale, self.config.rationale_max_chars),
                depends_on=tuple(d for d in deps[i] if d not in removed),
            )
            for i in kept_set
        )
        return Selection(kept=kept, removed=removed)
