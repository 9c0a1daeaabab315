import json

import pytest

from apo_planner.builders.abstraction import abstract, result_failed, turns
from apo_planner.builders.config import FilterConfig
from apo_planner.formats import FORMATS, DropReason, RecordDropped
from benchmarks.workloads import generate
from tests.conftest import WEATHER_TOOL, message, nemotron_row, tool_call, weather_conversation

CONFIG = FilterConfig()
read_nemotron = FORMATS.get("nemotron").read


def _abstract(messages, config=CONFIG, **kw):
    return abstract(read_nemotron(nemotron_row(messages, **kw)), config)


def _drop_reason(messages, config=CONFIG, **kw):
    with pytest.raises(RecordDropped) as info:
        _abstract(messages, config, **kw)
    return info.value.reason


def test_trajectory_has_query_actions_rationales_results_and_final_answer():
    t = _abstract(weather_conversation(("get_weather", {"city": "Oslo"}, "5C"), final="<think>ok</think>5C."))
    assert t.query == "Weather?"
    assert [(a.tool, a.arguments, a.rationale, a.result, a.failed) for a in t.actions] == [
        ("get_weather", {"city": "Oslo"}, "Step 0.", "5C", False)
    ]
    assert t.final_answer == "5C."


def test_parallel_calls_share_their_rationale_and_results_match_by_call_id():
    messages = [
        {"role": "user", "content": "Oslo and Bergen?"},
        {
            "role": "assistant",
            "content": "<think>both</think>",
            "tool_calls": [
                tool_call("a", "get_weather", {"city": "Oslo"}),
                tool_call("b", "get_weather", {"city": "Bergen"}),
            ],
        },
        {"role": "tool", "content": "B: 7C", "tool_call_id": "b"},
        {"role": "tool", "content": "O: 5C", "tool_call_id": "a"},
        {"role": "assistant", "content": "Bergen is warmer."},
    ]
    t = _abstract(messages)
    assert [a.result for a in t.actions] == ["O: 5C", "B: 7C"]
    assert all(a.rationale == "both" for a in t.actions)


def test_results_without_call_ids_are_matched_in_call_order():
    messages = [
        {"role": "user", "content": "q"},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [
                {"function": {"name": "get_weather", "arguments": '{"city": "A"}'}},
                {"function": {"name": "get_weather", "arguments": '{"city": "B"}'}},
            ],
        },
        {"role": "tool", "content": "ra"},
        {"role": "tool", "content": "rb"},
        {"role": "assistant", "content": "done"},
    ]
    assert [a.result for a in _abstract(messages).actions] == ["ra", "rb"]


@pytest.mark.parametrize(
    "result, failed",
    [
        ('{"error": "timeout"}', True),
        ("Error: service unavailable", True),
        ('{"status": "failed"}', True),
        ('{"success": false}', True),
        ("Traceback (most recent call last): ...", True),
        ('{"temp_c": 5, "error": null}', False),
        ("The error rate is 2%", False),
        ("5C", False),
    ],
)
def test_failed_results_are_recognised(result, failed):
    assert result_failed(result, CONFIG) is failed


# --- one test per drop reason --------------------------------------------------------------


def test_drop_empty_query():
    assert _drop_reason(weather_conversation(("get_weather", {"city": "x"}, "r"), query="  ")) is DropReason.EMPTY_QUERY


def test_drop_no_tool_call():
    assert _drop_reason(weather_conversation(final="hello")) is DropReason.NO_TOOL_CALL


def test_drop_malformed_arguments():
    messages = weather_conversation(("get_weather", {"city": "x"}, "r"))
    messages[1]["tool_calls"][0]["function"]["arguments"] = '{"city": '
    assert _drop_reason(messages) is DropReason.MALFORMED_ARGUMENTS


def test_drop_arguments_that_are_not_an_object():
    messages = weather_conversation(("get_weather", {"city": "x"}, "r"))
    messages[1]["tool_calls"][0]["function"]["arguments"] = "[1, 2]"
    assert _drop_reason(messages) is DropReason.MALFORMED_ARGUMENTS


def test_drop_unknown_tool():
    assert _drop_reason(weather_conversation(("get_stock", {"s": "x"}, "r"))) is DropReason.UNKNOWN_TOOL


def test_drop_schema_violation_required_missing():
    assert _drop_reason(weather_conversation(("get_weather", {"days": 2}, "r"))) is DropReason.SCHEMA_VIOLATION


