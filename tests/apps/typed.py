"""Typed channels for ``gateway schema`` / ``gateway types`` and the TypeScript checks."""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, Field

from gateway import Gateway, PublishRequest
from gateway.settings import Settings


class Mood(StrEnum):
    HAPPY = "happy"
    GRUMPY = "grumpy"


class Author(BaseModel):
    name: str
    age: int | None = None


class ChatMessage(BaseModel):
    """A line said in a room."""

    text: str = Field(min_length=1, max_length=500, description="What was said")
    by: Author | None = None
    tags: list[str] = []
    kind: Literal["say", "me"] = "say"
    position: tuple[int, int] | None = None
    scores: dict[str, int] = {}
    mood: Mood = Mood.HAPPY


class Vote(BaseModel):
    choice: Literal["yes", "no"]
    weight: float = 1.0


class Note(BaseModel):
    body: str


gw = Gateway(Settings(node_id="typed"))


@gw.on_publish("chat", model=ChatMessage)
async def chat(request: PublishRequest) -> None:
    return None


@gw.on_publish("votes", model=Vote)
async def votes(request: PublishRequest) -> None:
    return None


@gw.on_publish(model=Note)
async def notes(request: PublishRequest) -> None:
    return None
