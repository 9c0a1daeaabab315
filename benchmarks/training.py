"""Training throughput: the recipe (`apo_planner.training.apo.train`) vs a bare TRL DPOTrainer script.

Same tiny model, same pairs (train and held-out split), same DPOConfig (the one the recipe's
`train:` section resolves to, `apo_planner.training.apo.trainer_arguments`) and LoRA config, same number of
steps, in one run. Prints training tokens/s of each, timed over the optimisation
steps only (a callback; the evaluation and checkpoint save the trainer adds at the end are
excluded), and the ratio: the recipe layer should add no measurable overhead to the training
loop. The recipe's end-to-end wall time (its up-front length check included) is printed too.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import datasets
from transformers import TrainerCallback

from apo_planner.builders.build import build
from apo_planner.dataset import PREFERENCE_COLUMNS
from apo_planner.entry.recipe import DEFAULT_RECIPE, load_recipe
from apo_planner.tiny import make_tiny_model
from apo_planner.training.apo import lora_config, pair_lengths, train, trainer_arguments


class StepTimer(TrainerCallback):
    """Seconds spent inside optimisation steps only (evaluation and checkpoint saves excluded)."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self._start = 0.0

    def on_step_begin(self, args, state, control, **kwargs):
        self._start = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        self.seconds += time.perf_counter() - self._start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        recipe = load_recipe(DEFAULT_RECIPE, [f"build.output={tmp / 'ds'}", "build.synthesizer=rule"])
        build(recipe.build)
        model_dir = make_tiny_model(tmp / "tiny")
        sets = [
            f"train.dataset={tmp / 'ds'}",
            f"train.base_model={model_dir}",
            f"train.max_steps={args.steps}",
            f"train.save_steps={args.steps * 10}",
            f"train.eval_steps={args.steps * 10}",
            "train.preference_eval=false",
            f"train.logging_steps={args.steps}",
        ]
        config = load_recipe(DEFAULT_RECIPE, sets).train
        splits = datasets.load_dataset(str(tmp / "ds")).select_columns(list(PREFERENCE_COLUMNS))
        pairs = splits["train"]

        from transformers import AutoModelForCausalLM, AutoTokenizer
        from trl import DPOTrainer

        tokenizer = AutoTokenizer.from_pretrained(model_dir)
        tokens_per_pair = 2 * sum(pair_lengths(pairs, tokenizer)) / len(pairs)
        settings = trainer_arguments(config, has_eval=False)
        pairs_per_step = settings.per_device_train_batch_size * settings.gradient_accumulation_steps
        tokens = tokens_per_pair * pairs_per_step * args.steps

        bare_rates, recipe_rates, recipe_walls = [], [], []
        for i in range(args.repeats):
            bare_args = trainer_arguments(config.model_copy(update={"output": str(tmp / f"bare-{i}")}), has_eval=False)
            bare_timer = StepTimer()  # both runs timed the same way: optimisation steps only
            trainer = DPOTrainer(
                model=AutoModelForCausalLM.from_pretrained(model_dir, dtype="float32"),
                args=bare_args,
                train_dataset=pairs,
                processing_class=tokenizer,
                peft_config=lora_config(config),
                callbacks=[bare_timer],
            )
            trainer.train()
            bare_rates.append(tokens / bare_timer.seconds)

            run = config.model_copy(update={"output": str(tmp / f"recipe-{i}")})
            recipe_timer = StepTimer()
            start = time.perf_counter()
            train(run, callbacks=[recipe_timer])
            recipe_walls.append(time.perf_counter() - start)
            recipe_rates.append(tokens / recipe_timer.seconds)

    bare, recipe_rate = max(bare_rates), max(recipe_rates)
    print("bare runs tokens/s:", [round(r) for r in bare_rates], "recipe runs:", [round(r) for r in recipe_rates])
    print(json.dumps({"steps": args.steps, "tokens_per_step": round(tokens / args.steps)}, indent=None))
    print(f"{'run':<44}{'tokens/s':>12}")
    print(f"{'bare TRL DPOTrainer (floor)':<44}{bare:>12,.0f}")
    print(f"{'apo-planner train (recipe)':<44}{recipe_rate:>12,.0f}")
    print(f"recipe / bare: {recipe_rate / bare:.3f}x (1.0 = no overhead in the training loop)")
    print(f"recipe end-to-end wall (length check, train, final eval, save): {min(recipe_walls):.1f} s")


if __name__ == "__main__":
    main()
