"""Bad input at the HTTP gateway: refused with a JSON error naming the field, before any RPC where possible.

The first tests run the gateway against addresses where nothing listens: any RPC would turn into a 503,
so a 4xx proves the gateway refused the request itself. The last test runs the real user, product and
sales services (real Kafka, SQLite) behind the gateway.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import confluent_kafka
import httpx
import pytest

from flashsale.common import events, topics
from flashsale.common.settings import Settings
from flashsale.gateway import bootstrap
from flashsale.gateway.settings import GatewaySettings
from flashsale.product import bootstrap as product_bootstrap
from flashsale.sales import bootstrap as sales_bootstrap
from flashsale.user import bootstrap as user_bootstrap
from flashsale_api.v1 import events_pb2
from flashsale_tools.platform import cache

pytestmark = pytest.mark.integration

ADMIN_KEY = "admin-key-for-tests"
PASSWORD = "correct horse battery"
BEARER = {"Authorization": "Bearer not-checked-before-validation"}
ADMIN = {"X-Admin-Key": ADMIN_KEY}
SALE = {
    "product_id": "p1",
    "price_cents": 500,
    "stock": 10,
    "starts_at": "2030-01-01T10:00:00Z",
    "ends_at": "2030-01-01T11:00:00Z",
}


def _gateway_settings(**changes: Any) -> GatewaySettings:
    return GatewaySettings(admin_api_key=ADMIN_KEY, rpc_timeout_s=2.0, health_timeout_s=0.5, **changes)


def _nowhere_settings(tmp_path: Path, **changes: Any) -> Settings:
    """Every backend at a port where nothing listens."""
    address = f"127.0.0.1:{cache.free_port()}"
    return Settings(
        sqlite_dir=tmp_path / "db",
        user_addr=address,
        product_addr=address,
        sales_addr=address,
        order_addr=address,
        notification_addr=address,
        log_format="text",
        **changes,
    )


@contextlib.asynccontextmanager
async def _http(settings: Settings, gateway: GatewaySettings) -> AsyncIterator[httpx.AsyncClient]:
    async with bootstrap.build(settings, gateway) as server, httpx.AsyncClient(base_url=server.url) as client:
        yield client


@pytest.fixture
async def http(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    """A client of a gateway with no reachable backend."""
    async with _http(_nowhere_settings(tmp_path), _gateway_settings()) as client:
        yield client


def assert_error(response: httpx.Response, status: int, code: str, field: str | None = None) -> dict[str, Any]:
    """The response is the JSON error document with this status, code and field (or no field)."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body: dict[str, Any] = response.json()
    assert set(body) == {"error"}
    error: dict[str, Any] = body["error"]
    assert error["code"] == code
    assert isinstance(error["message"], str)
    assert error["message"]
    if field is None:
        assert set(error) == {"code", "message"}
    else:
        assert set(error) == {"code", "message", "field"}
        assert error["field"] == field
    return error


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "field"),
    [
        ("POST", "/v1/users", {"json": {"email": "ada@example.com"}}, "password"),
        ("POST", "/v1/users", {"json": {"email": "not-an-email", "password": PASSWORD}}, "email"),
        ("POST", "/v1/users", {"json": {"email": "ada@example.com", "password": "short"}}, "password"),
        ("POST", "/v1/users", {"json": {"email": "a@example.com", "password": PASSWORD, "phone": "555"}}, "phone"),
        ("POST", "/v1/users", {"json": {"email": "a@example.com", "password": PASSWORD, "admin": True}}, "admin"),
        ("POST", "/v1/users/verify", {"json": {"token": ""}}, "token"),
        ("POST", "/v1/auth/login", {"json": {"email": "ada@@example.com", "password": PASSWORD}}, "email"),
        ("POST", "/v1/sales/s1/purchases", {"json": {"quantity": 0}, "headers": BEARER}, "quantity"),
        ("POST", "/v1/sales/s1/purchases", {"json": {"quantity": "2"}, "headers": BEARER}, "quantity"),
        ("POST", "/v1/sales/s1/purchases", {"json": {"request_id": "has spaces"}, "headers": BEARER}, "request_id"),
        ("POST", "/v1/sales/bad%20id/purchases", {"json": {}, "headers": BEARER}, "sale_id"),
        ("GET", "/v1/orders?page_size=0", {"headers": BEARER}, "page_size"),
        ("POST", "/v1/orders/o1/pay", {"json": {}, "headers": BEARER}, "payment_token"),
        (
            "PUT",
            "/v1/notifications/preferences",
            {"json": {"email_enabled": "yes"}, "headers": BEARER},
            "email_enabled",
        ),
        (
            "POST",
            "/v1/products",
            {"json": {"name": "Widget", "base_price_cents": -1}, "headers": ADMIN},
            "base_price_cents",
        ),
        ("POST", "/v1/sales", {"json": {**SALE, "ends_at": "2030-01-01T09:00:00Z"}, "headers": ADMIN}, "ends_at"),
        ("POST", "/v1/sales", {"json": {**SALE, "starts_at": "2030-01-01T10:00:00"}, "headers": ADMIN}, "starts_at"),
        ("POST", "/v1/sales", {"json": {**SALE, "partitions": 0}, "headers": ADMIN}, "partitions"),
        ("POST", "/v1/sales", {"json": {**SALE, "partitions": 257}, "headers": ADMIN}, "partitions"),
        ("GET", "/v1/sales?product_id=a/b", {}, "product_id"),
        ("GET", "/v1/products/p1/price?sale_id=no%20no", {}, "sale_id"),
    ],
)
async def test_bad_fields_are_refused_naming_the_field(
    http: httpx.AsyncClient, method: str, path: str, kwargs: dict[str, Any], field: str
) -> None:
    error = assert_error(await http.request(method, path, **kwargs), 400, "INVALID_ARGUMENT", field)
    assert error["message"].startswith(f"{field}: ")


