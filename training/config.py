"""Configuration of the training stage (the recipe's `train:` section).

The section is flat, as in the alignment handbook: the project's own keys are typed fields below,
and every other key is a `trl.DPOConfig` (hence `transformers.TrainingArguments`) argument that
goes to TRL unchanged, with TRL's default for anything the recipe leaves out. A new TRL argument
therefore reaches a recipe without a code change. Flat rather than a nested `train.trainer:`
mapping because the common knobs keep their one obvious spelling (`--set train.learning_rate=...`,
`train.beta`), recipes read like TRL's own examples, and `training_provenance.json` (which the
model card reads) keeps the keys where they always were.

Trainer keys are checked here, when the recipe is read, against DPOConfig's fields: an unknown
name fails with the close matches, and a value is coerced to the field's declared type (`--set
train.learning_rate=1e-3` arrives from YAML as a string). Whether DPOConfig accepts the values
together is `apo_planner.training.apo.check_config`'s job.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import typing
from collections.abc import Iterable
from importlib.metadata import version
from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field, TypeAdapter, ValidationError, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError

from apo_planner.config import StrictConfig
from apo_planner.errors import UserError, module_missing


class TrainingInputError(UserError):
    """Bad training input (dataset, base model, settings), explained before TRL sees it."""


DPO_CONFIG_DOCS = "https://huggingface.co/docs/trl/dpo_trainer#trl.DPOConfig"

# DPOConfig fields that a recipe cannot set: the project derives them from its own keys.
SET_BY_PROJECT = {
    "output_dir": "checkpoints go to <train.output>/checkpoints; set train.output",
    "hub_token": "a recipe is copied into provenance and cards, so it never holds a secret; set HF_TOKEN",
}
# Names people carry over from older transformers/TRL; difflib alone would not say why they went.
RENAMED = {
    "warmup_ratio": "transformers 5 has no warmup_ratio: write warmup_steps, where a float in [0, 1) is a "
    "fraction of the total steps",
}


_POSITIVE = Annotated[float, Field(gt=0, allow_inf_nan=False)]
_NON_NEGATIVE = Annotated[float, Field(ge=0, allow_inf_nan=False)]
_FRACTION = Annotated[float, Field(ge=0, lt=1, allow_inf_nan=False)]
# The ranges TRL itself does not check before the first step (a NaN or negative learning rate trains, and
# produces a NaN adapter); a DPOConfig key outside its range fails when the recipe is read, like a typo.
TRAINER_RANGES: dict[str, Any] = {
    "learning_rate": _POSITIVE,
    "beta": _POSITIVE,
    "num_train_epochs": _POSITIVE,
    "adam_epsilon": _POSITIVE,
    "adam_beta1": _FRACTION,
    "adam_beta2": _FRACTION,
    "weight_decay": _NON_NEGATIVE,
    "max_grad_norm": _NON_NEGATIVE,
    "warmup_steps": _NON_NEGATIVE,
    "per_device_train_batch_size": Annotated[int, Field(gt=0)],
    "per_device_eval_batch_size": Annotated[int, Field(gt=0)],
    "gradient_accumulation_steps": Annotated[int, Field(gt=0)],
    "logging_steps": _POSITIVE,
    "eval_steps": _POSITIVE,
    "save_steps": _POSITIVE,
    "save_total_limit": Annotated[int, Field(gt=0)],
}


class LoraSettings(StrictConfig):
    r: int = Field(16, gt=0)
    alpha: int = Field(32, gt=0)
    dropout: float = Field(0.05, ge=0.0, lt=1.0)
    target_modules: list[str] | Literal["all-linear"] = "all-linear"


class PlanEvalSettings(StrictConfig):
    """The generation metric `merge` computes (`apo_planner.training.plan_quality`): base and merged planner write a
    plan for every held-out prompt, decoded as deployed (the release takes the decoding from `eval.planner`)."""

    enabled: bool = Field(True, description="score base and merged planner's own plans on the test split")
    limit: int | None = Field(None, gt=0, description="at most this many test prompts")
    max_new_tokens: int = Field(512, gt=0)
    constrained: bool = Field(True, description="decode under the catalog's plan grammar, as deployed")
    max_steps: int = Field(8, gt=0)
    max_rationale_chars: int = Field(200, gt=0)
    max_value_chars: int = Field(64, gt=0)
    max_items: int = Field(16, gt=0)
    resamples: int = Field(2000, ge=100, description="paired-bootstrap resamples for base -> merged")
    seed: int = 0

    def decoding(self) -> dict[str, Any]:
        return self.model_dump(exclude={"enabled", "limit", "resamples", "seed"})


GATE_KEYS = {"max_overlong_fraction"}  # what the release decides with the run, not how it trains


class TrainConfig(StrictConfig):
    """APO (TRL DPOTrainer, `loss_type=apo_zero` by default) with LoRA via PEFT.

    Typed here: what the project reads itself (model and data loading, the length check, the
    merge and its evaluation). `loss_type`, `max_length` and `seed` are DPOConfig fields too; the
    project uses them before TRL does, so they are typed and passed on. Any other key is a
    DPOConfig argument (see the module docstring); `trainer_settings` returns them.
    """

    model_config = ConfigDict(extra="allow", frozen=True)

    base_model: str = Field("Qwen/Qwen3-4B-Instruct-2507", description="Hub id or local model dir")
    base_revision: str = "main"
    tiny_model: bool = Field(False, description="create a tiny random model at `base_model` if absent (smoke)")
    dataset: str = Field("runs/smoke/dataset", description="dataset dir written by `build`, or a Hub dataset id")
    dataset_revision: str | None = Field(None, description="Hub revision or version tag (e.g. v1.0.0)")
    output: str = "runs/smoke/train"

    # TRL accepts more losses but fails on a bad name only at the first step; the Literal fails
    # before any model is loaded.
    loss_type: Literal["apo_zero", "apo_down", "sigmoid"] = "apo_zero"
    max_length: int = Field(4096, gt=0, description="prompt + completion tokens")
    overlong: Literal["error", "drop"] = Field(
        "error", description="what to do with pairs longer than max_length: stop with a report, or drop and count"
    )
    seed: int = Field(42, description="training seed, and the tiny model's")
    dtype: Literal["auto", "bfloat16", "float16", "float32"] = "auto"
    lora: LoraSettings = LoraSettings()
    num_processes: int = Field(1, ge=1, description="training processes (`accelerate launch --num_processes`)")
    accelerate_config: str | None = Field(
        None, description="a shipped accelerate config by name (fsdp) or a file; none: plain data parallel"
    )
    devices: list[int] = Field(
        default_factory=list, description="GPU ids training may use (CUDA_VISIBLE_DEVICES); empty: all visible"
    )
    max_overlong_fraction: float = Field(
        0.05, ge=0.0, le=1.0, description="the release stops before publishing when more pairs than this are dropped"
    )
    resume: Literal["auto", "never", "force"] = Field(
        "auto",
        description="auto: continue from a checkpoint of the same run only (same dataset, base model and train "
        "settings), move others aside; never: always start over; force: continue from the last checkpoint "
        "whatever run wrote it",
    )
    preference_eval: bool = Field(
        True,
        description="lm-eval log-likelihood preference of base and merged model (favours the shorter, chosen plan "
        "by construction: a sanity check, not a measure of learning; see plan_eval)",
    )
    preference_eval_limit: int | None = Field(None, gt=0, description="evaluate at most this many test pairs")
    plan_eval: PlanEvalSettings = Field(
        default_factory=PlanEvalSettings,
        description="base and merged planner write plans for the test prompts, scored against chosen/rejected",
    )

    @property
    def trainer_settings(self) -> dict[str, Any]:
        """The recipe's DPOConfig arguments (every key that is not a field above), as typed values."""
        return dict(self.model_extra or {})

    @model_validator(mode="wrap")
    @classmethod
    def _check_trainer_keys(cls, data: Any, handler: Any) -> TrainConfig:
        """Unknown names and values of the wrong type fail here, reported with pydantic's own field errors."""
        if not isinstance(data, dict):
            return handler(data)
        extra = {k: v for k, v in data.items() if k not in cls.model_fields}
        errors: list[InitErrorDetails] = []
        coerced: dict[str, Any] = {}
        # without TRL (a base install that only builds datasets) the trainer keys are kept as written: `train`
        # needs the train extra anyway and reads the recipe again there, with TRL, before anything starts
        if extra and not module_missing("trl"):
            problems = trainer_key_problems(extra)
            errors += [_error(key, message, extra[key]) for key, message in problems.items()]
            types = dpo_fields()
            for key in (k for k in extra if k not in problems):
                try:
                    coerced[key] = _coerce(types[key], extra[key])
                except ValidationError as exc:
                    message = "; ".join(e["msg"] for e in exc.errors())
                    errors.append(
                        _error(key, f"{message} (trl.DPOConfig declares {_type_name(types[key])})", extra[key])
                    )
                    continue
                if key in TRAINER_RANGES and coerced[key] is not None:
                    try:
                        TypeAdapter(TRAINER_RANGES[key]).validate_python(coerced[key])
                    except ValidationError as exc:
                        errors.append(_error(key, "; ".join(e["msg"] for e in exc.errors()), extra[key]))
        try:
            model = handler({**data, **coerced})
        except ValidationError as exc:
            if not errors:
                raise
            errors += [_error(e["loc"], e["msg"], e.get("input"), e["type"]) for e in exc.errors()]
        if errors:
            raise ValidationError.from_exception_data(cls.__name__, errors)
        return model


