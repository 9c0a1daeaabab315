"""The plan text's grammar for one tool catalog: what a constrained planner can possibly write.

Every sentence of the grammar is a canonical plan (`apo_planner.plan.render_plan`) that
`parse_plan` reads back and that names only the catalog's tools:

    1. tool_name({"param": value, ...}) after K, ...
       why: a bounded one-line rationale

Step numbers count up from 1, `after K` only names earlier steps, and the number of steps, the
rationale and every string or number are bounded, so a plan always ends within a known budget of
characters. Arguments follow each tool's parameters where the schema gives them (required ones
present, in schema order, values typed by their JSON type or enum); a tool without usable
properties takes any JSON object. The same EBNF text drives both engines: xgrammar in process, and
vLLM's `structured_outputs.grammar` (xgrammar underneath) on `/v1/completions`.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from apo_planner.plan import is_valid_tool_name

_TYPES = {  # JSON schema types and the synonyms BFCL's function docs use (Python and Java names), lowercased
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
_MAX_TYPED_PROPERTIES = 24  # beyond this a tool's arguments fall back to any JSON object


@dataclass(frozen=True)
class GrammarLimits:
    """Bounds that make every plan finish: steps, rationale and scalar lengths, nesting depth."""

    max_steps: int = 8
    max_rationale_chars: int = 200
    max_string_chars: int = 64
    max_items: int = 16
    max_digits: int = 12
    max_depth: int = 3


def _literal(text: str) -> str:
    """An EBNF string literal matching `text` exactly."""
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
    return _literal(json.dumps(value, ensure_ascii=False))


class _Rules:
    """Named rules, deduplicated by body so repeated shapes (two string parameters) share one rule."""

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
        return "\n".join(f"{name} ::= {body}" for name, body in self.rules.items()) + "\n"


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
        rules.rules[f"object_{depth}"] = f'"{{" (string ": " {nested} (", " string ": " {nested}){more})? "}}"'
        rules.rules[f"value_{depth}"] = f"{scalar} | array_{depth} | object_{depth}"


def _value(rules: _Rules, schema: Any) -> str:
    """The rule for one parameter's value (depth 1: its own arrays and objects nest one level)."""
    if not isinstance(schema, dict):
        return "value_1"
    enum = schema.get("enum")
    if isinstance(enum, list) and enum and all(isinstance(v, (str, int, float, bool)) for v in enum):
        return rules.add("enum", "(" + " | ".join(_json_literal(v) for v in enum) + ")")
    kind = _TYPES.get(schema["type"].lower()) if isinstance(schema.get("type"), str) else None
    return {"array": "array_1", "object": "object_1", None: "value_1"}.get(kind, kind)


def _arguments(rules: _Rules, parameters: Any) -> str:
    """A JSON object with the tool's properties in schema order, the required ones present."""
    props = parameters.get("properties") if isinstance(parameters, dict) else None
    if not isinstance(props, dict) or not props or len(props) > _MAX_TYPED_PROPERTIES:
        return "object_0"
    required = set(parameters.get("required") or []) & set(props)
    members = [f'{_json_literal(name)} ": " {_value(rules, schema)}' for name, schema in props.items()]
    flags = [name in required for name in props]
    first_required = flags.index(True) if any(flags) else len(flags)
    options = []
    for first in range(min(first_required + 1, len(members))):  # which member comes first
        parts = [members[first]]
        for k in range(first + 1, len(members)):
            parts.append(f'", " {members[k]}' if flags[k] else f'(", " {members[k]})?')
        options.append(" ".join(parts))
    body = "(" + " | ".join(f"({o})" for o in options) + ")" + ("" if required else "?")  # alternation binds loosest
    return rules.add("args", f'"{{" {body} "}}"')


def plan_grammar(tools: list[dict[str, Any]], limits: GrammarLimits | None = None) -> str:
    """EBNF whose sentences are exactly the canonical plans over `tools` (OpenAI-style catalog)."""
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
        calls.append(f'{_literal(name + "(")} {args} ")"')
    if not calls:
        raise ValueError("no tool in the catalog has a usable name: a plan cannot name any tool")
    rules.rules["call"] = " | ".join(f"({c})" for c in sorted(set(calls)))
    line_char = "[^\\n\\r\\x00-\\x1f]"
    rules.rules["why"] = f'"\\n   why: " {line_char} {line_char}{{0,{limits.max_rationale_chars - 1}}}'
    for step in range(1, limits.max_steps + 1):
        after = ""
        if step > 1:
            dep = rules.add(f"dep_{step}", " | ".join(_literal(str(k)) for k in range(1, step)))
            after = f' (" after " {dep} (", " {dep}){{0,{step - 2}}})?'
        rules.rules[f"step_{step}"] = f'"{step}. " call{after} why'
    tail = ""
    for step in range(limits.max_steps, 1, -1):
        tail = f'("\\n" step_{step} {tail})?'.replace(" )", ")")
    rules.rules["root"] = f"step_1 {tail}".strip()
    return rules.text()


def grammar_key(tools: list[dict[str, Any]], limits: GrammarLimits) -> str:
    """Cache key of a catalog's compiled grammar (BFCL repeats catalogs across entries)."""
    payload = json.dumps([tools, limits.__dict__], sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(payload.encode()).hexdigest()
