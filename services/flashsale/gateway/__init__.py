"""REST/JSON gateway over the gRPC services: auth, rate limits, Server-Sent Events."""
