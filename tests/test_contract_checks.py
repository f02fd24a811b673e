"""The contracts' fast path reports exactly what jsonschema reports, on random schemas of the
keywords it covers and random events; schemas using anything else go to jsonschema."""

from __future__ import annotations

import random

import pytest

from models.contract_checks import MAX_VIOLATIONS_PER_EVENT, CompiledContract, compile_schema, fast_check

TYPES = ["object", "array", "string", "number", "integer", "boolean", "null"]
NAMES = ["a", "b", "total", "currency", "items", "x/y", "t~"]


def random_schema(rng: random.Random, depth: int = 0) -> dict:
    schema: dict = {}
    for keyword in rng.sample(["type", "enum", "const", "properties", "required", "items", "description"],
                              rng.randint(1, 4)):
        if keyword == "type":
            schema["type"] = rng.choice(TYPES) if rng.random() < 0.7 else rng.sample(TYPES, rng.randint(1, 3))
        elif keyword == "enum":
            schema["enum"] = rng.sample(["USD", "EUR", "1", "", "true"], rng.randint(1, 3))
        elif keyword == "const":
            schema["const"] = rng.choice(["on", "off"])
        elif keyword == "properties" and depth < 3:
            schema["properties"] = {n: random_schema(rng, depth + 1) for n in rng.sample(NAMES, rng.randint(1, 4))}
        elif keyword == "required":
            schema["required"] = rng.sample(NAMES, rng.randint(0, 3))
        elif keyword == "items" and depth < 3:
            schema["items"] = random_schema(rng, depth + 1)
        elif keyword == "description":
            schema["description"] = "annotations are ignored"
    return schema


def random_value(rng: random.Random, depth: int = 0):
    kind = rng.choice(["object", "array", "string", "int", "float", "bool", "null", "enum"] if depth < 3
                      else ["string", "int", "float", "bool", "null", "enum"])
    if kind == "object":
        return {n: random_value(rng, depth + 1) for n in rng.sample(NAMES, rng.randint(0, 4))}
    if kind == "array":
        return [random_value(rng, depth + 1) for _ in range(rng.randint(0, 3))]
    return {"string": "text", "int": rng.choice([0, 1, -5, 10**20]), "float": rng.choice([1.0, 2.5, -0.0]),
            "bool": rng.choice([True, False]), "null": None, "enum": rng.choice(["USD", "EUR", "on", "1"])}[kind]


def violations(contract: CompiledContract, properties) -> list[tuple[str, str, str]]:
    outcome = contract.check({"type": "track", "properties": properties})
    return sorted((v.path, v.kind, v.message) for v in outcome.violations)


def test_fast_path_matches_jsonschema_on_random_schemas_and_events():
    rng = random.Random(20261122)
    compared = 0
    for _ in range(400):
        schema = compile_schema({"type": "object",
                                 "properties": {n: random_schema(rng, 1) for n in rng.sample(NAMES, 3)},
                                 "required": rng.sample(NAMES, rng.randint(0, 2))})
        fast = CompiledContract("c", 1, "track", "e", schema, "warn", "allow")
        slow = CompiledContract("c", 1, "track", "e", schema, "warn", "allow", compiled=False)  # jsonschema
        assert fast.fast is not None, schema
        for _ in range(10):
            event = random_value(rng)
            if not isinstance(event, dict):
                event = {"a": event}
            assert violations(fast, event) == violations(slow, event), (schema, event)
            compared += 1
    assert compared == 4000


@pytest.mark.parametrize("schema", [
    {"type": "object", "properties": {"email": {"type": "string", "format": "email"}}},
    {"type": "object", "properties": {"n": {"type": "number", "minimum": 1}}},
    {"type": "object", "properties": {"n": {"enum": [1, 2]}}},
    {"type": "object", "additionalProperties": False},
    {"type": "object", "properties": {"a": {"$ref": "#/$defs/x"}}, "$defs": {"x": {"type": "string"}}},
    {"type": "object", "properties": {"a": True}},
])
def test_other_keywords_go_to_jsonschema(schema):
    assert fast_check(compile_schema(schema)) is None


def test_the_reference_compact_schema_takes_the_fast_path():
    schema = compile_schema({"properties": {"total": {"type": "number", "required": True},
                                            "currency": {"type": "string", "enum": ["USD", "EUR"]},
                                            "items": {"items": {"properties": {"sku": {"type": "string",
                                                                                       "required": True}}}}}})
    contract = CompiledContract("c", 1, "track", "purchase", schema, "warn", "allow")
    assert contract.fast is not None
    assert violations(contract, {"currency": "GBP", "items": [{"sku": 1}, {}]}) == [
        ("/properties/currency", "enum", "'GBP' is not one of ['USD', 'EUR']"),
        ("/properties/items/0/sku", "type_mismatch", "1 is not of type 'string'"),
        ("/properties/items/1/sku", "required_missing", "'sku' is required"),
        ("/properties/total", "required_missing", "'total' is required"),
    ]


def test_any_property_name_is_data_not_code():
    name = "'); import os; os._exit(1) #\n\"\\"
    schema = compile_schema({"properties": {name: {"type": "string", "required": True, "enum": [name]}}})
    contract = CompiledContract("c", 1, "track", "e", schema, "warn", "allow")
    assert contract.fast is not None
    assert violations(contract, {}) == [("/properties/" + name.replace("~", "~0").replace("/", "~1"),
                                         "required_missing", f"{name!r} is required")]
    assert violations(contract, {name: name}) == []
    assert violations(contract, {name: 3}) == sorted([
        ("/properties/" + name, "type_mismatch", "3 is not of type 'string'"),
        ("/properties/" + name, "enum", f"3 is not one of {[name]!r}")])


@pytest.mark.parametrize("compiled", [True, False])
@pytest.mark.parametrize("mode", ["warn", "block"])
def test_an_event_records_at_most_the_maximum_of_violations(compiled, mode):
    schema = compile_schema({"properties": {f"p{n}": {"type": "number", "required": True} for n in range(80)}})
    contract = CompiledContract("c", 1, "track", "e", schema, mode, "allow", compiled=compiled)
    outcome = contract.check({"type": "track", "properties": {f"p{n}": "x" for n in range(80)}})
    assert len(outcome.violations) == MAX_VIOLATIONS_PER_EVENT
    assert outcome.blocked == (mode == "block")
    assert contract.check({"type": "track", "properties": {f"p{n}": n for n in range(80)}}).violations == []
