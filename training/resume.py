"""Resuming training: a run continues only from its own checkpoints, and a finished run is left alone.

A run is named by its key: the dataset's fingerprint, the base model and its revision, and the sha256
of the train settings that decide the weights (`KEY_EXCLUDES` lists what does not: where the run
writes, how often it logs, evaluates and saves, the release's gates). The key is written into every
checkpoint (in `trainer_state.json`, which the trainer writes last, so a checkpoint that has a key is
complete), into the saved adapter (`apo_planner_run.json`) and into `metrics.json`.

`train.resume`:
- `auto` (default): resume from the newest complete checkpoint with this run's key; checkpoints of
  other runs are moved to `<output>/superseded/` with one log line saying what differs;
- `never`: move every checkpoint aside and start from step 0;
- `force`: resume from the newest complete checkpoint whatever run wrote it (provenance says so).
A checkpoint a save did not finish (no readable `trainer_state.json`) is removed in every mode, and a
run whose adapter and metrics already carry this key is not trained again (`auto` and `force`).
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from apo_planner.artifacts import TrainDir, sha256_files
from apo_planner.training.config import GATE_KEYS, TrainConfig

logger = logging.getLogger(__name__)

CHECKPOINT = re.compile(r"checkpoint-(\d+)")
TRAINER_STATE = "trainer_state.json"  # transformers writes it last into a checkpoint
SUPERSEDED_DIR = "superseded"
# Train keys that do not change the weights: where the run reads and writes (the data and the base are
# keyed by content instead), how it reports, and what the release decides from it.
KEY_EXCLUDES = {
    "output",
    "dataset",
    "dataset_revision",
    "base_model",
    "base_revision",
    "tiny_model",
    "resume",
    "devices",
    "preference_eval",  # measured by merge, keyed there (MERGE_KEYS)
    "preference_eval_limit",
    "plan_eval",
    *GATE_KEYS,
    "logging_steps",
    "logging_strategy",
    "logging_first_step",
    "logging_dir",
    "eval_steps",
    "eval_strategy",
    "per_device_eval_batch_size",
    "save_steps",
    "save_strategy",
    "save_total_limit",
    "report_to",
    "run_name",
    "disable_tqdm",
}


# What `merge` measures after merging: not part of the training run, part of the merge stage's key.
MERGE_KEYS = {"preference_eval", "preference_eval_limit", "plan_eval"}


@dataclass(frozen=True)
class RunKey:
    key: str
    parts: dict[str, Any] = field(default_factory=dict)  # dataset, base_model, settings (what the key hashes)

    def differences(self, other: dict[str, Any] | None) -> str:
        """What differs from the run that wrote `other` (its parts), for the one log line."""
        if not other:
            return "written before checkpoints carried a run key"
        out = []
        for part in ("dataset", "base_model"):
            if other.get(part) != self.parts.get(part):
                out.append(f"{part} {other.get(part)} -> {self.parts.get(part)}")
        mine, theirs = self.parts.get("settings", {}), other.get("settings", {})
        for key in sorted(set(mine) | set(theirs)):
            if mine.get(key) != theirs.get(key):
                out.append(f"train.{key} {theirs.get(key)!r} -> {mine.get(key)!r}")
        return "; ".join(out) or "another run key"


def _sha(data: Any) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()


def _dataset_part(config: TrainConfig) -> dict[str, Any]:
    from apo_planner.training.provenance import dataset_identity

    identity = dataset_identity(config.dataset, config.dataset_revision)
    if identity.get("fingerprint", "unknown") != "unknown":
        return {"fingerprint": identity["fingerprint"]}
    return {"id": config.dataset, "revision": config.dataset_revision}


def _base_part(config: TrainConfig) -> dict[str, Any]:
    if config.tiny_model:  # made from the seed (keyed in the settings): the same seed, the same model
        return {"tiny_model": True}
    folder = Path(config.base_model)
    if not folder.is_dir():
        return {"id": config.base_model, "revision": config.base_revision}
    # the bytes, not sizes: another fine-tune of the same architecture has the same config and sizes. Streamed
    # once per run (seconds for a 4B model), so a replaced base is never taken for the one a checkpoint saw
    files = sorted(p for pattern in ("config.json", "*.safetensors", "*.bin") for p in folder.glob(pattern))
    content = _sha([[p.name for p in files], sha256_files(files)])
    return {"local": folder.name, "content": content[:16]}


def run_key(config: TrainConfig) -> RunKey:
    settings = config.model_dump(mode="json", exclude=KEY_EXCLUDES)
    parts = {"dataset": _dataset_part(config), "base_model": _base_part(config), "settings": settings}
    return RunKey(_sha([parts["dataset"], parts["base_model"], _sha(settings)]), parts)


@dataclass(frozen=True)
class Checkpoint:
    path: Path
    step: int
    run_key: str | None
    parts: dict[str, Any] | None
    wall_time_s: float


def read_checkpoint(path: Path) -> Checkpoint | None:
    """The checkpoint at `path`, or None when its save did not finish."""
    match = CHECKPOINT.fullmatch(path.name)
    if not match or not path.is_dir():
        return None
    try:
        state = json.loads((path / TRAINER_STATE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if state.get("global_step") != int(match.group(1)):
        return None
    mine = (state.get("stateful_callbacks") or {}).get(CALLBACK_NAME) or {}
    args = mine.get("args", {}) if isinstance(mine, dict) else {}
    return Checkpoint(path, int(match.group(1)), args.get("run_key"), args.get("parts"), args.get("wall_time_s", 0.0))


def checkpoints(config: TrainConfig) -> tuple[list[Checkpoint], list[Path]]:
    """(complete checkpoints by step, folders of saves that did not finish) under `<output>/checkpoints`."""
    folder = TrainDir(Path(config.output)).checkpoints
    if not folder.is_dir():
        return [], []
    complete, incomplete = [], []
    for path in folder.iterdir():
        if CHECKPOINT.fullmatch(path.name):
            found = read_checkpoint(path)
            complete.append(found) if found else incomplete.append(path)
    return sorted(complete, key=lambda c: c.step), sorted(incomplete)


def prepare(config: TrainConfig, key: RunKey) -> None:
    """Leave under `<output>/checkpoints` only what this run may resume from (one process does this,
    before the training processes start): unfinished saves removed, other runs' checkpoints moved aside."""
    complete, incomplete = checkpoints(config)
    for path in incomplete:
        shutil.rmtree(path, ignore_errors=True)
    if incomplete:
        logger.info(
            "train: removed %d checkpoint(s) whose save did not finish (%s)",
            len(incomplete),
            ", ".join(p.name for p in incomplete),
        )
    if config.resume == "force":
        return
    aside = complete if config.resume == "never" else [c for c in complete if c.run_key != key.key]
    if not aside:
        return
    run = TrainDir(Path(config.output))
    target = run.root / SUPERSEDED_DIR / f"checkpoints-{time.strftime('%Y%m%d-%H%M%S')}"
    target.mkdir(parents=True, exist_ok=True)
    for c in aside:
        c.path.rename(target / c.path.name)
    why = "train.resume is never" if config.resume == "never" else f"another run ({key.differences(aside[-1].parts)})"
    kept = [c for c in complete if c not in aside]
    then = f"resuming from {kept[-1].path.name}" if kept else "training from step 0"
    logger.info("train: moved %d checkpoint(s) of %s to %s; %s", len(aside), why, target, then)


