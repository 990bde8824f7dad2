"""The typed dicts, the error literals and the client methods' parameters
match tesserad's live ``GET /openapi.json``: a change of the server's
document (a field added, removed or retyped, an error code, an endpoint)
fails here until the client follows."""

from __future__ import annotations

import inspect
from typing import Any, Dict, List, Mapping, Optional, Union, get_args, get_origin, get_type_hints

import pytest

import tessera_client._types as types
from helpers import Tesserad
from tessera_client import AsyncTesseraClient, TesseraClient

#: Each typed dict and the schema it mirrors.
SCHEMAS = {
    "ClientBody": types.ClientInfo,
    "ClientView": types.ClientView,
    "SessionView": types.Session,
    "IssuedResponse": types.Issued,
    "ValidateResponse": types.Validated,
    "StatsResponse": types.Stats,
    "OperationCount": types.OperationCount,
    "EventCount": types.EventCount,
    "HealthResponse": types.Health,
    "ErrorBody": types.ErrorBody,
}

#: Each request schema and the client method whose keyword parameters are its fields.
REQUESTS = {
    "CreateRequest": "create",
    "ValidateRequest": "validate",
    "UpdateRequest": "update",
    "LoginRequest": "login",
    "TokenRequest": "rotate",
}

NONE = type(None)


@pytest.fixture(scope="module")
def document(server: Tesserad) -> Dict[str, Any]:
    return server.client.openapi()


def schemas(document: Mapping[str, Any]) -> Dict[str, Any]:
    result: Dict[str, Any] = document["components"]["schemas"]
    return result


def expected_type(schema: Mapping[str, Any]) -> Any:
    """The Python type a JSON schema of the document stands for."""
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[1]
        if name in SCHEMAS:
            return SCHEMAS[name]
        enum = {"ErrorCode": types.ServerErrorCode, "Reason": types.InvalidReason}
        return enum[name]
    if "oneOf" in schema:
        options = [expected_type(option) for option in schema["oneOf"]]
        return Union[tuple(options)]
    kinds = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
    mapped: List[Any] = []
    for kind in kinds:
        if kind == "null":
            mapped.append(NONE)
        elif kind == "string":
            mapped.append(str)
        elif kind == "integer":
            mapped.append(int)
        elif kind == "object":
            mapped.append(Dict[str, Any])
        elif kind == "array":
            mapped.append(List[expected_type(schema["items"])])  # type: ignore[misc]
        else:
            raise AssertionError(f"unmapped JSON type {kind}")
    return Union[tuple(mapped)]


def same_type(annotation: Any, expected: Any) -> bool:
    if annotation == expected:
        return True
    if get_origin(annotation) is Union and get_origin(expected) is Union:
        return set(get_args(annotation)) == set(get_args(expected))
    return False


@pytest.mark.parametrize("name", sorted(SCHEMAS))
def test_typed_dicts_match_the_schemas(document: Dict[str, Any], name: str) -> None:
    schema = schemas(document)[name]
    typed = SCHEMAS[name]
    hints = get_type_hints(typed)
    assert set(hints) == set(schema["properties"]), f"{typed.__name__} fields differ from {name}"
    # Every field the document requires is required in the typed dict (the
    # typed dicts may require more: the server always sends them).
    assert set(schema.get("required", [])) <= typed.__required_keys__, name
    for field, field_schema in schema["properties"].items():
        expected = expected_type(field_schema)
        assert same_type(hints[field], expected), f"{name}.{field}: {hints[field]} is not {expected}"


def test_error_codes_and_reasons(document: Dict[str, Any]) -> None:
    assert set(get_args(types.ServerErrorCode)) == set(schemas(document)["ErrorCode"]["enum"])
    assert set(get_args(types.InvalidReason)) == set(schemas(document)["Reason"]["enum"])


@pytest.mark.parametrize("client_class", [TesseraClient, AsyncTesseraClient])
@pytest.mark.parametrize("name", sorted(REQUESTS))
def test_request_bodies_match_the_methods(document: Dict[str, Any], name: str, client_class: type) -> None:
    schema = schemas(document)[name]
    method = getattr(client_class, REQUESTS[name])
    parameters = {p: v for p, v in inspect.signature(method).parameters.items() if p != "self"}
    assert set(parameters) == set(schema["properties"]), f"{client_class.__name__}.{REQUESTS[name]} vs {name}"
    hints = get_type_hints(method)
    for field, field_schema in schema["properties"].items():
        required = field in schema.get("required", [])
        assert (parameters[field].default is inspect.Parameter.empty) == required, f"{name}.{field}"
        expected = expected_type(field_schema)
        if not required:
            expected = Optional[expected]
        annotation = hints[field]
        assert same_type(annotation, expected), f"{name}.{field}: {annotation} is not {expected}"


def test_the_check_notices_a_change(document: Dict[str, Any]) -> None:
    """The comparisons above are only worth something if a change shows."""
    changed = {**schemas(document)["SessionView"], "properties": dict(schemas(document)["SessionView"]["properties"])}
    changed["properties"]["new_field"] = {"type": "string"}
    assert set(get_type_hints(types.Session)) != set(changed["properties"])
    assert not same_type(get_type_hints(types.Session)["version"], expected_type({"type": "string"}))