def test_drop_schema_violation_wrong_type():
    assert (
        _drop_reason(weather_conversation(("get_weather", {"city": "x", "days": "two"}, "r")))
        is DropReason.SCHEMA_VIOLATION
    )


def test_python_style_schema_types_are_understood():
    tool = {
        "type": "function",
        "function": {
            "name": "get_weather",
            "parameters": {
                "type": "dict",
                "properties": {"city": {"type": "str"}, "days": {"type": "int"}},
                "required": ["city"],
            },
        },
    }
    ok = weather_conversation(("get_weather", {"city": "x", "days": 2}, "r"))
    assert _abstract(ok, tools=[tool]).actions[0].arguments == {"city": "x", "days": 2}
    bad = weather_conversation(("get_weather", {"city": "x", "days": "2"}, "r"))
    assert _drop_reason(bad, tools=[tool]) is DropReason.SCHEMA_VIOLATION


def test_drop_no_final_answer():
    assert (
        _drop_reason(weather_conversation(("get_weather", {"city": "x"}, "r"), final=None))
        is DropReason.NO_FINAL_ANSWER
    )


def test_drop_unparseable_metadata():
    with pytest.raises(RecordDropped) as info:
        read_nemotron(nemotron_row([], metadata="nope"))
    assert info.value.reason is DropReason.UNPARSEABLE_METADATA


def test_drop_no_tool_catalog():
    with pytest.raises(RecordDropped) as info:
        read_nemotron(nemotron_row([], metadata=json.dumps({"tools": []})))
    assert info.value.reason is DropReason.NO_TOOL_CATALOG


def test_drop_too_long():
    messages = weather_conversation(("get_weather", {"city": "x"}, "r" * 500))
    assert _drop_reason(messages, FilterConfig(max_chars=100)) is DropReason.TOO_LONG


def test_drop_invalid_tool_name():
    tool = json.loads(json.dumps(WEATHER_TOOL))
    tool["function"]["name"] = "get weather"
    messages = weather_conversation(("get weather", {"city": "x"}, "r"))
    assert _drop_reason(messages, tools=[tool]) is DropReason.INVALID_TOOL_NAME


def test_multi_turn_first_keeps_the_first_turn_and_drop_skips_the_record():
    messages = weather_conversation(("get_weather", {"city": "x"}, "r"), final="first answer")
    messages += weather_conversation(("get_weather", {"city": "y"}, "r2"), final="second", query="and y?")
    [only] = turns(read_nemotron(nemotron_row(messages)), FilterConfig(multi_turn="first"))
    assert len(only.trajectory.actions) == 1 and only.trajectory.final_answer == "first answer"
    assert only.trajectory.context == [] and only.trajectory.turn == 0
    assert _drop_reason(messages, FilterConfig(multi_turn="drop")) is DropReason.MULTI_TURN


# --- the source as it is: every user turn under `each` ------------------------------------------

EACH = FilterConfig(multi_turn="each")


def _turns(messages, config=EACH, **kw):
    return turns(read_nemotron(nemotron_row(messages, **kw)), config)


def test_source_shaped_results_pair_with_calls_by_order_through_null_tool_calls_and_null_content():
    messages = [
        message("user", "Oslo and Bergen, then decide."),
        message("assistant", None, [tool_call("a", "get_weather", {"city": "Oslo"})]),
        message("tool", "O: 5C"),
        message("assistant", "<think>\nNow Bergen.\n</think>\n\n", [tool_call("b", "get_weather", {"city": "Bergen"})]),
        message("tool", "B: 7C"),
        message("assistant", "<think>\nBergen is warmer.\n</think>\n\nBergen is warmer."),
    ]
    assert all(set(m) == {"role", "content", "tool_calls"} for m in messages)
    [turn] = _turns(messages)
    t = turn.trajectory
    assert [(a.arguments["city"], a.result, a.rationale) for a in t.actions] == [
        ("Oslo", "O: 5C", ""),
        ("Bergen", "B: 7C", "Now Bergen."),
    ]
    assert t.final_answer == "Bergen is warmer." and turn.rationale_chars == [0, len("Now Bergen.")]