async def test_malformed_json_is_refused(http: httpx.AsyncClient) -> None:
    response = await http.post("/v1/users", content=b'{"email": ', headers={"Content-Type": "application/json"})
    assert_error(response, 400, "INVALID_ARGUMENT")


async def test_missing_body_is_refused(http: httpx.AsyncClient) -> None:
    assert_error(await http.post("/v1/auth/login"), 400, "INVALID_ARGUMENT")


async def test_missing_or_malformed_bearer_is_401_with_challenge(http: httpx.AsyncClient) -> None:
    for headers in ({}, {"Authorization": "Basic YWRhOnB3"}, {"Authorization": "Bearer"}):
        for method, path in (("POST", "/v1/sales/s1/purchases"), ("GET", "/v1/me"), ("GET", "/v1/orders")):
            response = await http.request(method, path, json={"quantity": 0}, headers=headers)
            assert_error(response, 401, "UNAUTHENTICATED")
            assert response.headers["www-authenticate"] == "Bearer"


async def test_admin_key_is_required_and_checked(http: httpx.AsyncClient) -> None:
    product = {"name": "Widget", "base_price_cents": 100}
    assert_error(await http.post("/v1/products", json=product), 401, "UNAUTHENTICATED")
    wrong = {"X-Admin-Key": ADMIN_KEY + "x"}
    assert_error(await http.post("/v1/products", json=product, headers=wrong), 403, "PERMISSION_DENIED")
    assert_error(await http.patch("/v1/products/p1", json={"name": "x"}, headers=wrong), 403, "PERMISSION_DENIED")
    assert_error(await http.post("/v1/sales", json=SALE, headers=wrong), 403, "PERMISSION_DENIED")


async def test_unknown_route_and_method_are_json(http: httpx.AsyncClient) -> None:
    assert_error(await http.get("/v1/nothing-here"), 404, "NOT_FOUND")
    assert_error(await http.delete("/v1/products"), 405, "UNIMPLEMENTED")


async def test_unreachable_backend_is_503_without_internals(http: httpx.AsyncClient) -> None:
    """The premise of the tests above: a request that does reach a backend here gets a 503."""
    error = assert_error(await http.get("/v1/sales/s1"), 503, "UNAVAILABLE")
    assert "127.0.0.1" not in error["message"]
    assert_error(await http.get("/v1/me", headers=BEARER), 503, "UNAVAILABLE")


async def test_probes(http: httpx.AsyncClient) -> None:
    live = await http.get("/healthz")
    assert live.status_code == 200
    assert live.json()["status"] == "ok"
    ready = await http.get("/readyz")
    assert ready.status_code == 503
    assert ready.json()["error"]["code"] == "UNAVAILABLE"
    assert set(ready.json()["backends"]) == {"user", "product", "sales", "order", "notification"}


