"""`apo-planner release`: build -> train -> merge -> eval -> cards -> (push), as a table of stages.

Each stage is declared once: its name, the key of its inputs (its recipe section and the artifacts
it reads), the outputs its own module says it produces, how to tell they are complete, and how to
run it. A stage whose key matches the last successful run and whose artifact verifies (read through
its typed reader, not one file's existence) is skipped, so a re-run after a finished release does no
work twice and a failed one resumes where it stopped (each repo's push counts as done only once it is
uploaded and tagged). Training is keyed by its run key (`apo_planner.training.resume`): the rule
that decides whether `train` resumes decides whether the release retrains. Stages hand each other
folders on disk (`apo_planner.artifacts`), never objects, so any of them can also run alone through
its own subcommand.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property, partial
from pathlib import Path
from typing import Any

from apo_planner.artifacts import DatasetDir, EvalDir, PlanCoverage, TrainDir, sha256_files, write_json
from apo_planner.entry.recipe import Recipe
from apo_planner.errors import UserError
from apo_planner.evaluation.config import GATE_KEYS as EVAL_GATES
from apo_planner.locks import output_lock

_info = logging.getLogger(__name__).info  # progress lines; `-v` / `--log-level` set the level


def _sha(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


class ReleaseStopped(UserError):
    """A stage's result must not be published; nothing after it ran (no cards, no push)."""


@dataclass(frozen=True)
class Stage:
    """One row of the release table. `key` is computed when the stage's turn comes, after every
    stage before it has run, because it hashes what they wrote. `gate` runs after the stage (run or
    skipped) and stops the release when its result must not be published."""

    name: str
    key: Callable[[], str]
    outputs: list[Path]
    run: Callable[[], None]
    gate: Callable[[], None] | None = None
    complete: Callable[[], bool] | None = None  # the artifact verifies; default: every output exists

    def finished(self) -> bool:
        return self.complete() if self.complete is not None else all(p.exists() for p in self.outputs)


@dataclass
class ReleaseState:
    """The key of each stage's last successful run, kept beside the staged repos."""

    path: Path
    keys: dict[str, str] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path) -> ReleaseState:
        return cls(path, json.loads(path.read_text()) if path.is_file() else {})

    def fresh(self, stage: Stage, key: str) -> bool:
        return self.keys.get(stage.name) == key and stage.finished()

    def done(self, stage: str, key: str) -> None:
        self.keys[stage] = key
        write_json(self.path, self.keys)


@dataclass
class ReleaseSummary:
    ran: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    artifacts: dict[str, str] = field(default_factory=dict)
    coverage: dict[str, PlanCoverage] = field(default_factory=dict)  # category -> entries planned
    overlong: str = ""  # training pairs dropped for exceeding train.max_length
    plan_generation: dict[str, str] = field(default_factory=dict)  # metric -> "base -> merged (delta [95% CI])"
    differences: list[str] = field(default_factory=list)  # the planner against each baseline, pooled: sentences


