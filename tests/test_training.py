"""APO training: it learns, the adapter and merged model load and agree, resume works, and bad
input is refused with a clear message before TRL runs."""

import json

import datasets
import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback

from apo_planner.artifacts import InvalidArtifact
from apo_planner.builders.build import build
from apo_planner.config import RecipeError
from apo_planner.entry.recipe import load_recipe
from apo_planner.training.apo import TrainingInputError, check_config, train, trainer_arguments
from apo_planner.training.apo import outputs as train_outputs
from apo_planner.training.merge import merge
from apo_planner.training.merge import outputs as merge_outputs
from tests.conftest import REPO, nemotron_row, weather_conversation, write_jsonl

TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "w",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
CITIES = ["Oslo", "Rome", "Lima", "Pune", "Kyiv", "Baku", "Doha", "Riga"]


@pytest.fixture(scope="module")
def pairs_dir(tmp_path_factory):
    """A small learnable set: chosen = one lookup, rejected = the same lookup twice."""
    root = tmp_path_factory.mktemp("pairs")
    rows = [
        nemotron_row(
            weather_conversation(
                ("get_weather", {"city": c}, "sunny"), ("get_weather", {"city": c}, "sunny"), query=f"Weather in {c}?"
            ),
            tools=[TOOL],
            uuid=f"u{i}",
        )
        for i, c in enumerate(CITIES * 2)
    ]
    config = load_recipe(
        None,
        [
            f"build.source={write_jsonl(root / 'src.jsonl', rows)}",
            f"build.output={root / 'ds'}",
            "build.synthesizer=rule",
            "build.test_fraction=0.25",
        ],
    ).build
    build(config)
    return root / "ds"


def _train_config(tmp_path, dataset, **extra):
    settings = {
        "dataset": dataset,
        "output": tmp_path / "train",
        "base_model": tmp_path.parent / "tiny-base",
        "tiny_model": True,
        "max_steps": 30,
        "learning_rate": 5e-3,
        "logging_steps": 5,
        "eval_steps": 30,
        "save_steps": 10,
        "max_length": 1024,
        "per_device_train_batch_size": 4,
        "preference_eval_limit": 4,
        **extra,
    }
    return load_recipe(None, [f"train.{k}={v}" for k, v in settings.items()]).train


@pytest.fixture(scope="module")
def trained(tmp_path_factory, pairs_dir):
    tmp = tmp_path_factory.mktemp("run")
    config = _train_config(tmp, pairs_dir)
    result = train(config, "recipe-sha")
    merged = merge(config)
    return config, result, merged


def _margin(model, tokenizer, ds) -> float:
    """Mean log-likelihood of chosen minus rejected completion, given the prompt and tools."""
    margins = []
    for row in ds:
        tools = json.loads(row["tools"])
        scores = []
        for key in ("chosen", "rejected"):
            prompt = tokenizer.apply_chat_template(
                row["prompt"], tools=tools, tokenize=False, add_generation_prompt=True
            )
            full = tokenizer.apply_chat_template(row["prompt"] + row[key], tools=tools, tokenize=False)
            p_ids = tokenizer(prompt, add_special_tokens=False, return_tensors="pt")["input_ids"]
            ids = tokenizer(full, add_special_tokens=False, return_tensors="pt")["input_ids"]
            with torch.no_grad():
                logp = torch.log_softmax(model(ids).logits[0, :-1], -1)
            target = ids[0, 1:]
            token_logp = logp[torch.arange(len(target)), target][p_ids.shape[1] - 1 :]
            scores.append(token_logp.sum().item())
        margins.append(scores[0] - scores[1])
    return sum(margins) / len(margins)


@pytest.mark.slow
def test_apo_learns_margin_rises_and_reward_accuracy_beats_chance(trained, pairs_dir):
    config, result, merged = trained
    train_pairs = datasets.load_dataset(str(pairs_dir))["train"]
    tokenizer = AutoTokenizer.from_pretrained(merged)
    base = AutoModelForCausalLM.from_pretrained(config.base_model, dtype=torch.float32)
    after = AutoModelForCausalLM.from_pretrained(merged, dtype=torch.float32)
    before_margin, after_margin = _margin(base, tokenizer, train_pairs), _margin(after, tokenizer, train_pairs)
    assert after_margin > before_margin + 1.0, (before_margin, after_margin)
    logged = [h for h in result.metrics["log_history"] if "rewards/accuracies" in h]
    assert logged and logged[-1]["rewards/accuracies"] > 0.5
    assert result.metrics["eval"]["eval_rewards/accuracies"] > 0.5
    assert result.metrics["steps"] == 30 and result.metrics["tokens_approx"] > 0


