"""gRPC status → HTTP status and the JSON error body of the gateway."""

from __future__ import annotations

import grpc
import pytest

from flashsale.gateway import errors


def _rpc_error(code: grpc.StatusCode, details: str, field: str | None = None) -> grpc.aio.AioRpcError:
    trailing = grpc.aio.Metadata(("field", field)) if field is not None else grpc.aio.Metadata()
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), trailing, details, None)


@pytest.mark.parametrize(
    ("code", "status"),
    [
        (grpc.StatusCode.INVALID_ARGUMENT, 400),
        (grpc.StatusCode.NOT_FOUND, 404),
        (grpc.StatusCode.ALREADY_EXISTS, 409),
        (grpc.StatusCode.FAILED_PRECONDITION, 409),
        (grpc.StatusCode.UNAUTHENTICATED, 401),
        (grpc.StatusCode.PERMISSION_DENIED, 403),
        (grpc.StatusCode.RESOURCE_EXHAUSTED, 429),
        (grpc.StatusCode.UNAVAILABLE, 503),
        (grpc.StatusCode.DEADLINE_EXCEEDED, 504),
        (grpc.StatusCode.INTERNAL, 500),
        (grpc.StatusCode.UNKNOWN, 500),
        (grpc.StatusCode.ABORTED, 500),
        (grpc.StatusCode.DATA_LOSS, 500),
    ],
)
def test_status_mapping(code: grpc.StatusCode, status: int) -> None:
    assert errors.http_status(code) == status
    assert errors.from_rpc_error(_rpc_error(code, "x")).status == status


def test_error_body_names_the_field_only_when_there_is_one() -> None:
    assert errors.error_body("NOT_FOUND", "no such sale", "sale_id") == {
        "error": {"code": "NOT_FOUND", "message": "no such sale", "field": "sale_id"}
    }
    assert errors.error_body("INTERNAL", "internal error") == {
        "error": {"code": "INTERNAL", "message": "internal error"}
    }
    assert "field" not in errors.error_body("INTERNAL", "x", "")["error"]


def test_field_comes_from_the_trailing_metadata() -> None:
    api = errors.from_rpc_error(_rpc_error(grpc.StatusCode.ALREADY_EXISTS, "email: is taken", "email"))
    assert (api.status, api.code, api.message, api.field) == (409, "ALREADY_EXISTS", "email: is taken", "email")
    assert api.response_body() == {"error": {"code": "ALREADY_EXISTS", "message": "email: is taken", "field": "email"}}


def test_empty_field_metadata_is_omitted() -> None:
    api = errors.from_rpc_error(_rpc_error(grpc.StatusCode.FAILED_PRECONDITION, "sale ended", ""))
    assert api.field is None
    assert "field" not in api.response_body()["error"]


def test_unmapped_status_leaks_nothing() -> None:
    api = errors.from_rpc_error(_rpc_error(grpc.StatusCode.UNKNOWN, "Traceback: psycopg at 10.0.0.7:5432", "x"))
    assert api.status == 500
    assert api.response_body() == {"error": {"code": "UNKNOWN", "message": "internal error"}}


def test_unavailable_and_deadline_hide_addresses() -> None:
    down = errors.from_rpc_error(_rpc_error(grpc.StatusCode.UNAVAILABLE, "failed to connect to 10.0.0.7:50051"))
    late = errors.from_rpc_error(_rpc_error(grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded at 10.0.0.7"))
    assert (down.status, down.code) == (503, "UNAVAILABLE")
    assert (late.status, late.code) == (504, "DEADLINE_EXCEEDED")
    assert "10.0.0.7" not in down.message + late.message


def test_unauthenticated_carries_the_bearer_challenge() -> None:
    api = errors.from_rpc_error(_rpc_error(grpc.StatusCode.UNAUTHENTICATED, "token expired"))
    response = api.response()
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"


def test_validation_error_names_the_last_location_element() -> None:
    api = errors.validation_error(
        [
            {
                "type": "greater_than_equal",
                "loc": ("body", "quantity"),
                "msg": "Input should be greater than or equal to 1",
            }
        ]
    )
    assert (api.status, api.code, api.field) == (400, "INVALID_ARGUMENT", "quantity")
    assert api.message == "quantity: Input should be greater than or equal to 1"
    nested = errors.validation_error([{"type": "missing", "loc": ("body", "items", 0, "sku"), "msg": "Field required"}])
    assert nested.field == "sku"
    query = errors.validation_error([{"type": "too_short", "loc": ("query", "page_size"), "msg": "bad"}])
    assert query.field == "page_size"


def test_validation_error_of_malformed_json_names_no_field() -> None:
    api = errors.validation_error([{"type": "json_invalid", "loc": ("body", 1), "msg": "JSON decode error"}])
    assert api.status == 400
    assert api.field is None
    assert api.response_body() == {"error": {"code": "INVALID_ARGUMENT", "message": "request body is not valid JSON"}}


def test_validation_error_strips_the_value_error_prefix() -> None:
    api = errors.validation_error([{"type": "value_error", "loc": ("body", "email"), "msg": "Value error, bad"}])
    assert api.message == "email: bad"
