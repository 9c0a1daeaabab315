"""Every failure a user can cause ends in one line `apo-planner <cmd>: error: ...` naming what is wrong and
what to do, exit status 2, no traceback; a bad line of a source costs that line, not the run."""

import errno
import json
import os
import pathlib
import subprocess
import sys

import datasets
import pytest

import apo_planner.builders.finalize
from apo_planner.entry.cli import main
from benchmarks.workloads import generate
from tests.conftest import REPO, write_jsonl


def _one_error_line(capsys, argv: list[str], *expected: str) -> str:
    """Run the CLI, expect exit 2 and exactly one error line (progress bars may come before it)."""
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    errors = [line for line in err.splitlines() if ": error: " in line]
    assert len(errors) == 1, err
    line = errors[0]
    assert line.startswith(f"apo-planner {argv[0]}: error: ") and err.rstrip().endswith(line)
    for text in expected:
        assert text in line, line
    return line


def _rule_build(tmp_path, *extra: str) -> list[str]:
    return ["build", "--synthesizer", "rule", "--output", str(tmp_path / "out"), *extra]


def _rows(n: int = 4) -> list[dict]:
    return list(generate(n, seed=11))


# --- bad paths ------------------------------------------------------------------------------


def test_a_missing_source_names_the_path(tmp_path, capsys):
    missing = tmp_path / "nope.jsonl"
    _one_error_line(capsys, _rule_build(tmp_path, "--source", str(missing)), str(missing), "matches no file")


def test_a_missing_recipe_names_it_and_the_shipped_ones(tmp_path, capsys):
    _one_error_line(
        capsys, ["build", "--recipe", str(tmp_path / "r.yaml")], "r.yaml not found", "shipped recipe (paper, smoke)"
    )


def test_a_missing_tools_file_names_it(tmp_path, capsys):
    argv = ["plan", "--model", "m", "--query", "q", "--tools", str(tmp_path / "tools.json")]
    _one_error_line(capsys, argv, "--tools", "tools.json", "no such file")


# --- empty and undecodable input ----------------------------------------------------------


def test_an_empty_source_file_says_so(tmp_path, capsys):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n\n")
    _one_error_line(capsys, _rule_build(tmp_path, "--source", str(empty)), "empty.jsonl", "is empty")


def test_a_recipe_that_is_not_utf8_names_the_file(tmp_path, capsys):
    recipe = tmp_path / "latin1.yaml"
    recipe.write_bytes("name: caf\xe9\nbuild:\n  source: x\n".encode("latin-1"))
    _one_error_line(capsys, ["build", "--recipe", str(recipe)], "latin1.yaml", "not UTF-8")


def test_a_tools_file_that_is_not_utf8_names_the_file(tmp_path, capsys):
    tools = tmp_path / "tools.json"
    tools.write_bytes(b'[{"name": "caf\xe9"}]')
    _one_error_line(capsys, ["plan", "--model", "m", "--query", "q", "--tools", str(tools)], "tools.json", "UTF-8")


def test_an_undecodable_and_a_truncated_line_cost_one_record_each(tmp_path, capsys):
    good = [json.dumps(r, ensure_ascii=False).encode() for r in _rows(5)]
    lines = [good[0], b'{"uuid": "latin-1", "messages": "caf\xe9"}', *good[1:3], good[3][:300], good[4]]
    source = write_jsonl(tmp_path / "mixed.jsonl", lines)
    assert main(_rule_build(tmp_path, "--source", str(source))) == 0
    stats = json.loads((tmp_path / "out" / "stats.json").read_text())
    assert stats["records_read"] == 6 and stats["dropped"] == {"undecodable_line": 2}
    assert [e.split(":")[0] for e in stats["drop_examples"]["undecodable_line"]] == [
        "mixed.jsonl line 2",
        "mixed.jsonl line 5",
    ]
    assert "not UTF-8 (byte 0xe9" in stats["drop_examples"]["undecodable_line"][0]
    assert "not JSON" in stats["drop_examples"]["undecodable_line"][1]
    assert stats["trajectories"] >= 5 and stats["pairs"] > 0


