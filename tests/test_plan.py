import json

import jsonschema
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from apo_planner.plan import Plan, PlanParseError, PlanStep, parse_plan, plan_json_schema, render_plan

json_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text()
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3),
    max_leaves=8,
)
tool_names = st.from_regex(r"[A-Za-z_][A-Za-z0-9_.\-]{0,20}", fullmatch=True)


@st.composite
def plans(draw):
    n = draw(st.integers(1, 5))
    steps = []
    for i in range(n):
        steps.append(
            PlanStep(
                tool=draw(tool_names),
                arguments=draw(st.dictionaries(st.text(max_size=10), json_values, max_size=4)),
                rationale=draw(st.text(max_size=40)),
                depends_on=draw(st.lists(st.integers(0, i - 1), max_size=i, unique=True)) if i else [],
            )
        )
    return Plan(steps=steps)


@settings(max_examples=300, deadline=None)
@given(plans())
def test_canonical_text_parses_back_to_the_same_plan(plan):
    assert parse_plan(render_plan(plan)) == plan


@settings(max_examples=100, deadline=None)
@given(plans())
def test_plan_json_satisfies_the_constrained_decoding_schema(plan):
    data = json.loads(plan.model_dump_json())
    jsonschema.validate(data, plan_json_schema())
    assert Plan.model_validate(data) == plan


def test_rendering_is_the_documented_format():
    plan = Plan(
        steps=[
            PlanStep(tool="get_weather", arguments={"city": "Zürich"}, rationale="need\nthe   weather"),
            PlanStep(tool="convert", arguments={"t": 21}, rationale="user wants °F", depends_on=[0]),
        ]
    )
    assert render_plan(plan) == (
        '1. get_weather({"city": "Zürich"})\n'
        "   why: need the weather\n"
        '2. convert({"t": 21}) after 1\n'
        "   why: user wants °F"
    )


def test_parse_tolerates_reasoning_and_code_fences_around_the_plan():
    text = '<think>hmm</think>\n```\n1. f({"a": 1})\n   why: x\n```\n'
    assert parse_plan(text).steps[0].arguments == {"a": 1}


@pytest.mark.parametrize(
    "text, message",
    [
        ("", "no plan steps"),
        ("2. f({})\n   why: x", "expected 1"),
        ("1. f(not json)\n", "not JSON"),
        ("1. f([1])\n", "must be a JSON object"),
        ("1. f({}) after 1\n", "not an earlier step"),
        ("1. f({}) then\n", "unexpected text"),
        ("hello", "expected 'N. tool"),
    ],
)
def test_malformed_plan_text_raises_a_located_error(text, message):
    with pytest.raises(PlanParseError, match=message):
        parse_plan(text)


def test_dependencies_must_point_to_earlier_steps():
    with pytest.raises(ValueError, match="not an earlier step"):
        Plan(steps=[PlanStep(tool="a", depends_on=[1]), PlanStep(tool="b")])


def test_empty_plan_and_bad_tool_names_are_rejected():
    with pytest.raises(ValueError):
        Plan(steps=[])
    with pytest.raises(ValueError):
        PlanStep(tool="two words")


def test_records_round_trip_for_arrow_storage():
    plan = Plan(
        steps=[
            PlanStep(tool="f", arguments={"x": [1, {"y": None}]}, rationale="r"),
            PlanStep(tool="g", depends_on=[0]),
        ]
    )
    records = plan.to_records()
    assert isinstance(records[0]["arguments"], str)
    assert Plan.from_records(records) == plan
