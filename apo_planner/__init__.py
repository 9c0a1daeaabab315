"""apo-planner: an efficiency-trained tool-calling planner and the toolkit that builds, trains,
evaluates and releases it."""

from apo_planner.plan import Plan, PlanParseError, PlanStep, parse_plan, plan_json_schema, render_plan

__version__ = "0.1.0"

__all__ = [
    "Plan",
    "PlanParseError",
    "PlanStep",
    "__version__",
    "parse_plan",
    "plan_json_schema",
    "render_plan",
]