@functools.cache
def dpo_fields() -> dict[str, Any]:
    """Name -> declared type of every `trl.DPOConfig` argument. Imports TRL (seconds), so only
    when a recipe has trainer keys."""
    from trl import DPOConfig

    hints = typing.get_type_hints(DPOConfig)
    return {f.name: hints[f.name] for f in dataclasses.fields(DPOConfig) if f.init}


def trainer_key_problems(keys: Iterable[str]) -> dict[str, str]:
    """What is wrong with each key that is neither a project key nor a DPOConfig argument."""
    valid = dpo_fields()
    project = sorted(TrainConfig.model_fields)
    problems = {}
    for key in keys:
        if key in SET_BY_PROJECT:
            problems[key] = f"train.{key} is set by the project: {SET_BY_PROJECT[key]}"
        elif key not in valid and key not in TrainConfig.model_fields:
            if key in RENAMED:
                hint = f"; {RENAMED[key]}"
            else:
                close = difflib.get_close_matches(key, sorted({*valid, *project}), n=3)
                hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
            problems[key] = (
                f"unknown key 'train.{key}'; valid keys here: the train section's own ({', '.join(project)}) "
                f"and any trl.DPOConfig argument (TRL {version('trl')}, {DPO_CONFIG_DOCS}){hint}"
            )
    return problems


def _coerce(declared: Any, value: Any) -> Any:
    """The value as written when it already has the declared type (an int stays an int in a float
    field), else pydantic's lax conversion ('1e-3' -> 0.001)."""
    adapter = TypeAdapter(declared)
    try:
        adapter.validate_python(value, strict=True)
        return value
    except ValidationError:
        return adapter.validate_python(value)


def _type_name(declared: Any) -> str:
    return declared.__name__ if isinstance(declared, type) else str(declared)


def _error(loc: str | tuple[Any, ...], message: str, value: Any, kind: str = "train_key") -> InitErrorDetails:
    return InitErrorDetails(
        type=PydanticCustomError(kind, message),
        loc=(loc,) if isinstance(loc, str) else tuple(loc),
        input=value,
    )
