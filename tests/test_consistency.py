"""Selections that contradict their trajectory are rejected by name, whatever synthesizer made them;
the chosen plan carries the data-flow edges among the calls it keeps."""

import pytest

from apo_planner.builders.config import ConsistencyConfig
from apo_planner.builders.records import Action, Trajectory
from apo_planner.builders.synthesis.agreement import Agreement
from apo_planner.builders.synthesis.consistency import check_consistency, unsourced_answer_values
from apo_planner.builders.synthesis.selection import InvalidSelection, KeptCall, Selection, selected_plan

ON = ConsistencyConfig()


def _trajectory(query, answer, *calls):
    actions = [Action(tool=t, arguments=a, rationale="why.", result=r, failed=f) for t, a, r, f in calls]
    return Trajectory(source_row_id="r", query=query, tools=[], actions=actions, final_answer=answer)


def _keep(*indices):
    return Selection(kept=tuple(KeptCall(i, "why") for i in indices))


def _reason(trajectory, selection, config=ON):
    try:
        check_consistency(trajectory, selection, config)
    except InvalidSelection as bad:
        return bad.reason
    return None


STATUS = '{"order_id": "ORD-18358", "status": "processing", "ship_to": "old address on file"}'
UPDATED = '{"order_id": "ORD-18358", "ship_to": "77 Rue de Rivoli", "status": "address_updated"}'
CARD_EXAMPLE = _trajectory(
    "Ship order ORD-18358 to 77 Rue de Rivoli instead.",
    "Done: order ORD-18358 will ship to 77 Rue de Rivoli (address_updated).",
    ("get_order_status", {"order_id": "ORD-18358"}, STATUS, False),
    ("get_order_status", {"order_id": "ORD-18358"}, STATUS, False),
    ("update_order", {"order_id": "ORD-18358", "address": "77 Rue de Rivoli"}, UPDATED, False),
)


def test_the_dataset_cards_example_keeping_a_repeat_and_dropping_the_update_is_rejected():
    assert _reason(CARD_EXAMPLE, _keep(0, 1)) == "kept_duplicate_call"
    assert _reason(CARD_EXAMPLE, _keep(0)) in ("dropped_answer_source", "dropped_reported_tool")
    assert _reason(CARD_EXAMPLE, _keep(0, 2)) is None  # the repeat dropped, the update kept
    assert _reason(CARD_EXAMPLE, _keep(2)) is None  # the status lookup was not needed either


def test_a_repeat_whose_result_differed_may_be_kept_as_the_rule_synthesizer_keeps_it():
    from apo_planner.builders.config import RuleConfig
    from apo_planner.builders.synthesis.rule import RuleSynthesizer

    t = _trajectory(
        "Add two ABC1 to my cart.",
        "Two ABC1 are in your cart.",
        ("add_item", {"sku": "ABC1"}, '{"cart_count": 1}', False),
        ("add_item", {"sku": "ABC1"}, '{"cart_count": 2}', False),
        ("view_cart", {}, '{"items": 2}', False),
        ("view_cart", {}, '{"items": 2}', False),
    )
    selection = RuleSynthesizer(RuleConfig()).select(t)
    assert [k.index for k in selection.kept] == [0, 1, 2]
    assert _reason(t, selection) is None
    assert _reason(t, _keep(0, 1, 2, 3)) == "kept_duplicate_call"  # same call, same result


def test_a_kept_failure_whose_successful_retry_was_dropped_is_rejected():
    t = _trajectory(
        "Weather in Paris?",
        "It is sunny in Paris.",
        ("get_weather", {"city": "Pari"}, '{"error": "unknown city"}', True),
        ("get_weather", {"city": "Paris"}, '{"sky": "sunny"}', False),
        ("get_time", {"city": "Paris"}, '{"time": "10:00"}', False),
    )
    assert _reason(t, _keep(0, 2)) == "kept_failure_dropped_retry"
    assert _reason(t, _keep(1)) is None


def test_a_kept_call_using_a_value_only_a_dropped_call_produced_is_rejected():
    t = _trajectory(
        "Book the cheapest flight from Paris to Rome.",
        "Booked flight AF1234.",
        ("search_flights", {"origin": "Paris", "destination": "Rome"}, '{"cheapest": "AF1234"}', False),
        ("search_flights", {"origin": "Paris", "destination": "Rome"}, '{"cheapest": "AF1234"}', False),
        ("book_flight", {"flight": "AF1234"}, '{"booked": true}', False),
    )
    assert _reason(t, _keep(2)) == "uses_dropped_result"
    assert _reason(t, _keep(0, 2)) is None  # one search kept: the value has a kept source


