"""The pieces the fault tests (tests/test_faults.py) rely on, each on its own and fast: atomic writes,
output locks, run keys and checkpoint housekeeping, server records, and the errors a fault ends in."""

import errno
import json
import logging
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from apo_planner.artifacts import DatasetDir, InvalidArtifact, atomic_dir, read_json, write_json
from apo_planner.config import RecipeError
from apo_planner.entry.cli import main
from apo_planner.entry.recipe import load_recipe
from apo_planner.locks import OutputLocked, output_lock
from tests.conftest import REPO, SMOKE_SOURCE, write_jsonl

# --- atomic writes -------------------------------------------------------------------------------


def test_a_folder_written_atomically_replaces_the_old_one_only_when_complete(tmp_path):
    final = tmp_path / "model"
    with atomic_dir(final) as folder:
        (folder / "config.json").write_text("{}")
    with pytest.raises(RuntimeError), atomic_dir(final) as folder:
        (folder / "config.json").write_text("")  # half-written, then the writer fails
        raise RuntimeError("killed")
    assert (final / "config.json").read_text() == "{}" and sorted(p.name for p in tmp_path.iterdir()) == ["model"]
    with atomic_dir(final) as folder:
        (folder / "weights").write_text("new")
    assert sorted(p.name for p in final.iterdir()) == ["weights"]  # a model folder is replaced whole


def test_a_dataset_folder_keeps_what_it_does_not_own(tmp_path):
    final = tmp_path / "ds"
    (final / "shards" / "shard-0").mkdir(parents=True)
    (final / "stats.json").write_text("old")
    with atomic_dir(final, owned={"stats.json", "data"}) as folder:
        (folder / "stats.json").write_text("new")
    assert (final / "stats.json").read_text() == "new" and (final / "shards" / "shard-0").is_dir()
    assert not (final / ".carried.json").exists()


def test_a_write_killed_after_carrying_entries_over_gives_them_back(tmp_path):
    """A kill between moving shards/ into the new folder and the swap: the next write finds them."""
    final = tmp_path / "ds"
    final.mkdir()
    (final / "stats.json").write_text("old")
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = tmp_path / f".ds.partial-{dead.stdout.strip()}"
    (stale / "shards").mkdir(parents=True)
    (stale / ".carried.json").write_text(json.dumps(["shards"]))
    with atomic_dir(final, owned={"stats.json"}) as folder:
        (folder / "stats.json").write_text("new")
    assert (final / "shards").is_dir() and not stale.exists()


def test_a_file_write_that_fails_keeps_the_old_content_and_names_the_file(tmp_path, monkeypatch):
    path = write_json(tmp_path / "metrics.json", {"steps": 20})

    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))  # as a full disk says it: no file name

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(OSError) as failed:
        write_json(path, {"steps": 21})
    assert failed.value.errno == errno.ENOSPC and failed.value.filename == str(path)
    assert read_json(path, "train") == {"steps": 20} and [p.name for p in tmp_path.iterdir()] == ["metrics.json"]


def test_a_cut_short_json_artifact_is_named_not_a_traceback(tmp_path):
    (tmp_path / "metrics.json").write_text("")
    with pytest.raises(InvalidArtifact, match=r"metrics.json is not valid JSON .* `apo-planner train` again"):
        read_json(tmp_path / "metrics.json", "train")


def test_a_dataset_folder_with_old_stats_beside_new_parquet_is_not_complete(tmp_path):
    from apo_planner.builders.build import build

    config = load_recipe(None, [f"build.source={SMOKE_SOURCE}", f"build.output={tmp_path / 'ds'}", "build.limit=20"])
    config = config.build.model_copy(update={"synthesizer": "rule"})
    build(config)
    folder = DatasetDir(tmp_path / "ds")
    assert folder.complete()
    test = folder.data_dir / "test-00000-of-00001.parquet"
    test.write_bytes(test.read_bytes()[:100])  # what a full disk left before writes were atomic
    assert "not a readable parquet file" in folder.problem()
    test.unlink()
    assert "lists" in folder.problem()


def test_release_reruns_a_stage_whose_artifact_does_not_verify(tmp_path):
    from apo_planner.entry.release import ReleaseState, Stage, run_stages

    ran = []
    good = {"value": False}
    stage = Stage("build", lambda: "k", [tmp_path / "stats.json"], lambda: ran.append(1) or good.update(value=True))
    stage = Stage(stage.name, stage.key, stage.outputs, stage.run, complete=lambda: good["value"])
    (tmp_path / "stats.json").write_text("{}")  # the one file the old check looked at is there
    state = ReleaseState(tmp_path / "state.json", {"build": "k"})
    assert run_stages([stage], state, log=lambda _: None).ran == ["build"] and ran == [1]
    assert run_stages([stage], state, log=lambda _: None).skipped == ["build"]


