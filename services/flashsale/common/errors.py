"""Domain errors typed by what the caller should do, and their gRPC status codes."""

from __future__ import annotations

import grpc


class DomainError(Exception):
    """A request the service refuses; carries the gRPC status and, when relevant, the bad field."""

    code: grpc.StatusCode = grpc.StatusCode.UNKNOWN

    def __init__(self, message: str, field: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.field = field

    def detail(self) -> str:
        """The status message: the field first when one is named."""
        return f"{self.field}: {self.message}" if self.field else self.message


class InvalidArgument(DomainError):
    """A field of the request is malformed; fix the request."""

    code = grpc.StatusCode.INVALID_ARGUMENT


class NotFound(DomainError):
    """The named entity does not exist (or is not the caller's)."""

    code = grpc.StatusCode.NOT_FOUND


class AlreadyExists(DomainError):
    """The entity to create exists already."""

    code = grpc.StatusCode.ALREADY_EXISTS


class FailedPrecondition(DomainError):
    """The request is well-formed but the entity's state forbids it."""

    code = grpc.StatusCode.FAILED_PRECONDITION


class Unauthenticated(DomainError):
    """No valid credentials."""

    code = grpc.StatusCode.UNAUTHENTICATED


class PermissionDenied(DomainError):
    """Valid credentials that may not do this."""

    code = grpc.StatusCode.PERMISSION_DENIED


class ResourceExhausted(DomainError):
    """A rate or quota limit was hit; retry later."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class TemporaryError(Exception):
    """A dependency failed in a way that a retry after a delay may fix."""


class PermanentEventError(Exception):
    """An event that can never be processed; it goes to the dead-letter topic."""
