"""Faults a release must survive: each test kills or fails a run at a named point, then checks that
the next run succeeds and equals an uninterrupted one, and that nothing stale, half-written or still
running is left behind (docs/troubleshooting/faults.md)."""

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from apo_planner.artifacts import DatasetDir, TrainDir
from apo_planner.builders.build import build
from apo_planner.entry.cli import main
from apo_planner.entry.recipe import load_recipe
from apo_planner.serving import free_port, served_models
from tests.conftest import REPO, SMOKE_SOURCE, nemotron_row, weather_conversation, write_jsonl

pytestmark = pytest.mark.slow

TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "w",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
CITIES = ["Oslo", "Rome", "Lima", "Pune", "Kyiv", "Baku", "Doha", "Riga"]
CLI = [sys.executable, "-m", "apo_planner.entry.cli"]


def _wait(condition, seconds: float, step: float = 0.05) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(step)
    return condition()


def _sets(overrides: dict) -> list[str]:
    return [f"{k}={v}" for k, v in overrides.items()]


def _argv(command: str, overrides: dict) -> list[str]:
    return [command, *[a for s in _sets(overrides) for a in ("--set", s)]]


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _leftovers(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if ".partial-" in p.name or ".old-" in p.name)


# --- training ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pairs_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("pairs")
    rows = [
        nemotron_row(
            weather_conversation(
                ("get_weather", {"city": c}, "sunny"), ("get_weather", {"city": c}, "sunny"), query=f"Weather in {c}?"
            ),
            tools=[TOOL],
            uuid=f"u{i}",
        )
        for i, c in enumerate(CITIES * 2)
    ]
    sets = {
        "build.source": write_jsonl(root / "src.jsonl", rows),
        "build.output": root / "ds",
        "build.synthesizer": "rule",
        "build.test_fraction": 0.25,
    }
    build(load_recipe(None, _sets(sets)).build)
    return root / "ds"


def _train_sets(output: Path, dataset: Path, **extra) -> dict:
    return {
        "train.dataset": dataset,
        "train.output": output,
        "train.base_model": dataset.parent / "tiny-base",
        "train.tiny_model": True,
        "train.max_steps": 8,
        "train.learning_rate": 5e-3,
        "train.logging_steps": 1,
        "train.eval_steps": 100,
        "train.save_steps": 2,
        "train.save_total_limit": 3,
        "train.max_length": 1024,
        "train.per_device_train_batch_size": 4,
        "train.preference_eval": False,
        **{f"train.{k}": v for k, v in extra.items()},
    }


def _train_config(output: Path, dataset: Path, **extra):
    return load_recipe(None, _sets(_train_sets(output, dataset, **extra))).train


def _adapter(output: Path) -> bytes:
    return (TrainDir(output).adapter / "adapter_model.safetensors").read_bytes()


def _losses(metrics: dict) -> list[tuple[int, float]]:
    return [(e["step"], e["loss"]) for e in metrics["log_history"] if "loss" in e]


@pytest.fixture(scope="module")
def reference(tmp_path_factory, pairs_dir):
    """An uninterrupted in-process run: what every interrupted one must end up equal to."""
    from apo_planner.training.apo import train

    output = tmp_path_factory.mktemp("reference") / "train"
    return output, train(_train_config(output, pairs_dir)).metrics


def _complete_checkpoint(folder: Path) -> bool:
    try:
        return json.loads((folder / "trainer_state.json").read_text())["global_step"] > 0
    except (OSError, ValueError, KeyError):
        return False


def _processes_mentioning(text: str) -> list[int]:
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if text in (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"):
                    found.append(int(proc.name))
            except OSError:
                continue
    return found


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="finds the training processes through /proc")
def test_train_killed_after_a_checkpoint_resumes_to_the_identical_adapter(tmp_path, pairs_dir):
    """kill -9 of `apo-planner train` (the launcher only) once checkpoint-2 is saved: its training
    processes die with it, and the next run resumes to the adapter an uninterrupted run trains."""
    from apo_planner.training.launch import launch

    overrides = _train_sets(tmp_path / "killed", pairs_dir)
    proc = subprocess.Popen([*CLI, *_argv("train", overrides)], cwd=REPO, stdout=subprocess.DEVNULL, env=os.environ)
    checkpoint = tmp_path / "killed" / "checkpoints" / "checkpoint-2"
    assert _wait(lambda: _complete_checkpoint(checkpoint) or proc.poll() is not None, 300)
    assert proc.poll() is None, "training finished before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    worker_config = str(tmp_path / "killed" / "train_config.json")
    assert _wait(lambda: not _processes_mentioning(worker_config), 30), "training processes outlived the launcher"
    assert not TrainDir(tmp_path / "killed").adapter.exists()

    resumed = launch(load_recipe(None, _sets(overrides)).train).metrics().model_dump()
    uninterrupted = launch(_train_config(tmp_path / "uninterrupted", pairs_dir)).metrics().model_dump()
    assert resumed["resumed_from"] is not None and uninterrupted["resumed_from"] is None
    assert _adapter(tmp_path / "killed") == _adapter(tmp_path / "uninterrupted")
    assert resumed["steps"] == uninterrupted["steps"] == 8
    assert _losses(resumed) == _losses(uninterrupted)  # the log of the whole run, both sessions
    assert resumed["train"]["train_loss"] == pytest.approx(uninterrupted["train"]["train_loss"], rel=1e-9)


