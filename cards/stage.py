"""Staging: each Hub repo written locally exactly as it will be pushed, card included.

`release/<dataset-repo>/` loads with `load_dataset`, `release/<model-repo>/` with
`AutoModelForCausalLM.from_pretrained`, `release/<adapter-repo>/` with `PeftModel`; the release's
push stage uploads each of `targets` with `cards.hub.HubPusher` and tags it.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

from apo_planner.artifacts import STATS_FILE, DatasetDir, EvalDir, TrainDir, read_json, write_json
from cards.config import ReleaseConfig
from cards.render import dataset_card, model_card, version_history


@dataclass
class StagedRelease:
    dataset: Path
    adapter: Path
    model: Path


def _fresh(folder: Path) -> Path:
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    return folder


def _copy(files: dict[Path, Path], repo: str) -> None:
    """Copy source -> destination with a byte progress bar (a merged 4B model is several GB)."""
    total = sum(src.stat().st_size for src in files)
    with tqdm(total=total, desc=f"staging {repo}", unit="B", unit_scale=True, mininterval=1.0) as bar:
        for src, dest in files.items():
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(src, dest)
            bar.update(src.stat().st_size)


def _top_files(folder: Path, dest: Path) -> dict[Path, Path]:
    return {f: dest / f.name for f in sorted(folder.iterdir()) if f.is_file()}


VERSION_HISTORY_FILE = "version_history.json"


def _previous_history(folder: Path) -> list[dict]:
    path = folder / VERSION_HISTORY_FILE
    return read_json(path, "cards") if path.is_file() else []


def staged_folders(config: ReleaseConfig) -> StagedRelease:
    """Where each repo is staged: `release.output/<repo id>/`."""
    root = Path(config.output)
    return StagedRelease(root / config.dataset_repo, root / config.adapter_repo, root / config.model_repo)


def outputs(config: ReleaseConfig) -> list[Path]:
    """What staging leaves: one folder per repo, each with its card."""
    staged = staged_folders(config)
    return [folder / "README.md" for folder in (staged.dataset, staged.adapter, staged.model)]


def stage(config: ReleaseConfig, dataset_dir: DatasetDir, train_dir: TrainDir, eval_dir: EvalDir) -> StagedRelease:
    """Write the three repo folders from the run's artifacts (cards rendered from their numbers)."""
    staged = staged_folders(config)
    history = _previous_history(staged.dataset)
    card = dataset_card(dataset_dir, config.dataset_repo, history)
    dataset_out = _fresh(staged.dataset)
    shards = {f: dataset_out / "data" / f.name for f in sorted(dataset_dir.data_dir.glob("*.parquet"))}
    _copy({**shards, dataset_dir.stats_file: dataset_out / STATS_FILE}, config.dataset_repo)
    card.save(dataset_out / "README.md")
    stats = dataset_dir.stats().model_dump()
    write_json(dataset_out / VERSION_HISTORY_FILE, version_history(history, stats))

    common = {
        "dataset_repo": config.dataset_repo,
        "model_repo": config.model_repo,
        "adapter_repo": config.adapter_repo,
        "license_id": config.model_license,
    }
    adapter_out = _fresh(staged.adapter)
    _copy(_top_files(train_dir.adapter, adapter_out), config.adapter_repo)
    model_card(train_dir, eval_dir, config.adapter_repo, adapter=True, **common).save(adapter_out / "README.md")

    model_out = _fresh(staged.model)
    merged = _top_files(train_dir.merged, model_out)
    _copy({**merged, eval_dir.comparison_file: model_out / "bfcl_comparison.json"}, config.model_repo)
    model_card(train_dir, eval_dir, config.model_repo, adapter=False, **common).save(model_out / "README.md")
    return staged


def targets(config: ReleaseConfig, staged: StagedRelease) -> dict[str, tuple[Path, str, str]]:
    """kind -> (staged folder, Hub repo id, repo type) for the three repos of a release."""
    return {
        "dataset": (staged.dataset, config.dataset_repo, "dataset"),
        "adapter": (staged.adapter, config.adapter_repo, "model"),
        "model": (staged.model, config.model_repo, "model"),
    }
