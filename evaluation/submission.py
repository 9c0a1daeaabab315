"""`apo-planner submission`: a folder for a Berkeley Function Calling Leaderboard pull request.

gorilla's maintainers re-run a submitted model themselves, so a PR carries code and a description, not score
files. The code is the handler `apo-planner eval` ran its planner arm through: `apo_planner.portable`'s two
modules, copied as they are except for the handler's pinned settings (this run's planner at its Hub revision,
decoding bounds, injection) and the executor handler it is combined with; exporting the paper recipe's
settings gives the repository's file byte for byte (a test holds it to that). Beside them: the `ModelConfig`
entry, the `supported_models.py` key and the `SUPPORTED_MODELS.md` row, each with the exact line it goes
after, and a PR description with this run's self-evaluated table, what bfcl's cost column counts, and
reproduction commands that split the devices. What cannot be verified from here is printed as a checklist.
"""

from __future__ import annotations

import json
import os
import re
import unicodedata
from dataclasses import dataclass, fields
from importlib import resources
from pathlib import Path
from typing import Any

from apo_planner import __version__
from apo_planner.artifacts import Comparison, EvalDir
from apo_planner.evaluation.config import EvalConfig, EvalError
from apo_planner.evaluation.planner_arm import planner_settings
from apo_planner.templating import render_file

TEMPLATES = Path(__file__).parent / "templates"
SUPPORTED_TABLE = Path(__file__).parent / "data" / "gorilla_supported_models.md"  # gorilla 6ea57973's table
GORILLA_COMMIT = "6ea57973"  # equals bfcl-eval 2026.3.23, the version apo-planner pins
HANDLER_MODULE = "apo_planner"  # bfcl_eval/model_handler/local_inference/<this>.py
GRAMMAR_MODULE = "apo_planner_grammar"  # its sibling, imported relatively
LOCAL_INFERENCE = "bfcl_eval/model_handler/local_inference"
SETTINGS_START = "# ---- pinned by `apo-planner submission` "
SETTINGS_END = "# ---- end of pinned settings "
EXECUTOR_START = "# ---- the executor "
WIDTH = 88  # black's default, gorilla's style


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


@dataclass(frozen=True)
class Submission:
    folder: Path
    files: list[str]  # what the folder holds, in PR order
    unverified: list[str]  # the checklist: what apo-planner could not verify from here


# --- the handler module -------------------------------------------------------------------------


def _literal(value: Any) -> str:
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)  # a JSON string literal is a Python one, double-quoted
    return repr(value)


def _chunks(text: str, width: int) -> list[str]:
    """`text` cut after spaces into pieces whose literals fit `width` columns."""
    pieces, current = [], ""
    for word in re.split(r"(?<= )", text):
        if current and len(_literal(current + word)) > width:
            pieces.append(current)
            current = ""
        current += word
    return [*pieces, current] if current else pieces


def render_settings(settings: Any) -> str:
    """`SETTINGS = PlannerSettings(...)` as black formats it: one argument per line (a magic trailing comma),
    strings longer than a line as parenthesized implicit concatenations."""
    lines = ["SETTINGS = PlannerSettings("]
    for f in fields(settings):
        value = getattr(settings, f.name)
        if f.name == "limits":
            lines.append("    limits=GrammarLimits(")
            lines += [f"        {g.name}={_literal(getattr(value, g.name))}," for g in fields(value)]
            lines.append("    ),")
        elif isinstance(value, str) and len(f"    {f.name}={_literal(value)},") > WIDTH:
            lines.append(f"    {f.name}=(")
            lines += [f"        {_literal(chunk)}" for chunk in _chunks(value, WIDTH - 8)]
            lines.append("    ),")
        else:
            lines.append(f"    {f.name}={_literal(value)},")
    return "\n".join([*lines, ")"]) + "\n"


def render_executor(base: Any) -> tuple[str, str]:
    """(the import of the executor's handler class, the class combining it with the planner's handler)."""
    handler = base.model_handler
    import_line = f"from {handler.__module__} import {handler.__name__}"
    section = (
        f"class APOPlanner{handler.__name__}(APOPlannerHandler, {handler.__name__}):\n"
        f'    """{base.display_name} behind the APO planner."""\n'
    )
    return import_line, section


