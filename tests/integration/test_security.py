"""Authentication, permissions, origins and rate limits on one in-process replica."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import orjson
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from gateway.security.ratelimit import MIN_STRIKES
from gateway.settings import NamespaceOptions, Settings
from tests.support.client import Frame, ProtocolClient
from tests.support.hub import subscribers as local_subscribers
from tests.support.inprocess import LocalGateway, serve_in_process
from tests.support.net import wait_until
from tests.support.tokens import (
    KEYS,
    SECRET,
    connection_token,
    forged_signature,
    hand_signed_hs256,
    sign,
    subscription_token,
    unsigned_token,
)


@pytest.fixture
def secured(serve: Callable[..., Any]) -> Callable[..., Any]:
    """``async with secured(**settings)``: a replica that requires HS256 tokens."""

    def start(**overrides: Any) -> Any:
        return serve(**{"jwt_secret": SECRET, **overrides})

    return start


@pytest.fixture
async def gateway(secured: Callable[..., Any]) -> AsyncIterator[LocalGateway]:
    async with secured(
        namespaces={
            "members": NamespaceOptions(subscribe="authenticated"),
            "vault": NamespaceOptions(subscribe="token"),
            "news": NamespaceOptions(publish=False),
        }
    ) as running:
        yield running


@asynccontextmanager
async def direct(
    settings_factory: Callable[..., Settings], **overrides: Any
) -> AsyncIterator[LocalGateway]:
    """One replica on the direct writer only, for tests that wait on real time."""
    async with serve_in_process(settings_factory(**{"jwt_secret": SECRET, **overrides})) as gw:
        yield gw


async def as_user(gateway: LocalGateway, token: str | None = None, **claims: Any) -> ProtocolClient:
    token = token or connection_token(**claims)
    return await ProtocolClient.connect(f"{gateway.ws_url}?token={token}")


async def refused(url: str, **options: Any) -> tuple[int | None, Frame]:
    """Connect, expecting the handshake to complete and the server to close at once."""
    client = await ProtocolClient.connect(url, welcome=False, **options)
    code, frames = await client.closed()
    [disconnect] = [frame for frame in frames if frame["op"] == "disconnect"]
    assert not [frame for frame in frames if frame["op"] == "welcome"]
    return code, disconnect


# Connection tokens


async def test_query_token_gives_welcome_with_the_user(gateway: LocalGateway) -> None:
    async with await as_user(gateway, sub="alice") as alice:
        assert alice.welcome["user"] == "alice"
        assert (await alice.request("ping"))["op"] == "pong"


async def test_connect_op_gives_welcome_echoing_its_id(gateway: LocalGateway) -> None:
    async with await ProtocolClient.connect(gateway.ws_url, welcome=False) as client:
        await client.send({"op": "connect", "id": "c1", "token": connection_token("bob")})
        welcome = await client.expect(lambda f: f["op"] == "welcome")
        assert welcome["id"] == "c1" and welcome["user"] == "bob" and welcome["version"] == 1
        again = await client.request("connect", token=connection_token("bob"))
        assert again["code"] == "bad_request"


async def test_rs256_and_es256_tokens(serve: Callable[..., Any]) -> None:
    for pair in (KEYS.rsa, KEYS.ec):
        async with serve(jwt_public_key=pair.public_pem) as gateway:
            token = connection_token("carol", key=pair.private, algorithm=pair.algorithm)
            async with await as_user(gateway, token) as carol:
                assert carol.welcome["user"] == "carol"


async def test_commands_before_connect_are_unauthorized(gateway: LocalGateway) -> None:
    async with await ProtocolClient.connect(gateway.ws_url, welcome=False) as client:
        for op, fields in [
            ("subscribe", {"channel": "c"}),
            ("publish", {"channel": "c", "data": 1}),
        ]:
            error = await client.request(op, **fields)
            assert error["op"] == "error" and error["code"] == "unauthorized"
        assert (await client.request("ping"))["code"] == "unauthorized"
        await client.send("{not json")
        assert (await client.expect(lambda f: f["op"] == "error"))["code"] == "bad_request"
        await client.send({"op": "connect", "token": connection_token()})
        await client.expect(lambda f: f["op"] == "welcome")
        assert (await client.request("ping"))["op"] == "pong"


async def test_no_connect_in_time_closes_with_4001(secured: Callable[..., Any]) -> None:
    async with secured(connect_timeout=0.3) as gateway:
        code, disconnect = await refused(gateway.ws_url)
        assert code == 4001
        assert disconnect == {
            "op": "disconnect",
            "code": 4001,
            "reason": "no connect command in time",
            "reconnect": True,
        }


BAD_TOKENS: dict[str, Callable[[], str]] = {
    "forged": lambda: forged_signature(connection_token()),
    "wrong secret": lambda: connection_token(key="not-the-gateway-secret-0123456789abcdef"),
    "expired": lambda: connection_token(ttl=-10),
    "alg none": lambda: unsigned_token({"sub": "alice", "exp": int(time.time()) + 60}),
    "HS512": lambda: connection_token(algorithm="HS512"),
    "RS256 against HS256": lambda: connection_token(key=KEYS.rsa.private, algorithm="RS256"),
    "no sub": lambda: sign({"exp": int(time.time()) + 60}),
    "no exp": lambda: sign({"sub": "alice"}),
    "channels not a list": lambda: connection_token(channels="chat:*"),
    "subscription token": lambda: subscription_token("alice", "$room"),
    "garbage": lambda: "not.a.jwt",
}


@pytest.mark.parametrize("kind", list(BAD_TOKENS))
async def test_bad_query_token_completes_the_handshake_then_closes_4001(
    gateway: LocalGateway, kind: str
) -> None:
    token = BAD_TOKENS[kind]()
    code, disconnect = await refused(f"{gateway.ws_url}?token={token}")
    assert code == 4001 and disconnect["code"] == 4001
    assert token not in disconnect["reason"]
    if kind == "expired":
        assert disconnect["reason"] == "token expired"


@pytest.mark.parametrize("kind", ["forged", "alg none", "expired", "no sub"])
async def test_bad_connect_token_closes_4001(gateway: LocalGateway, kind: str) -> None:
    client = await ProtocolClient.connect(gateway.ws_url, welcome=False)
    await client.send({"op": "connect", "id": 1, "token": BAD_TOKENS[kind]()})
    code, frames = await client.closed()
    assert code == 4001 and [f["op"] for f in frames] == ["disconnect"]


async def test_hs256_token_against_an_rs256_key_closes_4001(serve: Callable[..., Any]) -> None:
    """Key confusion: an HS256 token whose secret is the gateway's public key."""
    confused = hand_signed_hs256(
        {"sub": "mallory", "exp": int(time.time()) + 60}, KEYS.rsa.public_pem.encode()
    )
    async with serve(jwt_public_key=KEYS.rsa.public_pem) as gateway:
        code, disconnect = await refused(f"{gateway.ws_url}?token={confused}")
        assert code == 4001 and disconnect["reason"] == "token algorithm not accepted"