def test_a_value_the_user_gave_is_not_a_dropped_calls_product():
    t = _trajectory(
        "Book flight AF1234.",
        "Booked.",
        ("check_flight", {"flight": "AF1234"}, '{"flight": "AF1234", "seats": 3}', False),
        ("book_flight", {"flight": "AF1234"}, '{"booked": true}', False),
    )
    assert _reason(t, _keep(1)) is None


def test_dropping_the_call_whose_result_the_answer_uses_is_rejected():
    t = _trajectory(
        "What's the weather and the time in Oslo?",
        "In Oslo it is 14:05 and snowing.",
        ("get_time", {"city": "Oslo"}, '{"time": "14:05"}', False),
        ("get_weather", {"city": "Oslo"}, '{"sky": "snowing"}', False),
        ("get_weather", {"city": "Oslo"}, '{"sky": "snowing"}', False),
    )
    assert _reason(t, _keep(1)) == "dropped_answer_source"
    assert _reason(t, _keep(0, 1)) is None


def test_dropping_the_last_call_of_a_reported_tool_is_rejected_unless_switched_off():
    # the answer's values also come from elsewhere (the user), so only the conservative check sees it
    t = _trajectory(
        "Move my meeting to 2026-05-01.",
        "Your meeting is now on 2026-05-01.",
        ("get_meeting", {"id": "m-1"}, '{"date": "2026-04-01"}', False),
        ("reschedule", {"id": "m-1", "date": "2026-05-01"}, '{"date": "2026-05-01"}', False),
    )
    assert _reason(t, _keep(0)) == "dropped_reported_tool"
    assert _reason(t, _keep(0), ConsistencyConfig(dropped_reported_tool=False)) is None
    assert _reason(t, _keep(1)) is None


def test_checks_can_be_switched_off():
    assert _reason(CARD_EXAMPLE, _keep(0, 1), ConsistencyConfig(enabled=False)) is None


def test_a_kept_call_that_consumes_a_kept_result_depends_on_it_without_a_synthesizer_edge():
    t = _trajectory(
        "Book the cheapest flight from Paris to Rome.",
        "Booked flight AF1234.",
        ("get_user", {"name": "me"}, '{"id": "u-77"}', False),
        ("search_flights", {"origin": "Paris", "destination": "Rome"}, '{"cheapest": "AF1234"}', False),
        ("search_flights", {"origin": "Paris", "destination": "Rome"}, '{"cheapest": "AF1234"}', False),
        ("book_flight", {"flight": "AF1234"}, '{"booked": true}', False),
    )
    plan = selected_plan(t, Selection(kept=(KeptCall(0, "a"), KeptCall(1, "b"), KeptCall(3, "c", (0,)))))
    assert [s.depends_on for s in plan.steps] == [(), (), (0, 1)]  # the synthesizer's edge and the data flow


@pytest.mark.parametrize("synthesizer", ["rule", "llm"])
def test_every_synthesizer_is_checked_and_rejections_are_counted(tmp_path, synthesizer):
    from apo_planner.builders.build import build
    from apo_planner.entry.recipe import load_recipe

    sets = [f"build.output={tmp_path / 'ds'}", f"build.synthesizer={synthesizer}", "build.limit=40"]
    sets += [f"build.llm.cache={tmp_path / 'cache.sqlite'}", "build.llm.max_attempts=1"]
    stats = build(load_recipe(None, sets).build).stats
    assert stats["pairs"] > 0
    rejected = stats["selection_rejected"]
    sources = stats["answer_sources_kept"]  # the checks guarantee it, whatever the synthesizer
    assert sources["pairs"] == stats["pairs"] and sources["share"] == 1.0
    if synthesizer == "rule":  # the rules are consistent by construction
        assert not set(rejected) & {"kept_duplicate_call", "kept_failure_dropped_retry", "uses_dropped_result"}
        assert stats["agreement"] is None  # nothing to compare the rules with
    else:
        agreement = stats["agreement"]  # every pair and every "nothing to remove" was compared with the rules
        assert agreement["trajectories"] + agreement["reference_rejected"] == stats["pairs"] + rejected["no_redundancy"]
        assert agreement["both_removed"] <= min(agreement["model_removed"], agreement["rule_removed"])
        # a random model contradicts its trajectories; with one attempt each contradiction is counted
        assert set(rejected) & {
            "kept_duplicate_call",
            "kept_failure_dropped_retry",
            "uses_dropped_result",
            "dropped_answer_source",
            "dropped_reported_tool",
        }