def resume_from(config: TrainConfig, key: RunKey) -> Checkpoint | None:
    """The checkpoint this run continues from (read only: every training process asks)."""
    if config.resume == "never":
        return None
    complete, _ = checkpoints(config)
    usable = complete if config.resume == "force" else [c for c in complete if c.run_key == key.key]
    return usable[-1] if usable else None


def whole_run_loss(log_history: list[dict[str, Any]]) -> float | None:
    """Mean training loss over every step of the run, resumed sessions included: each logged loss is the
    mean since the previous log, so it weighs as many steps as it covers (`RunKeyCallback` logs at every
    save and at the last step, so the logs cover each step exactly once)."""
    previous, total, steps = 0, 0.0, 0
    for entry in log_history:
        if "loss" in entry and "step" in entry and entry["step"] > previous:
            span = entry["step"] - previous
            total += entry["loss"] * span
            steps += span
            previous = entry["step"]
    return total / steps if steps else None


CALLBACK_NAME = "RunKeyCallback"  # its entry in trainer_state.json's stateful_callbacks


def run_key_callback(key: RunKey, wall_time_s: float = 0.0) -> Any:
    """A trainer callback that writes the run key (and the run's wall time so far) into every checkpoint's
    trainer_state.json, and logs the loss at every save and at the last step, so the log of a resumed run
    covers every step. (Built here so that reading keys does not import transformers.)"""
    return _callback_class()(key.key, key.parts, wall_time_s)


@functools.cache
def _callback_class() -> type:
    from transformers import TrainerCallback
    from transformers.trainer_callback import ExportableState

    class RunKeyCallback(TrainerCallback, ExportableState):
        def __init__(self, run_key: str, parts: dict[str, Any] | None = None, wall_time_s: float = 0.0) -> None:
            self.run_key = run_key
            self.parts = parts or {}
            self.wall_before = wall_time_s
            self.started = time.time()

        def state(self) -> dict[str, Any]:
            wall = round(self.wall_before + time.time() - self.started, 2)
            return {"args": {"run_key": self.run_key, "parts": self.parts, "wall_time_s": wall}, "attributes": {}}

        def wall_time_s(self) -> float:
            return self.state()["args"]["wall_time_s"]

        def on_train_begin(self, args, state, control, **kwargs):
            self.started = time.time()
            # a checkpoint of another run (train.resume=force) has no entry for this callback: give it one
            state.stateful_callbacks.setdefault(CALLBACK_NAME, self.state())

        def on_step_end(self, args, state, control, **kwargs):
            if control.should_save or state.global_step >= state.max_steps:
                control.should_log = True

    assert RunKeyCallback.__name__ == CALLBACK_NAME
    return RunKeyCallback
