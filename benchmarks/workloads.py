"""Source-shaped rows: the one generator of Nemotron `tool_calling` records for tests, fixtures and benchmarks.

It follows nvidia/Nemotron-Post-Training-Dataset-v1 (config `default`, split `tool_calling`) as it is:
the columns `uuid, license, generator, version, category, reasoning, metadata, messages`; `metadata` a
JSON string whose `tools` is the catalog; every message exactly `{role, content, tool_calls}`, where
`tool_calls` is null or a list of `{id, type, function: {name, arguments}}` with `arguments` a JSON
string, `content` may be null, and tool results carry no `tool_call_id` (they pair with the calls by
order); reasoning is `<think>…</think>` inside assistant content (the split is 100% `reasoning: on`).

`message`, `conversation` and `nemotron_row` spell hand-written records for tests; `generate` is the
random corpus (deterministic per seed): multi-turn conversations (~10 messages, a clarifying question
now and then, follow-up requests that build on earlier answers, a closing thank-you), parallel calls
in one assistant message, retried, repeated and re-verified calls, think traces and tool results of
realistic length (rows average ~20 KB, as the split's 6.4 GB over 310,051 rows does). The smoke
recipe's bundled sample was written by
`python -m benchmarks.workloads --n 160 --seed 7 --out recipes/data/smoke_trajectories.jsonl.gz`;
`python -m benchmarks.workloads --n 2000 --stats` prints the shape of a corpus.
"""

from __future__ import annotations

import argparse
import gzip
import json
import math
import random
import statistics
import uuid as uuid_module
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

LICENSE = "CC BY 4.0"  # the `license` column as the split spells it (the card's Hub id is cc-by-4.0)
GENERATOR = "Qwen3-235B-A22B"
VERSION = "v1"
CATEGORY = "tool_calling"


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
    """One entry of an assistant message's `tool_calls`. The source always spells `arguments` as a JSON
    string; `as_string=False` is for the other exports the readers accept (dict arguments)."""
    arguments = json.dumps(args, ensure_ascii=False) if as_string else args
    return {"id": cid, "type": "function", "function": {"name": name, "arguments": arguments}}


def message(role: str, content: str | None, tool_calls: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """A message with exactly the source's keys: `tool_calls` null unless the assistant calls tools."""
    return {"role": role, "content": content, "tool_calls": tool_calls or None}


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
        "version": VERSION,
        "category": CATEGORY,
        "reasoning": "on",
        "metadata": metadata if metadata is not None else catalog_metadata(tools),
        "messages": messages,
    }


def conversation(
    *calls_and_results: tuple[str, dict[str, Any], str], final: str | None = "Done.", query: str = "Weather?"
) -> list[dict[str, Any]]:
    """[(tool, args, result), ...] as one assistant message per call (its reasoning `Step i.`), each result
    right after its call, then a final answer."""
    messages = [message("user", query)]
    for i, (name, args, result) in enumerate(calls_and_results):
        messages.append(message("assistant", f"<think>Step {i}.</think>", [tool_call(f"c{i}", name, args)]))
        messages.append(message("tool", result))
    if final is not None:
        messages.append(message("assistant", final))
    return messages


