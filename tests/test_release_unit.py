"""The dataset as a release unit: kill -9 and resume, shards and merge, decontamination."""

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time

import datasets
import pytest

from apo_planner.benchmarks import BENCHMARKS
from apo_planner.builders.build import build, merge_shards
from apo_planner.builders.decontamination import Decontaminator
from apo_planner.builders.errors import ShardError
from apo_planner.builders.shards import parse_shard
from apo_planner.entry.cli import main
from apo_planner.entry.recipe import load_recipe
from tests.conftest import FIXTURES, REPO, SMOKE_SOURCE, nemotron_row, weather_conversation, write_jsonl


def _overrides(tmp_path, name, limit):
    return [
        f"build.source={SMOKE_SOURCE}",
        f"build.output={tmp_path / name / 'ds'}",
        f"build.limit={limit}",
        "build.synthesizer=llm",
        "build.llm.backend=transformers",
        f"build.llm.model={tmp_path / 'tiny'}",
        "build.llm.tiny_model=true",
        "build.llm.temperature=1.0",
        "build.llm.retry_temperature=1.0",
        "build.llm.max_tokens=300",
        "build.llm.plan_rationale_max_chars=30",
        f"build.llm.cache={tmp_path / name / 'cache.sqlite'}",
    ]


def _answers(cache):
    if not cache.exists():
        return 0
    try:
        with sqlite3.connect(cache, timeout=1) as db:
            return db.execute("SELECT COUNT(*) FROM answers").fetchone()[0]
    except sqlite3.OperationalError:
        return 0


@pytest.mark.slow
def test_a_build_killed_with_sigkill_resumes_to_the_identical_dataset_without_reasking(tmp_path):
    limit = 40
    reference = build(load_recipe(None, _overrides(tmp_path, "ref", limit)).build).stats

    args = [sys.executable, "-m", "apo_planner.entry.cli", "build"]
    for o in _overrides(tmp_path, "killed", limit):
        args += ["--set", o]
    cache = tmp_path / "killed" / "cache.sqlite"
    proc = subprocess.Popen(args, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=os.environ)
    deadline = time.time() + 240
    while _answers(cache) < 8 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert proc.poll() is None, "the build finished before it could be killed; raise the limit"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    answered = _answers(cache)
    assert 8 <= answered < reference["synthesis"]["synthesized"]
    assert not (tmp_path / "killed" / "ds" / "stats.json").exists()

    resumed = build(load_recipe(None, _overrides(tmp_path, "killed", limit)).build).stats
    assert resumed["synthesis"]["cache_hits"] == answered
    assert resumed["synthesis"]["synthesized"] == reference["synthesis"]["synthesized"] - answered
    assert resumed["fingerprint"] == reference["fingerprint"]
    assert resumed["pairs"] == reference["pairs"]


def _rule(tmp_path, source, **extra):
    overrides = [
        f"build.source={source}",
        f"build.output={tmp_path}",
        "build.synthesizer=rule",
        *[f"build.{k}={v}" for k, v in extra.items()],
    ]
    return load_recipe(None, overrides).build


