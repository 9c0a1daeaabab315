"""`apo-planner train`: APO on the preference dataset with TRL's DPOTrainer and a LoRA adapter.

The recipe layer only checks inputs early (columns, base model, loss type, lengths, trainer
settings) and records provenance; training itself is TRL's, and so are the trainer settings: the
recipe's trainer keys become `trl.DPOConfig` arguments as written (`trainer_arguments`), with
only the checkpoint folder, loss, length limit, seed and evaluation switch set by the project.
Conversational `prompt`/`chosen`/`rejected` go to TRL as they are, and the JSON `tools` column
reaches the chat template through TRL.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import statistics
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import datasets

from apo_planner.artifacts import (
    ADAPTER_DIR,
    RUN_FILE,
    TrainDir,
    TrainingProvenance,
    TrainMetrics,
    replace_dir,
    write_json,
    write_record,
)
from apo_planner.config import RecipeError
from apo_planner.dataset import PREFERENCE_COLUMNS, load_preference_dataset
from apo_planner.pinning import PinError, resolve
from apo_planner.training import resume as resuming
from apo_planner.training.config import TrainConfig, TrainingInputError, trainer_key_problems
from apo_planner.training.provenance import training_provenance

logger = logging.getLogger(__name__)

if TYPE_CHECKING:
    from trl import DPOConfig

ADAPTER_CONFIG = "adapter_config.json"  # PEFT's name for the adapter's config: it marks a saved adapter


def load_base(config: TrainConfig, dtype: Any = None):
    """Tokenizer and model of the base, or a clear error (offline, typo, missing files)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from apo_planner.tiny import ensure_tiny_model

    if config.tiny_model:
        ensure_tiny_model(config.base_model, seed=config.seed)
    local = Path(config.base_model).is_dir()
    try:
        revision = None if local else resolve(config.base_model, config.base_revision, "model", "train.base_revision")
    except PinError as exc:
        raise TrainingInputError(f"cannot load base model {config.base_model!r}: {exc}") from None
    try:
        tokenizer = AutoTokenizer.from_pretrained(config.base_model, revision=revision)
        model = AutoModelForCausalLM.from_pretrained(
            config.base_model, revision=revision, dtype=dtype if dtype is not None else config.dtype
        )
    except (OSError, ValueError) as exc:
        hint = (
            "no such local directory and the Hub is offline (HF_HUB_OFFLINE=1): download it first with "
            f"`hf download {config.base_model}` or point train.base_model at a local model dir"
            if not local
            else "the directory is not a complete transformers model"
        )
        raise TrainingInputError(f"cannot load base model {config.base_model!r}: {hint} ({exc})") from None
    if tokenizer.chat_template is None:
        raise TrainingInputError(f"base model {config.base_model!r} has no chat template; pick an instruct model")
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer, model


def pin_base(config: TrainConfig) -> TrainConfig:
    """The train section with `base_revision` resolved to its commit, before any process starts: every rank
    loads that commit, and the provenance records it."""
    if config.tiny_model or Path(config.base_model).is_dir():
        return config
    sha = resolve(config.base_model, config.base_revision, "model", "train.base_revision")
    return config.model_copy(update={"base_revision": sha})


def load_pairs(config: TrainConfig) -> datasets.DatasetDict:
    try:
        ds = load_preference_dataset(config.dataset, revision=config.dataset_revision)
    except ValueError as exc:
        raise TrainingInputError(str(exc)) from None
    except FileNotFoundError as exc:
        raise TrainingInputError(
            f"dataset {config.dataset!r} not found ({exc}); run `apo-planner build` first or fix train.dataset"
        ) from None
    if "train" not in ds:
        raise TrainingInputError(f"dataset {config.dataset!r} has no 'train' split (splits: {sorted(ds)})")
    return datasets.DatasetDict({split: part.select_columns(list(PREFERENCE_COLUMNS)) for split, part in ds.items()})