def test_a_gzip_compressed_source_builds_the_same_pairs_and_a_truncated_one_is_named(tmp_path, capsys):
    rows = _rows(6)
    plain, packed = write_jsonl(tmp_path / "log.jsonl", rows), write_jsonl(tmp_path / "log.jsonl.gz", rows)
    assert main(_rule_build(tmp_path / "a", "--source", str(plain))) == 0
    assert main(_rule_build(tmp_path / "b", "--source", str(packed))) == 0
    a, b = (datasets.load_dataset(str(tmp_path / d / "out"))["train"] for d in "ab")
    assert a["chosen"] == b["chosen"] and len(a) > 0
    truncated = tmp_path / "cut.jsonl.gz"
    truncated.write_bytes(packed.read_bytes()[:-40])
    _one_error_line(capsys, _rule_build(tmp_path / "c", "--source", str(truncated)), str(truncated), "gzip")


# --- malformed YAML / JSON, unknown keys ---------------------------------------------------


def test_a_yaml_syntax_error_names_the_recipe_line_and_column(tmp_path, capsys):
    recipe = tmp_path / "broken.yaml"
    recipe.write_text("name: x\nbuild:\n  source: a\n   limit: [\n")
    _one_error_line(capsys, ["build", "--recipe", str(recipe)], "broken.yaml", "not valid YAML", "line 4")


def test_an_override_that_is_not_yaml_names_it(capsys):
    _one_error_line(capsys, ["recipe", "--set", "build.limit=[1"], "build.limit=[1", "quote it")


def test_a_tools_file_that_is_not_json_names_file_line_and_column(tmp_path, capsys):
    tools = tmp_path / "tools.json"
    tools.write_text('[\n  {"name": "f",}\n]')
    argv = ["plan", "--model", "m", "--query", "q", "--tools", str(tools)]
    _one_error_line(capsys, argv, "tools.json", "not valid JSON", "line 2")


def test_a_json_array_source_that_is_not_json_names_the_file(tmp_path, capsys):
    source = tmp_path / "rows.json"
    source.write_text('[{"messages": []},')
    _one_error_line(capsys, _rule_build(tmp_path, "--source", str(source)), "rows.json", "not valid JSON")


def test_an_unknown_recipe_key_is_one_line_listing_the_valid_keys(capsys):
    line = _one_error_line(capsys, ["recipe", "--set", "build.sourc=x"], "unknown key 'build.sourc'", "source")
    assert "\n" not in line


# --- the Hub, models ----------------------------------------------------------------------


def test_a_hub_source_while_offline_says_what_to_do(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    repo = "nvidia/Nemotron-Post-Training-Dataset-v1"
    _one_error_line(capsys, _rule_build(tmp_path, "--source", repo), repo, "unset it")


def test_a_missing_model_folder_is_named(tmp_path, capsys):
    tools = tmp_path / "tools.json"
    tools.write_text(json.dumps([{"name": "get_weather", "parameters": {"type": "object", "properties": {}}}]))
    argv = ["plan", "--model", str(tmp_path / "merged"), "--query", "q", "--tools", str(tools)]
    _one_error_line(capsys, argv, "merged", "no such folder")


def test_a_hub_model_that_cannot_be_fetched_offline_is_named(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    tools = tmp_path / "tools.json"
    tools.write_text(json.dumps([{"name": "get_weather"}]))
    argv = ["plan", "--model", "nobody/no-such-planner", "--query", "q", "--tools", str(tools)]
    _one_error_line(capsys, argv, "nobody/no-such-planner", "HF_HUB_OFFLINE")


# --- writing: permissions, a full disk -------------------------------------------------------


def test_an_output_folder_that_cannot_be_created_is_named(tmp_path, capsys, monkeypatch):
    source = write_jsonl(tmp_path / "src.jsonl", _rows())
    denied = tmp_path / "read-only"  # where the output (written beside itself, then renamed) would go
    real_mkdir = pathlib.Path.mkdir

    def mkdir(self, *args, **kwargs):
        if self == denied:  # as root chmod would not stop it; the OS would raise exactly this
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(self))
        return real_mkdir(self, *args, **kwargs)

    monkeypatch.setattr(pathlib.Path, "mkdir", mkdir)
    argv = ["build", "--synthesizer", "rule", "--source", str(source), "--output", str(denied / "out")]
    _one_error_line(capsys, argv, "permission denied", str(denied))


def test_a_synthesis_cache_that_cannot_be_opened_is_named(tmp_path, capsys):
    source = write_jsonl(tmp_path / "src.jsonl", _rows())
    cache = tmp_path / "cache-is-a-folder"
    cache.mkdir()
    argv = [*_rule_build(tmp_path, "--source", str(source)), "--synthesizer", "llm"]
    argv += ["--set", f"build.llm.cache={cache}", "--set", f"build.llm.model={tmp_path / 'tiny'}"]
    _one_error_line(capsys, argv, "synthesis cache", str(cache), "build.llm.cache")


def test_a_full_disk_while_writing_the_dataset_is_named(tmp_path, capsys, monkeypatch):
    source = write_jsonl(tmp_path / "src.jsonl", _rows())

    def full(dataset: datasets.DatasetDict, output: pathlib.Path) -> list[str]:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(output / "data"))

    monkeypatch.setattr(apo_planner.builders.finalize, "write_hub_layout", full)
    _one_error_line(capsys, _rule_build(tmp_path, "--source", str(source)), "no space left", str(tmp_path / "out"))


