"""Log-likelihood preference as an lm-eval task: does the model give the efficient plan a higher
log-likelihood than the redundant one?

What it is, and is not: the rejected plan is the longer one (it keeps the calls the chosen plan removed), so a
sum of token log-likelihoods favours the chosen plan by construction; a random base model already scores
near 1.0, and so does every trained model. It stays as a check that the planner's prompt and plans render
and score through lm-eval; what the planner learned is measured by `apo_planner.training.plan_quality` (the
planner writing plans, scored against chosen and rejected).

The test pairs are rendered once with the planner's chat template (system prompt, query and
tools, generation prompt) into a parquet file; a task YAML rendered from a Jinja template points
lm-eval at it by absolute path. lm-eval's Python API then scores any model on it: base and
merged, side by side in `metrics.json` (`preference_accuracy`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import datasets

from apo_planner.templating import render_file

TEMPLATE = Path(__file__).parent / "templates" / "preference_accuracy.yaml.jinja"
TASK_NAME = "apo_planner_preference"


def write_task(pairs: datasets.Dataset, tokenizer, folder: Path, dataset_id: str, limit: int | None = None) -> str:
    """Render the test pairs and the task YAML into `folder`; returns the task name."""
    folder.mkdir(parents=True, exist_ok=True)
    if limit is not None:
        pairs = pairs.select(range(min(limit, len(pairs))))
    rows = []
    for row in pairs:
        tools = json.loads(row["tools"]) if row["tools"] else None
        context = tokenizer.apply_chat_template(row["prompt"], tools=tools, tokenize=False, add_generation_prompt=True)
        rows.append(
            {"context": context, "chosen": row["chosen"][0]["content"], "rejected": row["rejected"][0]["content"]}
        )
    data_file = (folder / "test.parquet").resolve()
    datasets.Dataset.from_list(rows).to_parquet(str(data_file))
    yaml_text = render_file(TEMPLATE, task_name=TASK_NAME, data_file=str(data_file), dataset_id=dataset_id)
    (folder / f"{TASK_NAME}.yaml").write_text(yaml_text, encoding="utf-8")
    return TASK_NAME


def preference_accuracy(
    model_dir: str | Path, task_folder: Path, dtype: str = "auto", revision: str | None = None, batch_size: int = 4
) -> dict[str, Any]:
    """Run the task through lm-eval's Python API on a model dir or Hub id (at `revision`)."""
    import lm_eval
    import torch
    from lm_eval.tasks import TaskManager

    results = lm_eval.simple_evaluate(
        model="hf",
        device="cuda" if torch.cuda.is_available() else "cpu",
        model_args={"pretrained": str(model_dir), "dtype": dtype, **({"revision": revision} if revision else {})},
        tasks=[TASK_NAME],
        task_manager=TaskManager(include_path=str(task_folder)),
        batch_size=batch_size,
        log_samples=False,
        random_seed=0,
    )
    task = results["results"][TASK_NAME]
    return {
        "acc": task.get("acc,none"),
        "acc_stderr": task.get("acc_stderr,none"),
        "acc_norm": task.get("acc_norm,none"),
        "pairs": results.get("n-samples", {}).get(TASK_NAME, {}).get("effective"),
    }
