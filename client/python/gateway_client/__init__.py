"""An asyncio client of the pub/sub gateway (protocol v1), with the browser client's semantics.

async with GatewayClient("ws://127.0.0.1:8000/ws") as client:
    async with client.subscribe("chat:lobby") as subscription:
        await client.publish("chat:lobby", {"text": "hi"})
        async for message in subscription:
            print(message.data)
"""

from __future__ import annotations

from gateway_client.client import GatewayClient, Message, Subscription, check_url
from gateway_client.errors import ClientErrorCode, GatewayClientError
from gateway_client.stream import Position

__all__ = [
    "ClientErrorCode",
    "GatewayClient",
    "GatewayClientError",
    "Message",
    "Position",
    "Subscription",
    "check_url",
]