@pytest.mark.slow
def test_adapter_loads_with_peft_and_merged_equals_base_plus_lora_delta(trained):
    from peft import PeftModel

    config, result, merged = trained
    base = AutoModelForCausalLM.from_pretrained(config.base_model, dtype=torch.float32)
    peft_model = PeftModel.from_pretrained(base, str(result.output / "adapter"))
    merged_state = AutoModelForCausalLM.from_pretrained(merged, dtype=torch.float32).state_dict()
    checked = 0
    for name, module in peft_model.named_modules():
        if hasattr(module, "lora_A") and "default" in module.lora_A:
            a, b = module.lora_A["default"].weight, module.lora_B["default"].weight
            expected = module.base_layer.weight + (b @ a) * module.scaling["default"]
            key = name.replace("base_model.model.", "") + ".weight"
            assert torch.allclose(merged_state[key], expected, atol=1e-5), key
            assert not torch.allclose(expected, module.base_layer.weight), f"{key}: LoRA delta is zero"
            checked += 1
    assert checked >= 7 * 2  # all linear layers of both decoder blocks


@pytest.mark.slow
def test_merged_model_is_a_standalone_model_folder(trained):
    _, _, merged = trained
    names = {p.name for p in merged.iterdir()}
    assert {"model.safetensors", "config.json", "tokenizer.json", "generation_config.json"} <= names
    assert AutoTokenizer.from_pretrained(merged).chat_template


@pytest.mark.slow
def test_artifacts_record_metrics_provenance_and_preference_accuracy(trained, pairs_dir):
    config, result, _ = trained
    metrics = json.loads((result.output / "metrics.json").read_text())
    accuracy = metrics["preference_accuracy"]
    assert set(accuracy) == {"base", "merged"} and 0 <= accuracy["merged"]["acc"] <= 1
    test_rows = len(datasets.load_dataset(str(pairs_dir))["test"])
    assert accuracy["merged"]["pairs"] == min(4, test_rows)
    # what the planner learned: base and merged each wrote a plan per held-out prompt, decoded as deployed
    generation = metrics["plan_generation"]
    assert generation["prompts"] == min(16, test_rows) and generation["decoding"]["constrained"] is True
    names = [m["name"] for m in generation["metrics"]]
    assert names[:7] == ["parse_rate", "exact_match", "precision", "recall", "f1", "redundant_rate", "missing_rate"]
    for m in generation["metrics"]:
        assert m["delta"]["low"] <= m["delta"]["value"] <= m["delta"]["high"]
    assert generation["reference"] == {"avg_calls_chosen": 1.0, "avg_calls_rejected": 2.0}
    assert metrics["lengths"]["train"]["max"] <= config.max_length
    provenance = json.loads((result.output / "training_provenance.json").read_text())
    stats = json.loads((pairs_dir / "stats.json").read_text())
    assert provenance["dataset"]["fingerprint"] == stats["fingerprint"]
    assert provenance["recipe_sha256"] == "recipe-sha" and provenance["packages"]["trl"].startswith("1.16")
    assert provenance["base_model"]["revision"] == "local" and provenance["git_commit"]
    # the recipe's section as written, and the whole DPOConfig the run used
    assert provenance["train_config"]["learning_rate"] == 5e-3 and provenance["train_config"]["lora"]["r"] == 8
    trainer_args = provenance["trainer_args"]
    assert trainer_args["learning_rate"] == 5e-3 and trainer_args["max_steps"] == 30
    assert trainer_args["output_dir"] == str(result.output / "checkpoints") and trainer_args["loss_type"] == [
        "apo_zero"
    ]
    assert trainer_args["adam_beta1"] == 0.9  # a TRL default the recipe never names


@pytest.mark.slow
def test_each_stage_lists_the_outputs_it_wrote(trained):
    config, result, merged = trained
    assert train_outputs(config) == [result.output / "adapter" / "adapter_config.json", result.output / "metrics.json"]
    assert merge_outputs(config) == [merged / "config.json"]
    assert all(p.is_file() for p in train_outputs(config) + merge_outputs(config))


