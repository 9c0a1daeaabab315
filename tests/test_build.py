import json
import subprocess
import sys

import datasets
import pandas as pd
import pytest

from apo_planner.config import RecipeError
from apo_planner.dataset import PROVENANCE_FIELDS
from builders.build import build
from entry.cli import main
from entry.recipe import load_recipe
from tests.conftest import FIXTURES, REPO, hub_env, nemotron_row, weather_conversation, write_jsonl
from tests.support.hub import HubStub

FIXTURE = FIXTURES / "nemotron_tool_calling.jsonl"


def _config(source, output, **extra):
    overrides = [
        f"build.source={source}",
        f"build.output={output}",
        *[f"build.{k}={v}" for k, v in extra.items()],
    ]
    return load_recipe(None, overrides).build


def test_build_writes_a_dataset_that_load_dataset_reads_with_the_contract_columns(tmp_path):
    out = tmp_path / "ds"
    assert (
        main(
            [
                "build",
                "--source",
                str(FIXTURE),
                "--synthesizer",
                "rule",
                "--output",
                str(out),
                "--set",
                "build.test_fraction=0.5",
            ]
        )
        == 0
    )
    ds = datasets.load_dataset(str(out))
    stats = json.loads((out / "stats.json").read_text())
    assert set(ds) == {s for s, n in stats["splits"].items() if n}
    rows = [r for split in ds.values() for r in split]
    assert {r["provenance"]["source_row_id"] for r in rows} == {"redundant-1", "retried-1"}
    for column in (
        "id",
        "prompt",
        "chosen",
        "rejected",
        "tools",
        "chosen_plan",
        "rejected_plan",
        "num_calls_chosen",
        "num_calls_rejected",
        "provenance",
    ):
        assert column in ds["train"].column_names or column in ds["test"].column_names
    row = next(r for r in rows if r["provenance"]["source_row_id"] == "retried-1")
    assert row["prompt"][-1] == {
        "role": "user",
        "content": "Réserve une table pour 2 chez « Le Café » à Zürich.",
    }
    assert row["num_calls_chosen"] == 2 and row["num_calls_rejected"] == 3
    assert row["chosen"][0]["role"] == "assistant" and "book_table" in row["chosen"][0]["content"]
    assert json.loads(row["tools"])[0]["function"]["name"] == "search_restaurants"
    assert set(row["provenance"]) == set(PROVENANCE_FIELDS)
    assert row["provenance"]["license"] == "CC BY 4.0" and row["provenance"]["synthesizer_backend"] == "rule"

    assert stats["records_read"] == 8
    assert stats["dropped"] == {
        "no_tool_call": 1,
        "malformed_arguments": 1,
        "unparseable_metadata": 1,
        "unparseable_record": 1,
    }
    assert stats["selection_rejected"] == {"no_redundancy": 2}
    assert stats["pairs"] == 2 and stats["avg_calls_chosen"] == 1.5 and stats["avg_calls_rejected"] == 2.5
    assert sum(stats["splits"].values()) == 2


def test_rebuilding_gives_the_same_rows_and_fingerprint(tmp_path):
    a = build(_config(FIXTURE, tmp_path / "a")).stats
    b = build(_config(FIXTURE, tmp_path / "b")).stats
    assert a["fingerprint"] == b["fingerprint"] and a["pairs"] == b["pairs"]


def test_split_is_deterministic_by_id_and_stable_when_the_source_grows(tmp_path):
    rows = [
        nemotron_row(
            weather_conversation(("get_weather", {"city": f"c{i}"}, "r"), ("get_weather", {"city": f"c{i}"}, "r")),
            uuid=f"u{i}",
        )
        for i in range(60)
    ]
    small = build(_config(write_jsonl(tmp_path / "s.jsonl", rows[:30]), tmp_path / "small", test_fraction=0.3))
    big = build(_config(write_jsonl(tmp_path / "b.jsonl", rows), tmp_path / "big", test_fraction=0.3))
    small_test = set(datasets.load_dataset(str(small.output))["test"]["id"])
    big_test = set(datasets.load_dataset(str(big.output))["test"]["id"])
    assert small_test and small_test <= big_test
    assert 0 < big.stats["splits"]["test"] < 60


def test_parquet_sources_with_nemotron_columns_are_read(tmp_path):
    lines = FIXTURE.read_text().splitlines()
    rows = [json.loads(lines[i]) for i in (0, 2, 3, 4)]  # parquet cannot hold row 1's dict arguments
    src = tmp_path / "tool_calling-00000.parquet"
    pd.DataFrame(rows).to_parquet(src)
    stats = build(_config(src, tmp_path / "out")).stats
    assert stats["format"] == "nemotron" and stats["records_read"] == 4 and stats["pairs"] == 2


def test_openai_and_sharegpt_sources_build_with_auto_detection(tmp_path):
    tool = {
        "type": "function",
        "function": {
            "name": "get_weather",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
            },
        },
    }
    call = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Hanoi"}}\n</tool_call>'
    sharegpt = {
        "conversations": [
            {"from": "system", "value": f"<tools>{json.dumps(tool)}</tools>"},
            {"from": "human", "value": "Weather in Hanoi?"},
            {"from": "gpt", "value": call},
            {"from": "tool", "value": "<tool_response>30C</tool_response>"},
            {"from": "gpt", "value": call},
            {"from": "tool", "value": "<tool_response>30C</tool_response>"},
            {"from": "gpt", "value": "30°C."},
        ]
    }
    stats = build(_config(write_jsonl(tmp_path / "s.jsonl", [sharegpt]), tmp_path / "o1")).stats
    assert stats["format"] == "sharegpt" and stats["pairs"] == 1

    openai_row = {
        "tools": [tool],
        "messages": [
            {"role": "user", "content": "Weather in Hanoi?"},
            *[
                m
                for _ in range(2)
                for m in (
                    {
                        "role": "assistant",
                        "content": None,
                        "tool_calls": [
                            {
                                "id": "x",
                                "type": "function",
                                "function": {"name": "get_weather", "arguments": {"city": "Hanoi"}},
                            }
                        ],
                    },
                    {"role": "tool", "tool_call_id": "x", "content": "30C"},
                )
            ],
            {"role": "assistant", "content": "30°C."},
        ],
    }
    stats = build(_config(write_jsonl(tmp_path / "o.jsonl", [openai_row]), tmp_path / "o2")).stats
    assert stats["format"] == "openai" and stats["pairs"] == 1