class Release:
    """The release of one recipe: where each stage reads and writes, and the table of its stages.

    Downstream stages are pointed at what upstream stages wrote (training reads the dataset just
    built, evaluation plans with the model just merged), whatever the recipe says for standalone runs.
    """

    def __init__(self, recipe: Recipe, pusher: Any = None, log: Callable[[str], None] = _info) -> None:
        from apo_planner.cards.stage import staged_folders

        self.recipe = recipe
        self.pusher = pusher
        self.log = log
        self.dataset = DatasetDir(Path(recipe.build.output))
        p = recipe.eval.planner  # the held-out plan metric decodes exactly as the evaluated planner does
        decoding = {"max_new_tokens": p.max_new_tokens, "constrained": p.constrained, "max_steps": p.max_steps}
        decoding |= {"max_rationale_chars": p.max_rationale_chars, "max_value_chars": p.max_value_chars}
        plan_eval = recipe.train.plan_eval.model_copy(update={**decoding, "max_items": p.max_items})
        self.train_config = recipe.train.model_copy(update={"dataset": str(self.dataset.root), "plan_eval": plan_eval})
        self.train = TrainDir(Path(self.train_config.output))
        planner = recipe.eval.planner.model_copy(update={"model": str(self.train.merged)})
        self.eval_config = recipe.eval.model_copy(update={"planner": planner})
        self.eval = EvalDir(Path(self.eval_config.output))
        self.staged = staged_folders(recipe.release)

    def check(self, push: bool) -> None:
        """`apo-planner check` before the first stage: what would fail hours in, refused now, all at once."""
        from apo_planner.entry.check import run_checks

        report = run_checks(self.recipe, push=push)
        if not report.ok:
            listed = "; ".join(report.problems)
            raise ReleaseStopped(
                f"check found {len(report.problems)} problem(s), nothing ran: {listed} "
                f"(`apo-planner check --recipe ...` repeats the check)"
            )

    def stages(self) -> list[Stage]:
        from apo_planner.builders.build import outputs as build_outputs
        from apo_planner.cards.stage import outputs as cards_outputs
        from apo_planner.evaluation.run import outputs as eval_outputs
        from apo_planner.training.apo import outputs as train_outputs
        from apo_planner.training.merge import outputs as merge_outputs

        train, evaluation, staged = self.train_config, self.eval_config, self.staged
        table = [
            Stage("build", lambda: self.build_key, build_outputs(self.recipe.build), self.run_build,
                  complete=self.dataset.complete),
            Stage("train", lambda: self.train_key, train_outputs(train), self.run_train, self.gate_overlong,
                  complete=lambda: self.train.finished(self.train_key)),
            Stage("merge", lambda: self.merge_key, merge_outputs(train), self.run_merge,
                  complete=self.train.merged_complete),
            Stage("eval", lambda: self.eval_key, eval_outputs(evaluation), self.run_eval, self.gate_coverage,
                  complete=self.eval.complete),
            Stage("cards", lambda: self.cards_key, cards_outputs(self.recipe.release), self.run_cards,
                  complete=lambda: all((f / "README.md").is_file() for f in (staged.dataset, staged.adapter,
                                                                             staged.model))),
        ]  # fmt: skip
        if self.pusher is not None:
            for kind, (folder, repo_id, repo_type) in self.push_targets().items():
                # keyed per repo: a re-run after a failed push redoes only the repos not yet pushed
                key = partial(self.push_key, repo_id, repo_type)
                table.append(Stage(f"push {kind}", key, [], partial(self.run_push, folder, repo_id, repo_type)))
        return table

    # --- gates: what must hold before anything is published ----------------------------------

    def overlong(self) -> tuple[int, int]:
        """(pairs dropped for exceeding train.max_length, pairs measured), over every split."""
        lengths = self.train.metrics().model_dump().get("lengths", {})
        splits = [v for v in lengths.values() if isinstance(v, dict) and "pairs" in v]
        return sum(s["over_max_length"] for s in splits), sum(s["pairs"] for s in splits)

    def gate_overlong(self) -> None:
        dropped, pairs = self.overlong()
        limit = self.train_config.max_overlong_fraction
        if pairs and dropped / pairs > limit:
            raise ReleaseStopped(
                f"training dropped {dropped} of {pairs} pairs as longer than train.max_length="
                f"{self.train_config.max_length} ({dropped / pairs:.1%} > train.max_overlong_fraction={limit}); "
                "raise max_length (metrics.json lengths has the distribution) or the threshold"
            )

    def gate_coverage(self) -> None:
        """A planner-arm number is published only when the executor really saw plans."""
        minimum = self.eval_config.min_planned
        short = {c: v for c, v in self.eval.comparison().coverage().items() if v.fraction < minimum}
        if short:
            listed = "; ".join(f"{c}: {v}" for c, v in sorted(short.items()))
            raise ReleaseStopped(
                f"plan coverage below eval.min_planned={minimum} ({listed}); the planner arm would report the "
                f"executor alone. See {self.eval.comparison_markdown} and the planner's fallback reasons"
            )

    # --- input keys ---------------------------------------------------------------------------

    @cached_property
    def build_key(self) -> str:
        from apo_planner.builders.sources import content_hash, local_files

        b = self.recipe.build
        local = local_files(b.source)
        return _sha(b.model_dump(mode="json"), content_hash(local) if local else b.revision)

    @cached_property
    def train_key(self) -> str:
        """The training run key: dataset fingerprint, base model, the settings that decide the weights (a gate
        re-checks, never re-runs)."""
        from apo_planner.training.launch import pinned_run_key

        return pinned_run_key(self.train_config).key

    @cached_property
    def merge_key(self) -> str:
        from apo_planner.training.resume import MERGE_KEYS

        adapter_files = sorted(p for p in self.train.adapter.iterdir() if p.is_file())
        measured = self.train_config.model_dump(mode="json", include=MERGE_KEYS)  # what merge measures, and how
        return _sha(self.train_key, sha256_files(adapter_files, names=True), measured)

    @cached_property
    def eval_key(self) -> str:
        # the merged weights are a function of the adapter: merge_key names them without re-hashing GBs
        return _sha(self.eval_config.model_dump(mode="json", exclude=EVAL_GATES), self.merge_key)

    @cached_property
    def cards_key(self) -> str:
        reports = [self.eval.comparison_file, self.train.metrics_file, self.train.merged / self.train.metrics_file.name]
        return _sha(
            self.recipe.release.model_dump(mode="json", exclude={"push"}),
            self.dataset.stats().fingerprint,
            self.merge_key,
            sha256_files(sorted(reports), names=True),
        )

    def push_key(self, repo_id: str, repo_type: str) -> str:
        from huggingface_hub import constants

        return _sha(self.cards_key, self.recipe.build.version, constants.ENDPOINT, repo_id, repo_type)

    # --- runs ---------------------------------------------------------------------------------

    def run_build(self) -> None:
        from apo_planner.builders.build import build
        from apo_planner.builders.report import print_build_stats

        result = build(self.recipe.build)
        print_build_stats(result.stats, result.output)

    def run_train(self) -> None:
        from apo_planner.training.launch import launch

        run = launch(self.train_config, self.recipe.sha256())
        self.log(f"trained {run.metrics().steps} steps -> {run.adapter}")

    def run_merge(self) -> None:
        from apo_planner.training.merge import merge

        self.log(f"merged -> {merge(self.train_config)}")

    def run_eval(self) -> None:
        from apo_planner.evaluation.report import print_comparison
        from apo_planner.evaluation.run import evaluate

        result = evaluate(self.eval_config)
        print_comparison(result.comparison, result.output)

    def run_cards(self) -> None:
        from apo_planner.cards.stage import stage

        stage(self.recipe.release, self.dataset, self.train, self.eval, self.recipe.model_dump(mode="json"))

    def push_targets(self) -> dict[str, tuple[Path, str, str]]:
        from apo_planner.cards.stage import targets

        return targets(self.recipe.release, self.staged)

    def run_push(self, folder: Path, repo_id: str, repo_type: str) -> None:
        rc = self.recipe.release
        self.pusher.push_folder(
            folder, repo_id, repo_type=repo_type, version=self.recipe.build.version, private=rc.push.private
        )

    # --- what a person reads afterwards -------------------------------------------------------

    def learned(self) -> tuple[dict[str, str], list[str]]:
        """What the planner learned on the held-out prompts (base -> merged, paired intervals), and the planner
        against each executor-alone arm pooled over the categories (each difference's sentence)."""
        generation = self.train.metrics().plan_generation
        lines = {}
        for m in generation.metrics if generation else []:
            lines[m.name] = f"{m.base} -> {m.merged} (Δ {m.delta.signed()}, 95% CI, {generation.prompts} prompts)"
        comparison = self.eval.comparison()
        sentences = [
            p.sentence for b in comparison.baselines() if (p := comparison.pair("planner", b, "pooled")) is not None
        ]
        return lines, sentences

    def artifacts(self) -> dict[str, str]:
        found = {
            "dataset": str(self.dataset.root),
            "adapter": str(self.train.adapter),
            "merged model": str(self.train.merged),
            "comparison": str(self.eval.comparison_markdown),
            "staged dataset repo": str(self.staged.dataset),
            "staged adapter repo": str(self.staged.adapter),
            "staged model repo": str(self.staged.model),
        }
        if self.pusher is not None:
            from apo_planner.cards.hub import repo_url

            version = f"v{self.recipe.build.version}"
            for kind, (_, repo_id, repo_type) in self.push_targets().items():
                found[f"pushed {kind}"] = repo_url(repo_id, repo_type, version)
        return found