# --- the real entry point ----------------------------------------------------------------------


def test_a_bug_is_one_line_with_exit_1_and_debug_shows_the_traceback(tmp_path, capsys, monkeypatch):
    source = write_jsonl(tmp_path / "src.jsonl", _rows())

    def bug(*args, **kwargs):
        raise KeyError("oops")

    monkeypatch.setattr(apo_planner.builders.finalize, "write_hub_layout", bug)
    assert main(_rule_build(tmp_path, "--source", str(source))) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and "unexpected KeyError" in err and "--debug" in err
    assert main([*_rule_build(tmp_path, "--source", str(source)), "--debug"]) == 1
    assert "Traceback (most recent call last)" in capsys.readouterr().err


@pytest.mark.slow
def test_the_installed_command_prints_one_line_and_no_traceback(tmp_path):
    recipe = tmp_path / "broken.yaml"
    recipe.write_text("build:\n  source: [\n")
    command = [sys.executable, "-m", "apo_planner.entry.cli", "build", "--recipe", str(recipe)]
    run = subprocess.run(command, cwd=REPO, capture_output=True, text=True, env=os.environ)
    assert run.returncode == 2 and run.stdout == ""
    assert run.stderr.splitlines() == [run.stderr.strip()] and "broken.yaml" in run.stderr
    debug = subprocess.run([*command, "--debug"], cwd=REPO, capture_output=True, text=True, env=os.environ)
    assert debug.returncode == 2 and "Traceback" in debug.stderr
    assert debug.stderr.rstrip().splitlines()[-1] == run.stderr.strip()


def test_train_with_a_missing_dataset_fails_before_anything_is_built_or_launched(tmp_path, capsys, monkeypatch):
    import apo_planner.training.launch

    def launched(*args, **kwargs):
        raise AssertionError("accelerate was launched")

    monkeypatch.setattr(apo_planner.training.launch.subprocess, "Popen", launched)
    base, missing = tmp_path / "tiny-base", tmp_path / "no-dataset"
    argv = ["train", "--set", f"train.dataset={missing}", "--set", f"train.base_model={base}"]
    _one_error_line(capsys, [*argv, "--set", f"train.output={tmp_path / 'out'}"], str(missing), "apo-planner build")
    assert not base.exists() and not (tmp_path / "out").exists()