def test_sharded_builds_merge_into_the_unsharded_dataset(tmp_path, monkeypatch, capsys):
    """Shard 0 by hand, shard 1 as a Slurm array task (--array=4-6), shard 2 from APO_SHARD: one dataset."""
    whole = build(_rule(tmp_path / "whole", SMOKE_SOURCE)).stats
    config = _rule(tmp_path / "sharded", SMOKE_SOURCE)
    command = ["build", "--set", f"build.source={SMOKE_SOURCE}", "--set", f"build.output={tmp_path / 'sharded'}"]
    command += ["--set", "build.synthesizer=rule"]
    assert main([*command, "--shard", "0/3"]) == 0
    slurm = {"SLURM_ARRAY_TASK_ID": "5", "SLURM_ARRAY_TASK_MIN": "4", "SLURM_ARRAY_TASK_MAX": "6"}
    with monkeypatch.context() as env:
        env.delenv("APO_SHARD", raising=False)
        for name, value in {**slurm, "SLURM_ARRAY_TASK_COUNT": "3"}.items():
            env.setenv(name, value)
        assert main([*command, "--shard", "auto"]) == 0
    with monkeypatch.context() as env:  # a re-run of one task: --array=2 --export=ALL,APO_SHARD=2/3
        for name, value in {
            "SLURM_ARRAY_TASK_ID": "2",
            "SLURM_ARRAY_TASK_MIN": "2",
            "SLURM_ARRAY_TASK_MAX": "2",
        }.items():
            env.setenv(name, value)
        env.setenv("SLURM_ARRAY_TASK_COUNT", "1")
        env.setenv("APO_SHARD", "2/3")  # explicit: wins over the one-task array
        assert main([*command, "--shard", "auto"]) == 0
    out = capsys.readouterr().err  # logged
    assert "--shard auto is shard 1/3" in out and "--shard auto is shard 2/3" in out
    merged = merge_shards(config).stats
    assert merged["fingerprint"] == whole["fingerprint"]
    for key in (
        "records_read",
        "trajectories",
        "trajectories_per_record",
        "pairs",
        "dropped",
        "avg_calls_chosen",
        "avg_calls_rejected",
        "splits",
        "lengths",
        "length_filters",
        "answer_sources_kept",
        "review",
        "recipe_sha256",
    ):
        assert merged[key] == whole[key], key
    assert merged["shards"] == 3
    # the review sample is drawn by a seeded hash of the id: the same pairs however the build was split
    sample = [json.loads((tmp_path / name / "review.json").read_text())["pairs"] for name in ("whole", "sharded")]
    assert [p["id"] for p in sample[0]] == [p["id"] for p in sample[1]] and len(sample[0]) == 20
    assert (tmp_path / "sharded" / "review.md").read_text() == (tmp_path / "whole" / "review.md").read_text()


@pytest.mark.parametrize(
    "environ, shard",
    [
        ({"SLURM_ARRAY_TASK_ID": "0", "SLURM_ARRAY_TASK_COUNT": "8", "SLURM_ARRAY_TASK_MAX": "7"}, (0, 8)),
        ({"SLURM_ARRAY_TASK_ID": "7", "SLURM_ARRAY_TASK_MIN": "1", "SLURM_ARRAY_TASK_MAX": "8"}, (6, 8)),
        (
            {  # --array=0-14:2
                "SLURM_ARRAY_TASK_ID": "4",
                "SLURM_ARRAY_TASK_MIN": "0",
                "SLURM_ARRAY_TASK_MAX": "14",
                "SLURM_ARRAY_TASK_STEP": "2",
                "SLURM_ARRAY_TASK_COUNT": "8",
            },
            (2, 8),
        ),
        ({"APO_SHARD": "3/4"}, (3, 4)),
        (
            {"APO_SHARD": "7/16", "SLURM_ARRAY_TASK_ID": "7", "SLURM_ARRAY_TASK_MIN": "7", "SLURM_ARRAY_TASK_MAX": "7"},
            (7, 16),
        ),
    ],
)
def test_shard_auto_reads_the_job_array_from_the_environment(environ, shard):
    assert parse_shard("auto", environ) == shard


@pytest.mark.parametrize(
    "environ, message",
    [
        ({}, "no job array in the environment"),
        (  # --array=1,3,7: not one range
            {
                "SLURM_ARRAY_TASK_ID": "3",
                "SLURM_ARRAY_TASK_MIN": "1",
                "SLURM_ARRAY_TASK_MAX": "7",
                "SLURM_ARRAY_TASK_COUNT": "3",
            },
            "is not an even range",
        ),
        ({"APO_SHARD": "4/4"}, "APO_SHARD='4/4'"),
    ],
)
def test_shard_auto_without_a_usable_array_is_a_clear_error(environ, message):
    with pytest.raises(ShardError, match=message):
        parse_shard("auto", environ)


