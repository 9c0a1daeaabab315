"""The APO planner's plan text: its grammar for a tool catalog, canonical form, parser.

A plan is one numbered step per tool call and an indented rationale::

    1. get_weather({"city": "Paris"})
       why: the answer needs today's weather
    2. convert_units({"value": 21, "to": "F"}) after 1
       why: the user asked in Fahrenheit

Arguments are JSON; `after K` names earlier steps (1-based) whose results the call
needs. `plan_grammar(tools, limits)` is EBNF whose sentences are exactly such plans over
the catalog's tools: steps count up from 1, `after` names only earlier steps, and the
number of steps, the rationale and every string or number are bounded, so a plan ends
within a known budget. Arguments follow each tool's parameters where the schema gives
them (required ones present, in schema order, values typed by their JSON type or enum);
a tool without usable properties takes any JSON object. vLLM (`structured_outputs:
{"grammar": ...}`, `guided_grammar` before 0.10.2) and xgrammar in process take it.

Standard library only: apo-planner's training data, its evaluation and the BFCL handler
beside this file all read and write plans with these functions.
"""

import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any

# Tool names may carry dots and dashes (BFCL uses `math.factorial`), never whitespace or
# the parentheses that delimit arguments in the text form.
TOOL_NAME_PATTERN = r"^[^\s(){}\[\]]+$"
MAX_TOOL_NAME_CHARS = 256
WHY_PREFIX = "   why:"
_TOOL_NAME_RE = re.compile(TOOL_NAME_PATTERN)
_STEP_HEAD_RE = re.compile(r"^(\d+)\. ([^\s(){}\[\]]+)\(")
_AFTER_RE = re.compile(r"^ after (\d+(?:, \d+)*)$")
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")
# JSON schema types and the synonyms BFCL's function docs use, lowercased
_TYPES = {
    "string": "string",
    "str": "string",
    "char": "string",
    "integer": "integer",
    "int": "integer",
    "long": "integer",
    "short": "integer",
    "byte": "integer",
    "number": "number",
    "float": "number",
    "double": "number",
    "boolean": "boolean",
    "bool": "boolean",
    "array": "array",
    "tuple": "array",
    "list": "array",
    "arraylist": "array",
    "object": "object",
    "dict": "object",
    "hashmap": "object",
    "map": "object",
}
_MAX_TYPED_PROPERTIES = (
    24  # beyond this a tool's arguments fall back to any JSON object
)


class PlanParseError(ValueError):
    """Text that is not a canonical plan; the message names the offending line."""


def is_valid_tool_name(name: str) -> bool:
    return (
        bool(name)
        and len(name) <= MAX_TOOL_NAME_CHARS
        and bool(_TOOL_NAME_RE.match(name))
    )


def normalize_rationale(text: str) -> str:
    """Whitespace and control characters collapsed: a rationale fits on one line."""
    return " ".join(_CONTROL_RE.sub(" ", text).split())


# ---- the canonical text --------------------------------------------------------------


def dump_arguments(arguments: dict[str, Any]) -> str:
    return json.dumps(arguments, ensure_ascii=False, separators=(", ", ": "))


def render_plan_text(steps: list[dict[str, Any]]) -> str:
    """`steps` (`tool`, `arguments`, `rationale`, `depends_on`) as canonical text."""
    lines = []
    for number, step in enumerate(steps, start=1):
        head = (
            f"{number}. {step['tool']}({dump_arguments(step.get('arguments') or {})})"
        )
        depends_on = step.get("depends_on") or ()
        if depends_on:
            head += " after " + ", ".join(str(d + 1) for d in depends_on)
        lines.append(head)
        lines.append(f"{WHY_PREFIX} {step.get('rationale') or ''}".rstrip())
    return "\n".join(lines)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value a plan can carry")


# NaN and Infinity are not JSON
_DECODER = json.JSONDecoder(parse_constant=_no_constant)


