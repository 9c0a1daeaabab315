"""What a trained artifact was made from: dataset, base model, recipe, packages, code version."""

from __future__ import annotations

import subprocess
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from apo_planner.artifacts import STATS_FILE, DatasetDir, read_json
from apo_planner.training.config import TrainConfig

SOURCE_ROOT = Path(__file__).resolve().parents[1]  # the checkout whose commit trained the model
PACKAGES = ("apo-planner", "torch", "transformers", "trl", "peft", "accelerate", "datasets", "lm-eval")


def package_versions() -> dict[str, str]:
    out = {}
    for name in PACKAGES:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "not installed"
    return out


def git_commit() -> str:
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=SOURCE_ROOT, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=SOURCE_ROOT,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
        return commit + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def dataset_identity(dataset: str, revision: str | None) -> dict[str, Any]:
    """Version and fingerprint from the dataset's stats.json (local dir, or the Hub repo's copy)."""
    stats_path = DatasetDir(Path(dataset)).stats_file
    if not stats_path.is_file():
        try:
            from huggingface_hub import hf_hub_download

            stats_path = Path(hf_hub_download(dataset, STATS_FILE, repo_type="dataset", revision=revision))
        except Exception:
            return {"id": dataset, "revision": revision, "version": "unknown", "fingerprint": "unknown"}
    stats = read_json(stats_path, "build")
    return {
        "id": dataset if not Path(dataset).is_dir() else Path(dataset).name,
        "revision": revision,
        "version": stats.get("dataset_version", "unknown"),
        "fingerprint": stats.get("fingerprint", "unknown"),
        "pairs": stats.get("pairs"),
    }


def training_provenance(
    config: TrainConfig,
    recipe_sha256: str,
    trainer_args: dict[str, Any] | None = None,
    placement: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """`train_config` is the recipe's train section as validated (what was asked for);
    `trainer_args` is the whole DPOConfig the run used, TRL's defaults for unset keys included."""
    base_local = Path(config.base_model).is_dir()
    return {
        "dataset": dataset_identity(config.dataset, config.dataset_revision),
        "base_model": {
            "id": Path(config.base_model).name if base_local else config.base_model,
            "revision": "local" if base_local else config.base_revision,
        },
        "recipe_sha256": recipe_sha256,
        "train_config": config.model_dump(mode="json"),
        "trainer_args": trainer_args,
        "placement": placement,  # world size and devices the run trained on
        "packages": package_versions(),
        "git_commit": git_commit(),
    }