def test_a_save_that_fails_mid_checkpoint_is_not_resumed_from(tmp_path, pairs_dir, reference, monkeypatch, caplog):
    """A full disk while checkpoint-4 is saved leaves a 0-byte trainer_state.json: the next run removes
    that checkpoint, resumes from checkpoint-2 and ends equal to the uninterrupted run."""
    from transformers.trainer_callback import TrainerState

    from apo_planner.training.apo import train

    real = TrainerState.save_to_json

    def full_disk(self, path):
        if "checkpoint-4" in str(path):
            Path(path).write_text("")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(self, path)

    config = _train_config(tmp_path / "train", pairs_dir)
    monkeypatch.setattr(TrainerState, "save_to_json", full_disk)
    with pytest.raises(OSError, match="No space left"):
        train(config)
    monkeypatch.undo()
    assert (tmp_path / "train" / "checkpoints" / "checkpoint-4" / "trainer_state.json").stat().st_size == 0
    with caplog.at_level("INFO"):
        metrics = train(config).metrics
    assert "removed 1 checkpoint(s) whose save did not finish (checkpoint-4)" in caplog.text
    assert metrics["resumed_from"] == "checkpoint-2"
    ref_output, ref_metrics = reference
    assert _adapter(tmp_path / "train") == _adapter(ref_output)
    assert _losses(metrics) == _losses(ref_metrics)
    assert metrics["train"]["train_loss"] == pytest.approx(ref_metrics["train"]["train_loss"], rel=1e-9)


def test_a_changed_learning_rate_after_a_finished_run_trains_anew_and_says_so(tmp_path, pairs_dir, reference, caplog):
    from apo_planner.training.apo import train

    ref_output, _ = reference
    output = tmp_path / "train"
    shutil.copytree(ref_output, output)  # a finished run at learning rate 5e-3
    before = (output / "metrics.json").read_bytes()
    with caplog.at_level("INFO"):
        again = train(_train_config(output, pairs_dir))  # the same settings: nothing to do
    assert "nothing to train" in caplog.text and (output / "metrics.json").read_bytes() == before
    assert again.metrics["steps"] == 8

    caplog.clear()
    with caplog.at_level("INFO"):
        changed = train(_train_config(output, pairs_dir, learning_rate=1e-3)).metrics
    moved = [r.getMessage() for r in caplog.records if "moved" in r.getMessage()]
    assert len(moved) == 1 and "train.learning_rate 0.005 -> 0.001" in moved[0], caplog.text
    assert "training from step 0" in moved[0] and changed["resumed_from"] is None
    assert _adapter(output) != _adapter(ref_output)
    provenance = TrainDir(output).provenance()
    assert provenance["train_config"]["learning_rate"] == provenance["trainer_args"]["learning_rate"] == 1e-3
    assert provenance["resumed_from"] is None and provenance["run_key"] == changed["run_key"]
    fresh = train(_train_config(tmp_path / "fresh", pairs_dir, learning_rate=1e-3)).metrics
    assert _adapter(output) == _adapter(tmp_path / "fresh") and _losses(changed) == _losses(fresh)


def test_an_internal_error_in_the_training_worker_is_one_line_exit_1_and_a_log_file(tmp_path, pairs_dir):
    """A bug inside the worker (not a refused input) is `unexpected ...`, exit 1, and the log file the
    line names holds the worker's own traceback."""
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(  # only the worker breaks: the launcher runs as it ships
        "import sys\n"
        "if 'apo_planner.training.worker' in ' '.join(sys.orig_argv):\n"
        "    import apo_planner.training.apo as apo\n"
        "    def broken(*args, **kwargs):\n"
        "        raise RuntimeError('simulated bug in the training worker')\n"
        "    apo.check_lengths = broken\n"
    )
    logs = tmp_path / "logs"
    env = os.environ | {"PYTHONPATH": f"{hook}{os.pathsep}{REPO}", "APO_PLANNER_LOG_DIR": str(logs)}
    argv = [*CLI, *_argv("train", _train_sets(tmp_path / "train", pairs_dir, max_steps=1))]
    done = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 1, done.stderr[-2000:]
    errors = [line for line in done.stderr.splitlines() if line.startswith("apo-planner train: error: ")]
    assert len(errors) == 1 and done.stderr.rstrip().endswith(errors[0]), done.stderr[-2000:]
    line = errors[0]
    assert "unexpected LaunchError" in line and "a bug: the traceback is in" in line and len(line) < 600, line
    log = Path(line.split("the traceback is in ")[1].split(";")[0])
    assert log.parent == logs and "simulated bug in the training worker" in log.read_text()