async def test_openapi_document(http: httpx.AsyncClient) -> None:
    doc = (await http.get("/openapi.json")).json()
    assert doc["info"]["title"] == "Flashsale API"
    assert doc["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    assert "/v1/sales/{sale_id}/purchases" in doc["paths"]


async def test_rate_limit_answers_429_with_retry_after(tmp_path: Path) -> None:
    settings = _nowhere_settings(tmp_path, gateway_rate_limit_per_s=0.01, gateway_rate_burst=2)
    async with _http(settings, _gateway_settings()) as http:
        for _ in range(2):
            assert_error(await http.post("/v1/users", json={}), 400, "INVALID_ARGUMENT", "email")
        response = await http.post("/v1/users", json={})
        assert_error(response, 429, "RESOURCE_EXHAUSTED")
        assert int(response.headers["retry-after"]) >= 1
        assert (await http.get("/healthz")).status_code == 200  # probes are not limited


def _verification_token(bootstrap_servers: str, user_id: str, timeout: float = 30.0) -> str:
    """The token of the user.registered event of a user, read from the users topic."""
    consumer = confluent_kafka.Consumer(
        {"bootstrap.servers": bootstrap_servers, "group.id": uuid.uuid4().hex, "enable.auto.commit": False}
    )
    try:
        partitions = consumer.list_topics(topics.USERS, timeout=10).topics[topics.USERS].partitions
        consumer.assign(
            [confluent_kafka.TopicPartition(topics.USERS, p, confluent_kafka.OFFSET_BEGINNING) for p in partitions]
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            msg = consumer.poll(0.2)
            if msg is None or msg.error() is not None or msg.key() != user_id.encode():
                continue
            env = events.decode(msg.value())
            if env.type == "user.registered":
                payload = events_pb2.UserRegistered()
                events.unpack(env, payload)
                return str(payload.verification_token)
        raise AssertionError(f"no user.registered for {user_id}")
    finally:
        consumer.close()


async def test_bad_input_reaching_real_services(base_settings: Settings) -> None:
    product_server = product_bootstrap.build(base_settings)
    async with product_server:
        with_product = base_settings.model_copy(update={"product_addr": f"127.0.0.1:{product_server.port}"})
        user_server = user_bootstrap.build(with_product)
        sales_server = sales_bootstrap.build(with_product)
        async with user_server, sales_server:
            settings = with_product.model_copy(
                update={"user_addr": f"127.0.0.1:{user_server.port}", "sales_addr": f"127.0.0.1:{sales_server.port}"}
            )
            async with _http(settings, _gateway_settings()) as http:
                await _check_real_services(http, base_settings.kafka_bootstrap)


async def _check_real_services(http: httpx.AsyncClient, kafka_bootstrap: str) -> None:
    email = f"gw-{uuid.uuid4().hex[:10]}@example.com"
    created = await http.post("/v1/users", json={"email": email, "password": PASSWORD})
    assert created.status_code == 201, created.text
    user = created.json()
    assert set(user) == {"user_id", "email", "phone", "verified", "created_at"}
    assert (user["email"], user["phone"], user["verified"]) == (email, None, False)
    assert user["created_at"].endswith("Z")

    again = await http.post("/v1/users", json={"email": email.upper(), "password": PASSWORD})
    assert_error(again, 409, "ALREADY_EXISTS", "email")

    wrong = await http.post("/v1/auth/login", json={"email": email, "password": PASSWORD + "!"})
    assert wrong.json()["error"]["code"] in {"UNAUTHENTICATED", "PERMISSION_DENIED"}
    assert wrong.status_code in {401, 403}

    bad_token = await http.get("/v1/me", headers={"Authorization": "Bearer not.a.jwt"})
    assert_error(bad_token, 401, "UNAUTHENTICATED")
    assert bad_token.headers["www-authenticate"] == "Bearer"

    login = await http.post("/v1/auth/login", json={"email": email, "password": PASSWORD})
    assert login.status_code == 200, login.text
    assert login.json()["token_type"] == "bearer"
    auth = {"Authorization": f"Bearer {login.json()['access_token']}"}

    unverified = await http.post("/v1/sales/unknown-sale/purchases", json={}, headers=auth)
    assert unverified.status_code == 403
    assert unverified.json() == {"error": {"code": "PERMISSION_DENIED", "message": "verify your e-mail before buying"}}

    assert_error(await http.post("/v1/users/verify", json={"token": "bogus"}), 400, "INVALID_ARGUMENT", "token")
    token = await asyncio.to_thread(_verification_token, kafka_bootstrap, user["user_id"])
    verified = await http.post("/v1/users/verify", json={"token": token})
    assert verified.status_code == 200, verified.text
    assert verified.json()["verified"] is True

    me = await http.get("/v1/me", headers=auth)
    assert me.status_code == 200
    assert me.json()["user_id"] == user["user_id"]

    purchase = await http.post("/v1/sales/unknown-sale/purchases", json={"quantity": 1}, headers=auth)
    assert_error(purchase, 404, "NOT_FOUND", "sale_id")
    assert_error(await http.get("/v1/sales/unknown-sale"), 404, "NOT_FOUND", "sale_id")
    assert_error(await http.get("/v1/purchases/unknown-request", headers=auth), 404, "NOT_FOUND", "request_id")
    sale = {**SALE, "product_id": "unknown-product"}
    assert_error(await http.post("/v1/sales", json=sale, headers=ADMIN), 404, "NOT_FOUND", "product_id")


async def _limited(http: httpx.AsyncClient, forwarded_for: str) -> bool:
    """True when one more anonymous request from this X-Forwarded-For is refused 429."""
    response = await http.post("/v1/users", json={}, headers={"X-Forwarded-For": forwarded_for})
    return response.status_code == 429


async def test_behind_a_trusted_proxy_each_shopper_has_their_own_rate_limit(tmp_path: Path) -> None:
    settings = _nowhere_settings(tmp_path, gateway_rate_limit_per_s=0.01, gateway_rate_burst=2)
    trusted = _gateway_settings(gateway_trusted_proxies=("127.0.0.0/8",))  # the test connects from 127.0.0.1
    async with _http(settings, trusted) as http:
        assert [await _limited(http, "203.0.113.7") for _ in range(3)] == [False, False, True]
        assert not await _limited(http, "198.51.100.9")  # another shopper behind the same proxy: a budget of its own
        assert await _limited(http, "198.51.100.9, 203.0.113.7")  # the proxy's own hop is the client it names last


async def test_without_trusted_proxies_x_forwarded_for_is_ignored(tmp_path: Path) -> None:
    settings = _nowhere_settings(tmp_path, gateway_rate_limit_per_s=0.01, gateway_rate_burst=2)
    async with _http(settings, _gateway_settings()) as http:
        assert [await _limited(http, "203.0.113.7") for _ in range(2)] == [False, False]
        assert await _limited(http, "198.51.100.9")  # a forged header does not buy a new budget


async def test_the_gateway_checks_a_verified_shoppers_token_itself(base_settings: Settings) -> None:
    """A token issued after the e-mail was verified is checked with the user service's public keys (the JWKS the
    gateway also serves): with the user service gone, such a shopper still reaches the sales service, while a token
    issued before verification (which needs the user service to read the flag now) and a forged one do not."""
    user_server = user_bootstrap.build(base_settings)
    sales_server = sales_bootstrap.build(base_settings)
    async with sales_server:
        await user_server.start_all()
        try:
            settings = base_settings.model_copy(
                update={"user_addr": f"127.0.0.1:{user_server.port}", "sales_addr": f"127.0.0.1:{sales_server.port}"}
            )
            async with _http(settings, _gateway_settings()) as http:
                email = f"gw-{uuid.uuid4().hex[:10]}@example.com"
                user = (await http.post("/v1/users", json={"email": email, "password": PASSWORD})).json()
                login = {"email": email, "password": PASSWORD}
                early = (await http.post("/v1/auth/login", json=login)).json()["access_token"]
                token = await asyncio.to_thread(_verification_token, base_settings.kafka_bootstrap, user["user_id"])
                assert (await http.post("/v1/users/verify", json={"token": token})).status_code == 200
                late = (await http.post("/v1/auth/login", json=login)).json()["access_token"]
                keys = (await http.get("/.well-known/jwks.json")).json()
                assert [(k["kty"], k["crv"], k["alg"]) for k in keys["keys"]] == [("OKP", "Ed25519", "EdDSA")]
                assert "d" not in keys["keys"][0]  # public only
                forged = late[:-4] + ("AAAA" if not late.endswith("AAAA") else "BBBB")

                await user_server.stop_all()
                buy = {"quantity": 1}
                verified = await http.post("/v1/sales/unknown-sale/purchases", json=buy, headers=_bearer(late))
                assert_error(verified, 404, "NOT_FOUND", "sale_id")  # past the token, at the sales service
                unverified = await http.post("/v1/sales/unknown-sale/purchases", json=buy, headers=_bearer(early))
                assert_error(unverified, 503, "UNAVAILABLE")
                refused = await http.post("/v1/sales/unknown-sale/purchases", json=buy, headers=_bearer(forged))
                assert_error(refused, 401, "UNAUTHENTICATED")
        finally:
            await user_server.stop_all()


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
