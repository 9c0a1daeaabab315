import json

import pytest

from builders.abstraction import abstract, result_failed
from builders.config import FilterConfig
from builders.readers import read_nemotron
from builders.records import DropReason, RecordDropped
from tests.conftest import WEATHER_TOOL, nemotron_row, tool_call, weather_conversation

CONFIG = FilterConfig()


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


def test_multi_turn_keeps_the_first_turn_or_drops_by_config():
    messages = weather_conversation(("get_weather", {"city": "x"}, "r"), final="first answer")
    messages += weather_conversation(("get_weather", {"city": "y"}, "r2"), final="second", query="and y?")
    t = _abstract(messages)
    assert len(t.actions) == 1 and t.final_answer == "first answer"
    assert _drop_reason(messages, FilterConfig(multi_turn="drop")) is DropReason.MULTI_TURN
