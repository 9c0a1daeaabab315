"""OpenTelemetry GenAI spans: production agent traces under the GenAI semantic conventions.

Files are OTLP/JSON as the Collector's file exporter writes them (one `{"resourceSpans": [...]}` export
per line, attributes as `{key, value: {stringValue | intValue | ...}}`) or JSON Lines of one span per line
(attributes as an object). Spans are grouped by trace (`records`), one conversation per trace: the
inference span that saw the most of it (the last one of an agent loop) gives the messages, its
`gen_ai.input.messages` (after `gen_ai.system_instructions`) and `gen_ai.output.messages`, each message
`{role, parts: [text | tool_call | tool_call_response | reasoning]}`; the catalog is
`gen_ai.tool.definitions`. `execute_tool` spans (`gen_ai.tool.call.id`, `.arguments`, `.result`) fill in
arguments and results the messages lack, and an ERROR status marks the call failed. Calls and results pair
by id. Message content is opt-in: a trace with tool spans but no messages is dropped as
`no_message_content`, one with neither as `no_gen_ai_spans`. Page: docs/formats/otel.md.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from typing import Any

import orjson

from apo_planner.formats import FORMATS, TrajectoryFormat
from apo_planner.formats._chat import split_reasoning, text
from apo_planner.formats.records import Conversation, DropReason, Message, RecordDropped, ToolCall

INPUT, OUTPUT, SYSTEM = "gen_ai.input.messages", "gen_ai.output.messages", "gen_ai.system_instructions"
TOOLS = "gen_ai.tool.definitions"
CALL_ID, CALL_ARGUMENTS, CALL_RESULT = "gen_ai.tool.call.id", "gen_ai.tool.call.arguments", "gen_ai.tool.call.result"
_DETAILS_EVENT = "gen_ai.client.inference.operation.details"  # the same attributes, as a span event


def _value(value: Any) -> Any:
    """An OTLP/JSON `AnyValue` as Python (int64 arrives as a string there)."""
    if not isinstance(value, dict):
        return value
    if "stringValue" in value:
        return value["stringValue"]
    if "intValue" in value:
        try:
            return int(value["intValue"])
        except (TypeError, ValueError):
            return value["intValue"]
    for key in ("boolValue", "doubleValue", "bytesValue"):
        if key in value:
            return value[key]
    if "arrayValue" in value:
        return [_value(v) for v in (value["arrayValue"] or {}).get("values") or ()]
    if "kvlistValue" in value:
        return _attributes((value["kvlistValue"] or {}).get("values"))
    return None


def _attributes(raw: Any) -> dict[str, Any]:
    if isinstance(raw, dict):
        return raw
    if isinstance(raw, list):
        return {a["key"]: _value(a.get("value")) for a in raw if isinstance(a, dict) and "key" in a}
    return {}


def span_attributes(span: dict[str, Any]) -> dict[str, Any]:
    """A span's attributes, with those of its inference-details event (the conventions allow either)."""
    attributes = _attributes(span.get("attributes"))
    for event in span.get("events") or ():
        if isinstance(event, dict) and event.get("name") == _DETAILS_EVENT:
            attributes = {**_attributes(event.get("attributes")), **attributes}
    return attributes


def spans_of(row: dict[str, Any]) -> list[dict[str, Any]]:
    """The spans of an OTLP export (`resourceSpans[].scopeSpans[].spans[]`), or the row itself as one span."""
    if "resourceSpans" not in row:
        return [row]
    spans = []
    for resource in row.get("resourceSpans") or ():
        for scope in (resource or {}).get("scopeSpans") or (resource or {}).get("instrumentationLibrarySpans") or ():
            spans.extend(s for s in (scope or {}).get("spans") or () if isinstance(s, dict))
    return spans


def trace_id(span: dict[str, Any]) -> str:
    context = span.get("context")
    value = (
        span.get("traceId") or span.get("trace_id") or (context.get("trace_id") if isinstance(context, dict) else "")
    )
    return str(value or "")


def _gen_ai(attributes: Any) -> bool:
    if isinstance(attributes, dict):
        return any(k.startswith("gen_ai.") for k in attributes)
    if isinstance(attributes, list):
        return any(isinstance(a, dict) and str(a.get("key", "")).startswith("gen_ai.") for a in attributes)
    return False


def _time(span: dict[str, Any], which: str) -> tuple[int, Any]:
    value = span.get(f"{which}TimeUnixNano", span.get(f"{which}_time"))
    if isinstance(value, int) or (isinstance(value, str) and value.isdigit()):
        return 0, int(value)
    return 1, str(value or "")


