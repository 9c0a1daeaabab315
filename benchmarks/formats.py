"""The same conversations in every trajectory format: Nemotron rows (`benchmarks.workloads`) rewritten as
OpenAI chat, ShareGPT/Hermes, Anthropic Messages, OpenAI Responses and OpenTelemetry GenAI traces.

A rewritten row says exactly what its Nemotron row says (the same requests, reasoning, calls, arguments,
results and answers), in the shape each format's own producers write: ids on calls and results where the
format has them (Nemotron pairs by order), reasoning as thinking blocks, reasoning items or reasoning
parts, an OpenTelemetry trace of one inference span per model call (each carrying the conversation so
far, as instrumentations record it) plus one `execute_tool` span per call. The reading benchmark scales
every format up with it, and the tests read one conversation in every format and compare.

    python -m benchmarks.formats --format anthropic --n 100 --out anthropic.jsonl
"""

from __future__ import annotations

import argparse
import hashlib
import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from benchmarks.workloads import generate, write_jsonl

Row = dict[str, Any]


def _split(content: str | None) -> tuple[str, str]:
    """(reasoning, visible) of a Nemotron assistant message (`<think>\\nR\\n</think>\\n\\nV`)."""
    if not content:
        return "", ""
    if content.startswith("<think>") and "</think>" in content:
        end = content.index("</think>")
        return content[len("<think>") : end].strip(), content[end + len("</think>") :].strip()
    return "", content.strip()


