"""The Origin allow-list (gateway.origins)."""

from __future__ import annotations

import pytest

from gateway.origins import OriginPolicy, normalize_origin
from gateway.settings import ConfigError


@pytest.mark.parametrize(
    ("origin", "normalized"),
    [
        ("https://App.Example.com", "https://app.example.com"),
        ("https://app.example.com:443", "https://app.example.com"),
        ("http://app.example.com:80/", "http://app.example.com"),
        ("http://localhost:8000", "http://localhost:8000"),
        ("http://[::1]:8000", "http://[::1]:8000"),
        ("null", None),
        ("app.example.com", None),
        ("http://host:99999", None),
    ],
)
def test_normalize_origin(origin: str, normalized: str | None) -> None:
    assert normalize_origin(origin) == normalized


def test_requests_without_origin_pass() -> None:
    assert OriginPolicy([]).allows(None, "gw.example.com")
    assert OriginPolicy(["https://app.example.com"]).allows(None, "gw.example.com")


def test_default_is_the_host_of_the_request() -> None:
    policy = OriginPolicy([])
    assert policy.allows("http://localhost:8000", "localhost:8000")
    assert policy.allows("https://gw.example.com", "gw.example.com:8443")
    assert policy.allows("http://[::1]:8000", "[::1]:8000")
    assert not policy.allows("https://evil.example", "gw.example.com")
    assert not policy.allows("https://gw.example.com.evil.example", "gw.example.com")
    assert not policy.allows("null", "gw.example.com")
    assert not policy.allows("https://gw.example.com", None)
    assert not policy.allows("http://[bad", "gw.example.com")


def test_listed_origins_only() -> None:
    policy = OriginPolicy(["https://app.example.com", "http://localhost:3000"])
    assert policy.allows("https://app.example.com", "gw.example.com")
    assert policy.allows("https://APP.example.com:443", "gw.example.com")
    assert policy.allows("http://localhost:3000", "gw.example.com")
    assert not policy.allows("http://app.example.com", "gw.example.com")
    assert not policy.allows("http://localhost:3001", "gw.example.com")
    assert not policy.allows("https://gw.example.com", "gw.example.com")


def test_star_allows_every_origin() -> None:
    assert OriginPolicy(["*"]).allows("https://anywhere.example", "gw.example.com")
    assert OriginPolicy(["*"]).allows("null", "gw.example.com")


def test_an_entry_that_is_not_an_origin_stops_start_up() -> None:
    with pytest.raises(ConfigError, match=r"'app\.example\.com' is not an origin"):
        OriginPolicy(["app.example.com"])