def _failed(span: dict[str, Any], attributes: dict[str, Any]) -> bool:
    status = span.get("status")
    if isinstance(status, dict):
        code = status.get("code", status.get("status_code"))
        if code in (2, "2", "STATUS_CODE_ERROR", "ERROR"):
            return True
    return bool(attributes.get("error.type"))


def _json(value: Any) -> Any:
    if isinstance(value, (str, bytes)):
        try:
            return orjson.loads(value)
        except orjson.JSONDecodeError:
            raise RecordDropped(
                DropReason.UNPARSEABLE_RECORD, f"a gen_ai attribute is not JSON: {value[:80]!r}"
            ) from None
    return value


def _size(value: Any) -> int:
    return len(value) if isinstance(value, (str, bytes)) else len(orjson.dumps(value))


def _messages(raw: Any, skipped: Counter[str]) -> list[Message]:
    """GenAI semantic-convention messages (`{role, parts}`) as `Message`s; tool-call responses become tool
    messages whatever role carries them."""
    raw = _json(raw)
    if not isinstance(raw, list):
        raise RecordDropped(DropReason.UNPARSEABLE_RECORD, "gen_ai messages are not a list")
    out: list[Message] = []
    for m in raw:
        if not isinstance(m, dict):
            raise RecordDropped(DropReason.UNPARSEABLE_RECORD, "a gen_ai message is not an object")
        role = str(m.get("role") or "")
        parts = m.get("parts")
        if parts is None and isinstance(m.get("content"), str):
            parts = [{"type": "text", "content": m["content"]}]
        texts, thoughts, calls, responses = [], [], [], 0
        for part in parts or ():
            kind = part.get("type") if isinstance(part, dict) else None
            if kind == "text":
                texts.append(str(part.get("content") or ""))
            elif kind == "tool_call":
                calls.append(ToolCall(str(part.get("name") or ""), part.get("arguments"), part.get("id")))
            elif kind == "tool_call_response":
                out.append(Message("tool", text(part.get("response")), tool_call_id=part.get("id")))
                responses += 1
            elif kind == "reasoning":
                thoughts.append(str(part.get("content") or "").strip())
            else:  # blob, file, uri, server tool parts, ...
                skipped[str(kind)] += 1
        if role in ("assistant", "model"):
            reasoning, visible = split_reasoning("\n".join(texts))
            out.append(Message("assistant", visible, " ".join(t for t in (*thoughts, reasoning) if t), calls))
        elif role == "tool" and texts and not responses:  # a result written as text, its id on the message
            out.append(Message("tool", "\n".join(texts), tool_call_id=m.get("tool_call_id") or m.get("id")))
        elif role in ("user", "system") and (texts or not responses):
            out.append(Message(role, "\n".join(texts)))
    return out