# Expiry and refresh


async def test_token_expiry_closes_with_4001(settings_factory: Callable[..., Settings]) -> None:
    """The close comes at ``exp`` plus the clock-skew leeway, not before."""
    async with direct(settings_factory, jwt_leeway=1) as gateway:
        expires = int(time.time()) + 2
        client = await as_user(gateway, sign({"sub": "alice", "exp": expires}))
        code, frames = await client.closed(timeout=10)
        assert code == 4001 and time.time() >= expires + 1
        assert frames[-1] == {
            "op": "disconnect",
            "code": 4001,
            "reason": "token expired",
            "reconnect": True,
        }


async def test_refresh_keeps_the_connection_past_the_first_expiry(
    settings_factory: Callable[..., Settings],
) -> None:
    async with direct(settings_factory, jwt_leeway=0) as gateway:
        first = int(time.time()) + 3
        client = await as_user(gateway, sign({"sub": "alice", "exp": first}))
        second = first + 2
        refreshed = await client.request("refresh", token=sign({"sub": "alice", "exp": second}))
        assert refreshed == {"op": "refreshed", "id": 1, "exp": second}
        await wait_until(lambda: time.time() > first + 0.3, 5, "the first token to expire")
        assert (await client.request("ping"))["op"] == "pong"
        code, frames = await client.closed(timeout=10)
        assert code == 4001 and frames[-1]["reason"] == "token expired"
        assert time.time() >= second


async def test_refresh_for_another_user_closes_4001(gateway: LocalGateway) -> None:
    client = await as_user(gateway, sub="alice")
    await client.send({"op": "refresh", "id": 1, "token": connection_token("mallory")})
    code, _ = await client.closed()
    assert code == 4001


async def test_refresh_with_an_expired_token_closes_4001(gateway: LocalGateway) -> None:
    client = await as_user(gateway, sub="alice")
    await client.send({"op": "refresh", "id": 1, "token": connection_token("alice", ttl=-5)})
    code, frames = await client.closed()
    assert code == 4001 and frames[-1]["reason"] == "token expired"


