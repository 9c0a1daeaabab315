"""Cards: valid Hub metadata, nothing left unrendered, and every number equal to the artifacts'."""

import json
import re

import pytest
import yaml
from huggingface_hub import DatasetCard, ModelCard

from apo_planner.artifacts import DatasetDir, EvalDir, TrainDir
from apo_planner.builders.build import build
from apo_planner.cards.config import ReleaseConfig, base_name
from apo_planner.cards.recipe import REDACTED, recipe_yaml, shippable_recipe
from apo_planner.cards.render import dataset_card, hub_license, model_card, size_category
from apo_planner.cards.stage import stage
from apo_planner.config import RecipeError
from apo_planner.entry.recipe import load_recipe
from apo_planner.training.apo import trainer_arguments
from tests.conftest import SMOKE_SOURCE

ADAPTER_FILES = ["adapter_config.json", "adapter_model.safetensors", "tokenizer.json", "training_args.bin"]
MERGED_FILES = ["config.json", "model.safetensors", "tokenizer.json", "metrics.json", "training_provenance.json"]

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
    assert f"| trajectories per source row | {stats['avg_trajectories_per_record']} |" in text
    pair = stats["lengths"]["pair_chars"]
    assert f"| pair chars | {pair['p50']} | {pair['p95']} | {pair['max']} |" in text
    cut = stats["length_filters"]["build.filters.max_chars"]
    assert f"| removed by `build.filters.max_chars` = {cut['limit']} | {cut['removed']} | | |" in text
    review = json.loads((artifacts / "ds" / "review.json").read_text())["pairs"]
    assert "[`review.md`](review.md)" in text and text.count("### Pair `") == 3
    assert all(pair["markdown"].strip() in text for pair in review[:3])
    sources = stats["answer_sources_kept"]
    assert f"in {sources['kept']} of {sources['pairs']} pairs as made" in text


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
        version="1.2.0",
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
        "| multiple | 91.5 (1.015) | 93.25 (1.005) | 198/200 planned (fell back: unparseable_plan 2) | – → – "
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
        assert "vllm serve org/planner --revision v1.2.0" in text
        assert 'Planner.from_pretrained("org/planner", revision="v1.2.0")' in text
    else:
        assert 'PeftModel.from_pretrained(base, "org/planner-lora", revision="v1.2.0")' in text
    # rebuilt from the recipe the repo ships, on the released dataset at the version it was trained on
    rebuild = text.split("## Rebuild", 1)[1]
    repo = "org/planner-lora" if adapter else "org/planner"
    assert f'R="$(hf download {repo} recipe.yaml --revision v1.2.0 --quiet)"' in rebuild
    sets = "--set train.dataset=org/plans --set train.dataset_revision=v1.2.0"
    assert f'apo-planner train --recipe "$R" {sets}' in rebuild
    assert ('apo-planner merge --recipe "$R"' in rebuild) is not adapter


def test_license_and_size_helpers():
    assert hub_license({"CC BY 4.0"}) == "cc-by-4.0" and hub_license({"CC BY 4.0", "MIT"}) == "other"
    assert size_category(999) == "n<1K" and size_category(310_051) == "100K<n<1M"
    assert ReleaseConfig().output == "release"


def test_repo_ids_follow_one_namespace_and_a_bad_name_fails_when_the_recipe_is_read():
    paper = ReleaseConfig(namespace="me", base=base_name("Qwen/Qwen3-4B-Instruct-2507"))
    assert (paper.dataset_repo_id, paper.adapter_repo_id, paper.model_repo_id) == (
        "me/apo-planner-pairs",
        "me/apo-planner-qwen3-4b-instruct-2507-lora",
        "me/apo-planner-qwen3-4b-instruct-2507",
    )
    smoke = load_recipe(None).release
    assert (smoke.dataset_repo_id, smoke.adapter_repo_id, smoke.model_repo_id) == (
        "apo-planner/apo-planner-pairs-smoke",
        "apo-planner/apo-planner-tiny-smoke-lora",
        "apo-planner/apo-planner-tiny-smoke",
    )
    one_off = ReleaseConfig(namespace="me", base="b", model_repo="elsewhere/planner")
    assert one_off.model_repo_id == "elsewhere/planner" and one_off.adapter_repo_id == "me/apo-planner-b-lora"
    assert paper.namespaces() == ["me"] and one_off.namespaces() == ["elsewhere", "me"]
    whole = {"dataset_repo": "a/d", "adapter_repo": "b/l", "model_repo": "b/m"}
    assert ReleaseConfig(namespace="me", **whole).namespaces() == ["a", "b"]
    assert ReleaseConfig(namespace="me").with_base_model("/models/Tiny_Planner/").adapter_repo_id == (
        "me/apo-planner-tiny_planner-lora"
    )
    with pytest.raises(ValueError, match="release.base is not set"):
        _ = ReleaseConfig(namespace="me").model_repo_id
    derived = load_recipe(None, ["release.base=null", "train.base_model=Qwen/Qwen3-4B-Instruct-2507"]).release
    assert derived.model_repo_id == "apo-planner/apo-planner-qwen3-4b-instruct-2507-smoke"
    for bad in (["release.namespace=my org"], ["release.suffix=--x"], ["release.dataset_repo=no-namespace"]):
        with pytest.raises(RecipeError, match="not a valid Hub repo id|needs a namespace"):
            load_recipe(None, bad)