@FORMATS.register("otel")
class OpenTelemetryGenAI(TrajectoryFormat):
    detection = "an OTLP/JSON export (`resourceSpans`) or one span per line, with `gen_ai.*` attributes"

    def sniff(self, row: Any) -> bool:
        if "messages" in row:
            return False
        if "resourceSpans" in row:
            return isinstance(row["resourceSpans"], list) and any(_gen_ai(s.get("attributes")) for s in spans_of(row))
        context = row.get("context")
        traced = "traceId" in row or "trace_id" in row or (isinstance(context, dict) and "trace_id" in context)
        return traced and _gen_ai(row.get("attributes"))

    def records(self, rows: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        """One OTLP-shaped record per trace, in the order traces first appear; spans of one trace may come
        from many lines and exports. Rows that hold no span are passed on as they are. Spans wait for the
        rest of their trace as JSON bytes (about the file's size), each trace decoded only when it is given."""
        traces: dict[str, list[bytes]] = {}
        for row in rows:
            if not isinstance(row, dict) or not self.sniff(row):
                yield row
                continue
            for span in spans_of(row):
                traces.setdefault(trace_id(span), []).append(orjson.dumps(span))
        for spans in traces.values():
            yield {"resourceSpans": [{"scopeSpans": [{"spans": orjson.loads(b"[" + b",".join(spans) + b"]")}]}]}

    def read(self, row: dict[str, Any]) -> Conversation:
        spans = spans_of(row)
        ids = {trace_id(s) for s in spans}
        if len(ids) > 1:
            raise RecordDropped(DropReason.SEVERAL_TRACES, f"{len(ids)} traces in one row; give the file of spans")
        spans.sort(key=lambda s: _time(s, "start"))
        attributes = [span_attributes(s) for s in spans]
        inference = [i for i, a in enumerate(attributes) if INPUT in a or OUTPUT in a]
        tool_spans = [
            i for i, a in enumerate(attributes) if CALL_ID in a or a.get("gen_ai.operation.name") == "execute_tool"
        ]
        if not inference:
            if tool_spans:
                raise RecordDropped(
                    DropReason.NO_MESSAGE_CONTENT,
                    f"{len(tool_spans)} execute_tool span(s) but no gen_ai.input/output.messages: message content is "
                    "opt-in (e.g. OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=true)",
                )
            raise RecordDropped(DropReason.NO_GEN_AI_SPANS, "no inference span with messages and no execute_tool span")
        # the span that saw the most of the conversation: the last of an agent loop (ties: the later one)
        chosen = max(inference, key=lambda i: (_size(attributes[i].get(INPUT, "")), _time(spans[i], "end"), i))
        attrs = attributes[chosen]
        skipped: Counter[str] = Counter()
        messages: list[Message] = []
        if attrs.get(SYSTEM):
            system = _json(attrs[SYSTEM])
            parts = system if isinstance(system, list) else [{"type": "text", "content": text(system)}]
            messages.append(
                Message("system", "\n".join(str(p.get("content") or "") for p in parts if isinstance(p, dict)))
            )
        given = _messages(attrs.get(INPUT, "[]"), skipped)
        first = inference[0]
        first_input = given if first == chosen else _messages(attributes[first].get(INPUT, "[]"), Counter())
        messages += given
        messages += _messages(attrs.get(OUTPUT, "[]"), skipped)
        self._fill_from_tool_spans(messages, [(spans[i], attributes[i]) for i in tool_spans], skipped)
        catalog = attrs.get(TOOLS) or next((a[TOOLS] for a in attributes if a.get(TOOLS)), None)
        if catalog is None:
            raise RecordDropped(DropReason.NO_TOOL_CATALOG, "no gen_ai.tool.definitions on any span")
        model = attrs.get("gen_ai.response.model") or attrs.get("gen_ai.request.model") or ""
        return Conversation(
            history_turns=self._history_turns(first_input),
            source_row_id=trace_id(spans[chosen]) or f"span:{spans[chosen].get('spanId', '')}",
            messages=messages,
            tools=self.tools(catalog),
            generator=str(model),
            skipped=dict(skipped),
        )

    @staticmethod
    def _history_turns(first_input: list[Message]) -> int:
        """User turns that came before this trace: all but the last user message its first inference span
        was sent (an app that starts a trace per request sends the conversation so far each time)."""
        return max(sum(m.role == "user" for m in first_input) - 1, 0)

    @staticmethod
    def _fill_from_tool_spans(
        messages: list[Message], tool_spans: list[tuple[dict[str, Any], dict[str, Any]]], skipped: Counter[str]
    ) -> None:
        """Arguments and results from `execute_tool` spans where the messages lack them, and failures from
        their status."""
        executed = {}
        for span, attributes in tool_spans:
            if attributes.get(CALL_ID):
                executed[str(attributes[CALL_ID])] = (span, attributes)
        if not executed:
            return
        answered = {m.tool_call_id: m for m in messages if m.role == "tool" and m.tool_call_id}
        called: set[str] = set()
        insert: list[tuple[int, Message]] = []
        for index, m in enumerate(messages):
            for call in m.tool_calls:
                if not call.id or call.id not in executed:
                    continue
                called.add(call.id)
                span, attributes = executed[call.id]
                if call.arguments in (None, "") and CALL_ARGUMENTS in attributes:
                    call.arguments = attributes[CALL_ARGUMENTS]
                failed = _failed(span, attributes)
                if call.id in answered:
                    answered[call.id].failed = answered[call.id].failed or failed
                elif CALL_RESULT in attributes:
                    result = Message("tool", text(attributes[CALL_RESULT]), tool_call_id=call.id, failed=failed)
                    insert.append((index, result))
        for offset, (index, result) in enumerate(insert):  # after the calling message and its results so far
            at = index + offset + 1
            while at < len(messages) and messages[at].role == "tool":
                at += 1
            messages.insert(at, result)
        skipped["execute_tool_without_call"] += len(set(executed) - called)
        if not skipped["execute_tool_without_call"]:
            del skipped["execute_tool_without_call"]