async def test_refresh_without_auth_is_a_bad_request(serve: Callable[..., Any]) -> None:
    async with serve() as gateway, await ProtocolClient.connect(gateway.ws_url) as client:
        assert client.welcome["user"] is None
        error = await client.request("refresh", token=connection_token())
        assert error["code"] == "bad_request"


# Channels: namespaces, private channels, subscription tokens, claims


async def test_authenticated_and_token_namespaces(gateway: LocalGateway) -> None:
    async with await as_user(gateway, sub="alice") as alice:
        await alice.subscribe("members:lounge")
        error = await alice.request("subscribe", channel="vault:1")
        assert error["code"] == "forbidden" and "subscription token" in error["message"]
        token = subscription_token("alice", "vault:1")
        await alice.subscribe("vault:1", token=token)


async def test_private_channel_needs_a_subscription_token(gateway: LocalGateway) -> None:
    async with await as_user(gateway, sub="alice") as alice:
        assert (await alice.request("subscribe", channel="$inbox:alice"))["code"] == "forbidden"
        reply = await alice.subscribe(
            "$inbox:alice", token=subscription_token("alice", "$inbox:alice")
        )
        assert reply["channel"] == "$inbox:alice"


@pytest.mark.parametrize(
    ("token", "message"),
    [
        (lambda: subscription_token("alice", "$inbox:bob"), "for another channel"),
        (lambda: subscription_token("bob", "$inbox:alice"), "for another user"),
        (lambda: subscription_token("alice", "$inbox:alice", ttl=-5), "token expired"),
        (lambda: forged_signature(subscription_token("x", "$inbox:alice")), "signature"),
        (
            lambda: unsigned_token({"sub": "alice", "channel": "$inbox:alice", "exp": 2**40}),
            "algorithm not accepted",
        ),
        (lambda: connection_token("alice"), "needs a channel claim"),
    ],
)
async def test_bad_subscription_token_is_forbidden(
    gateway: LocalGateway, token: Callable[[], str], message: str
) -> None:
    async with await as_user(gateway, sub="alice") as alice:
        error = await alice.request("subscribe", channel="$inbox:alice", token=token())
        assert error["op"] == "error" and error["code"] == "forbidden"
        assert message in error["message"]
        assert (await alice.request("ping"))["op"] == "pong"
        assert local_subscribers(gateway.replica.hub, "$inbox:alice") == 0


async def test_channels_claim_limits_subscriptions(gateway: LocalGateway) -> None:
    async with await as_user(gateway, sub="alice", channels=["chat:*", "$inbox:alice"]) as alice:
        await alice.subscribe("chat:lobby")
        await alice.subscribe("$inbox:alice")
        for channel in ("news", "$inbox:bob", "chatroom"):
            assert (await alice.request("subscribe", channel=channel))["code"] == "forbidden"


async def test_publish_claim_and_namespace_publish_option(gateway: LocalGateway) -> None:
    async with (
        await as_user(gateway, sub="ed", publish=["news:*"]) as editor,
        await as_user(gateway, sub="reader") as reader,
    ):
        await reader.subscribe("news:today")
        error = await reader.request("publish", channel="news:today", data="fake")
        assert error["code"] == "forbidden"
        await editor.publish("news:today", "headline")
        [message] = await reader.messages(1)
        assert message["data"] == "headline" and message["from"]["user"] == "ed"
        assert (await editor.request("publish", channel="chat:x", data=1))["code"] == "forbidden"


async def test_nobody_publishes_into_a_private_channel_it_cannot_read(
    gateway: LocalGateway,
) -> None:
    async with await as_user(gateway, sub="mallory") as mallory:
        error = await mallory.request("publish", channel="$inbox:alice", data="spoof")
        assert error["code"] == "forbidden"


async def test_private_history_and_presence_need_a_subscription_and_show_info(
    secured: Callable[..., Any],
) -> None:
    namespaces = {"default": NamespaceOptions(presence=True)}
    async with secured(namespaces=namespaces) as gateway:
        async with await as_user(gateway, sub="mallory") as mallory:
            for op in ("history", "presence"):
                error = await mallory.request(op, channel="$inbox:alice")
                assert error["code"] == "forbidden", error
        async with await as_user(gateway, sub="alice", info={"name": "Alice"}) as alice:
            token = subscription_token("alice", "$inbox:alice")
            await alice.subscribe("$inbox:alice", token=token)
            assert (await alice.request("history", channel="$inbox:alice"))["op"] == "history"
            presence = await alice.request("presence", channel="$inbox:alice")
            assert list(presence["clients"].values()) == [
                {"user": "alice", "info": {"name": "Alice"}}
            ]


