"""One way to start training, whatever the scale: `accelerate launch` as a subprocess.

`apo-planner train`, `make train` and the release all come through `launch`, for one process on a
laptop and for eight on a GPU node alike, so a checkpoint written by one is resumable by the other
and the recipe's batch arithmetic (per-device batch x processes) holds everywhere. The worker
(`apo_planner.training.worker`) reads the train section from `<output>/train_config.json`; only the parent
prints, and only rank 0 writes artifacts (`apo_planner.training.apo.train`).

On a machine without CUDA, several processes run as multi-CPU data parallel over gloo (the worker
asks TRL for the CPU); with GPUs, `train.accelerate_config` picks the distribution (FSDP for the
paper recipe) and `train.devices` the GPUs.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
from collections import deque
from pathlib import Path

from apo_planner.artifacts import TrainDir, write_json
from apo_planner.guard import guard, release
from apo_planner.locks import output_lock
from apo_planner.serving import free_port
from apo_planner.tiny import ensure_tiny_model
from apo_planner.training import resume as resuming
from apo_planner.training.config import TrainConfig, TrainingInputError

logger = logging.getLogger(__name__)

CONFIG_FILE = "train_config.json"  # the train section the worker runs, beside the artifacts it writes
WORKER_ERROR = "apo_planner.training.worker: error: "  # how a worker reports a mistake in the input (exit 2)


class LaunchError(Exception):
    """The training processes crashed (not a refused input, which is a `TrainingInputError`); a bug or the
    machine, so it is reported as unexpected, with the tail of their output."""


ACCELERATE_CONFIGS = Path(__file__).resolve().parent / "accelerate"  # shipped: `train.accelerate_config: fsdp`


def accelerate_config_path(config: TrainConfig) -> Path | None:
    """The recipe's accelerate config: a shipped one by name (`fsdp`), else a file path."""
    if config.accelerate_config is None:
        return None
    shipped = ACCELERATE_CONFIGS / f"{config.accelerate_config}.yaml"
    for candidate in (shipped, Path(config.accelerate_config)):
        if candidate.is_file():
            return candidate.resolve()
    names = ", ".join(sorted(p.stem for p in ACCELERATE_CONFIGS.glob("*.yaml")))
    raise TrainingInputError(
        f"train.accelerate_config: {config.accelerate_config} is neither a file nor a shipped config ({names})"
    )


def launch_command(config: TrainConfig, config_json: Path, recipe_sha256: str) -> list[str]:
    # accelerate's launcher through this interpreter: an installed package need not have its scripts on PATH
    command = [sys.executable, "-m", "accelerate.commands.launch"]
    config_file = accelerate_config_path(config)
    if config_file is not None:
        command += ["--config_file", str(config_file)]
    elif config.num_processes > 1:
        command += ["--multi_gpu"]  # torch.distributed launcher; on CPU the worker selects gloo
    command += ["--num_processes", str(config.num_processes), "--num_machines", "1", "--dynamo_backend", "no"]
    if config.num_processes > 1:  # not torch's fixed 29500: two trainings on one node must not collide
        command += ["--main_process_port", str(free_port())]
    command += ["-m", "apo_planner.training.worker", str(config_json), "--recipe-sha256", recipe_sha256]
    return command


def launch_env(config: TrainConfig) -> dict[str, str]:
    env = dict(os.environ)
    if config.devices:
        env["CUDA_VISIBLE_DEVICES"] = ",".join(str(d) for d in config.devices)
    if config.num_processes > 1 and "OMP_NUM_THREADS" not in env:  # processes must not oversubscribe cores
        env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // config.num_processes))
    return env


def pinned_run_key(config: TrainConfig) -> resuming.RunKey:
    """The key a run of `config` records: of the base at the commit its revision resolves to (what `launch`
    trains from), so the release's "is this run finished" asks about the same key the run wrote."""
    from apo_planner.training.apo import pin_base

    return resuming.run_key(pin_base(config))


def launch(config: TrainConfig, recipe_sha256: str = "", tail_lines: int = 40) -> TrainDir:
    """Train in `config.num_processes` processes and return the run folder once they all succeeded
    (one run per output folder at a time; a run that already finished with these settings is not started)."""
    with output_lock(Path(config.output), "train"):
        return _launch(config, recipe_sha256, tail_lines)


def _launch(config: TrainConfig, recipe_sha256: str, tail_lines: int) -> TrainDir:
    from apo_planner.training.apo import load_pairs, pin_base

    load_pairs(config)  # a missing or foreign dataset is refused before any model is made or process started
    config = pin_base(config)  # every rank loads (and the provenance names) one commit of the base
    run = TrainDir(Path(config.output))
    if config.tiny_model:  # made once here: ranks creating it side by side would read half-written files
        ensure_tiny_model(config.base_model, seed=config.seed)
    key = resuming.run_key(config)
    if config.resume != "never" and run.finished(key.key):
        logger.info("train: %s already holds this run, finished (run key %s); nothing to train", run.root, key.key[:12])
        return run
    resuming.prepare(config, key)  # once, before the processes that resume start
    config_json = write_json(run.root / CONFIG_FILE, config.model_dump(mode="json"))
    command = launch_command(config, config_json.resolve(), recipe_sha256)
    tail: deque[str] = deque(maxlen=tail_lines)
    refused: list[str] = []  # a worker's one-line refusal of its input (accelerate turns its exit 2 into 1)
    with subprocess.Popen(
        command,
        env=launch_env(config),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        bufsize=1,
        start_new_session=True,  # its own process group: stopping it stops every worker
    ) as proc:
        guard(proc.pid)  # a launcher killed with -9 takes its training processes with it
        try:
            assert proc.stdout is not None
            for line in proc.stdout:  # the workers' progress reaches the console as it happens
                sys.stdout.write(line)
                tail.append(line)
                if line.startswith(WORKER_ERROR):
                    refused.append(line[len(WORKER_ERROR) :].strip())
        except BaseException:  # Ctrl-C or a failure here: no orphaned workers
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=60)
            raise
        finally:
            release(proc.pid)
    if proc.returncode != 0 and refused:  # the input was refused: that one line says why
        raise TrainingInputError(refused[0])
    if proc.returncode != 0:
        raise LaunchError(
            f"training failed (exit {proc.returncode}; {' '.join(command[:3])} ... -m apo_planner.training.worker); "
            "last lines:\n" + "".join(tail)
        )
    return run