def test_the_shipped_recipe_runs_wherever_apo_planner_is_installed_and_holds_no_secret(tmp_path, monkeypatch):
    token = "hf_abcdefghijklmnopqrstuvwxyz012345"
    recipe = load_recipe(
        None,
        [
            f"build.output={tmp_path / 'ds'}",
            "build.llm.backend=openai",
            f"build.llm.base_url=https://user:{token}@vllm.example/v1",
            f"eval.executor.handler=handler-{token}",
        ],
    ).model_dump(mode="json")
    assert recipe["build"]["source"] == str(SMOKE_SOURCE)  # resolved beside the recipe: absolute in the checkout
    recipe["extra"] = {"api_key": "sk-123", "hub_token": "anything", "api_key_env": "OPENAI_API_KEY", "t": "x"}
    shipped = shippable_recipe(recipe, secrets=["sk-123"])
    assert shipped["build"]["source"] == "data/smoke_trajectories.jsonl.gz"
    assert shipped["build"]["output"] == str(tmp_path / "ds")  # outside the shipped recipes: kept as given
    assert shipped["build"]["llm"]["base_url"] == f"https://{REDACTED}@vllm.example/v1"
    assert shipped["eval"]["executor"]["handler"] == f"handler-{REDACTED}"
    assert shipped["extra"] == {"api_key": REDACTED, "hub_token": REDACTED, "api_key_env": "OPENAI_API_KEY", "t": "x"}
    text = recipe_yaml(shipped, "a header\nof two lines")
    assert text.startswith("# a header\n# of two lines\n") and token not in text and "sk-123" not in text
    # as the card says: wherever apo-planner is installed, the shipped file is a recipe that resolves to the same run
    del shipped["extra"]
    (tmp_path / "recipe.yaml").write_text(recipe_yaml(shipped))
    monkeypatch.chdir(tmp_path)
    again = load_recipe(tmp_path / "recipe.yaml").model_dump(mode="json")
    assert again["build"]["source"] == str(SMOKE_SOURCE)  # found among the shipped recipes
    assert shippable_recipe(again) == shipped


def test_staging_ships_the_recipe_with_every_repo_and_the_provenance_with_the_models(artifacts, tmp_path, monkeypatch):
    token = "hf_stagingSecretToken0123456789"
    monkeypatch.setenv("HF_TOKEN", token)
    train = TrainDir(tmp_path / "train")
    for folder, files in ((train.adapter, ADAPTER_FILES), (train.merged, MERGED_FILES)):
        folder.mkdir(parents=True)
        for name in files:
            (folder / name).write_bytes(b"weights or config")
    for name in ("metrics.json", "training_provenance.json"):
        (tmp_path / "train" / name).write_bytes((artifacts / "train" / name).read_bytes())
    (train.merged / "training_provenance.json").write_bytes(train.provenance_file.read_bytes())
    recipe = load_recipe(None, [f"release.output={tmp_path / 'release'}", "release.namespace=me"])
    data = recipe.model_dump(mode="json") | {"note": f"pushed with {token}"}
    staged = stage(recipe.release, DatasetDir(artifacts / "ds"), train, EvalDir(artifacts), data)

    def listing(folder):
        return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())

    assert listing(staged.dataset) == [
        "README.md",
        *sorted(f"data/{p.name}" for p in (artifacts / "ds" / "data").glob("*.parquet")),
        "recipe.yaml",
        "review.md",
        "stats.json",
        "version_history.json",
    ]
    assert listing(staged.adapter) == sorted(
        [*(set(ADAPTER_FILES) - {"training_args.bin"}), "README.md", "recipe.yaml", "training_provenance.json"]
    )
    assert listing(staged.model) == sorted([*MERGED_FILES, "README.md", "bfcl_comparison.json", "recipe.yaml"])
    for folder in (staged.dataset, staged.adapter, staged.model):
        shipped = yaml.safe_load((folder / "recipe.yaml").read_text())
        assert shipped["release"]["namespace"] == "me" and shipped["note"] == f"pushed with {REDACTED}"
        assert shipped["build"]["source"] == "data/smoke_trajectories.jsonl.gz"
    assert not any(token.encode() in p.read_bytes() for p in (tmp_path / "release").rglob("*") if p.is_file())
    card = (staged.dataset / "README.md").read_text()
    assert (
        'apo-planner build --recipe "$(hf download me/apo-planner-pairs-smoke recipe.yaml --repo-type dataset '
        '--revision v1.2.0 --quiet)" --output apo-planner-pairs-smoke-v1.2.0' in card
    )
    assert "installed, which ships the source" in card and "`data/smoke_trajectories.jsonl.gz`" in card


def test_a_model_synthesizers_agreement_with_the_rules_is_in_the_dataset_card(artifacts, tmp_path):
    import shutil

    folder = shutil.copytree(artifacts / "ds", tmp_path / "ds")
    stats = json.loads((folder / "stats.json").read_text())
    stats["agreement"] = {
        "reference": "rule",
        "trajectories": 239,
        "reference_rejected": 0,
        "model_removed": 142,
        "rule_removed": 157,
        "both_removed": 86,
        "precision": 0.6056,
        "recall": 0.5478,
        "missed_by_rule": {"repeated_verification": 48},
        "over_removed_by_kind": {"read_only": 46},
    }
    (folder / "stats.json").write_text(json.dumps(stats))
    text = str(dataset_card(DatasetDir(folder), "org/plans"))
    _no_placeholders(text)
    assert "On the 239 trajectories both judged" in text
    assert "| precision against the rules | 0.6056 |" in text and "| recall against the rules | 0.5478 |" in text
    assert "| rule removals kept: `repeated_verification` | 48 |" in text
    assert "| removals the rules keep: read only call | 46 |" in text