def parse_plan_text(text: str) -> list[dict[str, Any]]:
    """The steps of a canonical plan (blank lines and trailing spaces allowed, no more).

    Every step names a valid tool, its arguments are a JSON object and its `after` steps
    come before it (0-based in `depends_on`); else `PlanParseError` names the line.
    """
    # Split on "\n" only: str.splitlines() also breaks on U+2028 (which JSON keeps)
    lines = [line.rstrip() for line in text.split("\n")]
    steps: list[dict[str, Any]] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        if not line.strip():
            i += 1
            continue
        where = f"line {i + 1}"
        match = _STEP_HEAD_RE.match(line)
        if not match:
            raise PlanParseError(
                f"{where}: expected 'N. tool({{...}})', got {line[:80]!r}"
            )
        number, tool = int(match.group(1)), match.group(2)
        if number != len(steps) + 1:
            raise PlanParseError(
                f"{where}: step numbered {number}, expected {len(steps) + 1}"
            )
        if len(tool) > MAX_TOOL_NAME_CHARS:
            raise PlanParseError(
                f"{where}: a tool name is at most {MAX_TOOL_NAME_CHARS} characters"
            )
        try:
            arguments, end = _DECODER.raw_decode(line, match.end())
        except json.JSONDecodeError as exc:
            raise PlanParseError(f"{where}: arguments are not JSON: {exc.msg}") from exc
        except ValueError as exc:
            raise PlanParseError(f"{where}: arguments are not JSON: {exc}") from exc
        if not isinstance(arguments, dict):
            raise PlanParseError(f"{where}: arguments must be a JSON object")
        rest = line[end:]
        if not rest.startswith(")"):
            raise PlanParseError(f"{where}: expected ')' after the arguments")
        rest = rest[1:]
        depends_on: list[int] = []
        if rest:
            after = _AFTER_RE.match(rest)
            if not after:
                raise PlanParseError(
                    f"{where}: unexpected text after the call: {rest[:40]!r}"
                )
            depends_on = sorted({int(n) - 1 for n in after.group(1).split(", ")})
        for dep in depends_on:
            if not 0 <= dep < len(steps):
                raise PlanParseError(
                    f"{where}: step {len(steps) + 1} depends on step {dep + 1}, "
                    "which is not an earlier step"
                )
        rationale = ""
        if i + 1 < len(lines) and lines[i + 1].lstrip().startswith("why:"):
            rationale = lines[i + 1].lstrip()[len("why:") :].strip()
            i += 1
        step = {
            "tool": tool,
            "arguments": arguments,
            "rationale": normalize_rationale(rationale),
            "depends_on": depends_on,
        }
        steps.append(step)
        i += 1
    if not steps:
        raise PlanParseError("no plan steps found")
    return steps


# ---- the grammar ---------------------------------------------------------------------


@dataclass(frozen=True)
class GrammarLimits:
    """Bounds that make every plan end: steps, rationale and scalar lengths, nesting."""

    max_steps: int = 8
    max_rationale_chars: int = 200
    max_string_chars: int = 64
    max_items: int = 16
    max_digits: int = 12
    max_depth: int = 3


