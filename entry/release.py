"""`apo-planner release`: build -> train -> merge -> eval -> cards/stage -> (push).

Each stage is keyed by the fingerprint of its inputs (its recipe section and the artifacts it
reads). A stage whose key matches the last successful run and whose outputs exist is skipped, so
a re-run after a finished release does no work twice and a failed one resumes where it stopped
(each repo's push counts as done only once it is uploaded and tagged).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from entry.recipe import Recipe


def _sha(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def _files_sha(paths: Iterable[Path]) -> str:
    """Content key of some files (streamed: an adapter can be hundreds of MB); a missing one counts as empty."""
    digest = hashlib.sha256()
    for path in sorted(paths):
        digest.update(path.as_posix().encode())
        if path.is_file():
            with path.open("rb") as f:
                digest.update(hashlib.file_digest(f, "sha256").digest())
    return digest.hexdigest()


@dataclass
class ReleaseState:
    path: Path
    keys: dict[str, str] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path) -> ReleaseState:
        return cls(path, json.loads(path.read_text()) if path.is_file() else {})

    def fresh(self, stage: str, key: str, outputs: list[Path]) -> bool:
        return self.keys.get(stage) == key and all(p.exists() for p in outputs)

    def done(self, stage: str, key: str) -> None:
        self.keys[stage] = key
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(json.dumps(self.keys, indent=2) + "\n")


@dataclass
class ReleaseSummary:
    ran: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    artifacts: dict[str, str] = field(default_factory=dict)


def run_release(recipe: Recipe, push: bool = False, log: Callable[[str], None] = print) -> ReleaseSummary:
    from builders.sources import content_hash, local_files

    state = ReleaseState.load(Path(recipe.release.output) / ".release_state.json")
    summary = ReleaseSummary()
    rc = recipe.release
    if push:
        from cards.hub import HubPusher

        pusher = HubPusher.from_config(rc.push, log=log)
        pusher.check_ready()  # no token or offline: say so before hours of training, not after

    def stage(name: str, key: str, outputs: list[Path], run: Callable[[], None]) -> None:
        if state.fresh(name, key, outputs):
            summary.skipped.append(name)
            log(f"release: {name} is up to date (inputs unchanged), skipped")
            return
        run()
        state.done(name, key)
        summary.ran.append(name)

    b = recipe.build
    dataset_dir = Path(b.output)
    local = local_files(b.source)
    build_key = _sha(b.model_dump(mode="json"), content_hash(local) if local else b.revision)

    def do_build() -> None:
        from builders.build import build
        from builders.report import print_build_stats

        result = build(b)
        print_build_stats(result.stats, result.output)

    stage("build", build_key, [dataset_dir / "stats.json"], do_build)
    dataset_fp = json.loads((dataset_dir / "stats.json").read_text())["fingerprint"]

    train_config = recipe.train.model_copy(update={"dataset": str(dataset_dir)})  # train on what was built
    train_dir = Path(train_config.output)
    train_key = _sha(train_config.model_dump(mode="json"), dataset_fp)

    def do_train() -> None:
        from training.apo import train

        result = train(train_config, recipe.sha256())
        log(f"trained {result.metrics['steps']} steps -> {result.output / 'adapter'}")

    stage("train", train_key, [train_dir / "adapter" / "adapter_config.json", train_dir / "metrics.json"], do_train)

    merged_dir = train_dir / "merged"
    adapter_dir = train_dir / "adapter"
    merge_key = _sha(train_key, _files_sha(p for p in adapter_dir.iterdir() if p.is_file()))

    def do_merge() -> None:
        from training.merge import merge

        log(f"merged -> {merge(train_config)}")

    stage("merge", merge_key, [merged_dir / "config.json"], do_merge)

    planner = recipe.eval.planner.model_copy(update={"model": str(merged_dir)})  # evaluate what was merged
    eval_config = recipe.eval.model_copy(update={"planner": planner})
    eval_dir = Path(eval_config.output)
    # the merged weights are a function of the adapter: merge_key names them without re-hashing GBs
    eval_key = _sha(eval_config.model_dump(mode="json"), merge_key)

    def do_eval() -> None:
        from evaluation.report import print_comparison
        from evaluation.run import evaluate

        result = evaluate(eval_config)
        print_comparison(result.comparison, result.output)

    stage("eval", eval_key, [eval_dir / "comparison.json"], do_eval)

    staged_dirs = [Path(rc.output) / r for r in (rc.dataset_repo, rc.adapter_repo, rc.model_repo)]
    cards_key = _sha(
        rc.model_dump(mode="json", exclude={"push"}),
        dataset_fp,
        merge_key,
        _files_sha([eval_dir / "comparison.json", train_dir / "metrics.json", merged_dir / "metrics.json"]),
    )

    def do_cards() -> None:
        from cards.stage import stage as stage_repos

        stage_repos(rc, dataset_dir, train_dir, eval_dir)

    stage("cards", cards_key, [d / "README.md" for d in staged_dirs], do_cards)
    summary.artifacts = {
        "dataset": str(dataset_dir),
        "adapter": str(train_dir / "adapter"),
        "merged model": str(merged_dir),
        "BFCL comparison": str(eval_dir / "comparison.md"),
        **{
            f"staged {kind}": str(d)
            for kind, d in zip(("dataset repo", "adapter repo", "model repo"), staged_dirs, strict=True)
        },
    }
    if push:
        from huggingface_hub import constants

        from cards.hub import repo_url
        from cards.stage import StagedRelease, targets

        for kind, (folder, repo_id, repo_type) in targets(rc, StagedRelease(*staged_dirs)).items():

            def do_push(folder: Path = folder, repo_id: str = repo_id, repo_type: str = repo_type) -> None:
                pusher.push_folder(folder, repo_id, repo_type=repo_type, version=b.version, private=rc.push.private)

            # keyed per repo: a re-run after a failed push redoes only the repos not yet pushed
            key = _sha(cards_key, b.version, constants.ENDPOINT, repo_id, repo_type)
            stage(f"push {kind}", key, [], do_push)
            summary.artifacts[f"pushed {kind}"] = repo_url(repo_id, repo_type, f"v{b.version}")
    return summary