def test_parallel_calls_in_one_message_take_their_results_in_order_and_count_their_reasoning_once():
    reasoning = "Both lookups are independent. " * 20
    messages = [
        message("user", "Oslo and Bergen?"),
        message(
            "assistant",
            f"<think>{reasoning}</think>",
            [tool_call("a", "get_weather", {"city": "Oslo"}), tool_call("b", "get_weather", {"city": "Bergen"})],
        ),
        message("tool", "O: 5C"),
        message("tool", "B: 7C"),
        message("assistant", "Bergen is warmer."),
    ]
    [turn] = _turns(messages)
    assert [a.result for a in turn.trajectory.actions] == ["O: 5C", "B: 7C"]
    assert turn.rationale_chars == [len(reasoning.strip())]
    query_and_answer = len("Oslo and Bergen?") + len("Bergen is warmer.")
    assert turn.chars == query_and_answer + len(reasoning.strip()) + len("O: 5C") + len("B: 7C")


def test_a_clarifying_first_reply_and_two_tool_turns_give_two_trajectories_with_their_context():
    messages = [
        message("user", "Can you check the weather for me?"),
        message("assistant", "<think>\nWhich city?\n</think>\n\nSure, which city?"),
        message("user", "Oslo."),
        message("assistant", "<think>\nLook it up.\n</think>\n\n", [tool_call("a", "get_weather", {"city": "Oslo"})]),
        message("tool", "5C"),
        message("assistant", None, [tool_call("b", "get_weather", {"city": "Oslo"})]),
        message("tool", "5C"),
        message("assistant", "It is 5°C in Oslo."),
        message("user", "And tomorrow?"),
        message("assistant", None, [tool_call("c", "get_weather", {"city": "Oslo", "days": 1})]),
        message("tool", "7C"),
        message("assistant", "7°C tomorrow."),
        message("user", "Thanks!"),
        message("assistant", "You're welcome."),
    ]
    second, third = (t.trajectory for t in _turns(messages))
    assert (second.turn, second.query, len(second.actions), second.final_answer) == (
        1,
        "Oslo.",
        2,
        "It is 5°C in Oslo.",
    )
    assert second.context == [
        {"role": "user", "content": "Can you check the weather for me?"},
        {"role": "assistant", "content": "Sure, which city?"},
    ]
    assert (third.turn, third.query, [a.result for a in third.actions]) == (2, "And tomorrow?", ["7C"])
    assert third.context == [
        *second.context,
        {"role": "user", "content": "Oslo."},
        {"role": "assistant", "content": "It is 5°C in Oslo."},
    ]
    assert _drop_reason(messages, FilterConfig(multi_turn="first")) is DropReason.NO_TOOL_CALL


def test_a_turn_that_cannot_teach_costs_that_turn_only():
    good = weather_conversation(("get_weather", {"city": "x"}, "r"), final="ok")
    bad = weather_conversation(("get_weather", {"city": "y"}, "r"), final="ok", query="and y?")
    bad[1]["tool_calls"][0]["function"]["arguments"] = '{"city": '
    first, second = _turns(good + bad)
    assert first.trajectory is not None and first.drop is None
    assert second.trajectory is None and second.drop.reason is DropReason.MALFORMED_ARGUMENTS
    assert _drop_reason(weather_conversation(final="just chatting")) is DropReason.NO_TOOL_CALL


def test_too_long_is_measured_on_each_turn_and_reported_with_its_length():
    messages = weather_conversation(("get_weather", {"city": "x"}, "r" * 500))
    [turn] = _turns(messages, FilterConfig(max_chars=100))
    assert turn.drop.reason is DropReason.TOO_LONG and turn.chars > 500 and "max_chars=100" in turn.drop.detail


def test_the_generator_follows_the_source_schema():
    rows = list(generate(50, seed=3))
    for row in rows:
        assert set(row) == {"uuid", "license", "generator", "version", "category", "reasoning", "metadata", "messages"}
        assert row["license"] == "CC BY 4.0" and row["reasoning"] == "on"
        assert isinstance(json.loads(row["metadata"])["tools"], list)
        for m in row["messages"]:
            assert set(m) == {"role", "content", "tool_calls"}
            assert m["tool_calls"] is None or (m["role"] == "assistant" and m["tool_calls"])
            for call in m["tool_calls"] or ():
                assert isinstance(call["function"]["arguments"], str)
    messages = [m for row in rows for m in row["messages"]]
    assert any(m["content"] is None for m in messages)
    assert any(m["tool_calls"] and len(m["tool_calls"]) > 1 for m in messages)
    assert sum(sum(m["role"] == "user" for m in row["messages"]) > 1 for row in rows) > len(rows) / 2
    kept = [t for row in rows for t in turns(read_nemotron(row), EACH) if t.trajectory]
    assert len(kept) > len(rows) and any(t.trajectory.context for t in kept)