def write_jsonl(path: Path, rows: Iterable[dict[str, Any] | str | bytes]) -> Path:
    """Rows (or raw lines, str or bytes, for malformed input) as JSON Lines; gzip-compressed for a
    `.gz` path, with a fixed header time so the same rows give the same bytes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    compressed = path.name.endswith(".gz")
    with gzip.GzipFile(path, "wb", mtime=0) if compressed else path.open("wb") as fh:
        for r in rows:
            line = r if isinstance(r, bytes) else (r if isinstance(r, str) else json.dumps(r, ensure_ascii=False))
            fh.write((line.encode() if isinstance(line, str) else line) + b"\n")
    return path


# --- the random corpus --------------------------------------------------------------------------


def _p(kind: str, description: str, **extra: Any) -> dict[str, Any]:
    return {"type": kind, "description": description, **extra}


TOOLS = {
    "get_weather": tool(
        "get_weather",
        "Get the current weather and a short forecast for a city.",
        {
            "city": _p("string", "City name, e.g. 'Paris'"),
            "unit": _p("string", "Temperature unit", enum=["c", "f"]),
        },
        ["city"],
    ),
    "search_flights": tool(
        "search_flights",
        "Search one-way flights between two airports on a date.",
        {
            "origin": _p("string", "IATA code of the departure airport"),
            "destination": _p("string", "IATA code of the arrival airport"),
            "date": _p("string", "Departure date, YYYY-MM-DD"),
        },
        ["origin", "destination", "date"],
    ),
    "book_flight": tool(
        "book_flight",
        "Book a seat on a flight found by search_flights.",
        {"flight_id": _p("string", "Flight id from the search"), "passenger": _p("string", "Full name")},
        ["flight_id", "passenger"],
    ),
    "get_stock_price": tool(
        "get_stock_price",
        "Latest traded price of a stock, in USD.",
        {"symbol": _p("string", "Ticker symbol, e.g. 'NVDA'")},
        ["symbol"],
    ),
    "convert_currency": tool(
        "convert_currency",
        "Convert an amount from one currency to another at today's rate.",
        {
            "amount": _p("number", "Amount to convert"),
            "from_currency": _p("string", "ISO 4217 code"),
            "to_currency": _p("string", "ISO 4217 code"),
        },
        ["amount", "from_currency", "to_currency"],
    ),
    "get_order_status": tool(
        "get_order_status",
        "Status, items and shipping address of an order.",
        {"order_id": _p("string", "Order number, e.g. 'ORD-12345'")},
        ["order_id"],
    ),
    "update_order": tool(
        "update_order",
        "Change the shipping address of an order that has not shipped yet.",
        {"order_id": _p("string", "Order number"), "address": _p("string", "New shipping address")},
        ["order_id", "address"],
    ),
    "translate_text": tool(
        "translate_text",
        "Translate text into a target language.",
        {"text": _p("string", "Text to translate"), "target_language": _p("string", "Language name")},
        ["text", "target_language"],
    ),
    "search_restaurants": tool(
        "search_restaurants",
        "Find restaurants in a city, optionally by cuisine.",
        {"city": _p("string", "City name"), "cuisine": _p("string", "Cuisine, e.g. 'thai'")},
        ["city"],
    ),
    "send_email": tool(
        "send_email",
        "Send an email.",
        {"to": _p("string", "Recipient address"), "subject": _p("string", "Subject"), "body": _p("string", "Body")},
        ["to", "subject", "body"],
    ),
    "get_news_headlines": tool(
        "get_news_headlines",
        "Top news headlines for a topic.",
        {"topic": _p("string", "Topic"), "limit": _p("integer", "How many headlines")},
        ["topic"],
    ),
}
CITIES = ["Paris", "München", "São Paulo", "東京", "Zürich", "Kraków", "Seoul", "Reykjavík", "Austin", "Cairo"]
TICKERS = ["NVDA", "AAPL", "MSFT", "TSLA", "SAP", "TM"]
CURRENCIES = ["EUR", "JPY", "KRW", "GBP", "CHF"]
PHRASES = ["Où est la gare ?", "Wie spät ist es?", "今日はいい天気ですね", "Hello, friend", "¿Dónde está el baño?"]
LANGUAGES = ["English", "Korean", "German", "Spanish"]
AIRPORTS = ["ICN", "CDG", "JFK", "NRT", "GRU", "MUC"]
PASSENGERS = ["Kim Minji", "Ana Souza", "Jonas Weber", "Yuki Tanaka"]
CUISINES = ["thai", "korean", "italian", "vegan"]
STREETS = ["Rue de Rivoli", "Hauptstraße", "Main St", "Gangnam-daero"]
SKIES = ["clear", "partly cloudy", "rain", "light snow", "overcast", "thunderstorms"]


Call = tuple[str, dict[str, Any], str]  # tool, arguments, result


@dataclass
class Request:
    """One user turn that leads to tool calls."""

    query: str
    calls: list[Call]
    answer: str
    independent: bool = False  # the calls need nothing from each other: one parallel message can make them
    vague: tuple[str, str] | None = None  # a first phrasing that gets a clarifying question, and that question


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def _weather(rng: random.Random, city: str) -> tuple[int, str]:
    temp = rng.randint(-5, 35)
    days = [
        {"day": d, "high_c": temp + rng.randint(-3, 4), "low_c": temp - rng.randint(3, 9), "sky": rng.choice(SKIES)}
        for d in ("tomorrow", "day after")
    ]
    result = {
        "city": city,
        "temp_c": temp,
        "feels_like_c": temp - rng.randint(0, 3),
        "humidity": rng.randint(20, 95),
        "wind_kph": rng.randint(0, 40),
        "sky": rng.choice(SKIES),
        "forecast": days,
        "updated": f"2026-0{rng.randint(1, 9)}-1{rng.randint(0, 9)}T{rng.randint(10, 23)}:00:00Z",
    }
    return temp, _dumps(result)


def _chain(rng: random.Random) -> list[Request]:
    """A domain's requests in the order a user would make them; later ones build on earlier answers."""
    kind = rng.randrange(6)
    if kind == 0:
        a, b = rng.sample(CITIES, 2)
        (ta, ra), (tb, rb) = _weather(rng, a), _weather(rng, b)
        warmer = f"{a if ta >= tb else b} is warmer ({max(ta, tb)}°C vs {min(ta, tb)}°C)."
        first = Request(
            f"What's the weather like in {a} right now?",
            [("get_weather", {"city": a, "unit": "c"}, ra)],
            f"It is {ta}°C in {a} at the moment.",
        )
        second = Request(
            f"And in {b}? Which of the two is warmer?", [("get_weather", {"city": b, "unit": "c"}, rb)], warmer
        )
        both = Request(
            f"Is it warmer in {a} or in {b} right now?",
            [("get_weather", {"city": a, "unit": "c"}, ra), ("get_weather", {"city": b, "unit": "c"}, rb)],
            warmer,
            independent=True,
            vague=(
                "Can you compare the weather in two cities for me?",
                "Sure! Which two cities would you like me to compare?",
            ),
        )
        return [both] if rng.random() < 0.4 else [first, second]
    if kind == 1:
        sym, cur, shares = rng.choice(TICKERS), rng.choice(CURRENCIES), rng.randint(2, 40)
        price, rate = round(rng.uniform(50, 900), 2), round(rng.uniform(0.5, 150), 3)
        quote = {
            "symbol": sym,
            "price_usd": price,
            "change_pct": round(rng.uniform(-4, 4), 2),
            "volume": rng.randint(10**5, 10**8),
            "exchange": "NASDAQ",
            "as_of": "2026-03-02T15:59:00Z",
        }
        if rng.random() < 0.3:
            other = rng.choice([t for t in TICKERS if t != sym])
            other_price = round(rng.uniform(50, 900), 2)
            quotes = [(sym, price, quote), (other, other_price, quote | {"symbol": other, "price_usd": other_price})]
            higher = max(quotes, key=lambda q: q[1])
            return [
                Request(
                    f"Which is trading higher right now, {sym} or {other}?",
                    [("get_stock_price", {"symbol": s}, _dumps(q)) for s, _, q in quotes],
                    f"{higher[0]} is higher at ${higher[1]}.",
                    independent=True,
                )
            ]
        total = round(price * shares, 2)
        converted = {"amount": total, "from": "USD", "to": cur, "rate": rate, "converted": round(total * rate, 2)}
        return [
            Request(
                f"What is {sym} trading at?",
                [("get_stock_price", {"symbol": sym}, _dumps(quote))],
                f"{sym} last traded at ${price}.",
            ),
            Request(
                f"How much would {shares} shares cost me in {cur}?",
                [
                    (
                        "convert_currency",
                        {"amount": total, "from_currency": "USD", "to_currency": cur},
                        _dumps(converted),
                    )
                ],
                f"{shares} shares of {sym} cost about {round(total * rate, 2)} {cur} at today's rate.",
            ),
        ]
    if kind == 2:
        oid = f"ORD-{rng.randint(10000, 99999)}"
        addr = f"{rng.randint(1, 200)} {rng.choice(STREETS)}"
        status = {
            "order_id": oid,
            "status": "processing",
            "items": [
                {"sku": f"SKU-{rng.randint(100, 999)}", "qty": rng.randint(1, 3)} for _ in range(rng.randint(1, 4))
            ],
            "ship_to": "old address on file",
            "eta": "2026-04-0" + str(rng.randint(1, 9)),
        }
        return [
            Request(
                f"Where is my order {oid}?",
                [("get_order_status", {"order_id": oid}, _dumps(status))],
                f"Order {oid} is still being processed.",
                vague=("I want to check on my order.", "Of course. What is the order number?"),
            ),
            Request(
                f"Please ship it to {addr} instead.",
                [
                    (
                        "update_order",
                        {"order_id": oid, "address": addr},
                        _dumps({"order_id": oid, "updated": True, "ship_to": addr}),
                    )
                ],
                f"Done: order {oid} will now ship to {addr}.",
            ),
        ]
    if kind == 3:
        o, d = rng.sample(AIRPORTS, 2)
        date = f"2026-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
        flights = [
            {
                "flight_id": f"{rng.choice(['KE', 'AF', 'LH'])}{rng.randint(100, 999)}",
                "price": rng.randint(300, 1500),
                "departs": f"{rng.randint(6, 22):02d}:{rng.choice(['05', '20', '45'])}",
                "stops": rng.randint(0, 1),
                "duration_min": rng.randint(300, 900),
            }
            for _ in range(rng.randint(2, 5))
        ]
        cheapest = min(flights, key=lambda f: f["price"])
        who = rng.choice(PASSENGERS)
        return [
            Request(
                f"Find flights from {o} to {d} on {date}.",
                [("search_flights", {"origin": o, "destination": d, "date": date}, _dumps({"flights": flights}))],
                f"I found {len(flights)} flights; the cheapest is {cheapest['flight_id']} at ${cheapest['price']}.",
                vague=(
                    "Can you book me a flight?",
                    "I'd be happy to help. Where are you flying from and to, and on which date?",
                ),
            ),
            Request(
                f"Book the cheapest one for {who}.",
                [
                    (
                        "book_flight",
                        {"flight_id": cheapest["flight_id"], "passenger": who},
                        _dumps(
                            {
                                "confirmation": f"CNF{rng.randint(1000, 9999)}",
                                "flight_id": cheapest["flight_id"],
                                "passenger": who,
                                "seat": f"{rng.randint(10, 40)}{rng.choice('ABCDEF')}",
                            }
                        ),
                    )
                ],
                f"Booked {cheapest['flight_id']} for {who}.",
            ),
        ]
    if kind == 4:
        phrase = rng.choice(PHRASES)
        l1, l2 = rng.sample(LANGUAGES, 2)
        first = {"translation": f"<{l1}> {phrase}", "source_language": "auto", "confidence": 0.97}
        second = {"translation": f"<{l2}> {phrase}", "source_language": "auto", "confidence": 0.95}
        return [
            Request(
                f"Translate “{phrase}” into {l1}.",
                [("translate_text", {"text": phrase, "target_language": l1}, _dumps(first))],
                f"In {l1}: <{l1}> {phrase}",
            ),
            Request(
                f"Now into {l2}, please.",
                [("translate_text", {"text": phrase, "target_language": l2}, _dumps(second))],
                f"In {l2}: <{l2}> {phrase}",
            ),
        ]
    city, cuisine = rng.choice(CITIES), rng.choice(CUISINES)
    places = [
        {
            "name": f"{cuisine.title()} House {k}",
            "rating": round(rng.uniform(3.5, 4.9), 1),
            "price": rng.choice(["$", "$$", "$$$"]),
            "address": f"{rng.randint(1, 99)} {rng.choice(STREETS)}",
        }
        for k in range(1, rng.randint(3, 6))
    ]
    temp, weather = _weather(rng, city)
    return [
        Request(
            f"Find {cuisine} restaurants in {city}.",
            [("search_restaurants", {"city": city, "cuisine": cuisine}, _dumps({"results": places}))],
            f"Top pick: {places[0]['name']} ({places[0]['rating']}★).",
        ),
        Request(
            "And how will the weather be there tonight?",
            [("get_weather", {"city": city, "unit": "c"}, weather)],
            f"Around {temp}°C this evening in {city}.",
        ),
    ]


