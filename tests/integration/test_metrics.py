"""/metrics of a live replica moves as it should."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.support.client import ProtocolClient
from tests.support.inprocess import LocalGateway


async def scrape(gateway: LocalGateway) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    async with httpx.AsyncClient(base_url=gateway.http_url) as http:
        response = await http.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[sample.name, tuple(sorted(sample.labels.items()))] = sample.value
    return samples


def value(samples: dict[Any, float], name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


async def test_publish_is_counted(gateway: LocalGateway) -> None:
    before = await scrape(gateway)
    async with await ProtocolClient.connect(gateway.ws_url) as client:
        await client.subscribe("m:1")
        await client.publish("m:1", "x")
        await client.messages(1)
        during = await scrape(gateway)
        assert value(during, "gateway_connections") == 1
        assert value(during, "gateway_subscriptions") == 1
        assert value(during, "gateway_channels") == 1
    after = await scrape(gateway)
    for name, labels, increase in [
        ("gateway_messages_published_total", {}, 1),
        ("gateway_messages_delivered_total", {}, 1),
        ("gateway_commands_total", {"op": "publish", "result": "ok"}, 1),
        ("gateway_commands_total", {"op": "subscribe", "result": "ok"}, 1),
        ("gateway_broker_roundtrip_seconds_count", {"call": "publish"}, 1),
        ("gateway_publish_to_deliver_seconds_count", {}, 1),
        ("gateway_closes_total", {"code": "1000"}, 1),
    ]:
        assert value(after, name, **labels) - value(before, name, **labels) == increase, name
    assert value(after, "gateway_sent_bytes_total") > value(before, "gateway_sent_bytes_total")
    assert value(after, "gateway_received_bytes_total") > value(
        before, "gateway_received_bytes_total"
    )


async def test_errors_are_counted_by_code(gateway: LocalGateway) -> None:
    before = await scrape(gateway)
    async with await ProtocolClient.connect(gateway.ws_url) as client:
        await client.request("unsubscribe", channel="never")
        await client.send("{nope")
        await client.expect(lambda f: f["op"] == "error")
    after = await scrape(gateway)
    assert (
        value(after, "gateway_errors_total", code="not_subscribed")
        - value(before, "gateway_errors_total", code="not_subscribed")
        == 1
    )
    assert (
        value(after, "gateway_commands_total", op="invalid", result="bad_request")
        - value(before, "gateway_commands_total", op="invalid", result="bad_request")
        == 1
    )


async def test_slow_consumer_close_is_counted(serve: Callable[..., Any]) -> None:
    async with serve(max_queue=8, rate=0) as gateway:
        slow = await ProtocolClient.connect(gateway.ws_url, max_queue=1)
        async with await ProtocolClient.connect(gateway.ws_url) as publisher:
            await slow.subscribe("m:slow")
            blob = "z" * 32_000
            for index in range(300):
                await publisher.send({"op": "publish", "channel": "m:slow", "data": [index, blob]})
            await publisher.request("ping")
            code, _ = await slow.closed(timeout=15)
            assert code == 4008
        samples = await scrape(gateway)
        assert value(samples, "gateway_slow_consumers_total") == 1
        assert value(samples, "gateway_closes_total", code="4008") == 1
        assert value(samples, "gateway_queue_depth_count") >= 1
