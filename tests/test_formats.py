"""Trajectory formats: each one is found from its rows' content, read faithfully, or refused clearly.

The example files under tests/fixtures/formats/ hold the same four hand-written conversations in every
format's own shape (parallel calls, a failed call and its retry, a repeated call, unicode, a two-turn
conversation), plus what is particular to each format (an MCP catalog, results answered out of order and
an orphan result in OpenAI chat; thinking, redacted thinking and an image in Anthropic; a built-in tool
call in Responses; a trace split over two exports, a failed execute_tool span, a result only an
execute_tool span holds, a trace without message content and per-request traces in OpenTelemetry).
"""

import json
from collections import Counter
from dataclasses import asdict
from pathlib import Path

import datasets
import pytest

from apo_planner.builders.abstraction import turns
from apo_planner.builders.config import BuildConfig, FilterConfig
from apo_planner.builders.errors import SourceError
from apo_planner.builders.sources import open_source
from apo_planner.config import RecipeError
from apo_planner.entry.cli import main
from apo_planner.formats import (
    FORMATS,
    Conversation,
    Detection,
    DropReason,
    FormatRegistry,
    Message,
    RecordDropped,
    ToolCall,
    TrajectoryFormat,
    detect,
    markdown_table,
    reader_for,
    refresh_index,
)
from apo_planner.formats._chat import split_reasoning
from apo_planner.tools import normalize_tools, read_only_hints
from benchmarks.formats import CONVERTERS, rows_as
from benchmarks.workloads import generate
from tests.conftest import FIXTURES, REPO, write_jsonl

EXAMPLES = FIXTURES / "formats"
FILES = {  # example file -> (format, records, dropped, pairs, skipped content)
    "nemotron.jsonl": ("nemotron", 4, {}, 3, {}),
    "openai.jsonl": ("openai", 4, {}, 3, {}),
    "sharegpt.jsonl": ("sharegpt", 4, {}, 3, {}),
    "anthropic.jsonl": ("anthropic", 4, {}, 3, {"image": 1, "redacted_thinking": 1}),
    "openai_responses.jsonl": ("openai_responses", 4, {}, 3, {"web_search_call": 1}),
    "otel.jsonl": ("otel", 5, {"no_message_content": 1}, 3, {}),
    "otel_spans.jsonl": ("otel", 2, {}, 1, {}),
}
# what the rule synthesizer makes of the conversations, whatever the format: query -> (rejected, chosen) calls
PAIRS = {
    "Is it warmer in Zürich or São Paulo right now? 🌡️": (
        ["get_weather", "get_weather", "get_weather"],
        ["get_weather", "get_weather"],
    ),
    "Réserve une table pour 4 à 19:30 chez « Le Café » à Kraków, s'il te plaît.": (
        ["search_restaurants", "book_table", "book_table"],
        ["search_restaurants", "book_table"],
    ),
    "And in KRW? Then email both amounts to minji@example.kr.": (
        ["convert_currency", "convert_currency", "send_email"],
        ["convert_currency", "send_email"],
    ),
}


def _rows(name: str) -> list[dict]:
    return [json.loads(line) for line in (EXAMPLES / name).read_text(encoding="utf-8").splitlines()]


def _build(tmp_path: Path, source: Path, *extra: str) -> tuple[dict, list[dict]]:
    out = tmp_path / "out"
    argv = ["build", "--source", str(source), "--synthesizer", "rule", "--output", str(out)]
    assert main([*argv, "--set", "build.test_fraction=0", "--set", "build.review.size=0", *extra]) == 0
    stats = json.loads((out / "stats.json").read_text())
    rows = [r for split in datasets.load_dataset(str(out)).values() for r in split] if stats["pairs"] else []
    return stats, rows


def _reference() -> tuple[dict[str, dict], dict[str, list[dict]]]:
    """The Nemotron file's schemas by tool name, and its call arguments in order by query."""
    schemas, arguments = {}, {}
    for row in _rows("nemotron.jsonl"):
        for tool in json.loads(row["metadata"])["tools"]:
            schemas[tool["function"]["name"]] = tool["function"]["parameters"]
        query, calls = None, []
        for m in row["messages"]:
            if m["role"] == "user":
                if query is not None:
                    arguments[query] = calls
                query, calls = m["content"], []
            for c in m["tool_calls"] or ():
                calls.append(json.loads(c["function"]["arguments"]))
        arguments[query] = calls
    return schemas, arguments


