from __future__ import annotations

import pytest

from gateway.wire.channels import is_private, is_valid_channel, namespace_of


@pytest.mark.parametrize("name", ["a", "chat:room1", "A-Z_0.9@x/y=z,w", "$private:x", "x" * 255])
def test_valid_names(name: str) -> None:
    assert is_valid_channel(name)


@pytest.mark.parametrize("name", ["", "x" * 256, "sp ace", "new\nline", "é", "a#b", 3])
def test_invalid_names(name: object) -> None:
    assert not is_valid_channel(name)


@pytest.mark.parametrize(
    ("channel", "namespace"),
    [
        ("chat:room1", "chat"),
        ("chat:a:b", "chat"),
        ("lobby", "default"),
        ("$chat:alice", "chat"),
        ("$inbox", "default"),
        (":x", "default"),
    ],
)
def test_namespace_is_the_part_before_the_first_colon(channel: str, namespace: str) -> None:
    assert namespace_of(channel) == namespace


def test_dollar_marks_private_channels() -> None:
    assert is_private("$inbox:bob") and not is_private("inbox:$bob")
