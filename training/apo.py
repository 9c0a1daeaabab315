"""`apo-planner train`: APO on the preference dataset with TRL's DPOTrainer and a LoRA adapter.

The recipe layer only checks inputs early (columns, base model, loss type, lengths) and records
provenance; training itself is TRL's. Conversational `prompt`/`chosen`/`rejected` go to TRL as
they are, and the JSON `tools` column reaches the chat template through TRL.
"""

from __future__ import annotations

import json
import math
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets

from apo_planner.dataset import PREFERENCE_COLUMNS, load_preference_dataset
from training.config import TrainConfig
from training.provenance import training_provenance


class TrainingInputError(ValueError):
    """Bad training input, explained before TRL sees it."""


def load_base(config: TrainConfig, dtype: Any = None):
    """Tokenizer and model of the base, or a clear error (offline, typo, missing files)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from apo_planner.tiny import ensure_tiny_model

    if config.tiny_model:
        ensure_tiny_model(config.base_model, seed=config.seed)
    local = Path(config.base_model).is_dir()
    revision = None if local else config.base_revision
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


def dpo_config(config: TrainConfig, output: Path, has_eval: bool):
    from trl import DPOConfig

    return DPOConfig(
        output_dir=str(output / "checkpoints"),
        loss_type=[config.loss_type],
        beta=config.beta,
        learning_rate=config.learning_rate,
        num_train_epochs=config.num_train_epochs,
        max_steps=config.max_steps,
        per_device_train_batch_size=config.per_device_train_batch_size,
        per_device_eval_batch_size=config.per_device_eval_batch_size,
        gradient_accumulation_steps=config.gradient_accumulation_steps,
        max_length=config.max_length,
        lr_scheduler_type=config.lr_scheduler_type,
        warmup_steps=config.warmup_ratio,  # transformers 5: a float in [0, 1) is a ratio
        weight_decay=config.weight_decay,
        logging_steps=config.logging_steps,
        eval_strategy="steps" if has_eval else "no",
        eval_steps=config.eval_steps,
        save_strategy="steps",
        save_steps=config.save_steps,
        save_total_limit=config.save_total_limit,
        seed=config.seed,
        bf16=config.bf16,
        activation_checkpointing=config.activation_checkpointing,
        report_to="none",
        disable_tqdm=False,
    )


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


def _last_checkpoint(folder: Path) -> str | None:
    from transformers.trainer_utils import get_last_checkpoint

    return get_last_checkpoint(str(folder)) if folder.is_dir() else None


def train(config: TrainConfig, recipe_sha256: str = "", callbacks: list | None = None) -> TrainResult:
    """Train the adapter; resume from the last checkpoint under `output/checkpoints` if one exists."""
    from trl import DPOTrainer

    output = Path(config.output)
    pairs = load_pairs(config)
    tokenizer, model = load_base(config)
    pairs, lengths = check_lengths(pairs, tokenizer, config)
    if len(pairs["train"]) == 0:
        raise TrainingInputError("no training pairs left; check the dataset and train.max_length")
    eval_set = pairs.get("test")
    has_eval = eval_set is not None and len(eval_set) > 0
    args = dpo_config(config, output, has_eval)
    trainer = DPOTrainer(
        model=model,
        args=args,
        train_dataset=pairs["train"],
        eval_dataset=eval_set if has_eval else None,
        processing_class=tokenizer,
        peft_config=lora_config(config),
        callbacks=callbacks,
    )
    resume = _last_checkpoint(output / "checkpoints")
    started = time.time()
    result = trainer.train(resume_from_checkpoint=resume)
    wall = time.time() - started
    adapter = output / "adapter"
    trainer.save_model(str(adapter))
    tokenizer.save_pretrained(str(adapter))

    steps = trainer.state.global_step
    steps_per_epoch = max(
        1,
        math.ceil(
            len(pairs["train"])
            / (args.per_device_train_batch_size * args.gradient_accumulation_steps * args.world_size)
        ),
    )
    epochs_done = steps / steps_per_epoch
    # chosen + rejected each carry the prompt: two sequences per pair
    tokens = int(2 * lengths["tokens"]["train"] * epochs_done)
    metrics: dict[str, Any] = {
        "loss_type": config.loss_type,
        "train": {k: v for k, v in result.metrics.items()},
        "steps": steps,
        "epochs": round(epochs_done, 4),
        "resumed_from": Path(resume).name if resume else None,
        "tokens_approx": tokens,
        "wall_time_s": round(wall, 2),
        "tokens_per_s": round(tokens / wall, 2) if wall > 0 else None,
        "lengths": lengths,
        "log_history": trainer.state.log_history,
    }
    if has_eval:
        metrics["eval"] = trainer.evaluate()
    if trainer.is_world_process_zero():  # under `accelerate launch`, one writer
        (output / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
        provenance = training_provenance(config, recipe_sha256)
        (output / "training_provenance.json").write_text(json.dumps(provenance, indent=2) + "\n")
    return TrainResult(output=output, metrics=metrics)