def handler_source(settings: Any, base: Any) -> str:
    """The handler module with `settings` pinned, in front of the executor entry `base` (a `ModelConfig`)."""
    source = resources.files("apo_planner.portable").joinpath(f"{HANDLER_MODULE}.py").read_text(encoding="utf-8")
    head, rest = source.split(SETTINGS_START, 1)
    banner, rest = rest.split("\n", 1)
    _, tail = rest.split(SETTINGS_END, 1)
    source = head + SETTINGS_START + banner + "\n" + render_settings(settings) + SETTINGS_END + tail
    import_line, section = render_executor(base)
    body, executor = source.split(EXECUTOR_START, 1)
    banner = executor.split("\n", 1)[0]
    stock = [line for line in body.splitlines() if line.startswith("from bfcl_eval.model_handler.local_inference.")]
    imports = sorted({*(line for line in stock if "base_oss_handler" in line), import_line})
    body = body.replace("\n".join(stock), "\n".join(imports), 1)
    return body + EXECUTOR_START + banner + "\n" + section


def grammar_source() -> str:
    return resources.files("apo_planner.portable").joinpath(f"{GRAMMAR_MODULE}.py").read_text(encoding="utf-8")


# --- where each snippet goes ----------------------------------------------------------------------


def _installed(relative: str) -> list[str]:
    import bfcl_eval

    return (Path(bfcl_eval.__file__).parent / relative).read_text(encoding="utf-8").splitlines()


def _entry_lines(key: str) -> list[str]:
    """The lines of `model_config.py`'s entry for `key`: the line that opens it (`    "key": ModelConfig(`)
    to the `    ),` that closes it."""
    lines = _installed("constants/model_config.py")
    start = lines.index(f"    {json.dumps(key)}: ModelConfig(")
    return lines[start : lines.index("    ),", start) + 1]


def anchors(base: Any, entry: str, display_base: str) -> dict[str, str]:
    """The line after which each snippet goes, as the installed bfcl-eval (and gorilla's SUPPORTED_MODELS.md at
    the commit it equals) has it: the executor handler's import, the executor model's last entry in the map
    and in the list, and the row where the new Base Model sorts."""
    from bfcl_eval.constants.model_config import MODEL_CONFIG_MAPPING, local_inference_model_map

    handler = base.model_handler
    config = _installed("constants/model_config.py")
    at = next(i for i, line in enumerate(config) if line.startswith(f"from {handler.__module__} import"))
    # a parenthesized import spans lines: the anchor is the nearest one-line import above it
    import_line = next(line for line in reversed(config[: at + 1]) if line.startswith("from ") and "(" not in line)
    siblings = [k for k, v in local_inference_model_map.items() if v.model_name == base.model_name] or [entry]
    last = siblings[-1]
    closing = _entry_lines(last)
    listed = [line for line in _installed("constants/supported_models.py") if line.strip().strip(",") in
              {json.dumps(k) for k in siblings}]  # fmt: skip
    rows = [line for line in SUPPORTED_TABLE.read_text(encoding="utf-8").splitlines() if line.startswith("| ")][2:]
    before = [row for row in rows if row.split("|")[1].strip().lower() < display_base.lower()]
    assert MODEL_CONFIG_MAPPING[last] is local_inference_model_map[last]
    return {
        "import": import_line,
        "entry_opening": closing[0],
        "entry_closing": closing[-1],
        "key": listed[-1] if listed else json.dumps(last) + ",",
        "row": before[-1] if before else rows[0],
    }


def _columns(text: str) -> int:
    """How many columns `text` takes in a monospaced editor (an emoji takes two)."""
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def _row(cells: list[str], header: str) -> str:
    """A table row padded to the header's column widths (as the file's own rows are)."""
    widths = [len(c) for c in header.strip("|").split("|")]
    padded = (f" {cell}{' ' * max(w - 2 - _columns(cell), 0)} " for cell, w in zip(cells, widths, strict=True))
    return "|" + "|".join(padded) + "|"


# --- refusals and the checklist -------------------------------------------------------------------


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


def _refuse_uncovered(config: EvalConfig, comparison: Comparison) -> None:
    """A planner-arm number means nothing where the executor mostly ran alone: refused even for a draft."""
    minimum = config.min_planned
    short = {c: v for c, v in comparison.coverage().items() if v.fraction < minimum}
    if short:
        listed = "; ".join(f"{c}: {v}" for c, v in sorted(short.items()))
        raise SubmissionError(
            f"plan coverage below eval.min_planned={minimum} ({listed}): the planner arm's numbers would be the "
            "executor's alone; see the fallback reasons in comparison.md and the result lines' `planner` field"
        )


def check_pinned(pinned: Pinned) -> None:
    """The handler must name a model the leaderboard can download: a Hub id at a fixed revision."""
    if "_" in pinned.name:
        raise SubmissionError(f"eval.submission.name {pinned.name!r}: BFCL model keys cannot contain '_'")
    if pinned.planner_repo.count("/") != 1 or Path(pinned.planner_repo).exists():
        raise SubmissionError(
            f"eval.submission.planner_repo {pinned.planner_repo!r} is not a Hub id (owner/name); push the release "
            "first and name its merged model"
        )