def pair_lengths(ds: datasets.Dataset, tokenizer) -> list[int]:
    """Tokens of prompt + the longer completion, rendered exactly as TRL will (with the tools)."""
    lengths = []
    for row in ds:
        tools = json.loads(row["tools"]) if row["tools"] else None
        longest = 0
        for key in ("chosen", "rejected"):
            ids = tokenizer.apply_chat_template(row["prompt"] + row[key], tools=tools, tokenize=True)
            ids = ids["input_ids"] if isinstance(ids, dict) or hasattr(ids, "keys") else ids
            longest = max(longest, len(ids))
        lengths.append(longest)
    return lengths


def check_lengths(
    ds: datasets.DatasetDict, tokenizer, config: TrainConfig
) -> tuple[datasets.DatasetDict, dict[str, Any]]:
    """Refuse (or drop, by recipe) pairs longer than max_length; report the length distribution."""
    report: dict[str, Any] = {"max_length": config.max_length}
    out = {}
    for split, part in ds.items():
        lengths = pair_lengths(part, tokenizer)
        over = [i for i, n in enumerate(lengths) if n > config.max_length]
        if lengths:
            ordered = sorted(lengths)
            report[split] = {
                "pairs": len(lengths),
                "p50": ordered[len(ordered) // 2],
                "p95": ordered[min(len(ordered) - 1, math.ceil(0.95 * len(ordered)) - 1)],
                "max": ordered[-1],
                "mean": round(statistics.fmean(lengths), 1),
                "over_max_length": len(over),
            }
        if over and config.overlong == "error":
            raise TrainingInputError(
                f"{len(over)} of {len(lengths)} {split} pairs are longer than train.max_length={config.max_length} "
                f"tokens (longest {max(lengths)}); raise train.max_length or set train.overlong=drop"
            )
        out[split] = part.select([i for i in range(len(part)) if lengths[i] <= config.max_length]) if over else part
        report.setdefault("tokens", {})[split] = sum(n for n in lengths if n <= config.max_length)
    return datasets.DatasetDict(out), report


# Project defaults a recipe may override: no tracker unless the recipe names one (transformers 5's
# default too, pinned so a library default cannot start uploading runs), and a progress bar whatever
# the log level.
PROJECT_DEFAULTS: dict[str, Any] = {"report_to": "none", "disable_tqdm": False}
# What `check_config` neutralises: TRL checks these against the machine it runs on (bf16 needs a
# bf16-capable accelerator, tf32 an Ampere GPU), and a recipe is often checked away from its GPU.
DEVICE_FLAGS: dict[str, Any] = dict(bf16=False, fp16=False, bf16_full_eval=False, fp16_full_eval=False, tf32=None)


def _dpo_kwargs(config: TrainConfig, has_eval: bool) -> dict[str, Any]:
    """DPOConfig keyword arguments: the recipe's trainer keys over the project defaults, then what
    the project owns (where checkpoints go, the loss, the length limit, the seed, evaluation only
    when there is a test split)."""
    settings = {**PROJECT_DEFAULTS, **config.trainer_settings}
    settings.update(
        output_dir=str(TrainDir(Path(config.output)).checkpoints),
        loss_type=[config.loss_type],
        max_length=config.max_length,
        seed=config.seed,
        eval_strategy=settings.get("eval_strategy", "steps") if has_eval else "no",
    )
    if _world_size() > 1 and not _has_accelerator():
        settings["use_cpu"] = True  # several processes without a GPU: accelerate's multi-CPU (gloo) data parallel
    return settings


def _world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def _has_accelerator() -> bool:
    import torch

    return torch.cuda.is_available()


def trainer_arguments(config: TrainConfig, has_eval: bool) -> DPOConfig:
    """The `trl.DPOConfig` training runs with; a bad trainer key or value is a RecipeError naming it."""
    return _dpo_config(config, _dpo_kwargs(config, has_eval))


def check_config(config: TrainConfig) -> None:
    """Fail now, not hours later, on a trainer key or value TRL would refuse; loads no data or model.

    Checks every trainer key's name (also for configs built in code, which skip the recipe's
    check) and builds the DPOConfig a run with a test split would use, so DPOConfig's own
    validation (enums, step counts, strategy combinations) runs. The device-dependent flags
    (`DEVICE_FLAGS`) are neutralised, so a bf16 recipe passes on a CPU-only machine; `train`
    builds the real DPOConfig before loading data, where those flags are checked on the machine
    that trains. Building a DPOConfig sets up accelerate's device state, as training does anyway.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # deprecations are reported once, when training builds its own
        _dpo_config(config, {**_dpo_kwargs(config, has_eval=True), **DEVICE_FLAGS})


def _dpo_config(config: TrainConfig, settings: dict[str, Any]) -> DPOConfig:
    from trl import DPOConfig

    problems = trainer_key_problems(config.trainer_settings)
    if problems:
        raise RecipeError("invalid train settings:\n  " + "\n  ".join(problems.values()))
    try:
        return DPOConfig(**settings)
    except Exception as exc:  # DPOConfig raises ValueError, TypeError, ... for values it refuses
        culprits = _culprits(config, settings)
        what = (
            ", ".join(f"train.{k}={settings[k]!r}" for k in culprits) if culprits else "these train settings together"
        )
        hint = ""
        if not culprits and "bf16" in str(exc) and "bf16" not in config.trainer_settings:
            hint = " (trl.DPOConfig turns bf16 on when the recipe does not say; set train.bf16: false here)"
        raise RecipeError(f"invalid train settings: trl.DPOConfig rejects {what}: {exc}{hint}") from exc


def _culprits(config: TrainConfig, settings: dict[str, Any]) -> list[str]:
    """The recipe keys DPOConfig refuses on their own (next to the project's settings), to name them."""
    from trl import DPOConfig

    own = config.trainer_settings
    base = {**{k: v for k, v in settings.items() if k not in own}, **DEVICE_FLAGS}
    culprits = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for key in own:
            try:
                DPOConfig(**{**base, key: settings[key]})
            except Exception:
                culprits.append(key)
    return culprits


def lora_config(config: TrainConfig):
    from peft import LoraConfig

    return LoraConfig(
        r=config.lora.r,
        lora_alpha=config.lora.alpha,
        lora_dropout=config.lora.dropout,
        target_modules=config.lora.target_modules,
        task_type="CAUSAL_LM",
    )


@dataclass
class TrainResult:
    output: Path
    metrics: dict[str, Any]


def _devices(args: Any) -> list[str]:
    """What each rank trained on, as this process sees it (GPU names behind CUDA_VISIBLE_DEVICES)."""
    import torch

    if args.device.type == "cuda":
        visible = os.environ.get("CUDA_VISIBLE_DEVICES", "all")
        return [f"cuda (visible: {visible}) x{args.world_size}: {torch.cuda.get_device_name(args.device)}"]
    return [f"{args.device.type} x{args.world_size}"]


def outputs(config: TrainConfig) -> list[Path]:
    """What `train` leaves behind when it finished: the saved adapter and the run's metrics."""
    run = TrainDir(Path(config.output))
    return [run.adapter / ADAPTER_CONFIG, run.metrics_file]


def train(config: TrainConfig, recipe_sha256: str = "", callbacks: list | None = None) -> TrainResult:
    """Train the adapter, continuing the same run from its last complete checkpoint (`train.resume`,
    `apo_planner.training.resume`); a run that already finished with this key is returned as it is."""
    from trl import DPOTrainer

    run = TrainDir(Path(config.output))
    # every trainer key and value, the device flags on this machine included, before data or model loads
    trainer_arguments(config, has_eval=True)
    pairs = load_pairs(config)
    tokenizer, model = load_base(config)
    key = resuming.run_key(config)
    if config.resume != "never" and run.finished(key.key):
        logger.info("train: %s already holds this run, finished (run key %s); nothing to train", run.root, key.key[:12])
        return TrainResult(output=run.root, metrics=run.metrics().model_dump())
    if _world_size() == 1:  # under several processes the launcher did this once, before starting them
        resuming.prepare(config, key)
    checkpoint = resuming.resume_from(config, key)
    pairs, lengths = check_lengths(pairs, tokenizer, config)
    if len(pairs["train"]) == 0:
        raise TrainingInputError("no training pairs left; check the dataset and train.max_length")
    eval_set = pairs.get("test")
    has_eval = eval_set is not None and len(eval_set) > 0
    args = trainer_arguments(config, has_eval)
    keeper = resuming.run_key_callback(key, checkpoint.wall_time_s if checkpoint else 0.0)
    trainer = DPOTrainer(
        model=model,
        args=args,
        train_dataset=pairs["train"],
        eval_dataset=eval_set if has_eval else None,
        processing_class=tokenizer,
        peft_config=lora_config(config),
        callbacks=[keeper, *(callbacks or [])],
    )
    if checkpoint is not None:
        logger.info("train: resuming from %s (step %d)", checkpoint.path, checkpoint.step)
    started = time.time()
    result = trainer.train(resume_from_checkpoint=str(checkpoint.path) if checkpoint else None)
    wall = time.time() - started
    _save_adapter(trainer, tokenizer, run, key)

    steps = trainer.state.global_step
    steps_per_epoch = max(
        1,
        math.ceil(
            len(pairs["train"])
            / (args.per_device_train_batch_size * args.gradient_accumulation_steps * args.world_size)
        ),
    )
    epochs_done = steps / steps_per_epoch
    whole_wall = keeper.wall_time_s()  # every session of the run, not only this one
    # chosen + rejected each carry the prompt: two sequences per pair
    tokens = int(2 * lengths["tokens"]["train"] * epochs_done)
    log_history = trainer.state.log_history  # restored from the checkpoint, then continued: the whole run
    metrics: dict[str, Any] = {
        "loss_type": config.loss_type,
        # train_loss over every step of the run; the trainer's own figure covers this session only
        "train": {**result.metrics, "train_loss": resuming.whole_run_loss(log_history)},
        "steps": steps,
        "epochs": round(epochs_done, 4),
        "resumed_from": checkpoint.path.name if checkpoint else None,
        "run_key": key.key,
        "tokens_approx": tokens,
        "wall_time_s": round(whole_wall, 2),
        "tokens_per_s": round(tokens / whole_wall, 2) if whole_wall > 0 else None,
        "lengths": lengths,
        "log_history": log_history,
    }
    if checkpoint is not None:
        metrics["session"] = {
            "steps": steps - checkpoint.step,
            "train_loss": result.metrics.get("train_loss"),
            "wall_time_s": round(wall, 2),
        }
    if has_eval:
        metrics["eval"] = trainer.evaluate()
    if trainer.is_world_process_zero():  # under `accelerate launch`, one writer
        write_record(run.metrics_file, TrainMetrics.model_validate(metrics))
        trainer_args = json.loads(args.to_json_string())  # every DPOConfig value the run used, TRL's defaults included
        placement = {"world_size": args.world_size, "devices": _devices(args)}
        provenance = training_provenance(config, recipe_sha256, trainer_args, placement)
        provenance["run_key"] = key.key
        provenance["resumed_from"] = _resumed(checkpoint, key)
        write_record(run.provenance_file, TrainingProvenance.model_validate(provenance))
    return TrainResult(output=run.root, metrics=metrics)


def _save_adapter(trainer: Any, tokenizer: Any, run: TrainDir, key: resuming.RunKey) -> None:
    """The adapter into a hidden sibling, swapped into place once complete with the run key in it. Every
    rank takes part in `save_model` (FSDP gathers the full state dict); rank 0 writes the files."""
    partial = run.root / f".{ADAPTER_DIR}.partial-{key.key[:12]}"  # one name for every rank
    if trainer.is_world_process_zero():
        for stale in run.root.glob(f".{ADAPTER_DIR}.partial-*"):
            shutil.rmtree(stale, ignore_errors=True)
    trainer.save_model(str(partial))
    if trainer.is_world_process_zero():
        tokenizer.save_pretrained(str(partial))
        write_json(partial / RUN_FILE, {"run_key": key.key, **key.parts})
        replace_dir(partial, run.adapter)


def _resumed(checkpoint: resuming.Checkpoint | None, key: resuming.RunKey) -> dict[str, Any] | None:
    if checkpoint is None:
        return None
    same = checkpoint.run_key == key.key
    return {
        "checkpoint": checkpoint.path.name,
        "run_key": checkpoint.run_key,
        "same_run": same,
        **({} if same else {"differences": key.differences(checkpoint.parts), "forced": True}),
    }