class _Interrupt(TrainerCallback):
    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == 3:
            raise KeyboardInterrupt


@pytest.mark.slow
def test_training_resumes_from_the_last_checkpoint_after_an_interruption(tmp_path, pairs_dir):
    config = _train_config(tmp_path, pairs_dir, max_steps=4, save_steps=2, preference_eval=False)
    with pytest.raises(KeyboardInterrupt):
        train(config, callbacks=[_Interrupt()])
    assert (tmp_path / "train" / "checkpoints" / "checkpoint-2").is_dir()
    resumed = train(config)
    assert resumed.metrics["resumed_from"] == "checkpoint-2" and resumed.metrics["steps"] == 4


# --- bad input ------------------------------------------------------------------------------


def test_a_dataset_missing_columns_is_refused(tmp_path, pairs_dir):
    ds = datasets.load_dataset(str(pairs_dir))
    broken = tmp_path / "broken"
    ds["train"].remove_columns("rejected").to_parquet(str(broken / "data" / "train-00000-of-00001.parquet"))
    with pytest.raises(InvalidArtifact, match=r"lacks columns \['rejected'\]"):
        train(_train_config(tmp_path, broken))


def test_an_unknown_train_key_lists_the_valid_ones():
    with pytest.raises(RecipeError, match=r"unknown key 'train.loss_tipe'; valid keys here: .*loss_type"):
        load_recipe(None, ["train.loss_tipe=apo_zero"])


def test_an_unsupported_loss_type_fails_before_any_model_loads():
    with pytest.raises(RecipeError, match=r"train.loss_type: .*'apo_zero', 'apo_down' or 'sigmoid'"):
        load_recipe(None, ["train.loss_type=apo_one"])


def test_a_base_model_that_cannot_be_found_offline_is_explained(tmp_path, pairs_dir):
    config = _train_config(tmp_path, pairs_dir, base_model="nobody/no-such-model", tiny_model=False)
    with pytest.raises(TrainingInputError, match=r"cannot load base model 'nobody/no-such-model'.*hf download"):
        train(config)


def test_pairs_longer_than_max_length_are_reported_or_dropped(tmp_path, pairs_dir):
    with pytest.raises(TrainingInputError, match=r"longer than train.max_length=64 tokens .*overlong=drop"):
        train(_train_config(tmp_path, pairs_dir, max_length=64, overlong="error"))
    with pytest.raises(TrainingInputError, match="no training pairs left"):
        train(_train_config(tmp_path, pairs_dir, max_length=64, overlong="drop"))


# --- trainer settings: TRL's, checked before anything loads ---------------------------------


@pytest.fixture
def no_loading(monkeypatch):
    """Any dataset or model load fails the test: a settings error must come first."""

    def refuse(*args, **kwargs):
        raise AssertionError("a dataset or model was loaded before the settings were checked")

    monkeypatch.setattr("apo_planner.training.apo.load_pairs", refuse)
    monkeypatch.setattr("apo_planner.training.apo.load_base", refuse)


def test_an_unknown_trainer_key_fails_before_any_model_loads_with_the_close_match(tmp_path, no_loading):
    hint = r"unknown key 'train.max_grad_nrom'.*trl.DPOConfig.*did you mean 'max_grad_norm'\?"
    with pytest.raises(RecipeError, match=hint):
        load_recipe(None, ["train.max_grad_nrom=0.5"])
    # a config built in code skips the recipe's check; training still refuses it before loading anything
    config = load_recipe(None, [f"train.base_model={tmp_path / 'absent'}", "train.tiny_model=false"]).train
    with pytest.raises(RecipeError, match=hint):
        train(config.model_copy(update={"max_grad_nrom": 0.5}))
    with pytest.raises(RecipeError, match=hint):
        check_config(config.model_copy(update={"max_grad_nrom": 0.5}))


def test_keys_the_project_owns_or_transformers_dropped_are_explained():
    with pytest.raises(RecipeError, match=r"train.output_dir is set by the project: .*set train.output"):
        load_recipe(None, ["train.output_dir=/tmp/elsewhere"])
    with pytest.raises(RecipeError, match=r"unknown key 'train.warmup_ratio'.*write warmup_steps"):
        load_recipe(None, ["train.warmup_ratio=0.1"])


