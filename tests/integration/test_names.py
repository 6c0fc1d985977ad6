"""Display names: ``?name=`` on an anonymous handshake becomes its presence info and the
``from.info`` of its messages, live and in history."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from gateway.security.auth import MAX_NAME_LENGTH
from gateway.settings import NamespaceOptions
from tests.support.client import ProtocolClient
from tests.support.inprocess import LocalGateway
from tests.support.tokens import SECRET, connection_token


def named(gateway: LocalGateway, name: str) -> str:
    return f"{gateway.ws_url}?name={quote(name)}"


async def test_a_chosen_name_shows_in_presence_join_messages_and_history(
    gateway: LocalGateway,
) -> None:
    room = "demo:names"
    async with (
        await ProtocolClient.connect(named(gateway, "Zoë 🦊")) as zoe,
        await ProtocolClient.connect(named(gateway, "  bob  ")) as bob,
    ):
        await zoe.subscribe(room)
        await bob.subscribe(room)
        joined = await zoe.expect(lambda f: f["op"] == "join" and f["client"] == bob.client_id)
        assert joined["info"] == {"name": "bob"}
        presence = await zoe.request("presence", channel=room)
        assert presence["clients"] == {
            zoe.client_id: {"user": None, "info": {"name": "Zoë 🦊"}},
            bob.client_id: {"user": None, "info": {"name": "bob"}},
        }
        await zoe.publish(room, "hello")
        [message] = await bob.messages(1, room)
        assert message["data"] == "hello"
        assert message["from"] == {
            "client": zoe.client_id,
            "user": None,
            "info": {"name": "Zoë 🦊"},
        }
        history = await bob.request("history", channel=room)
        assert [m["from"]["info"] for m in history["messages"]] == [{"name": "Zoë 🦊"}]


async def test_without_a_name_from_keeps_its_v1_shape(gateway: LocalGateway) -> None:
    async with (
        await ProtocolClient.connect(f"{gateway.ws_url}?name=%20") as blank,
        await ProtocolClient.connect(gateway.ws_url) as reader,
    ):
        await reader.subscribe("demo:plain-from")
        await blank.publish("demo:plain-from", {"text": "hi"})
        [message] = await reader.messages(1)
        assert message["from"] == {"client": blank.client_id, "user": None}
        presence = await reader.request("presence", channel="demo:plain-from")
        assert presence["clients"] == {reader.client_id: {"user": None, "info": None}}


async def test_a_plain_text_client_may_choose_a_name_too(gateway: LocalGateway) -> None:
    async with (
        await ProtocolClient.connect(gateway.ws_url) as reader,
        connect(f"{gateway.plain_url}?channel=chat&name=seed") as seed,
    ):
        await reader.subscribe("chat")
        await seed.send("hello from the seed page")
        [message] = await reader.messages(1)
        assert message["data"] == "hello from the seed page"
        assert message["from"]["info"] == {"name": "seed"}


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("n" * (MAX_NAME_LENGTH + 1), f"name must be at most {MAX_NAME_LENGTH} characters"),
        ("eve\nadmin", "name must not contain control or format characters"),
        ("\u202eevil", "name must not contain control or format characters"),
        ("nul\x00", "name must not contain control or format characters"),
    ],
)
async def test_an_unusable_name_is_refused_at_the_handshake(
    gateway: LocalGateway, name: str, reason: str
) -> None:
    for url in (named(gateway, name), f"{gateway.plain_url}?name={quote(name)}"):
        with pytest.raises(InvalidStatus) as denied:
            await connect(url)
        assert denied.value.response.status_code == 400
        assert (denied.value.response.body or b"").decode() == reason + "\n"
    assert not gateway.replica.connections


async def test_names_up_to_the_limit_and_emoji_sequences_pass(gateway: LocalGateway) -> None:
    for name in ("n" * MAX_NAME_LENGTH, "👩\u200d💻 dev"):
        async with await ProtocolClient.connect(named(gateway, name)) as client:
            await client.subscribe("demo:limit")
            presence = await client.request("presence", channel="demo:limit")
            assert presence["clients"][client.client_id]["info"] == {"name": name}


async def test_with_auth_on_the_name_is_ignored_and_the_tokens_info_shows(
    serve: Callable[..., Any],
) -> None:
    async with serve(jwt_secret=SECRET) as gateway:
        token = connection_token("alice", info={"name": "Alice A."})
        url = f"{gateway.ws_url}?token={token}&name=Mallory"
        async with await ProtocolClient.connect(url) as alice:
            await alice.subscribe("demo:auth-names")
            presence = await alice.request("presence", channel="demo:auth-names")
            assert presence["clients"][alice.client_id] == {
                "user": "alice",
                "info": {"name": "Alice A."},
            }
            await alice.publish("demo:auth-names", "hi")
            [message] = await alice.messages(1)
            assert message["from"] == {
                "client": alice.client_id,
                "user": "alice",
                "info": {"name": "Alice A."},
            }
        async with await ProtocolClient.connect(
            f"{gateway.ws_url}?name=Mallory", welcome=False
        ) as anonymous:
            await anonymous.send({"op": "connect", "id": 1, "token": connection_token("bob")})
            anonymous.welcome = await anonymous.expect(lambda f: f["op"] == "welcome")
            await anonymous.subscribe("demo:auth-names")
            presence = await anonymous.request("presence", channel="demo:auth-names")
            assert presence["clients"][anonymous.client_id] == {"user": "bob", "info": None}


async def test_the_demo_namespace_has_presence_by_default_and_others_do_not(
    serve: Callable[..., Any],
) -> None:
    async with serve() as gateway, await ProtocolClient.connect(gateway.ws_url) as client:
        await client.subscribe("demo:default-presence")
        await client.expect(lambda f: f["op"] == "join")
        assert (await client.request("presence", channel="demo:default-presence"))["clients"]
        await client.subscribe("chat")
        off = await client.request("presence", channel="chat")
        assert off["code"] == "bad_request"
        for channel in ("chat:room", "other:room"):
            await client.subscribe(channel)
            assert (await client.request("presence", channel=channel))["code"] == "bad_request"
    configured = {"news": NamespaceOptions(publish=False)}
    async with serve(namespaces=configured) as gateway:
        async with await ProtocolClient.connect(gateway.ws_url) as client:
            await client.subscribe("demo:replaced")
            off = await client.request("presence", channel="demo:replaced")
            assert off["code"] == "bad_request"