def test_the_answer_sources_a_selection_leaves_without_a_kept_call_are_named():
    assert unsourced_answer_values(CARD_EXAMPLE, [0]) == [("address_updated", 2)]
    assert unsourced_answer_values(CARD_EXAMPLE, [0, 2]) == []


def test_agreement_with_the_rules_has_the_precision_and_recall_built_into_the_fixture():
    from apo_planner.builders.config import RuleConfig
    from apo_planner.builders.synthesis.rule import RuleSynthesizer

    rules = RuleSynthesizer(RuleConfig())
    retry = _trajectory(  # rules remove 0 (retried_failure) and 2 (repeated_verification)
        "Weather in Paris?",
        "Sunny, 10:00.",
        ("get_weather", {"city": "Pari"}, '{"error": "unknown city"}', True),
        ("get_weather", {"city": "Paris"}, '{"sky": "sunny"}', False),
        ("get_weather", {"city": "Paris"}, '{"sky": "sunny"}', False),
        ("get_time", {"city": "Paris"}, '{"time": "10:00"}', False),
    )
    cart = _trajectory(  # rules remove nothing: the second add changed the cart
        "Add two ABC1 to my cart.",
        "Two ABC1 are in your cart.",
        ("add_item", {"sku": "ABC1"}, '{"cart_count": 1}', False),
        ("add_item", {"sku": "ABC1"}, '{"cart_count": 2}', False),
    )
    model_retry = Selection(kept=(KeptCall(0, "a"), KeptCall(1, "b")), removed={2: "x", 3: "x"})
    model_cart = Selection(kept=(KeptCall(1, "a"),), removed={0: "x"})
    agreement = Agreement()
    agreement.add(retry, model_retry, rules.select(retry), rules)  # both remove 2; model 3, rules 0
    agreement.add(cart, model_cart, rules.select(cart), rules)  # model 0, rules nothing
    agreement.add(cart, None, None, rules)  # the rules could not judge: not compared
    report = agreement.as_dict()
    assert (report["model_removed"], report["rule_removed"], report["both_removed"]) == (3, 2, 1)
    assert (report["precision"], report["recall"]) == (round(1 / 3, 4), 0.5)
    assert report["missed_by_rule"] == {"retried_failure": 1}
    assert report["over_removed_by_kind"] == {"read_only": 1, "state_changing": 1}
    assert (report["trajectories"], report["reference_rejected"]) == (2, 1)
    merged = Agreement()  # shards add up to the whole
    merged.merge(report)
    merged.merge(Agreement().as_dict())
    assert merged.as_dict() == report


def test_a_pair_that_dropped_a_free_text_result_is_counted_unchecked_not_kept_silently(tmp_path):
    """Values are matched in JSON results only: a dropped plain-text result ("5 C") was not checked."""
    import json

    from apo_planner.builders.build import build
    from apo_planner.entry.recipe import load_recipe

    call = {"type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'}}
    row = {
        "messages": [
            {"role": "user", "content": "Weather in Oslo?"},
            {"role": "assistant", "content": "", "tool_calls": [{"id": "a", **call}]},
            {"role": "tool", "tool_call_id": "a", "content": "5 C and cloudy"},
            {"role": "assistant", "content": "", "tool_calls": [{"id": "b", **call}]},
            {"role": "tool", "tool_call_id": "b", "content": "5 C and cloudy"},
            {"role": "assistant", "content": "It is 5 C and cloudy in Oslo."},
        ],
        "tools": [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}],
    }
    source = tmp_path / "logs.jsonl"
    source.write_text(json.dumps(row) + "\n")
    sets = [f"build.source={source}", f"build.output={tmp_path / 'ds'}", "build.synthesizer=rule"]
    sets += ["build.decontamination.enabled=false", "build.test_fraction=0"]
    stats = build(load_recipe(None, sets).build).stats
    assert stats["answer_sources_kept"] == {"pairs": 1, "kept": 1, "unchecked": 1, "share": 1.0}