def unverified(pinned: Pinned, comparison: Comparison, config: EvalConfig) -> list[str]:
    """What a maintainer will check that apo-planner could not, from here."""
    from bfcl_eval.constants.category_mapping import ALL_SCORING_CATEGORIES

    items = []
    public = _public(pinned.planner_repo, pinned.planner_revision)
    if public is not True:
        items.append(
            f"the planner {pinned.planner_repo} is public on the Hub at {pinned.planner_revision} ({public}); "
            "CONTRIBUTING.md asks for a publicly accessible model"
        )
    ran = [row["category"] for row in comparison.categories]
    missing = [c for c in ALL_SCORING_CATEGORIES if c not in ran]
    if missing:
        items.append(
            f"the full categories ran: these results cover {len(ran)} ({', '.join(ran)}), the leaderboard scores "
            f"{len(ALL_SCORING_CATEGORIES)}; maintainers run them all (`bfcl generate --test-category all`)"
        )
    if comparison.limit is not None or config.executor.tiny_model:
        items.append("the results are a full run: this is a draft (--allow-partial)")
    items.append(
        "`bfcl generate --backend vllm` starting the planner's vLLM server next to the executor's (CI runs the "
        "handler with --skip-server-setup against CPU servers; no GPU here)"
    )
    return items


def _public(repo: str, revision: str) -> bool | str:
    """True when the Hub says the model is public at the revision, else why it could not tell."""
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false"):
        return "not checked: HF_HUB_OFFLINE is set"
    try:
        from huggingface_hub import model_info

        info = model_info(repo, revision=revision, token=False)
    except Exception as exc:  # not found, gated, private, no network: all say "not verified"
        return f"not verified: {type(exc).__name__}"
    return True if not info.private and not info.gated else "it is private or gated"


# --- the folder -----------------------------------------------------------------------------------


def export(config: EvalConfig, pinned: Pinned, *, allow_partial: bool = False) -> Submission:
    """Write the submission folder from the eval's `comparison.json`."""
    from bfcl_eval.constants.model_config import MODEL_CONFIG_MAPPING

    check_pinned(pinned)
    eval_dir = EvalDir(Path(config.output))
    comparison = eval_dir.comparison()
    if not allow_partial:
        _refuse_partial(config, comparison)
    _refuse_uncovered(config, comparison)
    entry = config.executor.handler if config.planner_mode == "fc" else config.executor.prompt_handler
    base = MODEL_CONFIG_MAPPING[entry]
    settings = planner_settings(config, model=pinned.planner_repo, revision=pinned.planner_revision)
    folder = Path(config.submission.output) if config.submission.output else eval_dir.submission("bfcl")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{HANDLER_MODULE}.py").write_text(handler_source(settings, base), encoding="utf-8")
    (folder / f"{GRAMMAR_MODULE}.py").write_text(grammar_source(), encoding="utf-8")
    mode = "FC" if base.is_fc_model else "Prompt"
    display_base = re.sub(rf"\s*\({mode}\)$", "", pinned.display_name)
    header = next(line for line in SUPPORTED_TABLE.read_text(encoding="utf-8").splitlines() if line.startswith("| "))
    row_type = "Function Calling" if base.is_fc_model else "Prompt"
    values = {
        "pinned": pinned,
        "module": HANDLER_MODULE,
        "grammar_module": GRAMMAR_MODULE,
        "local_inference": LOCAL_INFERENCE,
        "class_name": f"APOPlanner{base.model_handler.__name__}",
        "base": base,
        "executor_entry": entry,
        "settings": settings,
        "anchors": anchors(base, entry, display_base),
        "row": _row([display_base, row_type, "Self-hosted 💻", pinned.name], header),
        "gorilla_commit": GORILLA_COMMIT,
        "comparison": comparison.model_dump(),
        "coverage": comparison.coverage(),
        "categories": ",".join(row["category"] for row in comparison.categories),
        "partial": comparison.limit is not None or config.executor.tiny_model,
        "version": __version__,
    }
    files = [f"{HANDLER_MODULE}.py", f"{GRAMMAR_MODULE}.py"]
    for name in ("model_config_entry.py", "supported_models.py", "SUPPORTED_MODELS.md", "PR_DESCRIPTION.md"):
        (folder / name).write_text(render_file(TEMPLATES / f"submission_{name}.jinja", trim=True, **values))
        files.append(name)
    checklist = unverified(pinned, comparison, config)
    (folder / "README.md").write_text(
        render_file(TEMPLATES / "submission.md.jinja", trim=True, unverified=checklist, files=files, **values)
    )
    (folder / "pinned.json").write_text(json.dumps(pinned.__dict__, indent=2) + "\n")
    return Submission(folder, [*files, "README.md", "pinned.json"], checklist)
