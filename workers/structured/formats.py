"""`response_format` -> GrammarSpec: OpenAI's text / json_object / json_schema and Fireworks' grammar (GBNF).

Schemas are checked against their JSON Schema metaschema here, so a malformed one is a 400 that says what is wrong
before anything compiles; what xgrammar then can't compile (an unresolvable $ref, a bad pattern) is a 400 too.
"""

import json
import re
from typing import Any

from jsonschema import Draft202012Validator, SchemaError, validators

from workers.structured.compiler import GrammarError, GrammarSpec

_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
PARAM = "response_format"
_MERGEABLE = frozenset({"type", "properties", "required", "title", "description"})


def merge_all_of(node: Any) -> Any:
    """allOf of plain object schemas -> one object schema (xgrammar compiles only a single-branch allOf). Branches
    with anything else (additionalProperties, conflicting property schemas...) are left for xgrammar as they are.
    Output of the merged schema validates against the original: every branch's required keys and property schemas
    hold, and no property outside them is emitted (strict)."""
    if isinstance(node, list):
        return [merge_all_of(x) for x in node]
    if not isinstance(node, dict):
        return node
    node = {k: merge_all_of(v) for k, v in node.items()}
    parts = node.get("allOf")
    if not (isinstance(parts, list) and len(parts) > 1
            and all(isinstance(p, dict) and set(p) <= _MERGEABLE and p.get("type", "object") == "object"
                    for p in parts)):  # fmt: skip
        return node
    merged: dict[str, Any] = {k: v for k, v in node.items() if k != "allOf"}
    if merged.get("type", "object") != "object":
        return node
    merged["type"] = "object"
    for part in parts:
        for name, sub in part.get("properties", {}).items():
            props = merged.setdefault("properties", {})
            if name in props and props[name] != sub:
                return node
            props[name] = sub
        merged["required"] = list(dict.fromkeys([*merged.get("required", []), *part.get("required", [])]))
    return merged


def check_json_schema(schema: Any, param: str) -> str:
    """A JSON schema (object or boolean) that is valid under its metaschema -> its canonical JSON text.
    Key order is kept: it is the order the grammar emits properties in."""
    if not isinstance(schema, dict | bool):
        raise GrammarError(f"Invalid {param}: the schema must be a JSON object.", param=param, code="invalid_schema")
    try:
        cls = validators.validator_for(schema, default=Draft202012Validator) if isinstance(schema, dict) else None
        (cls or Draft202012Validator).check_schema(schema)
    except SchemaError as exc:
        where = "/".join(str(p) for p in exc.absolute_path) or "(root)"
        raise GrammarError(
            f"Invalid {param} schema at {where}: {exc.message}", param=param, code="invalid_schema"
        ) from None
    return json.dumps(merge_all_of(schema), separators=(",", ":"), ensure_ascii=False)


def response_format_spec(raw: dict[str, Any] | None) -> GrammarSpec | None:
    """None for free text."""
    if raw is None:
        return None
    kind = raw.get("type")
    if kind in (None, "text"):
        return None
    if kind == "json_object":
        schema = raw.get("schema")  # Fireworks lets json_object carry a schema
        if schema is not None:
            return GrammarSpec("json_schema", check_json_schema(schema, PARAM), PARAM, strict=False)
        return GrammarSpec("json_object", "", PARAM)
    if kind == "json_schema":
        spec = raw.get("json_schema")
        if not isinstance(spec, dict):
            raise GrammarError(
                "response_format of type 'json_schema' needs a 'json_schema' object with a 'schema'.",
                param=PARAM, code="missing_required_parameter",
            )
        name = spec.get("name")
        if name is not None and (not isinstance(name, str) or not _NAME.match(name)):
            raise GrammarError(
                "response_format.json_schema.name must be 1-64 characters of a-z, A-Z, 0-9, _ and -.",
                param=PARAM, code="invalid_value",
            )
        strict = spec.get("strict")
        if strict is not None and not isinstance(strict, bool):
            raise GrammarError("response_format.json_schema.strict must be a boolean.", param=PARAM,
                               code="invalid_type")
        schema = spec.get("schema", {"type": "object"})
        return GrammarSpec("json_schema", check_json_schema(schema, PARAM), PARAM, strict=bool(strict))
    if kind == "grammar":
        grammar = raw.get("grammar")
        if not isinstance(grammar, str) or not grammar.strip():
            raise GrammarError(
                "response_format of type 'grammar' needs a 'grammar' string (GBNF).", param=PARAM,
                code="missing_required_parameter",
            )
        return GrammarSpec("ebnf", grammar, PARAM)
    raise GrammarError(
        f"Unknown response_format type {kind!r}: use 'text', 'json_object', 'json_schema' or 'grammar'.",
        param=PARAM, code="invalid_value",
    )
