"""The gateway of `bench.hook_cost`: one namespace per kind of ``on_publish`` hook, each
returning None (publish the data as sent), and ``plain`` without any."""

from __future__ import annotations

from pydantic import BaseModel

from gateway import Gateway, PublishRequest

gw = Gateway()


class Payload(BaseModel):
    n: int


@gw.on_publish("hooked")
async def passthrough(request: PublishRequest) -> None:
    return None


@gw.on_publish("typed", model=Payload)
async def validated(request: PublishRequest) -> None:
    return None


@gw.on_publish("threaded")
def in_a_thread(request: PublishRequest) -> None:
    return None
