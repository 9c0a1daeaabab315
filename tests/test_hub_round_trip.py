"""What is pushed loads back: the release repos, pushed by the real push code to a loopback Hub
(`tests.support.hub.HubStub`), loaded by repo id and revision the way users load them (`datasets`, TRL,
PEFT, transformers, `Planner`, `apo-planner train`, `hf download`) in a fresh process that reaches the
Hub only through `HF_ENDPOINT`, with an empty cache of its own."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets
import pytest
import yaml
from huggingface_hub import HfApi, constants

from apo_planner.artifacts import DatasetDir, EvalDir, TrainDir, write_json
from apo_planner.builders.build import build
from apo_planner.cards.hub import HubPusher
from apo_planner.cards.recipe import RECIPE_FILE
from apo_planner.cards.stage import StagedRelease, stage, stage_dataset, targets
from apo_planner.entry.recipe import load_recipe
from apo_planner.tiny import make_tiny_model
from apo_planner.training.apo import train
from apo_planner.training.merge import merge
from tests.conftest import REPO, SMOKE_SOURCE, WEATHER_TOOL
from tests.support.hub import HubStub

pytestmark = pytest.mark.slow

TOKEN = "hf_roundtrip_NotARealToken_0123456789"
DATASET = "ns/apo-planner-pairs"
ADAPTER = "ns/apo-planner-tiny-lora"
MODEL = "ns/apo-planner-tiny"
QUERY = "What is the weather in Paris for the next 3 days?"
COMPARISON = {  # the BFCL stage is not what this file tests: a comparison for the cards to render
    "baseline_model": "Qwen/Qwen3-30B-A3B-Instruct-2507-FC",
    "planner_model": "Qwen/Qwen3-30B-A3B-Instruct-2507-FC-APOPlanner",
    "limit": 2,
    "categories": [
        {
            "category": "multiple",
            "baseline": {"accuracy": 50.0, "avg_calls": 1.0},
            "planner": {"entries": 2, "accuracy": 50.0, "avg_calls": 1.0, "planner": {"planned": 2}},
            "paper": None,
        }
    ],
}


@dataclass
class Released:
    hub: HubStub
    tiny: Path
    v1: DatasetDir  # the local builds behind v0.1.0 and v0.2.0 of the dataset repo
    v2: DatasetDir
    run: TrainDir
    staged: StagedRelease


def _push(hub: HubStub, folder: Path, repo_id: str, repo_type: str, version: str) -> None:
    """As the release's push stage does it, to the loopback Hub."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(constants, "HF_HUB_OFFLINE", False)  # the suite is offline; this talks to 127.0.0.1 only
        pusher = HubPusher(retries=2, retry_wait_s=0.01, api=HfApi(endpoint=hub.url, token=TOKEN), log=lambda _: None)
        pusher.push_folder(folder, repo_id, repo_type=repo_type, version=version, private=True)


@pytest.fixture(scope="module")
def released(tmp_path_factory) -> Iterator[Released]:
    """One small release (rule-built pairs, a tiny base trained one step, merged), staged with its cards
    and pushed as v0.1.0; then a second dataset version, v0.2.0, with more rows."""
    root = tmp_path_factory.mktemp("round-trip")
    tiny = make_tiny_model(root / "tiny")
    sets = [
        f"build.source={SMOKE_SOURCE}",
        "build.synthesizer=rule",
        f"train.dataset={root / 'v1'}",
        f"train.output={root / 'train'}",
        f"train.base_model={tiny}",
        "train.tiny_model=false",
        "train.max_steps=1",
        "train.per_device_train_batch_size=2",
        "train.preference_eval=false",
        "release.namespace=ns",
        "release.base=tiny",
        "release.suffix=''",
        f"release.output={root / 'release'}",
    ]
    recipe = load_recipe(None, [*sets, f"build.output={root / 'v1'}", "build.limit=40", "build.version=0.1.0"])
    build(recipe.build)
    train(recipe.train, recipe.sha256())
    merge(recipe.train)
    write_json(root / "eval" / "comparison.json", COMPARISON)
    v1, run = DatasetDir(root / "v1"), TrainDir(root / "train")
    staged = stage(recipe.release, v1, run, EvalDir(root / "eval"), recipe.model_dump(mode="json"))
    assert recipe.release.dataset_repo_id == DATASET and recipe.release.model_repo_id == MODEL
    later = load_recipe(None, [*sets, f"build.output={root / 'v2'}", "build.limit=80", "build.version=0.2.0"])
    build(later.build)
    with HubStub(token=TOKEN) as hub:
        for folder, repo_id, repo_type in targets(recipe.release, staged).values():
            _push(hub, folder, repo_id, repo_type, "0.1.0")
        later_folder = stage_dataset(later.release, DatasetDir(root / "v2"), later.model_dump(mode="json"))
        _push(hub, later_folder, DATASET, "dataset", "0.2.0")
        yield Released(hub, tiny, v1, DatasetDir(root / "v2"), run, staged)


