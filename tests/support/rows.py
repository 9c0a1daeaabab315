"""Source-shaped rows: the one generator of Nemotron `tool_calling` records for tests, fixtures and benchmarks.

`nemotron_row` spells the record shape of nvidia/Nemotron-Post-Training-Dataset-v1 (split
`tool_calling`) once; the hand-written records of tests and fixtures and the random corpus
(`generate`: redundant, parallel, retried and clean trajectories, deterministic per seed) all go
through it. The smoke recipe's bundled sample was written by
`python -m tests.support.rows --n 160 --seed 7 --out recipes/data/smoke_trajectories.jsonl`.
"""

from __future__ import annotations

import argparse
import json
import random
import uuid
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

LICENSE = "CC BY 4.0"
GENERATOR = "Qwen3-235B-A22B"


def tool(name: str, description: str, properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    """An OpenAI-style tool definition, as the source's `metadata` carries them."""
    return {
        "type": "function",
        "function": {
            "name": name,
            "description": description,
            "parameters": {"type": "object", "properties": properties, "required": required},
        },
    }


def tool_call(cid: str, name: str, args: Any, as_string: bool = True) -> dict[str, Any]:
    """One entry of an assistant message's `tool_calls`; the source spells `arguments` as a JSON string."""
    arguments = json.dumps(args, ensure_ascii=False) if as_string else args
    return {"id": cid, "type": "function", "function": {"name": name, "arguments": arguments}}


def catalog_metadata(tools: Iterable[dict[str, Any]]) -> str:
    """The `metadata` column: a JSON string whose `tools` key is the catalog."""
    return json.dumps({"tools": list(tools)}, ensure_ascii=False)


WEATHER_TOOL = tool(
    "get_weather", "Weather for a city.", {"city": {"type": "string"}, "days": {"type": "integer"}}, ["city"]
)


def nemotron_row(
    messages: list[dict[str, Any]],
    tools: Sequence[dict[str, Any]] = (WEATHER_TOOL,),
    uuid: str = "row-1",
    metadata: Any = None,
) -> dict[str, Any]:
    """A record with exactly the source's columns; `metadata` replaces the column as given (broken JSON, a dict)."""
    return {
        "uuid": uuid,
        "license": LICENSE,
        "generator": GENERATOR,
        "version": "v1",
        "category": "tool_calling",
        "reasoning": "on",
        "metadata": metadata if metadata is not None else catalog_metadata(tools),
        "messages": messages,
    }


def conversation(
    *calls_and_results: tuple[str, dict[str, Any], str], final: str | None = "Done.", query: str = "Weather?"
) -> list[dict[str, Any]]:
    """[(tool, args, result), ...] as one assistant turn per call, then a final answer."""
    messages: list[dict[str, Any]] = [{"role": "user", "content": query, "tool_calls": []}]
    for i, (name, args, result) in enumerate(calls_and_results):
        cid = f"c{i}"
        messages.append(
            {"role": "assistant", "content": f"<think>Step {i}.</think>", "tool_calls": [tool_call(cid, name, args)]}
        )
        messages.append({"role": "tool", "content": result, "tool_call_id": cid})
    if final is not None:
        messages.append({"role": "assistant", "content": final, "tool_calls": []})
    return messages


def write_jsonl(path: Path, rows: Iterable[dict[str, Any] | str]) -> Path:
    """Rows (or raw lines, for malformed input) as JSON Lines."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as fh:
        for r in rows:
            fh.write((r if isinstance(r, str) else json.dumps(r, ensure_ascii=False)) + "\n")
    return path


# --- the random corpus --------------------------------------------------------------------------

S = {"type": "string"}
N = {"type": "number"}
TOOLS = {
    "get_weather": tool(
        "get_weather",
        "Current weather for a city.",
        {"city": S, "unit": {"type": "string", "enum": ["c", "f"]}},
        ["city"],
    ),
    "search_flights": tool(
        "search_flights",
        "Find flights between two airports on a date.",
        {"origin": S, "destination": S, "date": S},
        ["origin", "destination", "date"],
    ),
    "book_flight": tool(
        "book_flight", "Book a flight by id.", {"flight_id": S, "passenger": S}, ["flight_id", "passenger"]
    ),
    "get_stock_price": tool("get_stock_price", "Latest price of a stock ticker.", {"symbol": S}, ["symbol"]),
    "convert_currency": tool(
        "convert_currency",
        "Convert an amount between currencies.",
        {"amount": N, "from_currency": S, "to_currency": S},
        ["amount", "from_currency", "to_currency"],
    ),
    "get_order_status": tool("get_order_status", "Status of an order.", {"order_id": S}, ["order_id"]),
    "update_order": tool(
        "update_order",
        "Change an order's shipping address.",
        {"order_id": S, "address": S},
        ["order_id", "address"],
    ),
    "translate_text": tool(
        "translate_text",
        "Translate text into a language.",
        {"text": S, "target_language": S},
        ["text", "target_language"],
    ),
    "search_restaurants": tool(
        "search_restaurants", "Restaurants in a city by cuisine.", {"city": S, "cuisine": S}, ["city"]
    ),
}
CITIES = [
    "Paris",
    "München",
    "São Paulo",
    "東京",
    "Zürich",
    "Kraków",
    "Seoul",
    "Reykjavík",
    "Austin",
    "Cairo",
]
TICKERS = ["NVDA", "AAPL", "MSFT", "TSLA", "SAP", "TM"]
CURRENCIES = ["USD", "EUR", "JPY", "KRW", "GBP", "CHF"]
PHRASES = [
    "Où est la gare ?",
    "Wie spät ist es?",
    "今日はいい天気ですね",
    "Hello, friend",
    "¿Dónde está el baño?",
]


def _scenario(rng: random.Random) -> tuple[str, list[tuple[str, dict[str, Any], str]], str]:
    """A query, the calls that answer it (tool, arguments, result) and the final answer."""
    kind = rng.randrange(5)
    if kind == 0:
        a, b = rng.sample(CITIES, 2)
        ta, tb = rng.randint(-5, 35), rng.randint(-5, 35)
        calls = [
            (
                "get_weather",
                {"city": a, "unit": "c"},
                json.dumps({"city": a, "temp_c": ta, "sky": "clear"}, ensure_ascii=False),
            ),
            (
                "get_weather",
                {"city": b, "unit": "c"},
                json.dumps({"city": b, "temp_c": tb, "sky": "rain"}, ensure_ascii=False),
            ),
        ]
        return (
            f"Is it warmer in {a} or in {b} right now?",
            calls,
            f"{a if ta >= tb else b} is warmer ({max(ta, tb)}°C).",
        )
    if kind == 1:
        sym, cur = rng.choice(TICKERS), rng.choice(CURRENCIES[1:])
        price, rate = round(rng.uniform(50, 900), 2), round(rng.uniform(0.5, 150), 3)
        calls = [
            ("get_stock_price", {"symbol": sym}, json.dumps({"symbol": sym, "price_usd": price})),
            (
                "convert_currency",
                {"amount": price, "from_currency": "USD", "to_currency": cur},
                json.dumps({"converted": round(price * rate, 2), "currency": cur}),
            ),
        ]
        return (
            f"What does one {sym} share cost in {cur}?",
            calls,
            f"One {sym} share costs {round(price * rate, 2)} {cur}.",
        )
    if kind == 2:
        oid = f"ORD-{rng.randint(10000, 99999)}"
        addr = f"{rng.randint(1, 200)} {rng.choice(['Rue de Rivoli', 'Hauptstraße', 'Main St', 'Gangnam-daero'])}"
        calls = [
            ("get_order_status", {"order_id": oid}, json.dumps({"order_id": oid, "status": "processing"})),
            (
                "update_order",
                {"order_id": oid, "address": addr},
                json.dumps({"order_id": oid, "updated": True}),
            ),
        ]
        return f"Please ship order {oid} to {addr} instead.", calls, f"Order {oid} will now ship to {addr}."
    if kind == 3:
        o, d = rng.sample(["ICN", "CDG", "JFK", "NRT", "GRU", "MUC"], 2)
        fid = f"{rng.choice(['KE', 'AF', 'LH'])}{rng.randint(100, 999)}"
        date = f"2026-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
        calls = [
            (
                "search_flights",
                {"origin": o, "destination": d, "date": date},
                json.dumps({"flights": [{"flight_id": fid, "price": rng.randint(300, 1500)}]}),
            ),
            (
                "book_flight",
                {"flight_id": fid, "passenger": "Kim Minji"},
                json.dumps({"confirmation": f"CNF{rng.randint(1000, 9999)}"}),
            ),
        ]
        return (
            f"Book me the cheapest flight from {o} to {d} on {date}, passenger Kim Minji.",
            calls,
            f"Booked {fid}.",
        )
    phrase, lang = rng.choice(PHRASES), rng.choice(["English", "Korean", "German"])
    calls = [
        (
            "translate_text",
            {"text": phrase, "target_language": lang},
            json.dumps({"translation": f"<{lang}> {phrase}"}, ensure_ascii=False),
        )
    ]
    return f"Translate “{phrase}” into {lang}.", calls, f"In {lang}: <{lang}> {phrase}"


def _think(text: str) -> str:
    return f"<think>{text}</think>"


def trajectory(rng: random.Random, index: int) -> dict[str, Any]:
    """One random redundant, parallel, retried, verified or clean trajectory."""
    query, calls, answer = _scenario(rng)
    pattern = rng.choice(["clean", "duplicate", "retry", "verify", "parallel", "duplicate"])
    messages: list[dict[str, Any]] = [{"role": "user", "content": query, "tool_calls": []}]
    n = 0

    def call(name: str, args: dict[str, Any], result: str, thought: str) -> None:
        nonlocal n
        n += 1
        cid = f"call_{index}_{n}"
        messages.append({"role": "assistant", "content": _think(thought), "tool_calls": [tool_call(cid, name, args)]})
        messages.append({"role": "tool", "content": result, "tool_call_id": cid})

    if pattern == "parallel" and len(calls) == 2 and calls[0][0] == calls[1][0]:
        ids = [f"call_{index}_p{k}" for k in range(2)]
        messages.append(
            {
                "role": "assistant",
                "content": _think("Both lookups are independent. I can call them together."),
                "tool_calls": [tool_call(i, t, a) for i, (t, a, _) in zip(ids, calls, strict=True)],
            }
        )
        for i, (_, _, r) in zip(ids, calls, strict=True):
            messages.append({"role": "tool", "content": r, "tool_call_id": i})
        # and then checks the first one again, which the plan does not need
        call(calls[0][0], calls[0][1], calls[0][2], "Let me double-check the first result.")
    else:
        for k, (tool, args, result) in enumerate(calls):
            if pattern == "retry" and k == 0:
                bad = dict(args)
                call(
                    tool,
                    bad,
                    json.dumps({"error": "upstream timeout, please retry"}),
                    f"I need {tool} first. Calling it.",
                )
            call(
                tool,
                args,
                result,
                f"To answer I need {tool.replace('_', ' ')}. I will call it with the values from the request.",
            )
            if pattern == "duplicate" and k == 0:
                call(tool, args, result, "Let me call it again to be sure.")
            if pattern == "verify" and k == len(calls) - 1:
                first = calls[0]
                call(first[0], first[1], first[2], "I will verify the earlier result once more.")
    messages.append({"role": "assistant", "content": _think("I have everything I need.") + answer, "tool_calls": []})
    tools = sorted({c[0] for c in calls} | set(rng.sample(sorted(TOOLS), 2)))
    return nemotron_row(messages, [TOOLS[t] for t in tools], uuid=str(uuid.UUID(int=rng.getrandbits(128))))


def generate(n: int, seed: int = 0) -> Iterator[dict[str, Any]]:
    rng = random.Random(seed)
    for i in range(n):
        yield trajectory(rng, i)


def write_corpus(path: Path, n: int, seed: int = 0) -> Path:
    return write_jsonl(path, generate(n, seed))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    write_corpus(args.out, args.n, args.seed)


if __name__ == "__main__":
    main()