def test_a_bug_names_the_log_file_that_holds_its_traceback(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("APO_PLANNER_LOG_DIR", str(tmp_path / "logs"))

    def bug(*args, **kwargs):
        raise KeyError("oops")

    monkeypatch.setattr(apo_planner.builders.finalize, "write_hub_layout", bug)
    source = write_jsonl(tmp_path / "src.jsonl", _rows())
    assert main(_rule_build(tmp_path, "--source", str(source))) == 1
    err = capsys.readouterr().err.strip().splitlines()[-1]
    (log,) = (tmp_path / "logs").iterdir()
    assert str(log) in err and "unexpected KeyError" in err
    assert "Traceback (most recent call last)" in log.read_text() and "oops" in log.read_text()


def test_a_user_error_from_a_library_valueerror_is_not_blamed_on_the_user(tmp_path, capsys, monkeypatch):
    """A builtin ValueError deep in the code is a bug (exit 1), not the user's mistake."""

    def bug(*args, **kwargs):
        raise ValueError("internal invariant broken")

    monkeypatch.setattr(apo_planner.builders.finalize, "write_hub_layout", bug)
    source = write_jsonl(tmp_path / "src.jsonl", _rows())
    assert main(_rule_build(tmp_path, "--source", str(source))) == 1
    assert "unexpected ValueError" in capsys.readouterr().err


def test_a_command_whose_extra_is_missing_names_the_extra(capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "trl", None)  # as if `pip install apo-planner` without [train]
    _one_error_line(capsys, ["train"], "apo-planner train needs", "pip install -c constraints.txt -e '.[train]'")


def test_a_base_install_without_trl_builds_with_the_shipped_recipe(tmp_path, monkeypatch):
    """The shipped recipes carry trainer keys; reading them must not need TRL (the train extra)."""
    from apo_planner.training.config import dpo_fields

    monkeypatch.setitem(sys.modules, "trl", None)
    dpo_fields.cache_clear()  # as in a fresh process: nothing read from TRL yet
    source = write_jsonl(tmp_path / "src.jsonl", _rows())
    argv = ["build", "--synthesizer", "rule", "--source", str(source), "--output", str(tmp_path / "out")]
    assert main(argv) == 0 and (tmp_path / "out" / "stats.json").is_file()


def test_a_build_without_the_benchmark_to_decontaminate_against_is_refused_before_any_work(
    tmp_path, capsys, monkeypatch
):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "bfcl_eval" else real(name, *a))
    source = write_jsonl(tmp_path / "src.jsonl", _rows())
    argv = ["build", "--synthesizer", "rule", "--source", str(source), "--output", str(tmp_path / "out")]
    _one_error_line(capsys, argv, "'.[eval]'", "build.decontamination.enabled=false")
    assert not (tmp_path / "out").exists()


def test_a_mistyped_or_wrong_model_folder_is_one_line_naming_it(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a relative path with two slashes, as a user types it: no Hub id either
    tools = tmp_path / "tools.json"
    tools.write_text(json.dumps([{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]))
    typo = "runs/train/mergd"
    _one_error_line(capsys, ["plan", "--model", typo, "--query", "q", "--tools", str(tools)], typo, "not a Hub id")
    (tmp_path / "train" / "merged").mkdir(parents=True)
    (tmp_path / "train" / "merged" / "config.json").write_text("{}")
    argv = ["plan", "--model", str(tmp_path / "train"), "--query", "q", "--tools", str(tools)]
    _one_error_line(capsys, argv, "not a model folder", f"did you mean {tmp_path / 'train' / 'merged'}?")


def test_a_source_of_a_type_build_does_not_read_is_named_as_such_not_empty(tmp_path, capsys):
    source = tmp_path / "data.txt"
    source.write_text(json.dumps(_rows()[0]) + "\n")
    argv = ["build", "--synthesizer", "rule", "--source", str(source), "--output", str(tmp_path / "out")]
    _one_error_line(capsys, argv, "is not a file type build reads", "to .jsonl")


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["recipe", "--set", "build.limt=3"], ("invalid --set build.limt=3", "did you mean 'limit'")),
        (["recipe", "--set", "build.limit=abc"], ("invalid --set build.limit=abc: build.limit",)),
        (["recipe", "--recipe", "smok"], ("did you mean 'smoke'?",)),
    ],
)
def test_a_recipe_mistake_names_the_override_it_came_from_and_the_close_match(capsys, argv, expected):
    _one_error_line(capsys, argv, *expected)