# --- one writer per output -----------------------------------------------------------------------


def _holder(folder: Path, shared: bool = False) -> subprocess.Popen:
    code = (
        "import sys, time\nfrom apo_planner.locks import output_lock\n"
        "with output_lock(sys.argv[1], 'build', shared=sys.argv[2] == '1'):\n"
        "    print('held', flush=True); time.sleep(600)\n"
    )
    argv = [sys.executable, "-c", code, str(folder), "1" if shared else "0"]
    proc = subprocess.Popen(argv, cwd=REPO, stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_a_second_writer_is_refused_naming_the_first_and_a_killed_ones_lock_is_taken(tmp_path, caplog):
    folder = tmp_path / "ds"
    holder = _holder(folder)
    with pytest.raises(OutputLocked, match=rf"{folder} is being written by PID {holder.pid} \(apo-planner build\)"):
        with output_lock(folder, "build"):
            pass
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()
    with caplog.at_level(logging.INFO), output_lock(folder, "build"):
        with output_lock(folder, "build"):  # the same process again (release -> its stages): fine
            pass
    assert f"took over the lock of a run that did not finish (PID {holder.pid}" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.INFO), output_lock(folder, "build"):
        pass
    assert "took over" not in caplog.text  # a run that finished leaves no holder behind


def test_shards_write_side_by_side_and_the_merge_waits_for_every_one(tmp_path):
    folder = tmp_path / "ds"
    shards = [_holder(folder, shared=True), _holder(folder, shared=True)]  # two shards at once: both hold it
    try:
        with pytest.raises(OutputLocked, match="is being written by"):
            with output_lock(folder, "build --merge-shards"):  # replaces shards/ while they write: refused
                pass
    finally:
        for shard in shards:
            shard.kill()
            shard.wait()
    with output_lock(folder, "build --merge-shards"):
        pass


def test_a_locked_output_is_one_line_from_the_cli(tmp_path, capsys):
    holder = _holder(tmp_path / "out")
    try:
        argv = ["build", "--synthesizer", "rule", "--source", str(SMOKE_SOURCE), "--output", str(tmp_path / "out")]
        assert main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and f"PID {holder.pid}" in err[0] and err[0].startswith("apo-planner build: error: ")
    finally:
        holder.kill()
        holder.wait()


# --- training: run keys, checkpoints, whole-run metrics ------------------------------------------


def _config(tmp_path, *sets):
    return load_recipe(None, [f"train.output={tmp_path / 'train'}", f"train.dataset={tmp_path / 'ds'}", *sets]).train


def _checkpoint(tmp_path, step, key=None, text=None):
    folder = tmp_path / "train" / "checkpoints" / f"checkpoint-{step}"
    folder.mkdir(parents=True)
    state = {"global_step": step, "stateful_callbacks": {}}
    if key is not None:
        state["stateful_callbacks"]["RunKeyCallback"] = {"args": {"run_key": key.key, "parts": key.parts}}
    (folder / "trainer_state.json").write_text(json.dumps(state) if text is None else text)
    return folder


def test_the_run_key_follows_what_decides_the_weights(tmp_path):
    from apo_planner.training.resume import run_key

    key = run_key(_config(tmp_path))
    assert run_key(_config(tmp_path, "train.logging_steps=1", "train.save_steps=3")).key == key.key
    assert run_key(_config(tmp_path, "train.output=elsewhere", "train.resume=force")).key == key.key
    changed = run_key(_config(tmp_path, "train.learning_rate=1e-5"))
    assert changed.key != key.key and changed.differences(key.parts) == "train.learning_rate 0.001 -> 1e-05"
    assert run_key(_config(tmp_path, "train.seed=1")).key != key.key


def test_the_release_asks_about_the_key_a_run_from_a_hub_base_records(tmp_path, monkeypatch):
    """train pins the base's revision to a commit before it keys the run; the release's "finished?" must ask
    about that same key, or a paper release stops after every successful training."""
    from apo_planner.training import apo
    from apo_planner.training.launch import pinned_run_key
    from apo_planner.training.resume import run_key

    sha = "0123456789abcdef0123456789abcdef01234567"
    monkeypatch.setattr(apo, "resolve", lambda repo, revision, *_: sha if revision == "main" else revision)
    hub = _config(tmp_path, "train.tiny_model=false", "train.base_model=Qwen/Qwen3-4B-Instruct-2507")
    recorded = run_key(hub.model_copy(update={"base_revision": sha}))  # what the worker writes
    assert pinned_run_key(hub).key == recorded.key != run_key(hub).key