def test_duplicate_source_rows_become_one_pair(tmp_path):
    row = nemotron_row(weather_conversation(("get_weather", {"city": "x"}, "r"), ("get_weather", {"city": "x"}, "r")))
    stats = build(_config(write_jsonl(tmp_path / "d.jsonl", [row, row]), tmp_path / "out")).stats
    assert stats["pairs"] == 1 and stats["dropped"] == {"duplicate_record": 1}


def test_a_missing_source_is_a_clear_error(tmp_path, capsys):
    assert main(["build", "--source", str(tmp_path / "nope.jsonl"), "--output", str(tmp_path / "o")]) == 2
    assert "matches no file" in capsys.readouterr().err


def test_unknown_recipe_keys_list_the_valid_ones():
    with pytest.raises(RecipeError, match=r"unknown key 'build.sourc'; valid keys here: .*source"):
        load_recipe(None, ["build.sourc=x"])
    with pytest.raises(RecipeError, match="test_fraction"):
        load_recipe(None, ["build.test_fraction=2"])


def test_release_runs_every_stage_stages_loadable_repos_and_a_rerun_does_no_work(tmp_path, capsys):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    sets = [
        f"build.output={tmp_path / 'ds'}",
        "build.synthesizer=rule",
        "build.limit=24",
        f"train.output={tmp_path / 'train'}",
        f"train.base_model={tmp_path / 'tiny'}",
        "train.max_steps=2",
        "train.preference_eval_limit=2",
        "train.logging_steps=1",
        f"eval.output={tmp_path / 'eval'}",
        "eval.limit=2",
        "eval.categories=[multiple]",
        f"eval.executor.model_path={tmp_path / 'tiny-exec'}",
        "eval.executor.max_tokens=8",
        "eval.planner.max_new_tokens=8",
        f"release.output={tmp_path / 'release'}",
    ]
    argv = ["release", *[a for s in sets for a in ("--set", s)]]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "ran build, train, merge, eval, cards" in out and "nothing pushed" in out
    staged = tmp_path / "release" / "apo-planner"
    ds = datasets.load_dataset(str(staged / "apo-planner-plans-smoke"))
    assert ds["train"].num_rows > 0
    model = AutoModelForCausalLM.from_pretrained(staged / "apo-planner-smoke")
    PeftModel.from_pretrained(
        AutoModelForCausalLM.from_pretrained(tmp_path / "tiny"), str(staged / "apo-planner-smoke-lora")
    )
    assert model.config.hidden_size == 64
    provenance = json.loads((tmp_path / "train" / "training_provenance.json").read_text())
    assert (
        provenance["dataset"]["fingerprint"] == json.loads((tmp_path / "ds" / "stats.json").read_text())["fingerprint"]
    )

    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "ran nothing; skipped build, train, merge, eval, cards" in out

    # --push against a loopback Hub: the adapter repo's creation keeps failing, so the first push
    # stops after the dataset; the re-run pushes only what is missing; the token never leaks.
    token = "hf_release_test_secret_token_42"
    push = [sys.executable, "-m", "entry.cli", *argv, "--push"]
    push += ["--set", "release.push.retries=2", "--set", "release.push.retry_wait_s=0.01"]
    adapter = "apo-planner/apo-planner-smoke-lora"
    with HubStub(token=token, faults={f"create {adapter}": [503, 503]}) as hub:
        env = hub_env(hub.url, token)
        runs = [subprocess.run(push, cwd=REPO, env=env, capture_output=True, text=True) for _ in range(3)]
        failed, resumed, again = runs
        assert failed.returncode == 2, failed.stderr
        assert f"create {adapter} failed after 2 attempts" in failed.stderr
        assert resumed.returncode == 0, resumed.stderr
        assert "release: push dataset is up to date" in resumed.stdout
        assert f"pushed {adapter}" in resumed.stdout and "pushed apo-planner/apo-planner-smoke -> " in resumed.stdout
        assert again.returncode == 0 and "ran nothing" in again.stdout
        for (_, repo_id), repo in hub.repos.items():
            assert len(repo.commits) == 2, repo_id  # the Hub's initial commit + exactly one upload
            pushed = {k: v for k, v in repo.files("v0.1.0").items() if k != ".gitattributes"}
            local = tmp_path / "release" / repo_id
            assert pushed == {p.relative_to(local).as_posix(): p.read_bytes() for p in local.rglob("*") if p.is_file()}
        assert sorted(hub.repos) == [
            ("dataset", "apo-planner/apo-planner-plans-smoke"),
            ("model", "apo-planner/apo-planner-smoke"),
            ("model", adapter),
        ]
        assert all(r.private for r in hub.repos.values())  # the smoke recipe's release.push.private
    assert not any(token in r.stdout + r.stderr for r in runs)
    assert not any(token.encode() in p.read_bytes() for p in tmp_path.rglob("*") if p.is_file())
