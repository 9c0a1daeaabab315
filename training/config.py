"""Configuration of the training stage (the recipe's `train:` section)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from apo_planner.config import StrictConfig


class LoraSettings(StrictConfig):
    r: int = Field(16, gt=0)
    alpha: int = Field(32, gt=0)
    dropout: float = Field(0.05, ge=0.0, lt=1.0)
    target_modules: list[str] | Literal["all-linear"] = "all-linear"


class TrainConfig(StrictConfig):
    """APO (TRL DPOTrainer, `loss_type=apo_zero` by default) with LoRA via PEFT."""

    base_model: str = Field("Qwen/Qwen3-4B-Instruct-2507", description="Hub id or local model dir")
    base_revision: str = "main"
    tiny_model: bool = Field(False, description="create a tiny random model at `base_model` if absent (smoke)")
    dataset: str = Field("runs/smoke/dataset", description="dataset dir written by `build`, or a Hub dataset id")
    dataset_revision: str | None = Field(None, description="Hub revision or version tag (e.g. v1.0.0)")
    output: str = "runs/smoke/train"

    # TRL accepts more losses but fails on a bad name only at the first step; the Literal fails
    # before any model is loaded.
    loss_type: Literal["apo_zero", "apo_down", "sigmoid"] = "apo_zero"
    beta: float = Field(0.1, gt=0.0)
    learning_rate: float = Field(5e-6, gt=0.0)
    num_train_epochs: float = Field(1.0, gt=0.0)
    max_steps: int = Field(-1, description="> 0 overrides num_train_epochs")
    per_device_train_batch_size: int = Field(4, gt=0)
    per_device_eval_batch_size: int = Field(4, gt=0)
    gradient_accumulation_steps: int = Field(1, gt=0)
    max_length: int = Field(4096, gt=0, description="prompt + completion tokens")
    overlong: Literal["error", "drop"] = Field(
        "error", description="what to do with pairs longer than max_length: stop with a report, or drop and count"
    )
    lr_scheduler_type: str = "cosine"
    warmup_ratio: float = Field(0.1, ge=0.0, lt=1.0)
    weight_decay: float = Field(0.0, ge=0.0)
    logging_steps: int = Field(10, gt=0)
    eval_steps: int = Field(100, gt=0)
    save_steps: int = Field(100, gt=0)
    save_total_limit: int = Field(2, gt=0)
    seed: int = 42
    bf16: bool = False
    activation_checkpointing: bool = False
    dtype: Literal["auto", "bfloat16", "float16", "float32"] = "auto"
    lora: LoraSettings = LoraSettings()
    preference_eval: bool = Field(True, description="lm-eval preference accuracy of base and merged model")
    preference_eval_limit: int | None = Field(None, gt=0, description="evaluate at most this many test pairs")