def ebnf_literal(text: str) -> str:
    """An EBNF string literal matching `text` exactly (apo-planner's server builds its
    `choice` grammars with it too)."""
    out = []
    for ch in text:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\x{ord(ch):02x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def _json_literal(value: Any) -> str:
    return ebnf_literal(json.dumps(value, ensure_ascii=False))


class _Rules:
    """Named rules deduplicated by body: repeated shapes (two strings) share a rule."""

    def __init__(self) -> None:
        self.rules: dict[str, str] = {}
        self._by_body: dict[str, str] = {}

    def add(self, name: str, body: str) -> str:
        if body in self._by_body:
            return self._by_body[body]
        base, n = name, 1
        while name in self.rules:
            n += 1
            name = f"{base}_{n}"
        self.rules[name] = body
        self._by_body[body] = name
        return name

    def text(self) -> str:
        return (
            "\n".join(f"{name} ::= {body}" for name, body in self.rules.items()) + "\n"
        )


def _scalars(rules: _Rules, limits: GrammarLimits) -> None:
    chars = r'([^"\\\x00-\x1f] | "\\" ["\\/bfnrt])'
    rules.rules["string"] = f'"\\"" {chars}{{0,{limits.max_string_chars}}} "\\""'
    rules.rules["integer"] = f'"-"? ("0" | [1-9] [0-9]{{0,{limits.max_digits - 1}}})'
    rules.rules["number"] = f'integer ("." [0-9]{{1,{limits.max_digits}}})?'
    rules.rules["boolean"] = '"true" | "false"'
    for depth in range(limits.max_depth + 1):
        scalar = 'string | number | boolean | "null"'
        if depth == limits.max_depth:
            rules.rules[f"value_{depth}"] = scalar
            continue
        nested = f"value_{depth + 1}"
        more = f"{{0,{limits.max_items - 1}}}"
        rules.rules[f"array_{depth}"] = f'"[" ({nested} (", " {nested}){more})? "]"'
        rules.rules[f"object_{depth}"] = (
            f'"{{" (string ": " {nested} (", " string ": " {nested}){more})? "}}"'
        )
        rules.rules[f"value_{depth}"] = f"{scalar} | array_{depth} | object_{depth}"


def _value(rules: _Rules, schema: Any) -> str:
    """One parameter's value rule (depth 1: its arrays and objects nest once)."""
    if not isinstance(schema, dict):
        return "value_1"
    enum = schema.get("enum")
    if (
        isinstance(enum, list)
        and enum
        and all(isinstance(v, (str, int, float, bool)) for v in enum)
    ):
        return rules.add("enum", "(" + " | ".join(_json_literal(v) for v in enum) + ")")
    kind = schema.get("type")
    kind = _TYPES.get(kind.lower()) if isinstance(kind, str) else None
    return {"array": "array_1", "object": "object_1", None: "value_1"}.get(kind, kind)


def _arguments(rules: _Rules, parameters: Any) -> str:
    """A JSON object: the tool's properties in schema order, required ones present."""
    props = parameters.get("properties") if isinstance(parameters, dict) else None
    if not isinstance(props, dict) or not props or len(props) > _MAX_TYPED_PROPERTIES:
        return "object_0"
    required = set(parameters.get("required") or []) & set(props)
    members = [
        f'{_json_literal(name)} ": " {_value(rules, schema)}'
        for name, schema in props.items()
    ]
    flags = [name in required for name in props]
    first_required = flags.index(True) if any(flags) else len(flags)
    options = []
    for first in range(
        min(first_required + 1, len(members))
    ):  # which member comes first
        parts = [members[first]]
        for k in range(first + 1, len(members)):
            parts.append(f'", " {members[k]}' if flags[k] else f'(", " {members[k]})?')
        options.append(" ".join(parts))
    # the alternation binds loosest
    body = "(" + " | ".join(f"({o})" for o in options) + ")" + ("" if required else "?")
    return rules.add("args", f'"{{" {body} "}}"')


def plan_grammar(
    tools: list[dict[str, Any]], limits: GrammarLimits | None = None
) -> str:
    """EBNF whose sentences are exactly the canonical plans over `tools` (OpenAI style).

    Raises ValueError when no tool has a usable name (a plan could name none).
    """
    limits = limits or GrammarLimits()
    rules = _Rules()
    rules.rules["root"] = ""  # filled last; the first rule is the start symbol
    _scalars(rules, limits)
    calls = []
    for tool in tools:
        function = tool.get("function", tool) if isinstance(tool, dict) else {}
        name = function.get("name")
        if not isinstance(name, str) or not is_valid_tool_name(name):
            continue
        args = _arguments(rules, function.get("parameters"))
        calls.append(f'{ebnf_literal(name + "(")} {args} ")"')
    if not calls:
        raise ValueError(
            "no tool in the catalog has a usable name: a plan cannot name any tool"
        )
    rules.rules["call"] = " | ".join(f"({c})" for c in sorted(set(calls)))
    line_char = "[^\\n\\r\\x00-\\x1f]"
    more = limits.max_rationale_chars - 1
    rules.rules["why"] = f'"\\n{WHY_PREFIX} " {line_char} {line_char}{{0,{more}}}'
    for step in range(1, limits.max_steps + 1):
        after = ""
        if step > 1:
            numbers = " | ".join(ebnf_literal(str(k)) for k in range(1, step))
            dep = rules.add(f"dep_{step}", numbers)
            after = f' (" after " {dep} (", " {dep}){{0,{step - 2}}})?'
        rules.rules[f"step_{step}"] = f'"{step}. " call{after} why'
    tail = ""
    for step in range(limits.max_steps, 1, -1):
        tail = f'("\\n" step_{step} {tail})?'.replace(" )", ")")
    rules.rules["root"] = f"step_1 {tail}".strip()
    return rules.text()


def grammar_key(tools: list[dict[str, Any]], limits: GrammarLimits) -> str:
    """Cache key of a catalog's grammar (BFCL repeats catalogs across entries)."""
    payload = json.dumps([tools, limits.__dict__], sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(payload.encode()).hexdigest()
