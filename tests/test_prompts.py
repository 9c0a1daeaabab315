"""The planner prompt carries a conversation's earlier turns the same way in the dataset and at inference;
single-turn prompts are exactly what they always were."""

import json

import datasets

from apo_planner.builders.build import build
from apo_planner.builders.pairs import row_id
from apo_planner.entry.recipe import load_recipe
from apo_planner.generation import Generation
from apo_planner.planner import Planner
from apo_planner.prompts import PLANNER_SYSTEM_PROMPT, context_messages, planner_prompt
from tests.conftest import message, nemotron_row, tool_call, write_jsonl


def test_a_single_turn_prompt_is_unchanged():
    expected = [{"role": "system", "content": PLANNER_SYSTEM_PROMPT}, {"role": "user", "content": "Weather in Oslo?"}]
    assert planner_prompt("Weather in Oslo?") == expected
    assert planner_prompt("Weather in Oslo?", []) == expected == planner_prompt("Weather in Oslo?", None)


def test_context_keeps_what_was_said_and_leaves_out_calls_results_system_and_reasoning():
    history = [
        {"role": "system", "content": "You are helpful."},
        {"role": "user", "content": " Book a table. "},
        {"role": "assistant", "content": "<think>\nneed the city\n</think>\n\nWhich city?", "tool_calls": None},
        {"role": "user", "content": "Oslo."},
        {"role": "assistant", "content": "<think>search</think>", "tool_calls": [{"function": {"name": "f"}}]},
        {"role": "tool", "content": '{"results": []}'},
        {"role": "assistant", "content": None},
        {"role": "assistant", "content": "Booked."},
    ]
    context = context_messages(history)
    assert context == [
        {"role": "user", "content": "Book a table."},
        {"role": "assistant", "content": "Which city?"},
        {"role": "user", "content": "Oslo."},
        {"role": "assistant", "content": "Booked."},
    ]
    assert context_messages(context) == context
    assert planner_prompt("And tomorrow?", history)[1:] == [*context, {"role": "user", "content": "And tomorrow?"}]


def test_content_parts_in_the_context_are_joined_as_the_readers_join_them():
    parts = [{"type": "text", "text": "Book "}, {"type": "text", "text": "a table."}]
    assert context_messages([{"role": "user", "content": parts}]) == [{"role": "user", "content": "Book a table."}]


def test_a_later_turn_keeps_its_own_id_and_the_first_turn_keeps_the_old_one():
    assert row_id("local", "u1") == row_id("local", "u1", 0) != row_id("local", "u1", 1)


class _EchoTokenizer:
    """Renders messages as JSON, so a test can see exactly what the model would be given."""

    def apply_chat_template(self, messages, tools=None, tokenize=False, add_generation_prompt=True):
        return json.dumps({"messages": messages, "tools": tools})


def test_the_planner_at_inference_sees_the_prompt_the_dataset_trained_on(tmp_path):
    weather = {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Weather.",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
        },
    }
    history = [
        message("user", "Can you check the weather?"),
        message("assistant", "<think>\nwhich city\n</think>\n\nSure, which city?"),
        message("user", "Oslo, please."),
    ]
    call = [tool_call("a", "get_weather", {"city": "Oslo"})]
    messages = [
        *history,
        message("assistant", "<think>\nlook it up\n</think>\n\n", call),
        message("tool", "5C"),
        message("assistant", None, call),
        message("tool", "5C"),
        message("assistant", "5°C in Oslo."),
    ]
    source = write_jsonl(tmp_path / "src.jsonl", [nemotron_row(messages, tools=[weather], uuid="mt")])
    overrides = [f"build.source={source}", f"build.output={tmp_path / 'ds'}", "build.synthesizer=rule"]
    build(load_recipe(None, overrides).build)
    [row] = [r for split in datasets.load_dataset(str(tmp_path / "ds")).values() for r in split]
    assert row["prompt"][1:] == [
        {"role": "user", "content": "Can you check the weather?"},
        {"role": "assistant", "content": "Sure, which city?"},
        {"role": "user", "content": "Oslo, please."},
    ]

    seen = []

    class Scripted:
        def generate(self, request) -> Generation:
            seen.append(request.prompt)
            return Generation('1. get_weather({"city": "Oslo"})\n   why: the weather', 10, 10)

    planner = Planner(_EchoTokenizer(), Scripted(), constrained=False)
    tools = json.loads(row["tools"])
    # the caller hands over the conversation as it happened; the planner reduces it as the dataset did
    result = planner.plan_with_details("Oslo, please.", tools, context=history[:2])
    assert result.plan is not None and len(seen) == 1
    assert json.loads(seen[0]) == {"messages": row["prompt"], "tools": tools}
    assert planner.render_prompt(row["query"], tools) == json.dumps(
        {"messages": planner_prompt(row["query"]), "tools": tools}
    )
