"""The preference dataset's contract: the columns and Arrow features every release has, and its loader.

Columns follow TRL's conversational preference format (`prompt`, `chosen`, `rejected`, `tools`)
plus the structured plans, call counts, a stable `id` and per-row `provenance`. The build stage
writes it, training reads it, cards describe it; all of them agree through this module.
"""

from __future__ import annotations

from datasets import DatasetDict, Features, List, Value

from apo_planner.artifacts import InvalidArtifact

PROVENANCE_FIELDS = (
    "source_dataset",
    "source_split",
    "source_revision",
    "source_row_id",
    "generator",
    "license",
    "synthesizer_model",
    "synthesizer_revision",
    "synthesizer_backend",
    "template_sha256",
    "sampling_params",
    "builder_version",
    "dataset_version",
)

_MESSAGES = List({"role": Value("string"), "content": Value("string")})
_PLAN = List(
    {
        "tool": Value("string"),
        "arguments": Value("string"),
        "rationale": Value("string"),
        "depends_on": List(Value("int32")),
    }
)
FEATURES = Features(
    {
        "id": Value("string"),
        "prompt": _MESSAGES,
        "chosen": _MESSAGES,
        "rejected": _MESSAGES,
        "tools": Value("string"),
        "chosen_plan": _PLAN,
        "rejected_plan": _PLAN,
        "num_calls_chosen": Value("int32"),
        "num_calls_rejected": Value("int32"),
        "removed_calls": List({"index": Value("int32"), "reason": Value("string")}),
        "query": Value("string"),
        "final_answer": Value("string"),
        "provenance": {name: Value("string") for name in PROVENANCE_FIELDS},
    }
)
# What TRL's DPOTrainer reads (conversational preference format with a JSON `tools` column).
PREFERENCE_COLUMNS = ("prompt", "chosen", "rejected", "tools")
SPLITS = ("train", "test")


def load_preference_dataset(path_or_id: str, revision: str | None = None) -> DatasetDict:
    """Load a dataset this toolkit wrote (local dir or Hub repo) and check it has the contract columns."""
    import datasets

    ds = datasets.load_dataset(path_or_id, revision=revision)
    for split, part in ds.items():
        missing = [c for c in PREFERENCE_COLUMNS if c not in part.column_names]
        if missing:
            raise InvalidArtifact(
                f"{path_or_id} split {split!r} lacks columns {missing}; was it built by apo-planner build?"
            )
    return ds