# --- reasoning of realistic length -------------------------------------------------------------

_OPENINGS = [
    "Okay, the user says: “{goal}”.",
    "Alright, the request is “{goal}”. Let me work out what to do.",
    "The user wrote “{goal}”.",
]
_CALL_STEPS = [
    "Looking at the available tools, {tool} is the one that does this; it takes {params}.",
    "The required parameters of {tool} are {required}, and I have values for all of them.",
    "I should pass the values exactly as the user gave them: {args}.",
    "Let me double-check the parameter names against the schema: {params}.",
    "Wait, is there anything I need to look up first? No, {tool} gives me what this step needs.",
    "The other tools ({others}) don't help with this request, so I won't use them.",
    "Hmm, I need to be careful with the formats here; the schema says {params}.",
    "So the call is {tool} with {args}.",
    "Once I have the result I can tell the user what they asked for.",
    "I don't need to ask the user anything else, the request has everything required.",
    "Let me think about whether the arguments are right: {args}. Yes, that matches the request.",
]
_ANSWER_STEPS = [
    "The tool returned the information I needed.",
    "So now I can answer: {answer}",
    "Let me make sure I'm reading the result correctly before I reply.",
    "I should present this clearly and briefly.",
    "Nothing else is needed; the user asked only for this.",
]


