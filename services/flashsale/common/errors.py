"""Domain errors typed by what the caller should do (no transport here: `status` names the gRPC status code the
servers answer with)."""

from __future__ import annotations


class DomainError(Exception):
    """A request the service refuses; carries the name of its gRPC status and, when relevant, the bad field."""

    status = "UNKNOWN"

    def __init__(self, message: str, field: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.field = field

    def detail(self) -> str:
        """The status message: the field first when one is named."""
        return f"{self.field}: {self.message}" if self.field else self.message


class InvalidArgument(DomainError):
    """A field of the request is malformed; fix the request."""

    status = "INVALID_ARGUMENT"


class NotFound(DomainError):
    """The named entity does not exist (or is not the caller's)."""

    status = "NOT_FOUND"


class AlreadyExists(DomainError):
    """The entity to create exists already."""

    status = "ALREADY_EXISTS"


class FailedPrecondition(DomainError):
    """The request is well-formed but the entity's state forbids it."""

    status = "FAILED_PRECONDITION"


class Unauthenticated(DomainError):
    """No valid credentials."""

    status = "UNAUTHENTICATED"


class PermissionDenied(DomainError):
    """Valid credentials that may not do this."""

    status = "PERMISSION_DENIED"


class ResourceExhausted(DomainError):
    """A rate or quota limit was hit; retry later."""

    status = "RESOURCE_EXHAUSTED"


class TemporaryError(Exception):
    """A dependency failed in a way that a retry after a delay may fix."""


class PermanentEventError(Exception):
    """An event that can never be processed; it goes to the dead-letter topic."""