# --- servers -----------------------------------------------------------------------------------


def _bfcl_rows(config) -> list[dict]:
    return [
        {k: row[a].get(k) for a in ("baseline", "planner") for k in ("entries", "accuracy", "avg_calls")}
        | {"planned": row["planner"]["planner"]["planned"]}
        for row in config["categories"]
    ]


def _result_lines(folder: Path) -> int:
    return sum(len(p.read_text().splitlines()) for p in folder.rglob("*_result.json")) if folder.is_dir() else 0


def test_eval_killed_with_its_server_up_leaves_no_listener_and_the_next_run_matches(tmp_path, tiny):
    """kill -9 of `apo-planner eval` mid-generation on a fixed port (the paper recipe's 1053): the
    executor's server is gone within seconds, and the next run on that port finishes with the results
    of an uninterrupted evaluation."""
    from apo_planner.evaluation.run import evaluate

    port = free_port()
    sets = {
        "eval.limit": 2,
        "eval.categories": "[multiple]",
        "eval.executor.model_path": tiny,
        "eval.executor.max_tokens": 16,
        "eval.executor.temperature": 0,
        "eval.executor.server.port": port,
        "eval.planner.model": tiny,
    }
    reference = evaluate(load_recipe(None, _sets({**sets, "eval.output": tmp_path / "reference"})).eval).comparison

    killed = {**sets, "eval.output": tmp_path / "killed"}
    proc = subprocess.Popen([*CLI, *_argv("eval", killed)], cwd=REPO, stdout=subprocess.DEVNULL, env=os.environ)
    results = tmp_path / "killed" / "bfcl" / "result"
    assert _wait(lambda: _result_lines(results) > 0 or proc.poll() is not None, 300, step=0.02)
    assert proc.poll() is None, "the evaluation finished before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    base_url = f"http://127.0.0.1:{port}/v1"
    started = time.monotonic()
    assert _wait(lambda: served_models(base_url, timeout_s=0.5) is None, 10), "the executor outlived its run"
    print(f"no listener {time.monotonic() - started:.1f} s after the kill")

    rerun = evaluate(load_recipe(None, _sets(killed)).eval)
    assert _bfcl_rows(rerun.comparison) == _bfcl_rows(reference)
    assert not list(rerun.output.glob("*.server.*.json"))  # the record goes with the server
    assert served_models(base_url, timeout_s=0.5) is None


# --- builds ------------------------------------------------------------------------------------


def _rule(output: Path, **extra) -> dict:
    return {"build.source": SMOKE_SOURCE, "build.output": output, "build.synthesizer": "rule", **extra}


def test_a_killed_tiny_model_creation_leaves_nothing_a_rerun_takes_for_a_model(tmp_path):
    from apo_planner.tiny import ensure_tiny_model, make_tiny_model

    code = (
        "import sys, time, transformers\n"
        "def hang(self, *args, **kwargs):\n"
        "    print('saving', flush=True); time.sleep(600)\n"
        "transformers.PreTrainedTokenizerFast.save_pretrained = hang  # weights and config.json are written\n"
        "from apo_planner.tiny import make_tiny_model\n"
        "make_tiny_model(sys.argv[1])\n"
    )
    target = tmp_path / "models" / "tiny"
    proc = subprocess.Popen([sys.executable, "-c", code, str(target)], cwd=REPO, stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "saving"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not target.exists() and _leftovers(target.parent)  # the half-made model is only a hidden sibling
    ensure_tiny_model(target)
    reference = make_tiny_model(tmp_path / "reference")
    assert _files(target) == _files(reference) and not _leftovers(target.parent)
    # an older version's half-made folder (config.json written, empty) is made again, not trusted
    (target / "config.json").write_text("")
    ensure_tiny_model(target)
    assert _files(target) == _files(reference)


def test_a_build_killed_while_writing_the_dataset_leaves_the_previous_one(tmp_path):
    previous = build(load_recipe(None, _sets(_rule(tmp_path / "ds", **{"build.limit": 40}))).build).stats
    before = _files(tmp_path / "ds")
    code = (
        "import sys, time\n"
        "import apo_planner.builders.review as review\n"
        "real = review.ReviewSample.write\n"
        "def hang(self, *args):  # the parquet files are written, stats.json is not\n"
        "    out = real(self, *args); print('written', flush=True); time.sleep(600); return out\n"
        "review.ReviewSample.write = hang\n"
        "from apo_planner.entry.cli import main\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
    argv = [sys.executable, "-c", code, *_argv("build", _rule(tmp_path / "ds"))]
    proc = subprocess.Popen(argv, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert _wait(lambda: "written" in proc.stdout.readline(), 120)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert _files(tmp_path / "ds") == before and DatasetDir(tmp_path / "ds").complete()
    assert DatasetDir(tmp_path / "ds").stats().fingerprint == previous["fingerprint"]

    rebuilt = build(load_recipe(None, _sets(_rule(tmp_path / "ds"))).build).stats
    uninterrupted = build(load_recipe(None, _sets(_rule(tmp_path / "other"))).build).stats
    assert rebuilt["fingerprint"] == uninterrupted["fingerprint"] != previous["fingerprint"]
    assert not _leftovers(tmp_path) and DatasetDir(tmp_path / "ds").complete()


def _mount_tmpfs(folder: Path, size: str) -> bool:
    if os.geteuid() != 0 or not shutil.which("mount"):
        return False
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)], capture_output=True)
    return done.returncode == 0