def test_what_merge_measures_reruns_the_merge_and_never_retrains(tmp_path):
    from apo_planner.entry.release import Release

    def keys(*sets):
        release = Release(load_recipe(None, [f"train.output={tmp_path / 'train'}", *sets]))
        return release.train_key, release.merge_key

    (tmp_path / "train" / "adapter").mkdir(parents=True)
    (tmp_path / "train" / "adapter" / "adapter_model.safetensors").write_bytes(b"weights")
    train, merge = keys()
    changes = ["eval.planner.max_new_tokens=7", "train.plan_eval.limit=3", "train.preference_eval=false"]
    for change in [*changes, "train.preference_eval_limit=3"]:
        assert keys(change)[0] == train, change  # an evaluation knob never moves a checkpoint aside
        assert keys(change)[1] != merge, change  # but what merge measured is measured again
    assert keys("train.learning_rate=1e-5")[0] != train


def test_checkpoints_of_another_run_are_moved_aside_and_unfinished_saves_removed(tmp_path, caplog):
    from apo_planner.training.resume import prepare, resume_from, run_key

    config = _config(tmp_path)
    key = run_key(config)
    old = run_key(_config(tmp_path, "train.learning_rate=1e-2"))
    _checkpoint(tmp_path, 10, old)
    _checkpoint(tmp_path, 20, old)
    _checkpoint(tmp_path, 30, key, text="")  # a 0-byte trainer_state.json: the save did not finish
    with caplog.at_level(logging.INFO):
        prepare(config, key)
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0] == "train: removed 1 checkpoint(s) whose save did not finish (checkpoint-30)"
    assert len(lines) == 2 and "moved 2 checkpoint(s) of another run (train.learning_rate 0.01 -> 0.001)" in lines[1]
    assert lines[1].endswith("training from step 0") and resume_from(config, key) is None
    assert len(list((tmp_path / "train" / "superseded").glob("*/checkpoint-20"))) == 1

    mine = _checkpoint(tmp_path, 40, key)
    _checkpoint(tmp_path, 50, old)
    prepare(config, key)
    assert resume_from(config, key).path == mine
    forced = config.model_copy(update={"resume": "force"})
    _checkpoint(tmp_path, 60, old)
    prepare(forced, key)
    assert resume_from(forced, key).step == 60  # force: whatever run wrote it
    never = config.model_copy(update={"resume": "never"})
    prepare(never, key)
    assert resume_from(never, key) is None and not list((tmp_path / "train" / "checkpoints").glob("checkpoint-*"))


def test_the_loss_of_a_resumed_run_covers_every_step():
    from apo_planner.training.resume import whole_run_loss

    history = [  # logged every 5 steps, a forced log at the save (step 12), resumed, last step logged
        {"loss": 1.0, "step": 5},
        {"loss": 0.8, "step": 10},
        {"loss": 0.7, "step": 12},
        {"eval_loss": 0.5, "step": 12},
        {"loss": 0.6, "step": 15},
        {"loss": 0.5, "step": 20},
        {"train_loss": 0.0, "step": 20},  # the trainer's own figure for the last session
    ]
    assert whole_run_loss(history) == pytest.approx((5 * 1.0 + 5 * 0.8 + 2 * 0.7 + 3 * 0.6 + 5 * 0.5) / 20)


def test_an_internal_error_of_the_training_processes_is_one_short_line_with_its_log(tmp_path, monkeypatch):
    from apo_planner.entry import failures
    from apo_planner.training.launch import LaunchError

    monkeypatch.setenv(failures.LOG_DIR_ENV, str(tmp_path))
    tail = "".join(f'  File "/x/trainer.py", line {i}, in step\n' for i in range(60)) + "KeyError: 'oops'\n"
    head = "training failed (exit 1; accelerate launch ... -m apo_planner.training.worker); last lines:\n"
    exc = LaunchError(head + tail)
    message, status = failures.report("train", exc)
    assert status == 1 and "\n" not in message and len(message) < 500
    assert message.startswith("unexpected LaunchError: training failed (exit 1;")
    log = Path(message.split("the traceback is in ")[1].split(";")[0])
    assert "KeyError: 'oops'" in log.read_text()


