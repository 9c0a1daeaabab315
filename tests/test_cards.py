"""Cards: valid Hub metadata, nothing left unrendered, and every number equal to the artifacts'."""

import json
import re

import pytest
from huggingface_hub import DatasetCard, ModelCard

from apo_planner.artifacts import DatasetDir, EvalDir, TrainDir
from builders.build import build
from cards.config import ReleaseConfig
from cards.render import dataset_card, hub_license, model_card, size_category
from entry.recipe import load_recipe
from tests.conftest import REPO
from training.apo import trainer_arguments

SMOKE_SOURCE = REPO / "recipes" / "data" / "smoke_trajectories.jsonl"

METRICS = {
    "loss_type": "apo_zero",
    "steps": 37,
    "epochs": 1.0,
    "tokens_approx": 123456,
    "wall_time_s": 98.76,
    "train": {"train_loss": 0.4321, "train_runtime": 90.0},
    "eval": {"eval_loss": 0.3812, "eval_rewards/accuracies": 0.8125, "eval_rewards/margins": 1.2345},
    "preference_accuracy": {
        "base": {"acc": 0.55, "acc_norm": 0.5, "pairs": 20},
        "merged": {"acc": 0.9, "acc_norm": 0.85, "pairs": 20},
    },
}
COMPARISON = {
    "baseline_model": "Qwen/Qwen3-30B-A3B-Instruct-2507-FC",
    "planner_model": "Qwen/Qwen3-30B-A3B-Instruct-2507-FC-APOPlanner",
    "limit": None,
    "categories": [
        {
            "category": "multiple",
            "baseline": {"accuracy": 91.5, "avg_calls": 1.015},
            "planner": {
                "entries": 200,
                "accuracy": 93.25,
                "avg_calls": 1.005,
                "planner": {"planned": 198, "fallbacks": {"unparseable_plan": 2}},
            },
            "paper": {"baseline": [92.5, 1.02], "planner": [94.5, 1.01]},
        },
        {
            "category": "parallel_multiple",
            "baseline": {"accuracy": 67.5, "avg_calls": 2.2},
            "planner": {"entries": 200, "accuracy": 74.5, "avg_calls": 2.245, "planner": {"planned": 200}},
            "paper": None,
        },
    ],
}


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory):
    root = tmp_path_factory.mktemp("artifacts")
    config = load_recipe(
        None,
        [
            f"build.source={SMOKE_SOURCE}",
            f"build.output={root / 'ds'}",
            "build.synthesizer=rule",
            "build.version=1.2.0",
        ],
    ).build
    build(config)
    train = root / "train"
    train.mkdir()
    (train / "metrics.json").write_text(json.dumps(METRICS))
    train_config = load_recipe(None, ["train.base_model=Qwen/Qwen3-4B-Instruct-2507"]).train
    provenance = {
        "dataset": {"id": "ds", "version": "1.2.0", "fingerprint": "f" * 64},
        "base_model": {"id": "Qwen/Qwen3-4B-Instruct-2507", "revision": "main"},
        "recipe_sha256": "a" * 64,
        "train_config": train_config.model_dump(mode="json"),
        "trainer_args": json.loads(trainer_arguments(train_config, has_eval=True).to_json_string()),
        "packages": {"trl": "1.16.0", "transformers": "5.23.0", "peft": "0.21.2"},
        "git_commit": "0123abcd",
    }
    (train / "training_provenance.json").write_text(json.dumps(provenance))
    (root / "comparison.json").write_text(json.dumps(COMPARISON))
    return root


def _no_placeholders(text):
    assert not re.search(r"\{\{|\}\}|\{%|%\}", text), "unrendered template syntax"
    assert "None" not in text.replace("`None`", "")


def test_dataset_card_metadata_is_valid_and_numbers_are_the_build_stats(artifacts):
    card = dataset_card(
        DatasetDir(artifacts / "ds"), "org/plans", history=[{"version": "1.0.0", "pairs": 5, "fingerprint": "e" * 64}]
    )
    parsed = DatasetCard(str(card))
    stats = json.loads((artifacts / "ds" / "stats.json").read_text())
    data = parsed.data.to_dict()
    assert data["license"] == "cc-by-4.0" and data["version"] == "1.2.0"
    assert data["size_categories"] == [size_category(stats["pairs"])] == ["n<1K"]
    assert data["configs"][0]["data_files"] == [
        {"split": s, "path": f"data/{s}-*"} for s, n in stats["splits"].items() if n
    ]
    text = str(card)
    _no_placeholders(text)
    assert f"| **pairs** | **{stats['pairs']}** |" in text
    assert f"| records read | {stats['records_read']} |" in text
    assert f"| average calls, chosen | {stats['avg_calls_chosen']} |" in text
    assert f"| average calls, rejected | {stats['avg_calls_rejected']} |" in text
    assert stats["fingerprint"] in text and 'revision="v1.2.0"' in text
    assert "| 1.0.0 | 5 |" in text and f"| 1.2.0 | {stats['pairs']} |" in text


@pytest.mark.parametrize("adapter", [True, False])
def test_model_cards_carry_the_metrics_and_bfcl_results_of_the_run(artifacts, adapter):
    card = model_card(
        TrainDir(artifacts / "train"),
        EvalDir(artifacts),
        "org/planner-lora" if adapter else "org/planner",
        adapter=adapter,
        dataset_repo="org/plans",
        model_repo="org/planner",
        adapter_repo="org/planner-lora",
        license_id="apache-2.0",
    )
    parsed = ModelCard(str(card))
    data = parsed.data.to_dict()
    assert data["base_model"] == "Qwen/Qwen3-4B-Instruct-2507" and data["datasets"] == ["org/plans"]
    assert data["library_name"] == ("peft" if adapter else "transformers")
    text = str(card)
    _no_placeholders(text)
    for value in ("0.4321", "0.3812", "0.8125", "1.2345", "123456", "| steps | 37 |", "0.55 → 0.9"):
        assert value in text, value
    trainer = json.loads((artifacts / "train" / "training_provenance.json").read_text())["trainer_args"]
    assert f"| learning rate | {trainer['learning_rate']} |" in text and f"| bf16 | {trainer['bf16']} |" in text
    assert (
        "| multiple | 91.5 (1.015) | 93.25 (1.005) | 198/200 planned (fell back: unparseable_plan 2) "
        "| 92.5 (1.02) | 94.5 (1.01) |" in text
    )
    assert "| parallel_multiple | 67.5 (2.2) | 74.5 (2.245) | 200/200 planned |" in text
    if not adapter:
        results = {(r.dataset_config, r.metric_type): r.metric_value for r in parsed.data.eval_results}
        assert results[("multiple", "accuracy")] == 93.25 and results[("parallel_multiple", "avg_tool_calls")] == 2.245
        # a planner-arm number never travels without the coverage it was measured with
        for result in parsed.data.eval_results:
            planned = "198/200 planned" if result.dataset_config == "multiple" else "200/200 planned"
            assert planned in result.metric_name, result.metric_name
        assert "vllm serve org/planner" in text


def test_license_and_size_helpers():
    assert hub_license({"CC BY 4.0"}) == "cc-by-4.0" and hub_license({"CC BY 4.0", "MIT"}) == "other"
    assert size_category(999) == "n<1K" and size_category(310_051) == "100K<n<1M"
    assert ReleaseConfig().output == "release"
