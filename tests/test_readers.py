import json

import pytest

from apo_planner.builders.errors import SourceError
from apo_planner.builders.readers import detect_format, read_nemotron, read_openai, read_sharegpt
from apo_planner.builders.records import DropReason, RecordDropped
from apo_planner.reasoning import split_reasoning
from tests.conftest import WEATHER_TOOL, nemotron_row, tool_call


def test_format_is_detected_from_columns():
    assert detect_format(["uuid", "messages", "metadata", "license"]) == "nemotron"
    assert detect_format(["messages", "tools"]) == "openai"
    assert detect_format(["conversations", "tools"]) == "sharegpt"
    with pytest.raises(SourceError, match="--format"):
        detect_format(["text"])


def test_nemotron_reader_takes_tools_from_metadata_and_reasoning_from_think():
    row = nemotron_row(
        [
            {"role": "user", "content": "Weather in Oslo?", "tool_calls": []},
            {
                "role": "assistant",
                "content": "<think>Need Oslo weather.</think>Checking.",
                "tool_calls": [tool_call("a", "get_weather", {"city": "Oslo"})],
            },
            {"role": "tool", "content": "5C", "tool_call_id": "a"},
            {"role": "assistant", "content": "<think>ok</think>5C in Oslo.", "tool_calls": []},
        ]
    )
    conv = read_nemotron(row)
    assert conv.source_row_id == "row-1"
    assert conv.tools[0]["function"]["name"] == "get_weather"
    assistant = conv.messages[1]
    assert assistant.reasoning == "Need Oslo weather." and assistant.content == "Checking."
    assert assistant.tool_calls[0].name == "get_weather"
    assert conv.messages[3].content == "5C in Oslo."


def test_nemotron_reader_accepts_metadata_as_dict_and_arguments_as_dict():
    row = nemotron_row([{"role": "user", "content": "q"}], metadata={"tools": [WEATHER_TOOL]})
    row["messages"].append(
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "x",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": {"city": "Rome"}},
                }
            ],
        }
    )
    conv = read_nemotron(row)
    assert conv.messages[1].tool_calls[0].arguments == {"city": "Rome"}
    assert conv.messages[1].content == ""


def test_nemotron_reader_drops_unparseable_metadata():
    with pytest.raises(RecordDropped) as info:
        read_nemotron(nemotron_row([], metadata="{broken"))
    assert info.value.reason is DropReason.UNPARSEABLE_METADATA


def test_openai_reader_handles_legacy_function_call_and_string_tools():
    row = {
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "Weather in Lima?"}]},
            {
                "role": "assistant",
                "content": None,
                "function_call": {"name": "get_weather", "arguments": '{"city": "Lima"}'},
            },
            {"role": "function", "name": "get_weather", "content": "20C"},
            {"role": "assistant", "content": "20C."},
        ],
        "tools": json.dumps([WEATHER_TOOL["function"]]),  # bare functions, as a JSON string
    }
    conv = read_openai(row)
    assert conv.messages[0].content == "Weather in Lima?"
    assert conv.messages[1].tool_calls[0].arguments == '{"city": "Lima"}'
    assert conv.messages[2].role == "tool"
    assert conv.tools == [WEATHER_TOOL]


def test_openai_reader_reads_hermes_tool_call_blocks_in_assistant_text():
    row = {
        "messages": [
            {"role": "user", "content": "Weather in Lima and Quito?"},
            {
                "role": "assistant",
                "content": "<think>two</think>\n"
                '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Lima"}}\n</tool_call>\n'
                '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Quito"}}\n</tool_call>',
            },
        ],
        "tools": [WEATHER_TOOL],
    }
    calls = read_openai(row).messages[1].tool_calls
    assert [c.arguments["city"] for c in calls] == ["Lima", "Quito"]


def test_sharegpt_reader_takes_tools_from_the_system_prompt_and_tool_responses():
    row = {
        "conversations": [
            {
                "from": "system",
                "value": f"You can call functions. <tools> {json.dumps(WEATHER_TOOL)} </tools>",
            },
            {"from": "human", "value": "Weather in Hanoi?"},
            {
                "from": "gpt",
                "value": '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Hanoi"}}\n</tool_call>',
            },
            {"from": "tool", "value": '<tool_response>\n{"temp_c": 30}\n</tool_response>'},
            {"from": "gpt", "value": "30°C in Hanoi."},
        ]
    }
    conv = read_sharegpt(row)
    assert [m.role for m in conv.messages] == ["system", "user", "assistant", "tool", "assistant"]
    assert conv.messages[3].content == '{"temp_c": 30}'
    assert conv.tools[0]["function"]["name"] == "get_weather"
    assert conv.source_row_id  # content hash when the row has no id


def test_rows_without_ids_get_a_stable_content_id():
    row = {"messages": [{"role": "user", "content": "x"}], "tools": [WEATHER_TOOL]}
    assert read_openai(row).source_row_id == read_openai(json.loads(json.dumps(row))).source_row_id


def test_unclosed_think_counts_as_reasoning():
    assert split_reasoning("<think>still thinking") == ("still thinking", "")
    assert split_reasoning("thought</think>answer") == ("thought", "answer")
