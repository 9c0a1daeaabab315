"""Modules that run without apo-planner, copied as they are into other projects.

`apo-planner submission` puts both into a gorilla pull request, in
`bfcl_eval/model_handler/local_inference/`, as they are here but for the settings
the handler pins (`apo_planner.evaluation.submission`); `apo-planner eval` runs its
planner arm through the same handler, so the leaderboard plans, checks and injects
exactly as the evaluation did:

- `apo_planner_grammar`: the plan's text form (the grammar of a tool catalog, the
  canonical text, its parser), standard library only; `apo_planner.plan` and
  `apo_planner.plan_grammar` are built on it;
- `apo_planner`: the planner-augmented BFCL handler and its planner client; it
  imports `bfcl_eval`, `openai`, `overrides` (what every bfcl handler imports for
  `@override`) and the standard library, and its sibling relatively.

Both are formatted with black's defaults (88 columns, as gorilla's code; `ruff.toml`).
"""
