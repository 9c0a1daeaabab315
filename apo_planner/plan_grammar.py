"""The plan text's grammar for one tool catalog: what a constrained planner can possibly write.

Every sentence of the grammar is a canonical plan (`apo_planner.plan.render_plan`) that `parse_plan` reads
back and that names only the catalog's tools; the bounds (`GrammarLimits`) make every plan end within a known
budget. The same EBNF text drives xgrammar in process, vLLM's `structured_outputs.grammar` and the BFCL
handler a leaderboard submission ships: it is built by `apo_planner.portable.apo_planner_grammar`, standard
library code that travels with that handler.
"""

from __future__ import annotations

from apo_planner.portable.apo_planner_grammar import GrammarLimits, grammar_key, plan_grammar

__all__ = ["GrammarLimits", "grammar_key", "plan_grammar"]
