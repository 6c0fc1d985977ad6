"""The asyncio client (gateway_client) against a gateway served in this process."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from gateway.settings import Settings
from gateway_client import GatewayClient, GatewayClientError, Message
from tests.support.hub import subscribers as local_subscribers
from tests.support.inprocess import LocalGateway, serve_in_process
from tests.support.net import wait_until


def fast(url: str | list[str], **options: object) -> GatewayClient:
    return GatewayClient(url, min_delay=0.02, max_delay=0.2, request_timeout=5, **options)  # type: ignore[arg-type]


async def next_message(iterator: object) -> Message:
    async with asyncio.timeout(5):
        return await anext(iterator)  # type: ignore[call-overload, no-any-return]


async def test_publish_reaches_a_subscriber_with_its_sender(local_gateway: LocalGateway) -> None:
    async with fast(local_gateway.ws_url) as alice, fast(local_gateway.ws_url) as bob:
        subscription = alice.subscribe("py:room")
        detail = await subscription.subscribed()
        assert detail["channel"] == "py:room" and detail["resubscribed"] is False
        reply = await bob.publish("py:room", {"text": "hi"})
        assert reply["op"] == "published" and reply["channel"] == "py:room"
        message = await next_message(subscription)
        assert message.data == {"text": "hi"}
        assert message.client == (await bob.connected())["client"]
        assert message.frame["op"] == "message"


async def test_commands_before_the_connection_are_queued_in_order(
    local_gateway: LocalGateway,
) -> None:
    client = fast(local_gateway.ws_url)
    subscription = client.subscribe("py:queued")
    publishing = [asyncio.ensure_future(client.publish("py:queued", n)) for n in range(3)]
    client.start()
    try:
        await asyncio.gather(*publishing)
        received = [(await next_message(subscription)).data for _ in range(3)]
        assert received == [0, 1, 2]
    finally:
        await client.close()


async def test_refused_publish_raises_with_the_error_code(local_gateway: LocalGateway) -> None:
    async with fast(local_gateway.ws_url) as client:
        with pytest.raises(GatewayClientError) as refused:
            await client.publish("bad channel", 1)
        assert refused.value.code == "bad_request"
        with pytest.raises(GatewayClientError) as unknown:
            await client.request("warp")
        assert unknown.value.code == "unknown_op"
        assert client.state == "connected"


async def test_refused_subscription_raises_and_ends_its_iteration(
    local_gateway: LocalGateway,
) -> None:
    async with fast(local_gateway.ws_url) as client:
        subscription = client.subscribe("bad channel")
        with pytest.raises(GatewayClientError) as refused:
            await subscription.subscribed()
        assert refused.value.code == "bad_request"
        assert subscription.state == "failed" and "bad channel" not in client.subscriptions
        with pytest.raises(GatewayClientError):
            await next_message(subscription)


async def test_subscribing_twice_to_a_channel_is_refused(local_gateway: LocalGateway) -> None:
    async with fast(local_gateway.ws_url) as client:
        client.subscribe("py:twice")
        with pytest.raises(ValueError, match="already subscribed"):
            client.subscribe("py:twice")


async def test_messages_of_every_subscription_in_one_iterator(local_gateway: LocalGateway) -> None:
    async with fast(local_gateway.ws_url) as client:
        first, second = client.subscribe("py:a"), client.subscribe("py:b")
        stream = client.messages()
        receiving = asyncio.ensure_future(next_message(stream))
        await asyncio.gather(first.subscribed(), second.subscribed())
        await client.publish("py:b", "to b")
        assert (await receiving).channel == "py:b"
        await client.publish("py:a", "to a")
        assert (await next_message(stream)).channel == "py:a"


async def test_unsubscribe_ends_iteration_and_stops_delivery(local_gateway: LocalGateway) -> None:
    async with fast(local_gateway.ws_url) as client:
        async with client.subscribe("py:leave") as subscription:
            pass
        assert subscription.state == "unsubscribed"
        with pytest.raises(StopAsyncIteration):
            await next_message(subscription)
        await wait_until(
            lambda: local_subscribers(local_gateway.replica.hub, "py:leave") == 0, 5, "left"
        )


async def test_close_fails_waiting_commands_and_ends_iteration(local_gateway: LocalGateway) -> None:
    client = fast(local_gateway.ws_url)
    subscription = client.subscribe("py:closing")
    waiting = asyncio.ensure_future(client.publish("py:closing", 1))
    await client.close()
    with pytest.raises(GatewayClientError) as closed:
        await waiting
    assert closed.value.code == "closed"
    with pytest.raises(StopAsyncIteration):
        await next_message(subscription)
    with pytest.raises(GatewayClientError):
        await client.publish("py:closing", 2)


async def test_oversized_frame_closes_with_1009_and_the_client_stops(
    settings_factory: Callable[..., Settings],
) -> None:
    async with serve_in_process(settings_factory(max_message_bytes=1024)) as gateway:
        client = fast(gateway.ws_url)
        events: list[dict[str, object]] = []
        client.on("disconnected", events.append)
        async with client:
            await client.connected()
            with pytest.raises(GatewayClientError) as failed:
                await client.publish("py:big", "x" * 4000)
            assert failed.value.code in ("disconnected", "closed")
            await wait_until(lambda: bool(events), 5, "disconnected event")
            assert events[0]["code"] == 1009 and events[0]["reconnect"] is False
            with pytest.raises(GatewayClientError) as after:
                await client.publish("py:big", 1)
            assert after.value.code == "closed"


async def test_unreachable_gateway_fails_after_the_allowed_attempts() -> None:
    async with GatewayClient("ws://127.0.0.1:9/ws", min_delay=0.01, max_attempts=2) as client:
        with pytest.raises(GatewayClientError) as failed:
            await client.publish("py:x", 1)
        assert failed.value.code == "unreachable"


@pytest.mark.parametrize("url", ["http://127.0.0.1:8000/ws", "ws:///ws", "127.0.0.1:8000"])
def test_a_url_that_is_not_a_websocket_url_is_refused_at_once(url: str) -> None:
    with pytest.raises(ValueError, match=r"not a WebSocket URL: expected ws://HOST\[:PORT\]/ws"):
        GatewayClient(url)


@pytest.mark.parametrize(("path", "status"), [("/", 403), ("/nope", 403), ("/websocket", None)])
async def test_a_url_that_is_no_protocol_endpoint_stops_the_client_refused(
    local_gateway: LocalGateway, path: str, status: int | None
) -> None:
    url = local_gateway.ws_url.removesuffix("/ws") + path
    attempts: list[object] = []
    async with fast(url) as client:
        client.on("connecting", attempts.append)
        with pytest.raises(GatewayClientError) as refused:
            await client.publish("py:x", 1)
        assert refused.value.code == "refused" and refused.value.status == status
        assert url in refused.value.message
        with pytest.raises(GatewayClientError):
            await client.connected()
    assert len(attempts) == 1, "a refused handshake is not retried"


async def test_a_display_name_shows_in_presence_and_on_messages(
    local_gateway: LocalGateway,
) -> None:
    url = f"{local_gateway.ws_url}?x="
    async with fast(url, name="Zoë") as zoe, fast(local_gateway.ws_url) as reader:
        subscription = reader.subscribe("demo:py-names")
        await subscription.subscribed()
        async with zoe.subscribe("demo:py-names") as own:
            await own.subscribed()
            await zoe.publish("demo:py-names", "hi")
            message = await next_message(subscription)
            assert message.data == "hi" and message.info == {"name": "Zoë"}
            presence = await reader.presence("demo:py-names")
            zoe_id = (await zoe.connected())["client"]
            assert presence["clients"][zoe_id] == {"user": None, "info": {"name": "Zoë"}}


async def test_a_refused_handshake_stops_with_the_servers_reason(
    local_gateway: LocalGateway,
) -> None:
    async with fast(local_gateway.ws_url, name="n" * 65) as client:
        with pytest.raises(GatewayClientError) as failed:
            await client.connected()
        assert failed.value.code == "refused" and failed.value.status == 400
        assert "HTTP 400: name must be at most 64 characters" in str(failed.value)
        assert client.last_error is not None
        assert client.last_error.endswith(
            "refused the WebSocket handshake with HTTP 400: name must be at most 64 characters"
        )


async def test_history_pages_follow_more_until_every_message_is_read(
    settings_factory: Callable[..., Settings],
) -> None:
    settings = settings_factory(history_reply_bytes=2000, rate=0)
    async with serve_in_process(settings) as gateway, fast(gateway.ws_url) as client:
        for n in range(10):
            await client.publish("py:paged", [n, "x" * 600])
        first = await client.history("py:paged")
        assert first["more"] is True and 1 <= len(first["messages"]) < 10
        pages = [page async for page in client.history_pages("py:paged")]
        assert [page["more"] for page in pages] == [True] * (len(pages) - 1) + [False]
        assert [m["data"][0] for page in pages for m in page["messages"]] == list(range(10))
        latest = [page async for page in client.history_pages("py:paged", limit=6)]
        assert [m["data"][0] for page in latest for m in page["messages"]] == list(range(4, 10))