def _length(rng: random.Random, median: float, sigma: float) -> int:
    """Lognormal: most traces near the median, a long tail, as a model's reasoning is."""
    return int(min(max(median * math.exp(rng.gauss(0.0, sigma)), 60), 16_000))


def _reasoning(rng: random.Random, steps: list[str], facts: dict[str, str], target: int) -> str:
    sentences = [rng.choice(_OPENINGS).format(**facts)]
    while sum(len(s) + 1 for s in sentences) < target:
        sentences.append(rng.choice(steps).format(**facts))
    return " ".join(sentences)


def _think(reasoning: str, visible: str = "") -> str:
    return f"<think>\n{reasoning}\n</think>\n\n{visible}"


# --- one conversation --------------------------------------------------------------------------


class _Writer:
    """Appends a conversation's messages in the source's shape, with its ids and reasoning."""

    def __init__(self, rng: random.Random, index: int, catalog: list[str]) -> None:
        self.rng, self.index, self.catalog = rng, index, catalog
        self.messages: list[dict[str, Any]] = []
        self.n = 0

    def _facts(self, goal: str, name: str, args: dict[str, Any], answer: str = "") -> dict[str, str]:
        params = TOOLS[name]["function"]["parameters"]
        return {
            "goal": goal,
            "tool": name,
            "params": ", ".join(f"{k} ({v['type']})" for k, v in params["properties"].items()),
            "required": ", ".join(params["required"]),
            "args": _dumps(args),
            "others": ", ".join(t for t in self.catalog if t != name) or "none",
            "answer": answer,
        }

    def user(self, text: str) -> None:
        self.messages.append(message("user", text))

    def say(self, goal: str, text: str, median: float = 1800) -> None:
        reasoning = _reasoning(
            self.rng, _ANSWER_STEPS, self._facts(goal, self.catalog[0], {}, text), _length(self.rng, median, 0.6)
        )
        self.messages.append(message("assistant", _think(reasoning, text)))

    def calls(self, goal: str, calls: list[Call], thought: bool = True) -> None:
        """One assistant message making `calls` (parallel when more than one), then their results in order."""
        ids = []
        for _ in calls:
            self.n += 1
            ids.append(f"call_{self.index}_{self.n}")
        name, args, _ = calls[0]
        content = None
        if thought:
            facts = self._facts(goal, name, args)
            content = _think(_reasoning(self.rng, _CALL_STEPS, facts, _length(self.rng, 4000, 0.7)))
        self.messages.append(
            message("assistant", content, [tool_call(i, t, a) for i, (t, a, _) in zip(ids, calls, strict=True)])
        )
        for _, _, result in calls:
            self.messages.append(message("tool", result))

    def request(self, req: Request, pattern: str) -> None:
        """A request's calls as the large model made them, redundancy included, then its answer."""
        rng = self.rng
        if req.independent and (pattern == "parallel" or rng.random() < 0.6):
            self.calls(req.query, req.calls)  # one message, several calls; results follow in call order
            if pattern != "clean":
                self.calls(req.query, [req.calls[0]])  # re-checks a result it already has
        else:
            for k, call in enumerate(req.calls):
                if pattern == "retry" and k == 0:
                    failed = (
                        call[0],
                        call[1],
                        _dumps({"error": rng.choice(ERRORS), "status": rng.choice([500, 503, 504])}),
                    )
                    self.calls(req.query, [failed])
                    self.calls(req.query, [call], thought=rng.random() < 0.7)  # an immediate retry may skip thinking
                    continue
                self.calls(req.query, [call])
                if pattern == "duplicate" and k == 0:
                    self.calls(req.query, [call])
            if pattern == "verify":
                self.calls(req.query, [req.calls[0]])
        self.say(req.query, req.answer)


