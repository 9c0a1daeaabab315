import pytest

from apo_planner.builders.config import RuleConfig
from apo_planner.builders.records import Action, Trajectory
from apo_planner.builders.synthesis.rule import RuleSynthesizer
from apo_planner.builders.synthesis.selection import (
    InvalidSelection,
    KeptCall,
    Selection,
    infer_dependencies,
    original_plan,
    selected_plan,
    short_rationale,
)

RULE = RuleSynthesizer(RuleConfig())


def _traj(*actions):
    return Trajectory(
        source_row_id="r",
        query="q",
        tools=[],
        final_answer="a",
        actions=[Action(tool=t, arguments=a, rationale="why. more", result=r, failed=f) for t, a, r, f in actions],
    )


def test_failed_call_retried_later_is_removed():
    t = _traj(("book", {"x": 1}, "Error: down", True), ("book", {"x": 1}, "ok", False))
    sel = RULE.select(t)
    assert [k.index for k in sel.kept] == [1] and sel.removed == {0: "retried_failure"}


def test_failed_call_never_retried_is_kept():
    t = _traj(("book", {"x": 1}, "Error: down", True), ("notify", {"m": "sorry"}, "sent", False))
    assert RULE.select(t).removed == {}


def test_repeated_read_only_call_is_a_repeated_verification_even_if_its_result_changed():
    t = _traj(
        ("get_order", {"id": 7}, "pending", False),
        ("update_order", {"id": 7}, "ok", False),
        ("get_order", {"id": 7}, "shipped", False),
    )
    assert RULE.select(t).removed == {2: "repeated_verification"}


@pytest.mark.parametrize("name", ["getOrder", "check-stock", "api.verify_user", "search"])
def test_verification_verbs_are_recognised_in_any_naming_style(name):
    assert RULE.is_read_only(name)


@pytest.mark.parametrize("name", ["getaway_book", "listen", "issue_refund", "book_flight"])
def test_verbs_only_count_at_a_word_boundary(name):
    assert not RULE.is_read_only(name)


def test_exact_duplicate_of_a_write_with_the_same_result_is_removed_but_not_with_a_new_result():
    same = _traj(("send", {"m": "hi"}, "sent", False), ("send", {"m": "hi"}, "sent", False))
    assert RULE.select(same).removed == {1: "exact_duplicate"}
    differs = _traj(("send", {"m": "hi"}, "sent #1", False), ("send", {"m": "hi"}, "sent #2", False))
    assert RULE.select(differs).removed == {}


def test_argument_order_does_not_hide_a_duplicate():
    t = _traj(("get_x", {"a": 1, "b": 2}, "r", False), ("get_x", {"b": 2, "a": 1}, "r", False))
    assert RULE.select(t).removed == {1: "repeated_verification"}


def test_clean_trajectory_yields_no_redundancy():
    t = _traj(("get_x", {"a": 1}, "r", False))
    sel = RULE.select(t)
    with pytest.raises(InvalidSelection, match="no_redundancy"):
        sel.validate(len(t.actions))


def test_dependencies_follow_values_from_results_into_arguments():
    t = _traj(
        ("search_flights", {"to": "CDG"}, '{"flight_id": "AF123"}', False),
        ("get_weather", {"city": "Paris"}, "sunny", False),
        ("book_flight", {"flight_id": "AF123"}, "ok", False),
    )
    assert infer_dependencies(t.actions) == [(), (), (0,)]


def test_chosen_plan_keeps_original_calls_and_renumbers_dependencies():
    t = _traj(
        ("search", {"q": "x"}, "Error", True),
        ("search", {"q": "x"}, '{"id": "ABC9"}', False),
        ("book", {"id": "ABC9"}, "ok", False),
    )
    sel = RULE.select(t)
    sel.validate(3)
    chosen, rejected = selected_plan(t, sel), original_plan(t, 240)
    assert [(s.tool, s.arguments, s.depends_on) for s in chosen.steps] == [
        ("search", {"q": "x"}, ()),
        ("book", {"id": "ABC9"}, (0,)),
    ]
    assert len(rejected) == 3 and rejected.steps[2].depends_on == (1,)


@pytest.mark.parametrize(
    "kept, reason",
    [
        ((), "empty_selection"),
        ((KeptCall(5, ""),), "index_out_of_range"),
        ((KeptCall(0, ""), KeptCall(0, "")), "duplicate_index"),
        ((KeptCall(1, ""), KeptCall(0, "")), "unordered_indices"),
        ((KeptCall(0, "", (1,)), KeptCall(1, "")), "bad_dependency"),
        ((KeptCall(0, ""), KeptCall(1, ""), KeptCall(2, "")), "no_redundancy"),
    ],
)
def test_invalid_selections_are_named(kept, reason):
    with pytest.raises(InvalidSelection) as info:
        Selection(kept=kept).validate(3)
    assert info.value.reason == reason


def test_short_rationale_is_the_first_sentence_capped_at_a_word():
    assert short_rationale("I need the weather.\nThen more.", 100) == "I need the weather."
    assert short_rationale("a " * 100, 10) == "a a a a a…"