def test_a_bad_trainer_value_fails_before_any_model_loads_naming_the_key(tmp_path, no_loading):
    with pytest.raises(RecipeError, match=r"train.learning_rate: Input should be a valid number.*'fast'"):
        load_recipe(None, ["train.learning_rate=fast"])
    config = load_recipe(None, ["train.lr_scheduler_type=cosin"]).train  # a str: only DPOConfig knows the names
    rejected = r"trl.DPOConfig rejects train.lr_scheduler_type='cosin': cosin is not a valid SchedulerType"
    with pytest.raises(RecipeError, match=rejected):
        check_config(config)
    with pytest.raises(RecipeError, match=rejected):
        train(config)


def test_trainer_values_are_typed_and_a_bf16_recipe_checks_on_any_machine():
    config = load_recipe(None, ["train.learning_rate=1e-3", "train.max_steps=7"]).train  # YAML reads 1e-3 as a str
    assert config.trainer_settings["learning_rate"] == 1e-3 and config.trainer_settings["max_steps"] == 7
    paper = load_recipe(REPO / "recipes" / "paper.yaml").train
    check_config(paper)  # bf16 and activation checkpointing: fine without a GPU
    args = trainer_arguments(paper.model_copy(update={"bf16": False}), has_eval=True)
    assert (args.learning_rate, args.num_train_epochs, args.warmup_steps) == (2e-5, 2, 0.05)
    assert args.lr_scheduler_type == "cosine" and args.eval_strategy == "steps" and args.report_to == []
    assert trainer_arguments(paper.model_copy(update={"bf16": False}), has_eval=False).eval_strategy == "no"


class _CaptureArgs(TrainerCallback):
    """Keeps the trainer's own args and stops before the first step."""

    args = None

    def on_train_begin(self, args, state, control, **kwargs):
        self.args = args
        raise _Stop


class _Stop(Exception):
    pass


@pytest.mark.slow
def test_a_dpo_config_argument_the_project_never_mentions_reaches_the_trainer(tmp_path, pairs_dir):
    config = _train_config(tmp_path, pairs_dir, max_grad_norm=0.5, adam_beta2=0.98, preference_eval=False)
    capture = _CaptureArgs()
    with pytest.raises(_Stop):
        train(config, callbacks=[capture])
    args = capture.args
    assert args.max_grad_norm == 0.5 and args.adam_beta2 == 0.98
    assert args.output_dir == str(tmp_path / "train" / "checkpoints") and args.loss_type == ["apo_zero"]
    assert args.max_length == 1024 and args.seed == 42 and args.report_to == [] and args.eval_strategy == "steps"


@pytest.mark.slow
def test_two_processes_through_the_launcher_save_a_loadable_adapter_and_resume_from_their_checkpoint(
    tmp_path, pairs_dir
):
    from peft import PeftModel

    from apo_planner.artifacts import TrainDir
    from apo_planner.training.launch import launch

    config = _train_config(tmp_path, pairs_dir, max_steps=2, save_steps=1, num_processes=2, preference_eval=False)
    run = launch(config)
    assert run.provenance()["placement"]["world_size"] == 2 and run.metrics().steps == 2
    PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(config.base_model), str(run.adapter))
    assert launch(config).metrics().steps == 2  # finished with these settings: not trained further
    # another max_steps is another run; train.resume=force continues this one's checkpoint anyway
    resumed = launch(config.model_copy(update={"max_steps": 3, "resume": "force"}))
    assert resumed.metrics().model_dump()["resumed_from"] == "checkpoint-2" and resumed.metrics().steps == 3
    assert resumed.provenance()["resumed_from"]["forced"] is True
    assert TrainDir(tmp_path / "train").adapter == resumed.adapter


@pytest.mark.slow
def test_a_worker_refusing_its_input_is_one_line_from_the_launcher(tmp_path, pairs_dir):
    from apo_planner.training.launch import launch

    # only the worker measures lengths: its refusal travels back as the launcher's one-line error
    config = _train_config(tmp_path, pairs_dir, max_steps=1, max_length=64, overlong="error")
    with pytest.raises(TrainingInputError) as refused:
        launch(config)
    assert "longer than train.max_length=64" in str(refused.value) and "\n" not in str(refused.value)