def test_a_rebuild_on_a_full_disk_keeps_the_previous_dataset(tmp_path, capsys, monkeypatch):
    """ENOSPC during a rebuild: a small tmpfs where the test may mount one (root), else an OSError(ENOSPC)
    injected into the second parquet write, as a full disk raises it."""
    import datasets

    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = _mount_tmpfs(disk, "256k")
    sys.__stderr__.write("full disk: " + ("a 256k tmpfs\n" if mounted else "an injected OSError(ENOSPC)\n"))
    try:
        output = disk / "ds"
        previous = build(load_recipe(None, _sets(_rule(output, **{"build.limit": 60}))).build).stats
        before = _files(output)
        if not mounted:
            real, calls = datasets.Dataset.to_parquet, []

            def full(self, path, *args, **kwargs):
                calls.append(path)
                if len(calls) == 2:  # the train split went through; the test split fills the disk
                    Path(path).write_bytes(b"PAR1")
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
                return real(self, path, *args, **kwargs)

            monkeypatch.setattr(datasets.Dataset, "to_parquet", full)
        assert main(_argv("build", _rule(output))) == 2
        line = capsys.readouterr().err.strip().splitlines()[-1]
        assert line.startswith("apo-planner build: error: no space left on the device writing ") and str(output) in line
        assert _files(output) == before and DatasetDir(output).complete() and not _leftovers(disk)
        assert DatasetDir(output).stats().fingerprint == previous["fingerprint"]

        if mounted:  # space freed
            subprocess.run(["mount", "-o", "remount,size=4m", str(disk)], check=True)
        else:
            monkeypatch.undo()
        assert main(_argv("build", _rule(output))) == 0
        uninterrupted = build(load_recipe(None, _sets(_rule(tmp_path / "other"))).build).stats
        assert DatasetDir(output).stats().fingerprint == uninterrupted["fingerprint"]
        assert DatasetDir(output).complete() and not _leftovers(disk)
    finally:
        if mounted:
            subprocess.run(["umount", str(disk)], check=False)


def test_two_builds_into_one_folder_one_is_refused_naming_the_other(tmp_path, capsys):
    """The second build gets one line naming the PID of the first; the first finishes as if alone, and
    the next build equals it."""
    sets = {
        "build.source": SMOKE_SOURCE,
        "build.output": tmp_path / "ds",
        "build.limit": 12,
        "build.llm.model": tmp_path / "tiny",
        "build.llm.cache": tmp_path / "cache.sqlite",
        "build.llm.max_tokens": 300,
        "build.llm.plan_rationale_max_chars": 30,
    }
    first = subprocess.Popen(
        [*CLI, *_argv("build", sets)], cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=os.environ
    )
    lock = tmp_path / ".ds.lock"

    def held() -> bool:
        try:
            return json.loads(lock.read_text() or "{}").get("pid") == first.pid
        except (OSError, ValueError):
            return False

    assert _wait(lambda: held() or first.poll() is not None, 120)
    assert first.poll() is None, "the first build finished before the second started"
    assert main(_argv("build", sets)) == 2
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert line.startswith("apo-planner build: error: ") and f"PID {first.pid} (apo-planner build)" in line, line
    assert first.wait(timeout=600) == 0
    alone = DatasetDir(tmp_path / "ds").stats()
    assert main(_argv("build", sets)) == 0
    again = DatasetDir(tmp_path / "ds").stats()
    synthesis = again.model_dump()["synthesis"]
    assert again.fingerprint == alone.fingerprint and synthesis.get("synthesized", 0) == 0 and synthesis["cache_hits"]
