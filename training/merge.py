"""`apo-planner merge`: fold the LoRA adapter into the base and write a standalone model.

The merged folder is what `AutoModelForCausalLM.from_pretrained` and `vllm serve` load:
safetensors weights, config, tokenizer with its chat template, and generation config. It is written
as a hidden sibling and swapped into place once complete (its merge info is written last), so a merge
that fails or is killed leaves the previous merged model as it was.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from apo_planner.artifacts import (
    MERGE_INFO_FILE,
    MissingArtifact,
    TrainDir,
    TrainMetrics,
    atomic_dir,
    read_json,
    write_json,
    write_record,
)
from apo_planner.locks import output_lock
from apo_planner.training.apo import ADAPTER_CONFIG, load_base, pin_base
from apo_planner.training.config import TrainConfig

MODEL_CONFIG = "config.json"  # transformers' name for a model's config: it marks a saved model
LM_EVAL_TASK_DIR = "lm_eval_task"  # under train.output: the rendered preference-accuracy task


def outputs(config: TrainConfig) -> list[Path]:
    """What `merge` leaves behind at its default place: the merged model's folder."""
    return [TrainDir(Path(config.output)).merged / MODEL_CONFIG]


def merge(config: TrainConfig, adapter: str | Path | None = None, output: str | Path | None = None) -> Path:
    from peft import PeftModel

    run = TrainDir(Path(config.output))
    adapter = Path(adapter) if adapter else run.adapter
    output = Path(output) if output else run.merged
    if not (adapter / ADAPTER_CONFIG).is_file():
        raise MissingArtifact(f"no adapter at {adapter}; run `apo-planner train` first")
    config = pin_base(config)  # the base at the commit training used (and preference accuracy at it too)
    with output_lock(output, "merge"):
        tokenizer, base = load_base(config)
        merged = PeftModel.from_pretrained(base, str(adapter)).merge_and_unload()
        with atomic_dir(output) as folder:
            merged.save_pretrained(str(folder), safe_serialization=True)  # generation_config.json included
            tokenizer.save_pretrained(str(folder))
            if config.preference_eval:
                _preference_eval(config, tokenizer, folder)
            if config.plan_eval.enabled:
                _plan_eval(config, folder)
            for src in (run.metrics_file, run.provenance_file):
                if src.is_file():
                    shutil.copy(src, folder / src.name)
            info = {"adapter": str(adapter.name), "base_model": config.base_model}
            write_json(folder / MERGE_INFO_FILE, info)  # last: it marks the folder complete
    return output


def _plan_eval(config: TrainConfig, merged: Path) -> None:
    """Base and merged planner write a plan for every held-out prompt (the deployment decoding); the generation
    metrics with base -> merged paired intervals go into metrics.json as `plan_generation`."""
    from apo_planner.dataset import load_preference_dataset
    from apo_planner.plan_grammar import GrammarLimits
    from apo_planner.planner import Planner
    from apo_planner.training.plan_quality import plan_generation

    settings = config.plan_eval
    run = TrainDir(Path(config.output))
    metrics = read_json(run.metrics_file, "train") if run.metrics_file.is_file() else {}
    test = load_preference_dataset(config.dataset, revision=config.dataset_revision).get("test")
    if test is None or len(test) == 0:
        metrics["plan_generation"] = None
        _write_metrics(run, metrics)
        return
    rows = list(test.select(range(min(settings.limit or len(test), len(test)))))
    limits = GrammarLimits(
        max_steps=settings.max_steps,
        max_rationale_chars=settings.max_rationale_chars,
        max_string_chars=settings.max_value_chars,
        max_items=settings.max_items,
    )
    common = {"max_new_tokens": settings.max_new_tokens, "constrained": settings.constrained, "limits": limits}
    revision = None if Path(config.base_model).is_dir() else config.base_revision
    base = Planner.from_pretrained(config.base_model, revision=revision, dtype=config.dtype, **common)
    planner = Planner.from_pretrained(str(merged), dtype=config.dtype, **common)
    result = plan_generation(base, planner, rows, settings.decoding(), settings.resamples, settings.seed)
    metrics["plan_generation"] = result.model_dump(mode="json")
    _write_metrics(run, metrics)


def _preference_eval(config: TrainConfig, tokenizer, merged: Path) -> None:
    """lm-eval's log-likelihood preference of base and merged model on the held-out pairs, into metrics.json. The
    rejected plan is the longer one, so raw log-likelihood prefers the chosen plan by construction (a random model
    already scores near 1.0): a check that the task runs, not a measure of learning (`plan_generation` is)."""
    from apo_planner.training.apo import load_pairs
    from apo_planner.training.preference_eval import preference_accuracy, write_task

    run = TrainDir(Path(config.output))
    test = load_pairs(config).get("test")
    # an adapter trained elsewhere (--adapter) comes without this run's metrics: start them
    metrics = read_json(run.metrics_file, "train") if run.metrics_file.is_file() else {}
    if test is None or len(test) == 0:
        metrics["preference_accuracy"] = {"skipped": "the dataset has no test split"}
    else:
        folder = run.root / LM_EVAL_TASK_DIR
        write_task(test, tokenizer, folder, config.dataset, config.preference_eval_limit)
        # the base exactly as training loaded it (revision, dtype), and the merge in the same dtype
        revision = None if Path(config.base_model).is_dir() else config.base_revision
        metrics["preference_accuracy"] = {
            "base": preference_accuracy(config.base_model, folder, dtype=config.dtype, revision=revision),
            "merged": preference_accuracy(merged, folder, dtype=config.dtype),
        }
    _write_metrics(run, metrics)


def _write_metrics(run: TrainDir, metrics: dict) -> None:
    """Through `TrainMetrics` when this run trained the adapter; an adapter trained elsewhere (`--adapter`)
    has only what the merge measured."""
    if "loss_type" in metrics:
        write_record(run.metrics_file, TrainMetrics.model_validate(metrics))
    else:
        write_json(run.metrics_file, metrics)
