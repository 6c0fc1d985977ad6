"""Connection and subscription JWTs: what is accepted and every way a token is refused."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from gateway.security.auth import TokenError, TokenVerifier
from gateway.settings import ConfigError, Settings
from tests.support.tokens import (
    KEYS,
    SECRET,
    _pem_public,
    forged_signature,
    hand_signed_hs256,
    sign,
    unsigned_token,
)

NOW = 1_800_000_000.0
LEEWAY = Settings.model_fields["jwt_leeway"].default
"""Seconds of clock skew tolerated on exp and nbf by default."""


def clock() -> float:
    return NOW


@pytest.fixture
def verifier(settings_factory: Callable[..., Settings]) -> Callable[..., TokenVerifier]:
    def make(**overrides: Any) -> TokenVerifier:
        return TokenVerifier(settings_factory(**overrides), clock)

    return make


def claims(**extra: Any) -> dict[str, Any]:
    return {"sub": "alice", "exp": NOW + 60, **extra}


def refusal(verify: Callable[[str], object], token: str) -> str:
    with pytest.raises(TokenError) as caught:
        verify(token)
    assert len(token) < 8 or token not in caught.value.message
    return caught.value.message


def test_hs256_connection_token_gives_the_principal(verifier: Callable[..., TokenVerifier]):
    token = sign(
        claims(channels=["chat:*"], publish=["chat:lobby"], info={"name": "Alice"}, iat=NOW)
    )
    principal = verifier(jwt_secret=SECRET).connection(token)
    assert principal.user == "alice" and principal.authenticated
    assert principal.channels == ("chat:*",) and principal.publish == ("chat:lobby",)
    assert principal.info == {"name": "Alice"} and principal.expires_at == NOW + 60


def test_without_claims_the_grants_are_absent(verifier: Callable[..., TokenVerifier]) -> None:
    principal = verifier(jwt_secret=SECRET).connection(sign(claims()))
    assert principal.channels is None and principal.publish is None and principal.info is None


def test_rs256_and_es256_with_a_public_key(verifier: Callable[..., TokenVerifier]) -> None:
    for pair in (KEYS.rsa, KEYS.ec):
        token = sign(claims(), pair.private, pair.algorithm)
        assert verifier(jwt_public_key=pair.public_pem).connection(token).user == "alice"


def test_public_key_from_a_file(verifier: Callable[..., TokenVerifier], tmp_path: Path) -> None:
    path = tmp_path / "key.pem"
    path.write_text(KEYS.ec.public_pem)
    token = sign(claims(), KEYS.ec.private, "ES256")
    assert verifier(jwt_public_key=str(path)).connection(token).user == "alice"


def test_secret_and_public_key_together_each_verify_their_own(
    verifier: Callable[..., TokenVerifier],
) -> None:
    both = verifier(jwt_secret=SECRET, jwt_public_key=KEYS.rsa.public_pem)
    assert both.algorithms == ("HS256", "RS256")
    assert both.connection(sign(claims())).user == "alice"
    assert both.connection(sign(claims(), KEYS.rsa.private, "RS256")).user == "alice"


def test_forged_signature_is_refused(verifier: Callable[..., TokenVerifier]) -> None:
    verify = verifier(jwt_secret=SECRET).connection
    assert refusal(verify, forged_signature(sign(claims()))) == "invalid token signature"
    wrong_secret = sign(claims(), "another-secret-of-the-same-length-0123456789abcdef")
    assert refusal(verify, wrong_secret) == "invalid token signature"


def test_rs256_token_signed_by_another_key_is_refused(
    verifier: Callable[..., TokenVerifier],
) -> None:
    other = ec.generate_private_key(ec.SECP256R1())
    verify = verifier(jwt_public_key=KEYS.ec.public_pem).connection
    assert refusal(verify, sign(claims(), other, "ES256")) == "invalid token signature"
    assert _pem_public(other) != KEYS.ec.public_pem


def test_alg_none_is_refused(verifier: Callable[..., TokenVerifier]) -> None:
    for settings in ({"jwt_secret": SECRET}, {"jwt_public_key": KEYS.rsa.public_pem}):
        verify = verifier(**settings).connection
        assert refusal(verify, unsigned_token(claims())) == "token algorithm not accepted"


def test_hs256_token_against_an_rs256_key_is_refused(
    verifier: Callable[..., TokenVerifier],
) -> None:
    """Key confusion: the public key, which anyone may know, used as an HMAC secret."""
    confused = hand_signed_hs256(claims(), KEYS.rsa.public_pem.encode())
    verify = verifier(jwt_public_key=KEYS.rsa.public_pem).connection
    assert refusal(verify, confused) == "token algorithm not accepted"


def test_algorithms_are_pinned_to_the_key_type(verifier: Callable[..., TokenVerifier]) -> None:
    hs512 = sign(claims(), SECRET, "HS512")
    es256 = sign(claims(), KEYS.ec.private, "ES256")
    rs512 = sign(claims(), KEYS.rsa.private, "RS512")
    assert refusal(verifier(jwt_secret=SECRET).connection, hs512) == "token algorithm not accepted"
    rsa_only = verifier(jwt_public_key=KEYS.rsa.public_pem).connection
    assert refusal(rsa_only, es256) == "token algorithm not accepted"
    assert refusal(rsa_only, rs512) == "token algorithm not accepted"


def test_jwt_algorithms_widens_within_the_key_family(
    verifier: Callable[..., TokenVerifier],
) -> None:
    verify = verifier(jwt_public_key=KEYS.rsa.public_pem, jwt_algorithms=["RS512"]).connection
    assert verify(sign(claims(), KEYS.rsa.private, "RS512")).user == "alice"
    assert refusal(verify, sign(claims(), KEYS.rsa.private, "RS256")).endswith("not accepted")


def test_jwt_algorithms_without_a_matching_key_stops_start_up(
    verifier: Callable[..., TokenVerifier],
) -> None:
    with pytest.raises(ConfigError, match=r"jwt_algorithms.*ES256"):
        verifier(jwt_secret=SECRET, jwt_algorithms=["ES256"])


def test_unusable_public_key_stops_start_up(verifier: Callable[..., TokenVerifier]) -> None:
    with pytest.raises(ConfigError, match="not a PEM public key"):
        verifier(jwt_public_key="-----BEGIN PUBLIC KEY-----\nnope\n-----END PUBLIC KEY-----")
    with pytest.raises(ConfigError, match="neither a PEM key nor a readable file"):
        verifier(jwt_public_key="/no/such/key.pem")


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"sub": "alice", "exp": NOW - LEEWAY}, "token expired"),
        ({"sub": "alice", "exp": NOW - 3600}, "token expired"),
        ({"sub": "alice"}, "token needs an exp claim"),
        ({"sub": "alice", "exp": "tomorrow"}, "claim exp must be a number"),
        ({"exp": NOW + 60}, "token needs a sub claim (a non-empty string)"),
        ({"sub": "", "exp": NOW + 60}, "token needs a sub claim (a non-empty string)"),
        ({"sub": 42, "exp": NOW + 60}, "token needs a sub claim (a non-empty string)"),
        ({"sub": "alice", "exp": NOW + 60, "nbf": NOW + LEEWAY + 1}, "token not valid yet"),
        ({**claims(), "channels": "chat:*"}, "claim channels must be a list of strings"),
        ({**claims(), "publish": [1, 2]}, "claim publish must be a list of strings"),
        ({**claims(), "info": ["not", "an", "object"]}, "claim info must be an object"),
        ({**claims(), "channel": "$secret"}, "a subscription token cannot open a connection"),
        ({**claims(), "aud": "another-service"}, "token audience or issuer not accepted"),
    ],
)
def test_bad_connection_token_is_refused(
    verifier: Callable[..., TokenVerifier], payload: dict[str, Any], message: str
) -> None:
    assert refusal(verifier(jwt_secret=SECRET).connection, sign(payload)) == message


def test_expired_is_flagged(verifier: Callable[..., TokenVerifier]) -> None:
    with pytest.raises(TokenError) as caught:
        verifier(jwt_secret=SECRET).connection(sign({"sub": "alice", "exp": NOW - LEEWAY - 1}))
    assert caught.value.expired


@pytest.mark.parametrize("leeway", [0, LEEWAY, 30])
@pytest.mark.parametrize("kind", ["connection", "subscription"])
def test_exp_and_nbf_hold_to_the_leeway_and_not_beyond(
    verifier: Callable[..., TokenVerifier], leeway: float, kind: str
) -> None:
    """At exactly ``exp + leeway`` a token has expired; a moment before, it is still good.
    It is good from exactly ``nbf - leeway``, and not a moment before."""
    verify = getattr(verifier(jwt_secret=SECRET, jwt_leeway=leeway), kind)
    base = {"sub": "alice"} | ({"channel": "$room"} if kind == "subscription" else {})
    moment = 0.25
    assert verify(sign({**base, "exp": NOW - leeway + moment}))
    assert refusal(verify, sign({**base, "exp": NOW - leeway})) == "token expired"
    assert verify(sign({**base, "exp": NOW + 60, "nbf": NOW + leeway}))
    not_yet = sign({**base, "exp": NOW + 60, "nbf": NOW + leeway + moment})
    assert refusal(verify, not_yet) == "token not valid yet"


def test_leeway_comes_from_the_settings(settings_factory: Callable[..., Settings]) -> None:
    assert settings_factory().jwt_leeway == 5
    assert TokenVerifier(settings_factory(jwt_leeway=12.5), clock).leeway == 12.5
    with pytest.raises(ValueError, match="jwt_leeway"):
        settings_factory(jwt_leeway=-1)


def test_audience_and_issuer_when_configured(verifier: Callable[..., TokenVerifier]) -> None:
    verify = verifier(jwt_secret=SECRET, jwt_audience="gateway", jwt_issuer="https://id").connection
    assert verify(sign(claims(aud="gateway", iss="https://id"))).user == "alice"
    for wrong in (claims(aud="gateway"), claims(aud="other", iss="https://id"), claims()):
        assert refusal(verify, sign(wrong)) == "token audience or issuer not accepted"


def test_garbage_is_refused(verifier: Callable[..., TokenVerifier]) -> None:
    verify = verifier(jwt_secret=SECRET).connection
    for garbage in ("", "x", "a.b.c", "\u00e9.\u00e9.\u00e9"):
        assert refusal(verify, garbage) == "malformed token"
    assert refusal(verify, "eyJhbGciOiJIUzI1NiJ9..") == "invalid token signature"


def test_without_keys_every_token_is_refused(verifier: Callable[..., TokenVerifier]) -> None:
    off = verifier()
    assert not off.enabled
    assert refusal(off.connection, sign(claims())).startswith("tokens are not accepted")


def test_subscription_token(verifier: Callable[..., TokenVerifier]) -> None:
    verify = verifier(jwt_secret=SECRET).subscription
    grant = verify(sign({"sub": "alice", "channel": "$room", "exp": NOW + 5}))
    assert (grant.user, grant.channel, grant.expires_at) == ("alice", "$room", NOW + 5)


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"sub": "alice", "channel": "$room", "exp": NOW - LEEWAY - 1}, "token expired"),
        ({"sub": "alice", "channel": "$room"}, "token needs an exp claim"),
        ({"sub": "alice", "exp": NOW + 60}, "a subscription token needs a channel claim"),
        ({"channel": "$room", "exp": NOW + 60}, "token needs a sub claim (a non-empty string)"),
        ({"sub": "a", "channel": 7, "exp": NOW + 60}, "a subscription token needs a channel claim"),
    ],
)
def test_bad_subscription_token_is_refused(
    verifier: Callable[..., TokenVerifier], payload: dict[str, Any], message: str
) -> None:
    assert refusal(verifier(jwt_secret=SECRET).subscription, sign(payload)) == message


def test_subscription_token_with_alg_none_is_refused(
    verifier: Callable[..., TokenVerifier],
) -> None:
    token = unsigned_token({"sub": "alice", "channel": "$room", "exp": NOW + 60})
    assert refusal(verifier(jwt_secret=SECRET).subscription, token).endswith("not accepted")


def test_secret_never_shows_in_the_settings_repr(settings_factory: Callable[..., Settings]):
    settings = settings_factory(jwt_secret=SECRET, api_key="api-key-value-0123456789")
    assert SECRET not in repr(settings) and SECRET not in str(settings.model_dump())
    assert "api-key-value-0123456789" not in repr(settings)
