"""`apo-planner merge`: fold the LoRA adapter into the base and write a standalone model.

The merged folder is what `AutoModelForCausalLM.from_pretrained` and `vllm serve` load:
safetensors weights, config, tokenizer with its chat template, and generation config.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from training.apo import load_base
from training.config import TrainConfig


def merge(config: TrainConfig, adapter: str | Path | None = None, output: str | Path | None = None) -> Path:
    from peft import PeftModel

    adapter = Path(adapter or Path(config.output) / "adapter")
    output = Path(output or Path(config.output) / "merged")
    if not (adapter / "adapter_config.json").is_file():
        raise FileNotFoundError(f"no adapter at {adapter}; run `apo-planner train` first")
    tokenizer, base = load_base(config)
    merged = PeftModel.from_pretrained(base, str(adapter)).merge_and_unload()
    if output.exists():
        shutil.rmtree(output)
    merged.save_pretrained(str(output), safe_serialization=True)  # generation_config.json included
    tokenizer.save_pretrained(str(output))
    if config.preference_eval:
        _preference_eval(config, tokenizer, output)
    for name in ("metrics.json", "training_provenance.json"):
        src = Path(config.output) / name
        if src.is_file():
            shutil.copy(src, output / name)
    (output / "apo_planner_merge.json").write_text(
        json.dumps({"adapter": str(adapter.name), "base_model": config.base_model}, indent=2) + "\n"
    )
    return output


def _preference_eval(config: TrainConfig, tokenizer, merged: Path) -> None:
    """Preference accuracy of base and merged model on the held-out pairs, into metrics.json."""
    from training.apo import load_pairs
    from training.preference_eval import preference_accuracy, write_task

    test = load_pairs(config).get("test")
    metrics_path = Path(config.output) / "metrics.json"
    metrics = json.loads(metrics_path.read_text()) if metrics_path.is_file() else {}
    if test is None or len(test) == 0:
        metrics["preference_accuracy"] = {"skipped": "the dataset has no test split"}
    else:
        folder = Path(config.output) / "lm_eval_task"
        write_task(test, tokenizer, folder, config.dataset, config.preference_eval_limit)
        # the base exactly as training loaded it (revision, dtype), and the merge in the same dtype
        revision = None if Path(config.base_model).is_dir() else config.base_revision
        metrics["preference_accuracy"] = {
            "base": preference_accuracy(config.base_model, folder, dtype=config.dtype, revision=revision),
            "merged": preference_accuracy(merged, folder, dtype=config.dtype),
        }
    metrics_path.write_text(json.dumps(metrics, indent=2) + "\n")