async def test_unknown_namespace_when_strict(secured: Callable[..., Any]) -> None:
    async with secured(strict_namespaces=True) as gateway, await as_user(gateway) as alice:
        error = await alice.request("subscribe", channel="nowhere:1")
        assert error["code"] == "unknown_namespace"


# Origins


@pytest.mark.parametrize(
    ("allowed", "origin", "passes"),
    [
        ([], None, True),
        ([], "http://127.0.0.1:1", True),
        ([], "https://evil.example", False),
        (["https://app.example"], "https://app.example", True),
        (["https://app.example"], "http://127.0.0.1:1", False),
        (["*"], "https://evil.example", True),
    ],
)
async def test_origin_allow_list(
    serve: Callable[..., Any], allowed: list[str], origin: str | None, passes: bool
) -> None:
    async with serve(allowed_origins=allowed) as gateway:
        headers = {"Origin": origin} if origin else {}
        if passes:
            async with await ProtocolClient.connect(
                gateway.ws_url, additional_headers=headers
            ) as client:
                assert client.welcome["op"] == "welcome"
            return
        with pytest.raises(InvalidStatus) as denied:
            await ProtocolClient.connect(gateway.ws_url, additional_headers=headers)
        assert denied.value.response.status_code == 403
        assert not gateway.replica.connections


async def test_origin_is_checked_on_the_plain_text_endpoint(serve: Callable[..., Any]) -> None:
    async with serve() as gateway:
        with pytest.raises(InvalidStatus) as denied:
            await connect(gateway.plain_url, additional_headers={"Origin": "https://evil.example"})
        assert denied.value.response.status_code == 403


# Rate limits


async def test_a_client_over_the_rate_is_limited_then_closed_with_4029(
    secured: Callable[..., Any],
) -> None:
    async with (
        secured(rate=5) as gateway,
        await as_user(gateway) as flooder,
        await as_user(gateway) as neighbour,
    ):
        pings = [orjson.dumps({"op": "ping", "id": n}).decode() for n in range(40)]
        await flooder.send("\n".join(pings))
        code, frames = await flooder.closed()
        assert code == 4029
        ops = [(f["op"], f.get("code")) for f in frames]
        assert ops == [("pong", None)] * 5 + [("error", "rate_limited")] * MIN_STRIKES + [
            ("disconnect", 4029)
        ]
        assert frames[5]["id"] == 5 and frames[-1]["reason"] == "too many requests"
        assert (await neighbour.request("ping"))["op"] == "pong"


async def test_rate_limited_commands_do_not_run(secured: Callable[..., Any]) -> None:
    async with secured(rate=2) as gateway, await as_user(gateway) as client:
        batch = [{"op": "subscribe", "id": n, "channel": f"c{n}"} for n in range(4)]
        await client.send("\n".join(orjson.dumps(c).decode() for c in batch))
        replies = [await client.expect(lambda f, n=n: f.get("id") == n) for n in range(4)]
        assert [r["op"] for r in replies] == ["subscribed", "subscribed", "error", "error"]
        assert replies[2]["code"] == "rate_limited"
        hub = gateway.replica.hub
        assert [local_subscribers(hub, f"c{n}") for n in range(4)] == [1, 1, 0, 0]


# The plain-text endpoint


async def test_plain_text_needs_the_token_in_the_query(gateway: LocalGateway) -> None:
    async with connect(f"{gateway.plain_url}?channel=chat&token={connection_token()}") as ok:
        await wait_until(
            lambda: local_subscribers(gateway.replica.hub, "chat") == 1, 5, "subscription"
        )
        await ok.send("hello")
        assert await ok.recv() == "hello"
    for query in ("channel=chat", f"channel=chat&token={BAD_TOKENS['forged']()}"):
        async with connect(f"{gateway.plain_url}?{query}") as websocket:
            await websocket.wait_closed()
            assert websocket.close_code == 4001


async def test_plain_text_private_channel_is_forbidden(gateway: LocalGateway) -> None:
    url = f"{gateway.plain_url}?channel=$inbox:bob&token={connection_token('alice')}"
    async with connect(url) as websocket:
        await websocket.wait_closed()
        assert websocket.close_code == 4003


async def test_plain_text_over_the_rate_closes_with_4029(secured: Callable[..., Any]) -> None:
    async with secured(rate=3) as gateway:
        url = f"{gateway.plain_url}?channel=chat&token={connection_token()}"
        async with connect(url) as websocket:
            for index in range(10):
                await websocket.send(f"line {index}")
            await websocket.wait_closed()
            assert websocket.close_code == 4029
