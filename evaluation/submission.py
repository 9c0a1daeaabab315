"""`apo-planner submission`: a folder for a Berkeley Function Calling Leaderboard pull request.

gorilla's maintainers re-run a submitted model themselves, so a PR carries code and a description, not
score files: one handler module that imports only `bfcl_eval` and `openai` (every bfcl handler is
imported by `model_config.py`, so an import that fails there breaks all of bfcl), the `ModelConfig`
entry, the `supported_models.py` key and the `SUPPORTED_MODELS.md` row, and a PR description with this
run's self-evaluated table and steps that work with the ports bfcl expects. The handler is generated
from this package's own catalog normalisation and plan grammar (their source is copied in), so what
the leaderboard runs decodes plans exactly as `apo-planner eval` did.
"""

from __future__ import annotations

import inspect
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from apo_planner import __version__
from apo_planner.artifacts import Comparison, EvalDir
from apo_planner.evaluation.config import EvalConfig, EvalError
from apo_planner.generation import Sampling, sampling_fields
from apo_planner.plan import TOOL_NAME_PATTERN, is_valid_tool_name
from apo_planner.prompts import DEFAULT_INJECTION_TEMPLATE, PLANNER_SYSTEM_PROMPT
from apo_planner.templating import environment, render_file
from apo_planner.tools import normalize_tool, normalize_tools

TEMPLATES = Path(__file__).parent / "templates"
HANDLER_MODULE = "apo_planner_handler"  # bfcl_eval/model_handler/local_inference/<this>.py
PLAN_SLOT = "\x00PLAN\x00"


class SubmissionError(EvalError):
    """The run cannot be submitted as it is; the message says why and what to do."""


@dataclass(frozen=True)
class Pinned:
    """What the handler and the leaderboard entry name, all resolved (the entry layer fills recipe defaults)."""

    name: str
    display_name: str
    planner_repo: str
    planner_revision: str
    org: str
    url: str
    license: str
    planner_port: int


def _grammar_source() -> str:
    """`apo_planner.plan_grammar` as code that needs nothing of apo-planner: its own source, with the
    tool-name check it imports written in beside it."""
    from apo_planner import plan_grammar

    source = inspect.getsource(plan_grammar)
    source = source.split('"""', 2)[2]  # without the module docstring
    source = re.sub(r"^from __future__ import annotations\n", "", source, flags=re.M)
    source = source.replace(
        "from apo_planner.plan import is_valid_tool_name\n",
        f"TOOL_NAME_PATTERN = {TOOL_NAME_PATTERN!r}\n_TOOL_NAME_RE = re.compile(TOOL_NAME_PATTERN)\n\n\n"
        + inspect.getsource(is_valid_tool_name),
    )
    if "apo_planner" in source:
        raise RuntimeError("plan_grammar imports more of apo_planner than the exporter copies")
    # its imports are the handler template's own (hashlib, json, re, dataclass, Any), at the module's top
    return re.sub(r"^(?:import|from) .*\n", "", source, flags=re.M).strip() + "\n"


def _tools_source() -> str:
    return "\n\n".join(inspect.getsource(f) for f in (normalize_tool, normalize_tools))


def handler_source(config: EvalConfig, pinned: Pinned, base: Any) -> str:
    """The self-contained handler module for the executor entry the planner arm ran on."""
    template = Path(config.injection.template) if config.injection.template else DEFAULT_INJECTION_TEMPLATE
    injection = environment().from_string(template.read_text(encoding="utf-8")).render(plan=PLAN_SLOT).strip()
    handler = base.model_handler
    limits = config.planner.grammar_limits()
    return render_file(
        TEMPLATES / "bfcl_handler.py.jinja",
        display_name=pinned.display_name,
        executor_display=base.display_name,
        planner_repo=pinned.planner_repo,
        planner_revision=pinned.planner_revision,
        planner_port=pinned.planner_port,
        base_module=handler.__module__,
        base_class=handler.__name__,
        class_name=f"APOPlanner{handler.__name__}",
        timeout_s=getattr(config.planner, "timeout_s", 120.0),
        max_new_tokens=config.planner.max_new_tokens,
        # every sampling field of the planner's (greedy) request, so no server default applies
        sampling=repr(sampling_fields(Sampling(max_tokens=config.planner.max_new_tokens), "vllm", "chat")),
        system_prompt=PLANNER_SYSTEM_PROMPT,
        injection_position=config.injection.position,
        injection=injection,
        vendored=_grammar_source() + "\n\n" + _tools_source(),
        limits=limits.__dict__,
        version=__version__,
    )


def _refuse_partial(config: EvalConfig, comparison: Comparison) -> None:
    if comparison.limit is not None:
        raise SubmissionError(
            f"{EvalDir(Path(config.output)).comparison_file} covers the first {comparison.limit} entries of each "
            "category (eval.limit): a leaderboard row is the full run; rerun `apo-planner eval` without eval.limit, "
            "or pass --allow-partial for a draft"
        )
    if config.executor.tiny_model:
        raise SubmissionError(
            "eval.executor.tiny_model is set: these are smoke results of a tiny random executor, not the "
            "leaderboard's model; run the paper recipe, or pass --allow-partial for a draft"
        )


def export(config: EvalConfig, pinned: Pinned, *, allow_partial: bool = False) -> Path:
    """Write the submission folder from the eval's `comparison.json`; returns the folder."""
    from bfcl_eval.constants.model_config import MODEL_CONFIG_MAPPING

    if "_" in pinned.name:
        raise SubmissionError(f"eval.submission.name {pinned.name!r}: BFCL model keys cannot contain '_'")
    check_pinned(pinned)
    eval_dir = EvalDir(Path(config.output))
    comparison = eval_dir.comparison()
    if not allow_partial:
        _refuse_partial(config, comparison)
    entry = config.executor.handler if config.planner_mode == "fc" else config.executor.prompt_handler
    base = MODEL_CONFIG_MAPPING[entry]
    folder = Path(config.submission.output) if config.submission.output else eval_dir.submission("bfcl")
    folder.mkdir(parents=True, exist_ok=True)
    source = handler_source(config, pinned, base)
    (folder / f"{HANDLER_MODULE}.py").write_text(source, encoding="utf-8")
    values = {
        "pinned": pinned,
        "module": HANDLER_MODULE,
        "class_name": f"APOPlanner{base.model_handler.__name__}",
        "base": base,
        "executor_entry": entry,
        "comparison": comparison.model_dump(),
        "coverage": comparison.coverage(),
        "categories": ",".join(row["category"] for row in comparison.categories),
        "partial": comparison.limit is not None or config.executor.tiny_model,
        "version": __version__,
    }
    for name in ("model_config_entry.py", "supported_models.py", "SUPPORTED_MODELS.md", "PR_DESCRIPTION.md"):
        (folder / name).write_text(render_file(TEMPLATES / f"submission_{name}.jinja", trim=True, **values))
    (folder / "README.md").write_text(render_file(TEMPLATES / "submission.md.jinja", trim=True, **values))
    (folder / "pinned.json").write_text(json.dumps(pinned.__dict__, indent=2) + "\n")
    return folder


def check_pinned(pinned: Pinned) -> None:
    """The handler must name a model the leaderboard can download: a Hub id at a fixed revision."""
    if pinned.planner_repo.count("/") != 1 or Path(pinned.planner_repo).exists():
        raise SubmissionError(
            f"eval.submission.planner_repo {pinned.planner_repo!r} is not a Hub id (owner/name); push the release "
            "first and name its merged model"
        )