def _client_env(hub: HubStub, home: Path) -> dict[str, str]:
    """A user's shell pointed at the loopback Hub: online, a token, an empty cache, the venv's commands."""
    offline = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE")
    env = {k: v for k, v in os.environ.items() if k not in offline}
    return env | {
        "HF_ENDPOINT": hub.url,
        "HF_TOKEN": TOKEN,
        "HF_HOME": str(home),
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "HF_HUB_DISABLE_UPDATE_CHECK": "1",
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
    }


def _client(released: Released, home: Path, code: str, *args: Any) -> Any:
    """Run `code` in a fresh Python as a user would (arguments other than text go as JSON); its last line of
    output is JSON."""
    run = subprocess.run(
        [
            sys.executable,
            "-c",
            textwrap.dedent(code),
            *(str(a) if isinstance(a, str | Path) else json.dumps(a) for a in args),
        ],
        cwd=REPO,
        env=_client_env(released.hub, home),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr[-6000:]
    assert released.hub.unknown == [], "a client took a Hub route the double does not model"
    return json.loads(run.stdout.strip().splitlines()[-1])


def _local(dataset: DatasetDir) -> dict[str, Any]:
    ds = datasets.load_dataset(str(dataset.root))
    return {split: {"features": part.features.to_dict(), "rows": part.to_list()} for split, part in ds.items()}


def _ids(dataset: DatasetDir) -> dict[str, list[str]]:
    return {split: [row["id"] for row in part["rows"]] for split, part in _local(dataset).items()}


LOAD_AND_TRAIN = """
    import json, sys, tempfile
    from datasets import load_dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOConfig, DPOTrainer

    repo, revision, tiny = sys.argv[1:]
    ds = load_dataset(repo, revision=revision)
    args = DPOConfig(
        output_dir=tempfile.mkdtemp(), loss_type=["apo_zero"], max_steps=1, per_device_train_batch_size=2,
        max_length=2048, report_to="none", save_strategy="no", bf16=False,
    )
    trainer = DPOTrainer(
        model=AutoModelForCausalLM.from_pretrained(tiny), args=args, train_dataset=ds["train"],
        processing_class=AutoTokenizer.from_pretrained(tiny),
        peft_config=LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", task_type="CAUSAL_LM"),
    )
    steps = trainer.train().global_step
    loaded = {split: {"features": part.features.to_dict(), "rows": part.to_list()} for split, part in ds.items()}
    print(json.dumps({"dataset": loaded, "dpo_steps": steps}))
"""


def test_hub_round_trip_dataset_loads_by_tag_as_built_and_trl_trains_on_it(released, tmp_path):
    out = _client(released, tmp_path / "home", LOAD_AND_TRAIN, DATASET, "v0.1.0", released.tiny)
    assert out["dataset"] == json.loads(json.dumps(_local(released.v1)))
    assert out["dpo_steps"] == 1


PLAN = """
    import json, sys
    from apo_planner.plan_grammar import GrammarLimits
    from apo_planner.planner import Planner

    repo, revision, local, query, tools = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], json.loads(sys.argv[5])
    limits = GrammarLimits(max_steps=2, max_rationale_chars=32, max_string_chars=12, max_items=2)

    def plan(model, revision=None):
        planner = Planner.from_pretrained(model, revision=revision, max_new_tokens=256, limits=limits)
        result = planner.plan_with_details(query, tools)
        return {"text": result.text, "error": result.error}

    print(json.dumps({"hub": plan(repo, revision), "local": plan(local)}))
"""


def test_hub_round_trip_planner_from_its_hub_id_plans_as_the_local_merged_model(released, tmp_path):
    out = _client(released, tmp_path / "home", PLAN, MODEL, "v0.1.0", released.run.merged, QUERY, [WEATHER_TOOL])
    assert out["hub"] == out["local"] and out["hub"]["error"] is None and out["hub"]["text"]


ADAPTER_PLAN = """
    import json, sys, tempfile
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from apo_planner.plan_grammar import GrammarLimits
    from apo_planner.planner import Planner

    repo, revision, base, local, query, tools = *sys.argv[1:5], sys.argv[5], json.loads(sys.argv[6])
    limits = GrammarLimits(max_steps=2, max_rationale_chars=32, max_string_chars=12, max_items=2)

    def on_base(adapter, revision=None):
        model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base), adapter, revision=revision)
        weights = {k: v.clone() for k, v in model.state_dict().items() if "lora_" in k}
        folder = tempfile.mkdtemp()
        model.merge_and_unload().save_pretrained(folder)
        AutoTokenizer.from_pretrained(adapter, revision=revision).save_pretrained(folder)
        result = Planner.from_pretrained(folder, max_new_tokens=256, limits=limits).plan_with_details(query, tools)
        return weights, {"text": result.text, "error": result.error}

    (hub_weights, hub), (local_weights, local) = on_base(repo, revision), on_base(local)
    same = hub_weights.keys() == local_weights.keys()
    same = same and all(torch.equal(v, local_weights[k]) for k, v in hub_weights.items())
    print(json.dumps({"hub": hub, "local": local, "lora_tensors": len(hub_weights), "same_weights": same}))
"""


def test_hub_round_trip_adapter_on_the_base_plans_as_the_local_adapter(released, tmp_path):
    args = (ADAPTER, "v0.1.0", released.tiny, released.run.adapter, QUERY, [WEATHER_TOOL])
    out = _client(released, tmp_path / "home", ADAPTER_PLAN, *args)
    assert out["lora_tensors"] > 0 and out["same_weights"]
    assert out["hub"] == out["local"] and out["hub"]["error"] is None and out["hub"]["text"]


def test_hub_round_trip_train_reads_the_hub_dataset_at_a_version(released, tmp_path):
    sets = [
        f"train.dataset={DATASET}",
        "train.dataset_revision=v0.1.0",
        f"train.base_model={released.tiny}",
        "train.tiny_model=false",
        f"train.output={tmp_path / 'train'}",
        "train.max_steps=1",
        "train.per_device_train_batch_size=2",
        "train.preference_eval=false",
    ]
    command = [sys.executable, "-m", "apo_planner.entry.cli", "train", *[a for s in sets for a in ("--set", s)]]
    env = _client_env(released.hub, tmp_path / "home")
    run = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-6000:]
    assert released.hub.unknown == []
    trained = TrainDir(tmp_path / "train")
    assert (trained.adapter / "adapter_config.json").is_file()
    dataset = trained.provenance()["dataset"]
    stats = released.v1.stats()
    assert (dataset["id"], dataset["revision"]) == (DATASET, "v0.1.0")
    assert (dataset["version"], dataset["fingerprint"]) == ("0.1.0", stats.fingerprint)
    assert not any(TOKEN.encode() in p.read_bytes() for p in trained.root.rglob("*") if p.is_file())