# --- every format: detected with no --format, read into the same pairs ------------------------------


@pytest.mark.parametrize("name", FILES)
def test_each_example_file_builds_with_no_format_into_the_expected_pairs(tmp_path, name):
    fmt, records, dropped, pairs, skipped = FILES[name]
    stats, rows = _build(tmp_path, EXAMPLES / name)
    assert stats["format"] == fmt and stats["formats"] == {fmt: records}
    assert stats["records_read"] == records and stats["dropped"] == dropped and stats["pairs"] == pairs
    assert stats["skipped_content"] == skipped
    got = {r["query"]: ([s["tool"] for s in r["rejected_plan"]], [s["tool"] for s in r["chosen_plan"]]) for r in rows}
    assert got == {q: p for q, p in PAIRS.items() if q in got} and len(got) == pairs
    two_turns = [r for r in rows if r["query"].startswith("And in KRW")]
    assert [m["content"] for m in two_turns[0]["prompt"][1:-1]] == [
        "How much is 250 EUR in JPY?",
        "250 EUR is about ¥40,125 today.",
    ]


@pytest.mark.parametrize("name", FILES)
def test_the_tools_column_keeps_every_parameter_schema_and_arguments_match_the_source(tmp_path, name):
    schemas, arguments = _reference()
    _, rows = _build(tmp_path, EXAMPLES / name)
    for row in rows:
        tools = json.loads(row["tools"])
        assert {t["function"]["name"]: t["function"]["parameters"] for t in tools} == {
            t["function"]["name"]: schemas[t["function"]["name"]] for t in tools
        }
        assert [json.loads(s["arguments"]) for s in row["rejected_plan"]] == arguments[row["query"]]


def test_results_pair_by_id_in_every_format_that_has_ids_and_by_order_in_nemotron(tmp_path):
    paired = {}
    for name in FILES:
        stats, _ = _build(tmp_path / name, EXAMPLES / name)
        paired[name] = stats["result_pairing"]
    assert paired["nemotron.jsonl"] == {"by_id": 0, "by_order": 11, "orphan_result": 0, "no_result": 0}
    assert paired["sharegpt.jsonl"]["by_order"] == 11  # Hermes responses carry no id either
    for name in ("anthropic.jsonl", "openai_responses.jsonl", "otel.jsonl"):
        assert paired[name] == {"by_id": 11, "by_order": 0, "orphan_result": 0, "no_result": 0}, name
    # results answered out of order, and a cancelled call's late result: counted, attached to nothing
    assert paired["openai.jsonl"] == {"by_id": 11, "by_order": 0, "orphan_result": 1, "no_result": 0}


def test_mcp_annotations_decide_read_only_calls_and_is_error_marks_a_failed_call(tmp_path):
    _, rows = _build(tmp_path / "mcp", EXAMPLES / "openai.jsonl")
    currency = next(r for r in rows if r["query"].startswith("And in KRW"))
    tools = {t["function"]["name"]: t for t in json.loads(currency["tools"])}
    assert tools["convert_currency"]["annotations"] == {"readOnlyHint": True}  # openWorldHint is not kept
    assert tools["send_email"]["annotations"] == {"readOnlyHint": False, "destructiveHint": True}
    assert currency["removed_calls"] == [{"index": 1, "reason": "repeated_verification"}]  # read-only: a re-check
    conversation = FORMATS.get("anthropic").read(_rows("anthropic.jsonl")[1])
    results = [m for m in conversation.messages if m.role == "tool"]
    assert [m.failed for m in results] == [False, True, False]
    assert conversation.messages[0] == Message("system", "Tu es un assistant de réservation.")


