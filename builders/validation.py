"""Checking call arguments against a tool's JSON schema, the way real catalogs are written.

Catalogs in the wild use Python type names (`str`, `dict`, `float`), which JSON schema does not
know; they are mapped to their JSON-schema names first. A schema that is still invalid after that
cannot judge anything, so only its `required` list is checked. Validators are compiled once per
schema (fastjsonschema generates Python code; several times faster than interpreting with
`jsonschema`, which matters at 310k records) and cached by schema content, because the same
catalogs repeat across thousands of records.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import fastjsonschema
import orjson
from jsonschema import Draft7Validator
from jsonschema.exceptions import SchemaError

_TYPE_ALIASES = {
    "str": "string",
    "text": "string",
    "int": "integer",
    "long": "integer",
    "float": "number",
    "double": "number",
    "bool": "boolean",
    "dict": "object",
    "map": "object",
    "hashmap": "object",
    "list": "array",
    "tuple": "array",
    "arraylist": "array",
    "none": "null",
}
_JSON_TYPES = {"string", "integer", "number", "boolean", "object", "array", "null"}


def normalize_schema(schema: Any) -> Any:
    """Map Python-style type names to JSON-schema ones; drop `type` values that name nothing known."""
    if isinstance(schema, list):
        return [normalize_schema(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {}
    for key, value in schema.items():
        if key == "type":
            types = value if isinstance(value, list) else [value]
            mapped = [_TYPE_ALIASES.get(str(t).lower(), str(t).lower()) for t in types]
            if all(t in _JSON_TYPES for t in mapped):
                out["type"] = mapped if isinstance(value, list) else mapped[0]
            # 'any' or a free-form type ("string, optional") constrains nothing we can check
        elif key in ("properties", "patternProperties", "$defs", "definitions") and isinstance(value, dict):
            out[key] = {k: normalize_schema(v) for k, v in value.items()}
        elif key in ("required", "enum", "const", "default", "examples", "description", "title"):
            out[key] = value
        else:
            out[key] = normalize_schema(value)
    return out


class _RequiredOnly:
    def __init__(self, schema: dict[str, Any]) -> None:
        required = schema.get("required") if isinstance(schema, dict) else None
        self.required = [r for r in required if isinstance(r, str)] if isinstance(required, list) else []

    def is_valid(self, instance: Any) -> bool:
        return isinstance(instance, dict) and all(r in instance for r in self.required)


class _Compiled:
    def __init__(self, schema: dict[str, Any]) -> None:
        self._validate = fastjsonschema.compile(schema)

    def is_valid(self, instance: Any) -> bool:
        try:
            self._validate(instance)
        except fastjsonschema.JsonSchemaException:
            return False
        return True


@lru_cache(maxsize=8192)
def _validator_for(schema_json: bytes) -> _Compiled | _RequiredOnly:
    schema = normalize_schema(orjson.loads(schema_json))
    if not isinstance(schema, dict):
        return _RequiredOnly({})
    schema.setdefault("type", "object")
    schema.pop("$schema", None)  # judge every catalog by one draft, whatever it claims
    try:
        Draft7Validator.check_schema(schema)
        return _Compiled(schema)
    except (SchemaError, fastjsonschema.JsonSchemaDefinitionException):
        return _RequiredOnly(schema)


def schema_validator(parameters: dict[str, Any]) -> _Compiled | _RequiredOnly:
    """The compiled validator of a tool's `parameters` schema (cached by the schema's content)."""
    return _validator_for(orjson.dumps(parameters, option=orjson.OPT_SORT_KEYS))


def arguments_match_schema(arguments: dict[str, Any], parameters: dict[str, Any]) -> bool:
    """True when `arguments` satisfy the tool's `parameters` schema (required present, types right)."""
    return schema_validator(parameters).is_valid(arguments)