def test_shard_auto_outside_a_job_array_fails_before_building(tmp_path, monkeypatch, capsys):
    for name in ("SLURM_ARRAY_TASK_ID", "APO_SHARD"):
        monkeypatch.delenv(name, raising=False)
    status = main(["build", "--shard", "auto", "--set", f"build.output={tmp_path}", "--set", "build.synthesizer=rule"])
    assert status == 2 and not (tmp_path / "shards").exists()
    assert "apo-planner build: error: --shard auto: no job array" in capsys.readouterr().err


def test_merging_with_a_missing_or_unfinished_shard_names_it(tmp_path):
    build(_rule(tmp_path, SMOKE_SOURCE), shard=(0, 3))
    (tmp_path / "shards" / "shard-00002-of-00003").mkdir()  # started, never finished
    with pytest.raises(ShardError) as info:
        merge_shards(_rule(tmp_path, SMOKE_SOURCE))
    message = str(info.value)
    assert "2 of 3 shards" in message and "missing: shard-00001-of-00003" in message
    assert "unfinished (no stats.json): shard-00002-of-00003" in message


def test_merging_shards_built_differently_names_the_shard_and_what_differs(tmp_path):
    build(_rule(tmp_path, SMOKE_SOURCE), shard=(0, 3))
    build(_rule(tmp_path, SMOKE_SOURCE, **{"filters.max_chars": 5000}), shard=(1, 3))
    build(_rule(tmp_path, SMOKE_SOURCE), shard=(2, 3))
    stats_file = tmp_path / "shards" / "shard-00002-of-00003" / "stats.json"
    stats = json.loads(stats_file.read_text())
    stats_file.write_text(json.dumps({**stats, "source_revision": "another-revision"}))
    with pytest.raises(ShardError) as info:
        merge_shards(_rule(tmp_path, SMOKE_SOURCE))
    message = str(info.value)
    assert "shard-00001-of-00003: build.filters.max_chars (60000 vs 5000)" in message
    assert "shard-00002-of-00003: source_revision" in message and "another-revision" in message
    assert message.startswith("shards built differently from shard-00000-of-00003") and "pin build.revision" in message


def test_a_planted_bfcl_question_is_removed_and_reported(tmp_path):
    bfcl_id, question = next(q for q in BENCHMARKS.get("bfcl").decontamination_queries() if "multiple" in q[0])
    redundant = [("get_weather", {"city": "x"}, "r"), ("get_weather", {"city": "x"}, "r")]
    rows = [
        nemotron_row(weather_conversation(*redundant, query=question), uuid="planted"),
        nemotron_row(weather_conversation(*redundant, query="Is it raining in Oslo?"), uuid="clean"),
    ]
    result = build(_rule(tmp_path / "out", write_jsonl(tmp_path / "src.jsonl", rows)))
    report = result.stats["decontamination"]
    assert report["removed"] == 1 and report["examples"][0]["entry"] == f"bfcl/{bfcl_id}"
    assert report["questions"] == report["benchmarks"]["bfcl"] > 4000
    released = [r["provenance"]["source_row_id"] for s in datasets.load_dataset(str(result.output)).values() for r in s]
    assert released == ["clean"] and result.stats["pairs"] == 1


def test_decontamination_matches_through_case_and_punctuation_changes():
    checker = Decontaminator.from_questions([("q1", "Find the area of a triangle with sides 3, 4 and 5 units!")], 6)
    assert checker.match("please FIND the area of a triangle, with sides 3 4 and 5 units") == "questions/q1"
    assert checker.match("find the area of a circle with radius 3") is None


def test_dataset_version_and_provenance_come_from_the_recipe(tmp_path):
    result = build(_rule(tmp_path, FIXTURES / "nemotron_tool_calling.jsonl", version="2.1.0"))
    row = datasets.load_dataset(str(result.output))["train"][0]
    assert row["provenance"]["dataset_version"] == "2.1.0" == result.stats["dataset_version"]
    stats = json.loads((result.output / "stats.json").read_text())
    assert stats["fingerprint"] == result.stats["fingerprint"]
