"""Staging: each Hub repo written locally exactly as it will be pushed, card included.

`release/<dataset-repo>/` loads with `load_dataset`, `release/<model-repo>/` with
`AutoModelForCausalLM.from_pretrained`, `release/<adapter-repo>/` with `PeftModel`; the release's
push stage uploads each of `targets` with `cards.hub.HubPusher` and tags it.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

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


def _previous_history(folder: Path) -> list[dict]:
    path = folder / "version_history.json"
    return json.loads(path.read_text()) if path.is_file() else []


def stage(config: ReleaseConfig, dataset_dir: Path, train_dir: Path, eval_dir: Path) -> StagedRelease:
    root = Path(config.output)
    dataset_out = root / config.dataset_repo
    history = _previous_history(dataset_out)
    card = dataset_card(dataset_dir, config.dataset_repo, history)
    dataset_out = _fresh(dataset_out)
    shards = {f: dataset_out / "data" / f.name for f in sorted((dataset_dir / "data").glob("*.parquet"))}
    _copy({**shards, dataset_dir / "stats.json": dataset_out / "stats.json"}, config.dataset_repo)
    card.save(dataset_out / "README.md")
    stats = json.loads((dataset_dir / "stats.json").read_text())
    (dataset_out / "version_history.json").write_text(json.dumps(version_history(history, stats), indent=2) + "\n")

    comparison = eval_dir / "comparison.json"
    common = {
        "dataset_repo": config.dataset_repo,
        "model_repo": config.model_repo,
        "adapter_repo": config.adapter_repo,
        "license_id": config.model_license,
    }
    adapter_out = _fresh(root / config.adapter_repo)
    _copy(_top_files(train_dir / "adapter", adapter_out), config.adapter_repo)
    model_card(train_dir, comparison, config.adapter_repo, adapter=True, **common).save(adapter_out / "README.md")

    model_out = _fresh(root / config.model_repo)
    merged = _top_files(train_dir / "merged", model_out)
    _copy({**merged, comparison: model_out / "bfcl_comparison.json"}, config.model_repo)
    model_card(train_dir, comparison, config.model_repo, adapter=False, **common).save(model_out / "README.md")
    return StagedRelease(dataset=dataset_out, adapter=adapter_out, model=model_out)


def targets(config: ReleaseConfig, staged: StagedRelease) -> dict[str, tuple[Path, str, str]]:
    """kind -> (staged folder, Hub repo id, repo type) for the three repos of a release."""
    return {
        "dataset": (staged.dataset, config.dataset_repo, "dataset"),
        "adapter": (staged.adapter, config.adapter_repo, "model"),
        "model": (staged.model, config.model_repo, "model"),
    }
