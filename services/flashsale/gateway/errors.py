"""Every gateway error as JSON {"error": {"code", "message", "field"?}}, and gRPC status → HTTP status."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from typing import Any

import fastapi
import grpc
from fastapi import exceptions, responses
from starlette import exceptions as starlette_exceptions

log = logging.getLogger(__name__)

HTTP_STATUS: Mapping[grpc.StatusCode, int] = {
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.FAILED_PRECONDITION: 409,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
}

# Statuses whose gRPC details may name internals (addresses, stack traces): a fixed message instead.
_GENERIC_MESSAGE: Mapping[grpc.StatusCode, str] = {
    grpc.StatusCode.UNAVAILABLE: "a backend service is unavailable; retry later",
    grpc.StatusCode.DEADLINE_EXCEEDED: "a backend service did not answer in time",
}

_BODY_SOURCES = {"body", "query", "path", "header", "cookie"}


def http_status(code: grpc.StatusCode) -> int:
    """The HTTP status of a gRPC status code (500 for any code without a mapping)."""
    return HTTP_STATUS.get(code, 500)


def code_name(code: grpc.StatusCode) -> str:
    """The canonical name of a gRPC status code, e.g. "NOT_FOUND"."""
    return str(code.name)


def error_body(code: str, message: str, field: str | None = None) -> dict[str, Any]:
    """The JSON error document; "field" is present only when a field is named."""
    error: dict[str, Any] = {"code": code, "message": message}
    if field:
        error["field"] = field
    return {"error": error}


class ApiError(Exception):
    """An error the gateway answers itself, with its HTTP status, gRPC code name and optional field."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        field: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.field = field
        self.headers = dict(headers or {})

    def response_body(self) -> dict[str, Any]:
        """This error's JSON document."""
        return error_body(self.code, self.message, self.field)

    def response(self) -> responses.JSONResponse:
        """This error as a JSON response."""
        return responses.JSONResponse(self.response_body(), status_code=self.status, headers=self.headers)


def unauthenticated(message: str) -> ApiError:
    """401 with the bearer challenge."""
    return ApiError(401, "UNAUTHENTICATED", message, headers={"WWW-Authenticate": "Bearer"})


def not_found(message: str, field: str | None = None) -> ApiError:
    """404 NOT_FOUND."""
    return ApiError(404, "NOT_FOUND", message, field)


def trailing_field(exc: grpc.aio.AioRpcError) -> str | None:
    """The "field" trailing metadata a service sets on a refused request, if any."""
    metadata: Any = exc.trailing_metadata() or ()
    for key, value in metadata:
        if key == "field":
            text = value.decode() if isinstance(value, bytes) else str(value)
            return text or None
    return None


def from_rpc_error(exc: grpc.aio.AioRpcError) -> ApiError:
    """The API error of a failed gRPC call; unmapped codes become a 500 that reveals nothing internal."""
    return _of_status(exc.code(), exc.details() or "", trailing_field(exc))


def from_status(code: str, message: str, field: str = "") -> ApiError:
    """The API error of a status a backend answered in a message (a streamed purchase it refused), given by name."""
    known = grpc.StatusCode.__members__.get(code, grpc.StatusCode.UNKNOWN)
    return _of_status(known, message, field or None)


def _of_status(code: grpc.StatusCode, details: str, field: str | None) -> ApiError:
    status = http_status(code)
    if status == 500:
        log.error("backend call failed", extra={"grpc_code": code_name(code), "details": details})
        return ApiError(500, code_name(code), "internal error")
    if code in _GENERIC_MESSAGE:
        log.warning("backend call failed", extra={"grpc_code": code_name(code), "details": details})
        return ApiError(status, code_name(code), _GENERIC_MESSAGE[code])
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return ApiError(status, code_name(code), details or code_name(code).lower(), field, headers)


def validation_error(errors: Sequence[Any]) -> ApiError:
    """A 400 INVALID_ARGUMENT from FastAPI's validation errors, naming the first bad field."""
    if not errors:
        return ApiError(400, "INVALID_ARGUMENT", "invalid request")
    first = errors[0]
    if first.get("type") == "json_invalid":
        return ApiError(400, "INVALID_ARGUMENT", "request body is not valid JSON")
    loc = [part for part in first.get("loc", ()) if isinstance(part, str)]
    names = [part for part in loc if part not in _BODY_SOURCES]
    field = names[-1] if names else None
    message = str(first.get("msg", "invalid value")).removeprefix("Value error, ")
    if field is None and loc == ["body"] and first.get("type") == "missing":
        message = "a JSON request body is required"
    return ApiError(400, "INVALID_ARGUMENT", f"{field}: {message}" if field else message, field)


_HTTP_CODE_NAMES: Mapping[int, str] = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    405: "UNIMPLEMENTED",
    409: "ALREADY_EXISTS",
    413: "INVALID_ARGUMENT",
    415: "INVALID_ARGUMENT",
    429: "RESOURCE_EXHAUSTED",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}


def from_http_exception(exc: starlette_exceptions.HTTPException) -> ApiError:
    """Starlette's own HTTP errors (unknown route, wrong method, ...) in the JSON error shape."""
    code = _HTTP_CODE_NAMES.get(exc.status_code, "INTERNAL" if exc.status_code >= 500 else "INVALID_ARGUMENT")
    if exc.status_code == 404:
        message = "no such route"
    elif exc.status_code == 405:
        message = "method not allowed on this route"
    else:
        message = exc.detail if isinstance(exc.detail, str) else json.dumps(exc.detail)
    return ApiError(exc.status_code, code, message, headers=exc.headers)


def install(app: fastapi.FastAPI) -> None:
    """Register the handlers that render every error in the JSON error shape."""

    async def on_api_error(_: fastapi.Request, exc: Exception) -> responses.Response:
        assert isinstance(exc, ApiError)
        return exc.response()

    async def on_rpc_error(_: fastapi.Request, exc: Exception) -> responses.Response:
        assert isinstance(exc, grpc.aio.AioRpcError)
        return from_rpc_error(exc).response()

    async def on_validation(_: fastapi.Request, exc: Exception) -> responses.Response:
        assert isinstance(exc, exceptions.RequestValidationError)
        return validation_error(exc.errors()).response()

    async def on_http(_: fastapi.Request, exc: Exception) -> responses.Response:
        assert isinstance(exc, starlette_exceptions.HTTPException)
        return from_http_exception(exc).response()

    async def on_timeout(_: fastapi.Request, exc: Exception) -> responses.Response:
        return ApiError(504, "DEADLINE_EXCEEDED", _GENERIC_MESSAGE[grpc.StatusCode.DEADLINE_EXCEEDED]).response()

    async def on_unexpected(_: fastapi.Request, exc: Exception) -> responses.Response:
        log.error("unhandled error", exc_info=exc)
        return ApiError(500, "INTERNAL", "internal error").response()

    app.add_exception_handler(ApiError, on_api_error)
    app.add_exception_handler(grpc.aio.AioRpcError, on_rpc_error)
    app.add_exception_handler(exceptions.RequestValidationError, on_validation)
    app.add_exception_handler(starlette_exceptions.HTTPException, on_http)
    app.add_exception_handler(TimeoutError, on_timeout)
    app.add_exception_handler(Exception, on_unexpected)
