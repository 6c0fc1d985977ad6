"""The Origin allow-list (gateway.security.origins)."""

from __future__ import annotations

import pytest

from gateway.security.origins import OriginPolicy, is_loopback, normalize_origin
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


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("localhost", True),
        ("LocalHost", True),
        ("127.0.0.1", True),
        ("127.1.2.3", True),
        ("::1", True),
        ("[::1]", True),
        ("0:0:0:0:0:0:0:1", True),
        ("localhost.example.com", False),
        ("10.0.0.1", False),
        ("::2", False),
        ("gw.example.com", False),
    ],
)
def test_loopback_names(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


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


@pytest.mark.parametrize(
    ("origin", "host"),
    [
        ("http://localhost:3000", "127.0.0.1:8000"),
        ("http://localhost:8077", "127.0.0.1:8000"),
        ("http://127.0.0.1:5173", "localhost:8000"),
        ("http://[::1]:3000", "127.0.0.1:8000"),
        ("http://localhost:3000", "[::1]:8000"),
        ("https://LOCALHOST", "127.0.0.1"),
    ],
)
def test_loopback_names_count_as_one_host_by_default(origin: str, host: str) -> None:
    assert OriginPolicy([]).allows(origin, host)


@pytest.mark.parametrize(
    ("origin", "host"),
    [
        ("http://localhost:3000", "gw.example.com"),
        ("http://gw.example.com", "127.0.0.1:8000"),
        ("http://localhost.evil.example", "127.0.0.1:8000"),
        ("http://10.0.0.5:3000", "127.0.0.1:8000"),
    ],
)
def test_loopback_and_other_hosts_stay_apart(origin: str, host: str) -> None:
    assert not OriginPolicy([]).allows(origin, host)


def test_listed_origins_only() -> None:
    policy = OriginPolicy(["https://app.example.com", "http://localhost:3000"])
    assert policy.allows("https://app.example.com", "gw.example.com")
    assert policy.allows("https://APP.example.com:443", "gw.example.com")
    assert policy.allows("http://localhost:3000", "gw.example.com")
    assert not policy.allows("http://app.example.com", "gw.example.com")
    assert not policy.allows("http://localhost:3001", "gw.example.com")
    assert not policy.allows("https://gw.example.com:8443", "gw.example.com")
    assert not policy.allows("http://localhost:3001", "127.0.0.1:8000")
    assert not policy.allows("null", "gw.example.com")


def test_the_gateways_own_origin_passes_whatever_the_list() -> None:
    policy = OriginPolicy(["null"])
    assert policy.allows("http://127.0.0.1:8000", "127.0.0.1:8000")
    assert policy.allows("https://gw.example.com", "gw.example.com")
    assert policy.allows("https://gw.example.com:443", "gw.example.com")
    assert policy.allows("http://[::1]:8000", "[::1]:8000")
    assert not policy.allows("http://127.0.0.1:8001", "127.0.0.1:8000")
    assert not policy.allows("http://localhost:8000", "127.0.0.1:8000")
    assert not policy.allows("https://gw.example.com", "gw.example.com:8443")
    assert not policy.allows("https://gw.example.com", None)


def test_null_admits_pages_opened_from_files() -> None:
    for entry in ("null", "NULL", " null "):
        policy = OriginPolicy([entry])
        assert policy.allows("null", "127.0.0.1:8000")
        assert not policy.allows("http://elsewhere.example", "127.0.0.1:8000")
    assert OriginPolicy(["https://app.example.com", "null"]).allows("null", "gw.example.com")


def test_star_allows_every_origin() -> None:
    assert OriginPolicy(["*"]).allows("https://anywhere.example", "gw.example.com")
    assert OriginPolicy(["*"]).allows("null", "gw.example.com")


def test_an_entry_that_is_not_an_origin_stops_start_up() -> None:
    with pytest.raises(ConfigError, match=r"'app\.example\.com' is not an origin"):
        OriginPolicy(["app.example.com"])
    with pytest.raises(ConfigError, match=r"null \(pages opened from file://\) or \*"):
        OriginPolicy(["nul"])


def test_a_refusal_says_which_setting_lets_the_page_in() -> None:
    assert OriginPolicy([]).refusal("null", "127.0.0.1:8000") == (
        "origin 'null' not allowed: pages opened from file:// send Origin: null; to let them "
        "connect, add null to GATEWAY_ALLOWED_ORIGINS (allowed_origins in the config file)"
    )
    assert OriginPolicy([]).refusal("https://App.example.com", "gw.example.com") == (
        "origin 'https://App.example.com' not allowed: without GATEWAY_ALLOWED_ORIGINS only "
        "pages from this gateway's own host 'gw.example.com' may connect; to let this page "
        "connect, set GATEWAY_ALLOWED_ORIGINS=https://app.example.com (allowed_origins in the "
        "config file)"
    )
    listed = OriginPolicy(["https://app.example.com"])
    assert listed.refusal("http://localhost:3000", "gw.example.com") == (
        "origin 'http://localhost:3000' not allowed: it is not in GATEWAY_ALLOWED_ORIGINS; to "
        "let this page connect, add http://localhost:3000 to it (allowed_origins in the config "
        "file)"
    )
    assert listed.refusal("https://app.example.com", "gw.example.com") is None


def test_a_refusal_quotes_a_hostile_origin_escaped_and_bounded() -> None:
    refusal = OriginPolicy([]).refusal("http://x\r\nforged: line" + "a" * 5000, "gw")
    assert refusal is not None
    assert "\r" not in refusal and "\n" not in refusal
    assert len(refusal) < 400
    refusal = OriginPolicy([]).refusal("nonsense", "gw")
    assert refusal is not None and "not scheme://host[:port]" in refusal
    refusal = OriginPolicy([]).refusal("https://gw.example.com", None)
    assert refusal is not None and "(the request has no Host header)" in refusal