def test_multi_turn_each_gives_the_same_trajectories_in_every_format():
    assert set(CONVERTERS) == set(FORMATS.names())  # the generator writes every built-in format
    rows = list(generate(30, seed=5))
    config = FilterConfig(multi_turn="each")

    def trajectories(fmt_rows):
        detection = detect(fmt_rows)
        out = []
        for row in fmt_rows:
            for turn in turns(reader_for(row, detection).read(row), config):
                kept = asdict(turn.trajectory) if turn.trajectory else {"drop": turn.drop.reason}
                out.append(
                    {k: v for k, v in kept.items() if k not in ("source_row_id", "generator", "license", "category")}
                )
        return detection.primary, out

    _, reference = trajectories(rows)
    assert sum("drop" not in t for t in reference) > 30 and any(t.get("turn") for t in reference)
    for name in CONVERTERS:
        primary, got = trajectories(list(rows_as(name, rows)))
        assert primary == name and got == reference, name


# --- detection ---------------------------------------------------------------------------------------


def _claims(row):
    return [name for name, fmt in FORMATS if fmt.sniff(row)]


@pytest.mark.parametrize("name", FILES)
def test_each_format_claims_its_own_rows_and_no_other_format_does(name):
    for row in _rows(name):
        assert _claims(row) == [FILES[name][0]]


@pytest.mark.parametrize("name", sorted(CONVERTERS))
def test_generated_rows_of_each_format_are_claimed_by_it_alone(name):
    for row in rows_as(name, generate(20, seed=9)):
        assert _claims(row) == [name]