ERRORS = ["upstream timeout, please retry", "service temporarily unavailable", "rate limit exceeded"]
_PATTERNS = ["clean", "clean", "duplicate", "duplicate", "retry", "verify", "parallel"]
_CLOSINGS = [
    ("Thanks, that's all I needed!", "You're welcome! Let me know if there's anything else."),
    ("Great, thank you.", "Glad I could help!"),
]


def row(rng: random.Random, index: int) -> dict[str, Any]:
    """One conversation: one or more requests (the first sometimes needs a clarifying question), each
    answered with redundant, parallel, retried or clean calls, sometimes a closing thank-you."""
    chain = _chain(rng)
    if len(chain) > 1 and rng.random() < 0.4:
        chain = chain[:1]
    used = sorted({c[0] for req in chain for c in req.calls})
    catalog = used + rng.sample(sorted(set(TOOLS) - set(used)), rng.randint(1, 3))
    rng.shuffle(catalog)
    writer = _Writer(rng, index, catalog)
    for n, req in enumerate(chain):
        if n == 0 and req.vague and rng.random() < 0.35:
            vague, question = req.vague
            writer.user(vague)
            writer.say(vague, question, median=900)
        writer.user(req.query)
        pattern = rng.choice(_PATTERNS)
        writer.request(req, pattern if pattern != "parallel" or req.independent else "duplicate")
    if rng.random() < 0.35:
        thanks, reply = rng.choice(_CLOSINGS)
        writer.user(thanks)
        writer.say(thanks, reply, median=500)
    return nemotron_row(
        writer.messages, [TOOLS[t] for t in catalog], uuid=str(uuid_module.UUID(int=rng.getrandbits(128)))
    )