@pytest.mark.parametrize(
    ("error", "refused"),
    [(OSError(28, "No space left on device", "/out/adapter"), True), (OSError(5, "Input/output error"), False)],
)
def test_a_full_disk_inside_the_training_worker_is_its_one_line_refusal_not_a_bug(
    tmp_path, monkeypatch, capsys, error, refused
):
    from apo_planner.training import worker
    from apo_planner.training.launch import WORKER_ERROR

    config = tmp_path / "train_config.json"
    config.write_text(_config(tmp_path).model_dump_json())

    def train(*_):
        raise error

    monkeypatch.setattr(worker, "train", train)
    if not refused:
        with pytest.raises(OSError):
            worker.main([str(config)])
        return
    assert worker.main([str(config)]) == 2
    [line] = capsys.readouterr().err.strip().splitlines()
    assert line.startswith(WORKER_ERROR + "no space left on the device writing /out/adapter")


# --- servers -----------------------------------------------------------------------------------


def _record(workdir: Path, proc_pid: int, parent_pid: int, ticks, parent_ticks) -> Path:
    import socket

    path = workdir / f"executor.server.{socket.gethostname()}.{parent_pid}.json"
    record = {"role": "executor", "pid": proc_pid, "pgid": proc_pid, "port": 1, "start_ticks": ticks}
    path.write_text(json.dumps(record | {"parent_pid": parent_pid, "parent_start_ticks": parent_ticks}))
    return path


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="identifies processes through /proc")
def test_a_server_recorded_by_a_dead_run_is_stopped_after_checking_it_is_that_process(tmp_path):
    from apo_planner.serving import _start_ticks, reap_stale_servers

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    parent = int(dead.stdout)
    orphan = subprocess.Popen(["sleep", "600"], start_new_session=True)
    stranger = subprocess.Popen(["sleep", "600"], start_new_session=True)
    try:
        ours = _record(tmp_path, orphan.pid, parent, _start_ticks(orphan.pid), 1)
        (tmp_path / "b").mkdir()
        theirs = _record(tmp_path / "b", stranger.pid, parent, (_start_ticks(stranger.pid) or 0) + 1, 1)
        done = reap_stale_servers(tmp_path)
        assert done == [f"stopped the executor server a killed run left (PID {orphan.pid}, port 1)"]
        assert orphan.wait(timeout=10) == -signal.SIGTERM and not ours.exists()
        assert reap_stale_servers(tmp_path / "b") == []  # the PID is another process now: left alone
        assert stranger.poll() is None and not theirs.exists()
        alive = _record(tmp_path, stranger.pid, os.getppid(), _start_ticks(stranger.pid), _start_ticks(os.getppid()))
        assert reap_stale_servers(tmp_path) == [] and alive.exists()  # its run is still running
    finally:
        for proc in (orphan, stranger):
            proc.kill()
            proc.wait()


def test_a_foreign_process_on_the_port_is_still_refused(tmp_path):
    from apo_planner.serving import ServerConfig, ServerError, serve
    from tests.support.loopback import OpenAIStub

    with OpenAIStub(model="someone/else") as stub:
        port = int(stub.base_url.rsplit(":", 1)[1].split("/")[0])
        config = ServerConfig(engine="vllm", binary=sys.executable, port=port, startup_timeout_s=2)
        with pytest.raises(ServerError, match=rf"something already answers at http://127.0.0.1:{port}/v1"):
            with serve(config, "some/model", tmp_path, "executor"):
                pass


# --- errors a fault ends in ----------------------------------------------------------------------


def _one_line(capsys, argv, status=2) -> str:
    assert main(argv) == status
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if ": error: " in line]  # progress bars may come before it
    assert len(errors) == 1 and "Traceback" not in err and err.rstrip().endswith(errors[0]), err
    return errors[0]


@pytest.mark.parametrize(
    ("text", "sets", "shown"),
    [
        ("name: x\nbuild:\n  - a\n", [], "'build' must be a section of keys"),
        ("name: x\nbuild: {source: s}\n", ["build=5"], "--set build=5: 'build' must be a section of keys"),
        ("name: x\nbuild: {source: s}\ntrain: [1, 2]\n", [], "'train' must be a section of keys"),
    ],
)
def test_a_section_that_is_not_a_mapping_is_one_line(tmp_path, capsys, text, sets, shown):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(text)
    line = _one_line(capsys, ["recipe", "--recipe", str(recipe), *[a for s in sets for a in ("--set", s)]])
    assert shown in line and "not a" in line