def _turns(row: Row) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The row's messages as plain events (results carrying the id of the call they answer, by order, as
    the Nemotron source pairs them) and its catalog."""
    events, waiting = [], []
    for m in row["messages"]:
        if m["role"] == "assistant":
            reasoning, visible = _split(m["content"])
            calls = [
                {"id": c["id"], "name": c["function"]["name"], "arguments": c["function"]["arguments"]}
                for c in m["tool_calls"] or ()
            ]
            waiting += [c["id"] for c in calls]
            events.append({"role": "assistant", "reasoning": reasoning, "text": visible, "calls": calls})
        elif m["role"] == "tool":
            events.append({"role": "tool", "id": waiting.pop(0), "result": m["content"]})
        else:
            events.append({"role": m["role"], "text": m["content"]})
    return events, json.loads(row["metadata"])["tools"]


def openai_chat(row: Row) -> Row:
    messages = []
    for e in _turns(row)[0]:
        if e["role"] == "assistant":
            content = (f"<think>\n{e['reasoning']}\n</think>\n\n" if e["reasoning"] else "") + e["text"]
            calls = [
                {"id": c["id"], "type": "function", "function": {"name": c["name"], "arguments": c["arguments"]}}
                for c in e["calls"]
            ]
            message = {"role": "assistant", "content": content or None}
            messages.append(message | {"tool_calls": calls} if calls else message)
        elif e["role"] == "tool":
            messages.append({"role": "tool", "tool_call_id": e["id"], "content": e["result"]})
        else:
            messages.append({"role": e["role"], "content": e["text"]})
    return {"id": row["uuid"], "model": row["generator"], "messages": messages, "tools": _turns(row)[1]}


def sharegpt(row: Row) -> Row:
    events, tools = _turns(row)
    turns = []
    for e in events:
        if e["role"] == "assistant":
            value = (f"<think>\n{e['reasoning']}\n</think>\n\n" if e["reasoning"] else "") + e["text"]
            for c in e["calls"]:
                call = json.dumps({"name": c["name"], "arguments": json.loads(c["arguments"])}, ensure_ascii=False)
                value += f"\n<tool_call>\n{call}\n</tool_call>"
            turns.append({"from": "gpt", "value": value.strip()})
        elif e["role"] == "tool":
            turns.append({"from": "tool", "value": f"<tool_response>\n{e['result']}\n</tool_response>"})
        else:
            turns.append({"from": "human" if e["role"] == "user" else e["role"], "value": e["text"]})
    return {"id": row["uuid"], "conversations": turns, "tools": json.dumps(tools, ensure_ascii=False)}


def _signature(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:48]


def anthropic(row: Row) -> Row:
    events, tools = _turns(row)
    messages: list[dict[str, Any]] = []
    for e in events:
        if e["role"] == "assistant":
            blocks: list[dict[str, Any]] = []
            if e["reasoning"]:
                blocks.append({"type": "thinking", "thinking": e["reasoning"], "signature": _signature(e["reasoning"])})
            if e["text"]:
                blocks.append({"type": "text", "text": e["text"]})
            blocks += [
                {"type": "tool_use", "id": f"toolu_{c['id']}", "name": c["name"], "input": json.loads(c["arguments"])}
                for c in e["calls"]
            ]
            messages.append({"role": "assistant", "content": blocks})
        elif e["role"] == "tool":
            result = {"type": "tool_result", "tool_use_id": f"toolu_{e['id']}", "content": e["result"]}
            if messages[-1]["role"] == "user" and isinstance(messages[-1]["content"], list):
                messages[-1]["content"].append(result)  # the results of parallel calls share one user message
            else:
                messages.append({"role": "user", "content": [result]})
        else:
            messages.append({"role": "user", "content": e["text"]})
    catalog = [
        {"name": t["function"]["name"], "description": t["function"]["description"],
         "input_schema": t["function"]["parameters"]}
        for t in tools
    ]  # fmt: skip
    return {"id": f"msg_{row['uuid']}", "model": "claude-sonnet-4-5", "messages": messages, "tools": catalog}


def openai_responses(row: Row) -> Row:
    events, tools = _turns(row)
    items: list[dict[str, Any]] = []
    last_response = 0  # where the model's last response starts: that is `output`, the rest `input`
    for e in events:
        if e["role"] == "assistant":
            last_response = len(items)
            if e["reasoning"]:
                summary = [{"type": "summary_text", "text": e["reasoning"]}]
                items.append({"type": "reasoning", "id": f"rs_{len(items)}", "summary": summary})
            if e["text"]:
                content = [{"type": "output_text", "text": e["text"], "annotations": []}]
                items.append({"type": "message", "role": "assistant", "status": "completed", "content": content})
            items += [
                {"type": "function_call", "call_id": c["id"], "name": c["name"], "arguments": c["arguments"]}
                for c in e["calls"]
            ]
        elif e["role"] == "tool":
            items.append({"type": "function_call_output", "call_id": e["id"], "output": e["result"]})
        else:
            items.append({"type": "message", "role": e["role"], "content": [{"type": "input_text", "text": e["text"]}]})
    flat = [{"type": "function", **t["function"], "strict": False} for t in tools]
    return {
        "id": f"resp_{row['uuid'].replace('-', '')}",
        "model": "gpt-5",
        "instructions": None,
        "tools": flat,
        "input": items[:last_response],
        "output": items[last_response:],
    }


def _semconv(e: dict[str, Any]) -> dict[str, Any]:
    if e["role"] == "assistant":
        parts: list[dict[str, Any]] = [{"type": "reasoning", "content": e["reasoning"]}] if e["reasoning"] else []
        if e["text"]:
            parts.append({"type": "text", "content": e["text"]})
        parts += [
            {"type": "tool_call", "id": c["id"], "name": c["name"], "arguments": json.loads(c["arguments"])}
            for c in e["calls"]
        ]
        return {"role": "assistant", "parts": parts, "finish_reason": "tool_call" if e["calls"] else "stop"}
    if e["role"] == "tool":
        return {"role": "tool", "parts": [{"type": "tool_call_response", "id": e["id"], "response": e["result"]}]}
    return {"role": e["role"], "parts": [{"type": "text", "content": e["text"]}]}


def _attributes(values: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for key, value in values.items():
        if isinstance(value, bool):
            out.append({"key": key, "value": {"boolValue": value}})
        elif isinstance(value, int):
            out.append({"key": key, "value": {"intValue": str(value)}})  # int64 as a string, as OTLP/JSON has it
        else:
            out.append({"key": key, "value": {"stringValue": value}})
    return out


def otel(row: Row) -> Row:
    """One OTLP/JSON export holding the conversation's trace: an `invoke_agent` span, a `chat` span per model
    call (input: the conversation so far, output: that call's message) and an `execute_tool` span per call."""
    events, tools = _turns(row)
    trace = hashlib.sha256(row["uuid"].encode()).hexdigest()[:32]
    definitions = json.dumps([{"type": "function", **t["function"]} for t in tools], ensure_ascii=False)
    clock = [1_767_225_600_000_000_000]  # 2026-01-01, in ns

    def span(name: str, attributes: dict[str, Any], parent: str = "") -> dict[str, Any]:
        start = clock[0]
        clock[0] += 250_000_000
        span_id = hashlib.sha256(f"{trace}{start}".encode()).hexdigest()[:16]
        return {
            "traceId": trace,
            "spanId": span_id,
            "parentSpanId": parent,
            "name": name,
            "kind": 3 if name.startswith("chat") else 1,
            "startTimeUnixNano": str(start),
            "endTimeUnixNano": str(start + 200_000_000),
            "attributes": _attributes(attributes),
            "status": {},
        }

    root = span("invoke_agent assistant", {"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "assistant"})
    spans = [root]
    results = {e["id"]: e["result"] for e in events if e["role"] == "tool"}
    for k, e in enumerate(events):
        if e["role"] != "assistant":
            continue
        attributes = {
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": "openai",
            "gen_ai.request.model": row["generator"],
            "gen_ai.response.model": row["generator"],
            "gen_ai.usage.input_tokens": 100 * (k + 1),
            "gen_ai.usage.output_tokens": 50,
            "gen_ai.input.messages": json.dumps([_semconv(x) for x in events[:k]], ensure_ascii=False),
            "gen_ai.output.messages": json.dumps([_semconv(e)], ensure_ascii=False),
            "gen_ai.tool.definitions": definitions,
        }
        spans.append(span(f"chat {row['generator']}", attributes, root["spanId"]))
        for c in e["calls"]:
            tool = {
                "gen_ai.operation.name": "execute_tool",
                "gen_ai.tool.name": c["name"],
                "gen_ai.tool.call.id": c["id"],
                "gen_ai.tool.call.arguments": c["arguments"],
                "gen_ai.tool.call.result": results.get(c["id"], ""),
            }
            spans.append(span(f"execute_tool {c['name']}", tool, root["spanId"]))
    resource = {"attributes": _attributes({"service.name": "agent"})}
    scope = {"scope": {"name": "opentelemetry.instrumentation.genai"}, "spans": spans}
    return {"resourceSpans": [{"resource": resource, "scopeSpans": [scope]}]}


def nemotron(row: Row) -> Row:
    return row


# by the formats' registered names (a test checks that every registered format has one)
CONVERTERS: dict[str, Callable[[Row], Row]] = {
    "nemotron": nemotron,
    "openai": openai_chat,
    "sharegpt": sharegpt,
    "anthropic": anthropic,
    "openai_responses": openai_responses,
    "otel": otel,
}


def rows_as(name: str, rows: Iterable[Row]) -> Iterator[Row]:
    """`rows` (Nemotron-shaped) in format `name`, one row (an OpenTelemetry trace: one export) each."""
    convert = CONVERTERS[name]
    return (convert(r) for r in rows)


def write_corpus(path: Path, name: str, n: int, seed: int = 0) -> Path:
    return write_jsonl(path, rows_as(name, generate(n, seed)))


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--format", required=True, choices=sorted(CONVERTERS))
    parser.add_argument("--n", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    write_corpus(args.out, args.format, args.n, args.seed)


if __name__ == "__main__":
    main()