def generate(n: int, seed: int = 0) -> Iterator[dict[str, Any]]:
    rng = random.Random(seed)
    for i in range(n):
        yield row(rng, i)


def write_corpus(path: Path, n: int, seed: int = 0) -> Path:
    return write_jsonl(path, generate(n, seed))


def shape(rows: Iterable[dict[str, Any]]) -> dict[str, float]:
    """What a corpus looks like next to the split's published figures: messages ~9.6 mean, 10 median;
    6,395,081,261 bytes over 310,051 rows = 20.6 KB of text per row."""
    rows = list(rows)
    sizes = [len(m) for m in (r["messages"] for r in rows)]
    users = [sum(m["role"] == "user" for m in r["messages"]) for r in rows]
    return {
        "rows": len(rows),
        "messages_mean": round(statistics.mean(sizes), 2),
        "messages_median": statistics.median(sizes),
        "multi_turn_share": round(sum(u > 1 for u in users) / len(rows), 3),
        "parallel_share": round(
            sum(any(len(m["tool_calls"] or ()) > 1 for m in r["messages"]) for r in rows) / len(rows), 3
        ),
        "kb_per_row": round(statistics.mean(_text_bytes(r) for r in rows) / 1000, 1),
    }


def _text_bytes(value: Any) -> int:
    """UTF-8 bytes of every string in a row: what Arrow stores, as the card's `num_bytes` counts it."""
    if isinstance(value, str):
        return len(value.encode())
    if isinstance(value, dict):
        return sum(_text_bytes(v) for v in value.values())
    if isinstance(value, list):
        return sum(_text_bytes(v) for v in value)
    return 0


def main(argv: Sequence[str] | None = None, out: Callable[[str], None] = print) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, help="JSON Lines file to write")
    parser.add_argument("--stats", action="store_true", help="print the corpus's shape")
    args = parser.parse_args(argv)
    if args.out is None and not args.stats:
        parser.error("give --out FILE and/or --stats")
    if args.out is not None:
        write_corpus(args.out, args.n, args.seed)
    if args.stats:
        out(json.dumps(shape(generate(args.n, args.seed))))


if __name__ == "__main__":
    main()
