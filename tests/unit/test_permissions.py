"""Who may subscribe and publish where (gateway.security.permissions): pure decisions."""

from __future__ import annotations

import pytest

from gateway.security.auth import ANONYMOUS, Principal, SubscriptionGrant
from gateway.security.permissions import (
    matches_any,
    publish_refusal,
    read_refusal,
    subscribe_refusal,
)
from gateway.settings import NamespaceOptions

OPEN = NamespaceOptions()
MEMBERS = NamespaceOptions(subscribe="authenticated")
PRIVATE = NamespaceOptions(subscribe="token")
READ_ONLY = NamespaceOptions(publish=False)
ALICE = Principal(user="alice")


def may_subscribe(
    principal: Principal,
    channel: str,
    options: NamespaceOptions = OPEN,
    grant: SubscriptionGrant | None = None,
) -> bool:
    return subscribe_refusal(principal, channel, options, grant) is None


def may_publish(
    principal: Principal, channel: str, options: NamespaceOptions = OPEN, subscribed: bool = False
) -> bool:
    return publish_refusal(principal, channel, options, subscribed) is None


@pytest.mark.parametrize(
    ("channel", "patterns", "expected"),
    [
        ("chat:lobby", ["chat:*"], True),
        ("chat:a/b", ["chat:*"], True),
        ("chatter", ["chat:*"], False),
        ("news", ["chat:*", "news"], True),
        ("$user:alice", ["$user:alice"], True),
        ("$user:alicia", ["$user:alice"], False),
        ("room7", ["room?"], True),
        ("room77", ["room?"], False),
        ("room7", ["room[0-5]"], False),
        ("room7", ["room[!0-5]"], True),
        ("Chat:lobby", ["chat:*"], False),
        ("anything", ["*"], True),
        ("anything", [], False),
    ],
)
def test_glob_patterns(channel: str, patterns: list[str], expected: bool) -> None:
    assert matches_any(channel, patterns) is expected


def test_open_namespace_lets_anyone_subscribe() -> None:
    assert may_subscribe(ANONYMOUS, "chat:lobby") and may_subscribe(ALICE, "chat:lobby")


def test_authenticated_namespace_refuses_anonymous() -> None:
    assert not may_subscribe(ANONYMOUS, "members:x", MEMBERS)
    assert may_subscribe(ALICE, "members:x", MEMBERS)


def test_private_channels_need_a_grant() -> None:
    assert subscribe_refusal(ALICE, "$secret", OPEN) == (
        "'$secret' is private: subscribing needs a subscription token"
    )
    assert not may_subscribe(ALICE, "vault:1", PRIVATE)
    assert may_subscribe(ALICE, "$secret", OPEN, SubscriptionGrant("alice", "$secret", None))
    assert may_subscribe(ALICE, "vault:1", PRIVATE, SubscriptionGrant("alice", "vault:1", None))


def test_grant_for_another_channel_or_user_is_refused() -> None:
    other_channel = SubscriptionGrant("alice", "$other", None)
    other_user = SubscriptionGrant("bob", "$secret", None)
    assert subscribe_refusal(ALICE, "$secret", OPEN, other_channel) == (
        "the subscription token is for another channel"
    )
    assert subscribe_refusal(ALICE, "$secret", OPEN, other_user) == (
        "the subscription token is for another user"
    )
    assert not may_subscribe(ANONYMOUS, "open", OPEN, SubscriptionGrant("alice", "open", None))


def test_channels_claim_allows_only_what_it_matches() -> None:
    limited = Principal(user="alice", channels=("chat:*", "$user:alice"))
    assert may_subscribe(limited, "chat:lobby")
    assert may_subscribe(limited, "$user:alice")
    assert not may_subscribe(limited, "$user:bob")
    assert not may_subscribe(limited, "news")
    assert may_subscribe(limited, "chat:x", PRIVATE)


def test_empty_channels_claim_allows_nothing_without_a_grant() -> None:
    nothing = Principal(user="alice", channels=())
    assert not may_subscribe(nothing, "chat:lobby")
    assert may_subscribe(nothing, "news", OPEN, SubscriptionGrant("alice", "news", None))


def test_publish_follows_the_namespace_without_a_claim() -> None:
    assert may_publish(ANONYMOUS, "chat:lobby")
    assert subscribe_refusal(ALICE, "news", READ_ONLY) is None
    assert publish_refusal(ALICE, "news", READ_ONLY, True) == "clients may not publish to 'news'"


def test_publish_claim_replaces_the_namespace_option() -> None:
    editor = Principal(user="ed", publish=("news",))
    assert may_publish(editor, "news", READ_ONLY)
    assert publish_refusal(editor, "chat:lobby", OPEN, True) == (
        "the token's publish claim does not allow 'chat:lobby'"
    )


def test_nobody_writes_into_a_private_channel_it_cannot_read() -> None:
    assert not may_publish(ALICE, "$inbox:bob")
    assert not may_publish(ALICE, "vault:1", PRIVATE)
    assert not may_publish(ANONYMOUS, "members:x", MEMBERS)
    assert may_publish(ALICE, "$inbox:bob", OPEN, subscribed=True)
    assert may_publish(Principal(user="alice", channels=("$inbox:*",)), "$inbox:bob")


def test_reading_history_or_presence_follows_subscribing() -> None:
    assert read_refusal(ANONYMOUS, "chat:lobby", OPEN, False) is None
    assert read_refusal(ANONYMOUS, "members:x", MEMBERS, False) is not None
    assert read_refusal(ALICE, "$inbox:bob", OPEN, False) == (
        "reading '$inbox:bob' needs a subscription to it"
    )
    assert read_refusal(ALICE, "$inbox:alice", OPEN, True) is None
    assert read_refusal(Principal(user="a", channels=("chat:*",)), "news", OPEN, False) is not None