VERSIONS = """
    import json, sys
    from datasets import load_dataset

    repo = sys.argv[1]
    ids = {}
    for revision in ("v0.1.0", "v0.2.0", None):
        ds = load_dataset(repo, revision=revision)
        ids[str(revision)] = {split: list(part["id"]) for split, part in ds.items()}
    print(json.dumps(ids))
"""


def test_hub_round_trip_an_older_version_keeps_loading_its_own_rows(released, tmp_path):
    out = _client(released, tmp_path / "home", VERSIONS, DATASET)
    assert out["v0.1.0"] == _ids(released.v1) and out["v0.2.0"] == _ids(released.v2) != _ids(released.v1)
    assert out["None"] == out["v0.2.0"]  # main is the latest version
    repo = released.hub.repo(DATASET, "dataset")
    history = json.loads(repo.files("v0.2.0")["version_history.json"])
    assert [h["version"] for h in history] == ["0.1.0", "0.2.0"]
    for tag, dataset in (("v0.1.0", released.v1), ("v0.2.0", released.v2)):
        shipped = yaml.safe_load(repo.files(tag)[RECIPE_FILE])
        assert shipped["build"]["version"] == dataset.stats().dataset_version
        assert shipped["release"]["namespace"] == "ns" and TOKEN.encode() not in repo.files(tag)[RECIPE_FILE]


