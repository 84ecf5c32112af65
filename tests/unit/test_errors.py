"""Domain errors name the gRPC status the servers answer with, without importing the transport."""

import grpc

from flashsale.common import errors


def test_every_domain_error_names_a_grpc_status_code() -> None:
    kinds = errors.DomainError.__subclasses__()
    assert len(kinds) >= 7
    for kind in kinds:
        assert grpc.StatusCode[kind.status] is not grpc.StatusCode.UNKNOWN, kind
    assert grpc.StatusCode[errors.InvalidArgument.status] is grpc.StatusCode.INVALID_ARGUMENT
    assert errors.NotFound("no such sale", "sale_id").detail() == "sale_id: no such sale"
