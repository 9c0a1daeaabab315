"""Staging: each Hub repo written locally exactly as it will be pushed, card included.

`release/<dataset-repo>/` loads with `load_dataset`, `release/<model-repo>/` with
`AutoModelForCausalLM.from_pretrained`, `release/<adapter-repo>/` with `PeftModel`; the release's
push stage uploads each of `targets` with `apo_planner.cards.hub.HubPusher` and tags it. Every repo also carries
the resolved recipe (`recipe.yaml`, see `apo_planner.cards.recipe`) and the model repos the training provenance,
so what is found on the Hub can be rebuilt with the one command its card gives.
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from huggingface_hub import get_token
from tqdm.auto import tqdm

from apo_planner.artifacts import RUN_FILE, STATS_FILE, DatasetDir, EvalDir, TrainDir, atomic_dir, read_json, write_json
from apo_planner.cards.config import ReleaseConfig
from apo_planner.cards.recipe import RECIPE_FILE, recipe_yaml, shippable_recipe
from apo_planner.cards.render import changes_file, dataset_card, model_card, version_history
from apo_planner.locks import output_lock

VERSION_HISTORY_FILE = "version_history.json"
# Written by the trainer beside the adapter: a pickle of TrainingArguments (the Hub flags pickles), and every
# value it holds is in training_provenance.json as JSON; and the run key the toolkit resumes by (also there).
NOT_RELEASED = {"training_args.bin", RUN_FILE}


@dataclass
class StagedRelease:
    dataset: Path
    adapter: Path
    model: Path


def _copy(files: dict[Path, Path], repo: str) -> None:
    """Copy source -> destination with a byte progress bar (a merged 4B model is several GB)."""
    total = sum(src.stat().st_size for src in files)
    with tqdm(total=total, desc=f"staging {repo}", unit="B", unit_scale=True, mininterval=1.0) as bar:
        for src, dest in files.items():
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(src, dest)
            bar.update(src.stat().st_size)


def _top_files(folder: Path, dest: Path) -> dict[Path, Path]:
    return {f: dest / f.name for f in sorted(folder.iterdir()) if f.is_file() and f.name not in NOT_RELEASED}


def _previous_history(folder: Path) -> list[dict]:
    path = folder / VERSION_HISTORY_FILE
    return read_json(path, "cards") if path.is_file() else []


def _write_recipe(folder: Path, recipe: dict[str, Any], repo_id: str, version: str) -> None:
    header = (
        f"apo-planner recipe of {repo_id} v{version}: resolved (every default filled in), secrets removed.\n"
        "Run it from an apo-planner checkout; README.md gives the command."
    )
    (folder / RECIPE_FILE).write_text(recipe_yaml(recipe, header), encoding="utf-8")


def staged_folders(config: ReleaseConfig) -> StagedRelease:
    """Where each repo is staged: `release.output/<repo id>/`."""
    root = Path(config.output)
    return StagedRelease(root / config.dataset_repo_id, root / config.adapter_repo_id, root / config.model_repo_id)


def outputs(config: ReleaseConfig) -> list[Path]:
    """What staging leaves: one folder per repo, each with its card."""
    staged = staged_folders(config)
    return [folder / "README.md" for folder in (staged.dataset, staged.adapter, staged.model)]


def stage_dataset(config: ReleaseConfig, dataset_dir: DatasetDir, recipe: Mapping[str, Any]) -> Path:
    """The dataset repo: parquet shards, `stats.json`, the review sample, the recipe, the version history
    and the card."""
    repo_id = config.dataset_repo_id
    folder = staged_folders(config).dataset
    history = _previous_history(folder)
    shipped = shippable_recipe(recipe, secrets=[get_token() or ""])
    card = dataset_card(dataset_dir, repo_id, history, recipe=shipped)
    stats = dataset_dir.stats().model_dump()
    with atomic_dir(folder) as out:  # a staging that fails leaves the previous staged repo as it was
        shards = {f: out / "data" / f.name for f in sorted(dataset_dir.data_dir.glob("*.parquet"))}
        review = (
            {dataset_dir.review_file: out / dataset_dir.review_file.name} if dataset_dir.review_file.is_file() else {}
        )
        _copy({**shards, dataset_dir.stats_file: out / STATS_FILE, **review}, repo_id)
        _write_recipe(out, shipped, repo_id, stats["dataset_version"])
        write_json(out / VERSION_HISTORY_FILE, version_history(history, stats))
        card.save(out / "README.md")
    return folder


def stage(
    config: ReleaseConfig,
    dataset_dir: DatasetDir,
    train_dir: TrainDir,
    eval_dir: EvalDir,
    recipe: Mapping[str, Any],
) -> StagedRelease:
    """Write the three repo folders from the run's artifacts (cards rendered from their numbers); `recipe`
    is the resolved recipe as data (`Recipe.model_dump(mode="json")`), published with each repo."""
    with output_lock(Path(config.output), "cards"):
        return _stage(config, dataset_dir, train_dir, eval_dir, recipe)


def _stage(
    config: ReleaseConfig,
    dataset_dir: DatasetDir,
    train_dir: TrainDir,
    eval_dir: EvalDir,
    recipe: Mapping[str, Any],
) -> StagedRelease:
    staged = staged_folders(config)
    stage_dataset(config, dataset_dir, recipe)
    shipped = shippable_recipe(recipe, secrets=[get_token() or ""])
    version = dataset_dir.stats().dataset_version
    common = {
        "dataset_repo": config.dataset_repo_id,
        "model_repo": config.model_repo_id,
        "adapter_repo": config.adapter_repo_id,
        "license_id": config.model_license,
        "version": version,
        "recipe": shipped,
    }
    benchmark = eval_dir.comparison().benchmark

    def changes(folder: Path) -> dict[Path, Path]:
        """The eval's changes.md (the card links it) and changes.json, as `<benchmark>_changes.*`."""
        name = changes_file(benchmark)
        found = {
            eval_dir.changes_markdown: folder / name,
            eval_dir.changes_file: folder / Path(name).with_suffix(".json"),
        }
        return {src: dest for src, dest in found.items() if src.is_file()}

    with atomic_dir(staged.adapter) as adapter_out:
        provenance = {train_dir.provenance_file: adapter_out / train_dir.provenance_file.name}
        adapter_files = {**_top_files(train_dir.adapter, adapter_out), **provenance, **changes(adapter_out)}
        _copy(adapter_files, config.adapter_repo_id)
        _write_recipe(adapter_out, shipped, config.adapter_repo_id, version)
        model_card(train_dir, eval_dir, config.adapter_repo_id, adapter=True, **common).save(adapter_out / "README.md")

    with atomic_dir(staged.model) as model_out:
        merged = _top_files(train_dir.merged, model_out)
        comparison = {eval_dir.comparison_file: model_out / f"{benchmark}_comparison.json"}
        _copy({**merged, **comparison, **changes(model_out)}, config.model_repo_id)
        _write_recipe(model_out, shipped, config.model_repo_id, version)
        model_card(train_dir, eval_dir, config.model_repo_id, adapter=False, **common).save(model_out / "README.md")
    return staged


def targets(config: ReleaseConfig, staged: StagedRelease) -> dict[str, tuple[Path, str, str]]:
    """kind -> (staged folder, Hub repo id, repo type) for the three repos of a release."""
    return {
        "dataset": (staged.dataset, config.dataset_repo_id, "dataset"),
        "adapter": (staged.adapter, config.adapter_repo_id, "model"),
        "model": (staged.model, config.model_repo_id, "model"),
    }
