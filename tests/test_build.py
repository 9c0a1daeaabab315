import json

import datasets
import pandas as pd
import pytest

import apo_planner.builders.build
from apo_planner.builders.build import build
from apo_planner.builders.synthesis import Synthesizer
from apo_planner.builders.synthesis.llm import LLMSynthesizer
from apo_planner.builders.synthesis.rule import RuleSynthesizer
from apo_planner.config import RecipeError
from apo_planner.dataset import PROVENANCE_FIELDS
from apo_planner.entry.cli import main
from apo_planner.entry.recipe import load_recipe
from tests.conftest import FIXTURES, SMOKE_SOURCE, nemotron_row, weather_conversation, write_jsonl

FIXTURE = FIXTURES / "nemotron_tool_calling.jsonl"


def _config(source, output, **extra):
    """The smoke recipe's build on `source`, with the deterministic rule synthesizer unless told otherwise."""
    overrides = [
        f"build.source={source}",
        f"build.output={output}",
        *[f"build.{k}={v}" for k, v in {"synthesizer": "rule", **extra}.items()],
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
    assert sorted(r["provenance"]["source_row_id"] for r in rows) == [
        "multi-turn-1",
        "multi-turn-1",
        "redundant-1",
        "retried-1",
    ]
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

    assert stats["records_read"] == 10 and stats["trajectories"] == 6
    assert stats["dropped"] == {
        "no_tool_call": 1,
        "malformed_arguments": 1,
        "unparseable_metadata": 1,
        "undecodable_line": 2,
    }
    assert stats["trajectories_per_record"] == {"0": 5, "1": 4, "2": 1}
    assert stats["selection_rejected"] == {"no_redundancy": 2}
    assert stats["pairs"] == 4 and stats["avg_calls_chosen"] == 1.5 and stats["avg_calls_rejected"] == 2.5
    assert sum(stats["splits"].values()) == 4


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
    rows = [json.loads(line) for line in FIXTURE.read_text().splitlines()[:8]]  # the records, not the bad lines
    src = tmp_path / "tool_calling-00000.parquet"
    pd.DataFrame(rows).to_parquet(src)
    stats = build(_config(src, tmp_path / "out")).stats
    assert stats["format"] == "nemotron" and stats["records_read"] == 8 and stats["pairs"] == 4


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


def test_both_synthesizers_satisfy_the_protocol_and_the_build_reports_any_synthesizers_work(tmp_path, monkeypatch):
    config = _config(FIXTURE, tmp_path / "out")
    rule = RuleSynthesizer(config.rule)
    llm = LLMSynthesizer(config.llm.model_copy(update={"cache": str(tmp_path / "cache.sqlite")}))
    assert isinstance(rule, Synthesizer) and isinstance(llm, Synthesizer)
    assert not rule.stats and not rule.failures
    llm.close()

    class Counting(RuleSynthesizer):
        def __init__(self, config):
            super().__init__(config)
            self.stats["rules_applied"] = 7
            self.failures.append("example failure")

    monkeypatch.setattr(apo_planner.builders.build, "get_synthesizer", lambda c: Counting(c.rule))
    stats = build(config).stats
    assert stats["synthesis"] == {"rules_applied": 7} and stats["request_failure_examples"] == ["example failure"]


def test_a_missing_source_is_a_clear_error(tmp_path, capsys):
    assert main(["build", "--source", str(tmp_path / "nope.jsonl"), "--output", str(tmp_path / "o")]) == 2
    assert "matches no file" in capsys.readouterr().err


def test_unknown_recipe_keys_list_the_valid_ones():
    with pytest.raises(
        RecipeError, match=r"unknown key 'build.sourc'; did you mean 'source'\? valid keys here: .*source"
    ):
        load_recipe(None, ["build.sourc=x"])
    with pytest.raises(RecipeError, match="test_fraction"):
        load_recipe(None, ["build.test_fraction=2"])


def test_the_review_sample_shows_seeded_pairs_beside_their_original_calls_and_can_be_switched_off(tmp_path):
    first = build(_config(SMOKE_SOURCE, tmp_path / "a", **{"review.size": 5})).output
    again = build(_config(SMOKE_SOURCE, tmp_path / "b", **{"review.size": 5})).output
    other = build(_config(SMOKE_SOURCE, tmp_path / "c", **{"review.size": 5, "review.seed": 1})).output
    pairs = json.loads((first / "review.json").read_text())["pairs"]
    ids = {row["id"]: row for split in datasets.load_dataset(str(first)).values() for row in split}
    assert len(pairs) == 5 and all(p["id"] in ids for p in pairs)
    assert (again / "review.md").read_text() == (first / "review.md").read_text()
    assert [p["id"] for p in json.loads((other / "review.json").read_text())["pairs"]] != [p["id"] for p in pairs]
    text = (first / "review.md").read_text()
    assert text.count("### Pair `") == 5
    for pair in pairs:  # every original call appears, kept as a step or removed with its reason
        row = ids[pair["id"]]
        assert [c["index"] for c in pair["calls"]] == list(range(row["num_calls_rejected"]))
        assert sum("kept" in c for c in pair["calls"]) == row["num_calls_chosen"]
        removed = {c["index"]: c["removed"] for c in pair["calls"] if "removed" in c}
        assert removed == {r["index"]: r["reason"] for r in row["removed_calls"]}
        assert f"### Pair `{pair['id']}`" in text and pair["markdown"].strip() in text
    stats = build(_config(SMOKE_SOURCE, tmp_path / "a", **{"review.size": 0})).stats
    assert stats["review"] is None and not (first / "review.md").exists() and not (first / "review.json").exists()