def run_stages(stages: list[Stage], state: ReleaseState, log: Callable[[str], None] = _info) -> ReleaseSummary:
    """Run the table in order, skipping stages whose inputs are unchanged and outputs present."""
    summary = ReleaseSummary()
    for stage in stages:
        key = stage.key()
        if state.fresh(stage, key):
            summary.skipped.append(stage.name)
            log(f"release: {stage.name} is up to date (inputs unchanged), skipped")
        else:
            stage.run()
            if not stage.finished():
                missing = ", ".join(str(p) for p in stage.outputs) or "its outputs"
                raise ReleaseStopped(f"{stage.name} finished without writing a complete {missing}")
            state.done(stage.name, key)
            summary.ran.append(stage.name)
        if stage.gate is not None:
            try:
                stage.gate()
            except ReleaseStopped as stop:
                raise ReleaseStopped(f"stopped after {stage.name}, before publishing anything: {stop}") from None
    return summary


def run_release(recipe: Recipe, push: bool = False, log: Callable[[str], None] = _info) -> ReleaseSummary:
    pusher = None
    if push:
        from apo_planner.cards.hub import HubPusher

        pusher = HubPusher.from_config(recipe.release.push, log=log)  # token and offline: checked below
    with output_lock(Path(recipe.release.output), "release"):
        return _run_release(recipe, pusher, push, log)


def _run_release(recipe: Recipe, pusher: Any, push: bool, log: Callable[[str], None]) -> ReleaseSummary:
    release = Release(recipe, pusher, log)
    release.check(push)
    state = ReleaseState.load(Path(recipe.release.output) / ".release_state.json")
    summary = run_stages(release.stages(), state, log)
    summary.artifacts = release.artifacts()
    summary.coverage = release.eval.comparison().coverage()
    dropped, pairs = release.overlong()
    summary.overlong = f"{dropped} of {pairs} dropped (train.max_length={release.train_config.max_length})"
    summary.plan_generation, summary.differences = release.learned()
    return summary