def test_sniffing_reads_content_not_column_names():
    anthropic = _rows("anthropic.jsonl")[0]
    openai = _rows("openai.jsonl")[0]
    assert set(anthropic) & {"messages", "tools"} == set(openai) & {"messages", "tools"} == {"messages", "tools"}
    assert _claims(anthropic) == ["anthropic"] and _claims(openai) == ["openai"]
    assert _claims({"messages": "not a list", "tools": []}) == []
    assert _claims({"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "t", "attributes": []}]}]}]}) == []


def test_a_source_in_no_known_format_is_one_line_naming_the_formats_and_format(tmp_path, capsys):
    source = write_jsonl(tmp_path / "logs.jsonl", [{"prompt": "hi", "completion": "hello"}] * 3)
    assert main(["build", "--source", str(source), "--synthesizer", "rule", "--output", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "none of the first 3 rows is in a known trajectory format" in err and "--format NAME" in err
    assert all(name in err for name in FORMATS.names())


def test_rows_claimed_by_two_formats_are_an_error_naming_both(monkeypatch, tmp_path):
    class Greedy(TrajectoryFormat):
        detection = "any row with messages"

        def sniff(self, row):
            return "messages" in row

    FORMATS.names()  # the built-in FORMATS loaded
    monkeypatch.setitem(FORMATS._entries, "greedy", Greedy())
    source = write_jsonl(tmp_path / "a.jsonl", _rows("anthropic.jsonl"))
    with pytest.raises(SourceError, match=r"several trajectory formats \(anthropic, greedy\); pass --format anthropic"):
        open_source(str(source), work_dir=tmp_path)


def test_a_file_whose_rows_mix_formats_is_read_row_by_row_and_counted_per_format(tmp_path):
    rows = [*_rows("anthropic.jsonl"), *_rows("nemotron.jsonl")[:2], *_rows("openai_responses.jsonl")]
    stats, pairs = _build(tmp_path, write_jsonl(tmp_path / "mixed.jsonl", rows))
    assert stats["format"] == "mixed"
    assert stats["formats"] == {"anthropic": 4, "nemotron": 2, "openai_responses": 4}
    assert stats["records_read"] == 10 and stats["dropped"] == {} and stats["pairs"] == 8


def test_a_forced_format_reads_every_row_with_it():
    detection = detect([{}], "openai")
    assert detection == Detection("openai", forced=True)
    assert reader_for(_rows("anthropic.jsonl")[0], detection).name == "openai"


def test_unknown_format_names_get_a_did_you_mean(capsys):
    with pytest.raises(RecipeError, match="did you mean 'anthropic'"):
        BuildConfig.parse({"source": "x", "format": "antropic"})
    with pytest.raises(SystemExit):
        main(["build", "--format", "open-ai"])
    err = capsys.readouterr().err
    assert "unknown trajectory format 'open-ai'; did you mean 'openai'" in err and "valid: auto, anthropic" in err


def test_check_names_a_forced_format_that_the_rows_contradict(capsys):
    source = EXAMPLES / "anthropic.jsonl"
    assert main(["check", "--set", f"build.source={source}", "--set", "build.format=openai"]) == 2
    err = capsys.readouterr().err
    assert "build.format: openai, but the first rows look like anthropic" in err


# --- a bad row costs that row ------------------------------------------------------------------------


def _break(name: str, row: dict) -> tuple[dict, str]:
    """A row of the format that its reader cannot use, and the drop reason it must get."""
    row = json.loads(json.dumps(row))
    if name == "nemotron":
        row["metadata"] = '{"tools": [ {"type": "function"'  # cut short
        return row, "unparseable_metadata"
    if name == "openai":
        row["messages"][2]["tool_calls"][0]["function"]["arguments"] = '{"city": "Zür'
        return row, "malformed_arguments"
    if name == "sharegpt":
        row["conversations"][2]["value"] = '<tool_call>\n{"name": "get_weather", "arguments": {"city": \n</tool_call>'
        return row, "malformed_arguments"
    if name == "anthropic":
        del row["messages"][1]["content"][-1]["name"]
        return row, "malformed_arguments"
    if name == "openai_responses":
        row["input"][2]["arguments"] = "not json"
        return row, "malformed_arguments"
    spans = row["resourceSpans"][0]["scopeSpans"][0]["spans"]
    for span in spans:
        span["traceId"] = "f" * 32  # a trace of its own
    for attribute in [s for s in spans if s["name"].startswith("chat")][-1]["attributes"]:
        if attribute["key"] == "gen_ai.output.messages":  # the span the conversation is read from
            attribute["value"]["stringValue"] = attribute["value"]["stringValue"][:30]
    return row, "unparseable_record"


@pytest.mark.parametrize("name", [n for n in FILES if n != "otel_spans.jsonl"])
def test_truncated_and_malformed_rows_are_dropped_with_a_named_reason_and_cost_that_row_only(tmp_path, name):
    fmt = FILES[name][0]
    lines = (EXAMPLES / name).read_text(encoding="utf-8").splitlines()
    broken, reason = _break(fmt, json.loads(lines[0]))
    source = write_jsonl(tmp_path / name, [*lines, lines[1][: len(lines[1]) // 2], json.dumps(broken)])
    stats, _ = _build(tmp_path, source)
    _, records, dropped, pairs, _ = FILES[name]
    assert stats["records_read"] == records + 2 and stats["pairs"] == pairs
    assert stats["dropped"] == {**dropped, "undecodable_line": 1, reason: 1}
    assert stats["drop_examples"]["undecodable_line"][0].startswith(f"{name} line {len(lines) + 1}: not JSON")
    assert stats["formats"] == {fmt: records + 1}  # the truncated line was read by no format


def test_a_trace_whose_messages_are_not_json_is_dropped_with_its_reason():
    row, reason = _break("otel", _rows("otel.jsonl")[0])
    with pytest.raises(RecordDropped) as info:
        FORMATS.get("otel").read(row)
    assert info.value.reason == reason and "not JSON" in info.value.detail


# --- readers, one behaviour each ---------------------------------------------------------------------


def test_otel_spans_of_one_trace_in_several_exports_become_one_record(tmp_path):
    source = open_source(str(EXAMPLES / "otel.jsonl"), work_dir=tmp_path)
    assert len(source.dataset) == 5  # six exports, five traces (one trace split over two exports)
    source = open_source(str(EXAMPLES / "otel_spans.jsonl"), work_dir=tmp_path / "spans")
    assert len(source.dataset) == 2  # twelve spans, two traces (one per request)


def test_otel_fills_results_from_execute_tool_spans_and_marks_error_status_failed():
    otel = FORMATS.get("otel")
    records = list(otel.records(_rows("otel.jsonl")))
    booking = otel.read(records[1])
    assert [m.failed for m in booking.messages if m.role == "tool"] == [False, True, False]
    stock = otel.read(records[3])  # its last chat span was sent no tool message
    assert [m.role for m in stock.messages] == ["user", "assistant", "tool", "assistant"]
    assert json.loads(stock.messages[2].content) == {"symbol": "NVDA", "price": 182.31, "currency": "USD"}
    with pytest.raises(RecordDropped) as info:
        otel.read(records[4])
    assert info.value.reason == DropReason.NO_MESSAGE_CONTENT and "OTEL_INSTRUMENTATION_GENAI" in info.value.detail


def test_a_trace_per_request_keeps_the_earlier_turns_as_context_only():
    otel = FORMATS.get("otel")
    first, second = list(otel.records(_rows("otel_spans.jsonl")))
    assert otel.read(first).history_turns == 0 and otel.read(second).history_turns == 1
    [turn] = turns(otel.read(second), FilterConfig())
    assert turn.trajectory.turn == 1 and turn.trajectory.query.startswith("And in KRW")
    assert [c["role"] for c in turn.trajectory.context] == ["user", "assistant"]


def test_an_otlp_json_export_written_over_many_lines_is_read(tmp_path):
    export = _rows("otel.jsonl")[0]
    (tmp_path / "trace.json").write_text(json.dumps(export, indent=2, ensure_ascii=False), encoding="utf-8")
    source = open_source(str(tmp_path / "trace.json"), work_dir=tmp_path / "w")
    assert source.format == "otel" and len(source.dataset) == 1


def test_anthropic_text_beside_tool_results_is_not_a_new_request():
    row = _rows("anthropic.jsonl")[3]
    row["messages"][2]["content"].append({"type": "text", "text": "(the user pasted something)"})
    conversation = FORMATS.get("anthropic").read(row)
    assert [m.role for m in conversation.messages] == ["user", "assistant", "tool", "assistant"]
    assert conversation.skipped == {"image": 1, "text_beside_tool_result": 1}


def test_responses_reasoning_summary_is_the_rationale_and_calls_of_one_response_are_one_message():
    conversation = FORMATS.get("openai_responses").read(_rows("openai_responses.jsonl")[0])
    assistant = conversation.messages[2]
    assert assistant.reasoning == "Two cities, independent lookups: I can ask for both at once."
    assert [c.id for c in assistant.tool_calls] == ["call_w1", "call_w2"]
    assert conversation.messages[0].role == "system" and conversation.messages[1].role == "user"


def test_hermes_tools_blocks_of_several_objects_and_python_literals_are_read():
    from apo_planner.formats._chat import parse_tools_block

    one, two = {"name": "a", "parameters": {}}, {"name": "b", "parameters": {}}
    assert parse_tools_block(f"{json.dumps(one)} {json.dumps(two)}") == [one, two]
    assert parse_tools_block(f"{json.dumps(one)}\n{json.dumps(two)}") == [one, two]
    assert parse_tools_block(str([one, two])) == [one, two]  # single quotes, as some exports have
    with pytest.raises(RecordDropped):
        parse_tools_block("{not: json")


def test_unclosed_think_counts_as_reasoning_and_blocks_are_split_exactly():
    assert split_reasoning("<think>still thinking") == ("still thinking", "")
    assert split_reasoning("thought</think>answer") == ("thought", "answer")
    assert split_reasoning("<think>a < b</think> done") == ("a < b", "done")
    assert split_reasoning("x<think>a</think>y<think>b</think>z") == ("a b", "xyz")


def test_rows_without_ids_get_a_stable_content_id():
    row = _rows("sharegpt.jsonl")[1]
    del row["id"]
    sharegpt = FORMATS.get("sharegpt")
    assert sharegpt.read(row).source_row_id == sharegpt.read(json.loads(json.dumps(row))).source_row_id


# --- MCP catalogs, wherever a catalog appears --------------------------------------------------------

MCP_LIST = {
    "jsonrpc": "2.0",
    "id": 1,
    "result": {
        "tools": [
            {
                "name": "get_weather",
                "title": "Weather",
                "description": "Current weather for a city.",
                "inputSchema": {
                    "$schema": "http://json-schema.org/draft-07/schema#",
                    "type": "object",
                    "properties": {"city": {"type": "string"}},
                    "required": ["city"],
                    "additionalProperties": False,
                },
                "annotations": {"readOnlyHint": True, "idempotentHint": True},
            },
            {"name": "delete_file", "inputSchema": '{"type": "object", "properties": {"path": {"type": "string"}}}'},
        ],
        "nextCursor": None,
    },
}


def test_mcp_catalogs_keep_their_input_schema_and_hints():
    for catalog in (MCP_LIST, MCP_LIST["result"], MCP_LIST["result"]["tools"]):
        tools = normalize_tools(catalog)
        assert [t["function"]["name"] for t in tools] == ["get_weather", "delete_file"]
        assert tools[0]["function"]["parameters"] == MCP_LIST["result"]["tools"][0]["inputSchema"]
        assert tools[1]["function"]["parameters"] == {"type": "object", "properties": {"path": {"type": "string"}}}
        assert read_only_hints(tools) == {"get_weather": True}
    server_tool = {"type": "web_search_20250305", "name": "web_search"}
    assert normalize_tools([server_tool]) == []  # run by the provider: no schema a planner could fill


def test_plan_tools_reads_an_mcp_tools_list_result(tmp_path, monkeypatch, capsys):
    import apo_planner.planner
    from apo_planner.plan import Plan

    seen = {}

    class Stub:
        def plan_with_details(self, query, tools):
            seen["tools"] = tools
            plan = Plan.from_records(
                [{"tool": "get_weather", "arguments": '{"city": "Oslo"}', "rationale": "", "depends_on": []}]
            )
            return type("Result", (), {"plan": plan, "error": None, "text": ""})()

    monkeypatch.setattr(apo_planner.planner.Planner, "from_pretrained", classmethod(lambda cls, *a, **k: Stub()))
    path = tmp_path / "tools.json"
    path.write_text(json.dumps(MCP_LIST))
    assert main(["plan", "--model", "m", "--query", "Weather in Oslo?", "--tools", str(path), "--json"]) == 0
    assert seen["tools"][0]["function"]["parameters"]["additionalProperties"] is False


# --- the registry is the one list ---------------------------------------------------------------------


def test_apo_planner_formats_lists_every_format_with_its_rule_and_docs_page(capsys):
    assert main(["formats"]) == 0
    out = capsys.readouterr().out
    for name, fmt in FORMATS:
        assert f"  {name}" in out and fmt.detection in out and fmt.docs_page in out
        assert (REPO / fmt.docs_page).is_file(), fmt.docs_page
    assert "docs/formats/mcp.md" in out and (REPO / "docs" / "formats" / "mcp.md").is_file()


def test_the_docs_table_of_formats_is_the_registrys(capsys, tmp_path):
    index = REPO / "docs" / "formats" / "index.md"
    assert markdown_table() in index.read_text(encoding="utf-8"), "stale: run apo_planner.formats.refresh_index"
    assert main(["formats", "--markdown"]) == 0 and capsys.readouterr().out == markdown_table()
    stale = tmp_path / "index.md"
    stale.write_text(index.read_text(encoding="utf-8").replace("| `otel` |", "| `otel-old` |"), encoding="utf-8")
    assert refresh_index(stale) and stale.read_text(encoding="utf-8") == index.read_text(encoding="utf-8")


def _json_blocks(page: Path) -> list[str]:
    text = page.read_text(encoding="utf-8")
    return [block.split("\n", 1)[1] for block in text.split("```")[1::2] if block.startswith(("json", "python"))]


@pytest.mark.parametrize("name", sorted(CONVERTERS))
def test_each_formats_docs_page_has_an_example_row_that_its_reader_reads(name):
    [row, *_] = [json.loads(b) for b in _json_blocks(REPO / "docs" / "formats" / f"{name}.md")]
    assert _claims(row) == [name]
    [record] = list(FORMATS.get(name).records([row]))
    [turn] = turns(FORMATS.get(name).read(record), FilterConfig())
    assert turn.trajectory is not None and turn.trajectory.actions and turn.trajectory.final_answer


def test_the_worked_example_of_a_new_format_runs_as_written(monkeypatch, tmp_path):
    row, module = _json_blocks(REPO / "docs" / "extending" / "formats.md")[:2]
    FORMATS.names()  # the built-in FORMATS loaded, before the copy
    monkeypatch.setattr(FORMATS, "_entries", dict(FORMATS._entries))  # leave the project's registry as it was
    exec(compile(module, "gemini.py", "exec"), {"__name__": "gemini"})
    assert "gemini" in FORMATS.names() and _claims(json.loads(row)) == ["gemini"]
    source = open_source(str(write_jsonl(tmp_path / "gemini.jsonl", [json.loads(row)])), work_dir=tmp_path)
    assert source.format == "gemini"
    [turn] = turns(FORMATS.get("gemini").read(json.loads(row)), FilterConfig())
    assert [a.tool for a in turn.trajectory.actions] == ["get_weather"] and turn.trajectory.actions[0].result
    assert turn.trajectory.actions[0].rationale == "One lookup."


def test_a_third_party_format_registers_through_the_entry_point_group(monkeypatch):
    import apo_planner.registry

    class Logs(TrajectoryFormat):
        detection = "rows with `turns`"

        def sniff(self, row):
            return "turns" in row

        def read(self, row):
            return Conversation("x", [Message("user", row["turns"][0], tool_calls=[ToolCall("f", {})])], [])

    class Point:
        name, group = "my_logs", "apo_planner.formats"

        def load(self):
            return Logs

    monkeypatch.setattr(apo_planner.registry, "entry_points", lambda group: [Point()] if group == Point.group else [])
    registry = FormatRegistry("trajectory format", "apo_planner.formats")
    assert registry.names() == ["my_logs"] and registry.get("my_logs").name == "my_logs"
    assert registry.get("my_logs").sniff({"turns": ["hi"]}) and not registry.get("my_logs").groups_rows
    assert Counter(type(f).__name__ for _, f in FORMATS)["Logs"] == 0  # the project's registry is untouched


def test_an_unanswered_call_and_an_orphan_result_are_counted_and_shift_nothing():
    row = _rows("openai.jsonl")[1]  # search, booking (fails), booking again
    messages = row["messages"]
    failed = next(i for i, m in enumerate(messages) if m.get("tool_call_id") == "call_b1")
    del messages[failed]  # the failed booking's result never came back
    messages.insert(failed, {"role": "tool", "tool_call_id": "call_unknown", "content": "late"})
    [turn] = turns(FORMATS.get("openai").read(row), FilterConfig())
    assert [a.result is None for a in turn.trajectory.actions] == [False, True, False]
    assert json.loads(turn.trajectory.actions[2].result)["confirmation"] == "KRK-7781"
    assert Counter(turn.pairing) == {"by_id": 2, "orphan_result": 1, "no_result": 1}


def test_a_log_mixing_results_with_and_without_ids_pairs_each_result_once():
    """An id-less result takes the earliest waiting call; a later result naming that call's id is then an
    orphan (the call is answered), not a crash that drops the whole record."""
    calls = [{"id": i, "type": "function", "function": {"name": "f", "arguments": "{}"}} for i in ("A", "B")]
    row = {
        "messages": [
            {"role": "user", "content": "q"},
            {"role": "assistant", "content": "", "tool_calls": calls},
            {"role": "tool", "content": "first"},  # no id: taken for A
            {"role": "tool", "tool_call_id": "A", "content": "second"},  # A is answered already
            {"role": "tool", "tool_call_id": "B", "content": "third"},
            {"role": "assistant", "content": "done"},
        ],
        "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}],
    }
    [turn] = turns(FORMATS.get("openai").read(row), FilterConfig())
    assert [a.result for a in turn.trajectory.actions] == ["first", "third"]
    assert Counter(turn.pairing) == {"by_order": 1, "orphan_result": 1, "by_id": 1}