@pytest.mark.parametrize("value", ["nan", ".nan", "-1e-3", "0", ".inf"])
def test_a_learning_rate_that_cannot_train_is_refused_when_the_recipe_is_read(value):
    with pytest.raises(RecipeError, match="train.learning_rate: Input should be"):
        load_recipe(None, [f"train.learning_rate={value}"])


def test_check_names_an_unknown_eval_category_before_the_first_stage():
    from apo_planner.entry.check import CheckReport, check_eval

    report = CheckReport()
    check_eval(load_recipe(None, ["eval.categories=[multiple,simpel_java]"]), report)
    assert len(report.problems) == 1 and "simpel_java" in report.problems[0] and "simple_java" in report.problems[0]
    report = CheckReport()
    check_eval(load_recipe(None, []), report)
    assert report.ok


def test_a_build_that_drops_every_row_exits_2_naming_the_reasons_and_writes_nothing(tmp_path, capsys):
    chat = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]  # no call to keep or drop
    rows = [{"messages": chat, "tools": [{"type": "function", "function": {"name": "f"}}]}] * 3
    source = write_jsonl(tmp_path / "src.jsonl", rows)
    line = _one_line(
        capsys, ["build", "--synthesizer", "rule", "--source", str(source), "--output", str(tmp_path / "out")]
    )
    assert "the build produced 0 pairs from 3 records read (top drop reasons: " in line
    assert not (tmp_path / "out").exists()


def test_a_source_that_is_a_fifo_is_named_as_such(tmp_path, capsys):
    fifo = tmp_path / "trajectories.jsonl"
    os.mkfifo(fifo)
    line = _one_line(capsys, ["build", "--synthesizer", "rule", "--source", str(fifo), "--output", str(tmp_path)])
    assert f"source '{fifo}' is a named pipe (FIFO), not a regular file" in line


class _Tokenizer:
    def apply_chat_template(self, messages, tools=None, tokenize=False, add_generation_prompt=True):
        return json.dumps({"messages": messages, "tools": tools})

    def __call__(self, text, add_special_tokens=False):
        return {"input_ids": text.split()}


class _Engine:
    """A generation backend that answers with `reply(request)` (the planner calls `generate`)."""

    def __init__(self, reply):
        self.reply = reply

    def generate(self, request):
        return self.reply(request)


def _tools(n):
    return [{"type": "function", "function": {"name": f"tool_{i}", "parameters": {"type": "object"}}} for i in range(n)]


def test_a_prompt_longer_than_the_context_is_refused_not_truncated(tmp_path, capsys, monkeypatch):
    from apo_planner.planner import Planner

    asked = []
    planner = Planner(_Tokenizer(), _Engine(asked.append), constrained=False, max_context=100)
    result = planner.plan_with_details("Weather in Oslo?", _tools(500))
    assert result.plan is None and result.error.startswith("prompt_too_long: the prompt is ") and not asked
    assert result.error.endswith("tokens, the model's context 100") and result.prompt_tokens > 100

    monkeypatch.setattr(Planner, "from_pretrained", classmethod(lambda cls, *a, **k: planner))
    tools = tmp_path / "tools.json"
    tools.write_text(json.dumps(_tools(500)))
    line = _one_line(capsys, ["plan", "--model", "m", "--query", "q", "--tools", str(tools)])
    assert "error: prompt_too_long" in line and "longer context" in line


def test_a_planner_prompt_within_the_context_is_planned():
    from apo_planner.plan import Plan, PlanStep
    from apo_planner.planner import Generation, Planner

    text = Plan(steps=[PlanStep(tool="tool_0", arguments={}, rationale="r")]).to_text()

    planner = Planner(
        _Tokenizer(), _Engine(lambda request: Generation(text, 10, 5)), constrained=False, max_context=10_000
    )
    assert planner.plan_with_details("q", _tools(2)).plan is not None


def test_a_local_base_replaced_by_another_of_the_same_shape_is_another_run(tmp_path):
    from apo_planner.training.resume import run_key

    base = tmp_path / "base"
    base.mkdir()
    (base / "config.json").write_text('{"model_type": "qwen3"}')
    (base / "model.safetensors").write_bytes(b"a" * 64)
    config = _config(tmp_path, "train.tiny_model=false", f"train.base_model={base}")
    before = run_key(config).key
    (base / "model.safetensors").write_bytes(b"b" * 64)  # same config, same size, other weights
    assert run_key(config).key != before