def test_hub_round_trip_every_repo_ships_its_recipe_and_the_models_their_provenance(released):
    for repo_id, repo_type in ((DATASET, "dataset"), (ADAPTER, "model"), (MODEL, "model")):
        files = released.hub.repo(repo_id, repo_type).files("v0.1.0")
        recipe = yaml.safe_load(files[RECIPE_FILE])
        assert set(recipe) >= {"name", "build", "train", "eval", "release"}, repo_id
        assert recipe["train"]["max_steps"] == 1 and recipe["build"]["synthesizer"] == "rule"
        if repo_type == "model":
            provenance = json.loads(files["training_provenance.json"])
            assert provenance["dataset"]["fingerprint"] == released.v1.stats().fingerprint
            assert "training_args.bin" not in files  # a pickle; its values are in the provenance
        card = files["README.md"].decode()
        assert "## Rebuild" in card and 'revision="v0.1.0"' in card, repo_id
    adapter_card = released.hub.repo(ADAPTER).files("v0.1.0")["README.md"].decode()
    assert f"--set train.dataset={DATASET} --set train.dataset_revision=v0.1.0" in adapter_card
    assert not any(TOKEN.encode() in p.read_bytes() for p in released.staged.dataset.parent.rglob("*") if p.is_file())


def _rebuild_command(card: str) -> str:
    found = re.search(r"^## Rebuild\n.*?^```bash\n(.*?)\n```", card, re.DOTALL | re.MULTILINE)
    assert found, "the card has no rebuild command"
    return found.group(1)


def _workdir(folder: Path) -> Path:
    """An empty working directory: the smoke recipe and its source come from the installed package."""
    folder.mkdir()
    return folder


def test_hub_round_trip_the_dataset_cards_command_rebuilds_the_smoke_dataset_with_its_fingerprint(
    tmp_path, monkeypatch
):
    # Built as a user builds the smoke dataset (relative recipe, in-process tiny synthesizer), then staged and pushed.
    monkeypatch.chdir(_workdir(tmp_path / "built-here"))
    recipe = load_recipe("smoke", ["build.limit=24", "release.namespace=ns"])
    build(recipe.build)
    built = DatasetDir(Path(recipe.build.output).resolve())
    folder = stage_dataset(recipe.release, built, recipe.model_dump(mode="json"))
    repo_id = recipe.release.dataset_repo_id
    assert repo_id == "ns/apo-planner-pairs-smoke"
    with HubStub(token=TOKEN) as hub:
        _push(hub, folder, repo_id, "dataset", recipe.build.version)
        card = hub.repo(repo_id, "dataset").files("v0.1.0")["README.md"].decode()
        command = _rebuild_command(card)
        # ... and rebuilt elsewhere (a fresh synthesizer, an empty cache) by the card's command, as written
        elsewhere = _workdir(tmp_path / "rebuilt-here")
        env = _client_env(hub, tmp_path / "home")
        run = subprocess.run(["bash", "-c", command], cwd=elsewhere, env=env, capture_output=True, text=True)
        assert run.returncode == 0, f"{command}\n{run.stderr[-6000:]}"
        assert hub.unknown == []
    rebuilt = json.loads(next(elsewhere.glob("*/stats.json")).read_text())
    assert rebuilt["synthesis"]["model_calls"] > 0  # synthesized again, not read from the first build's cache
    assert rebuilt["fingerprint"] == built.stats().fingerprint and rebuilt["pairs"] == built.stats().pairs
