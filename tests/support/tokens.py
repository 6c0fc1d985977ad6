"""Real JWTs for tests: an HS256 secret and RS256 / ES256 key pairs made on the spot."""

from __future__ import annotations

import base64
import time
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import jwt
import orjson
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

SECRET = "test-secret-long-enough-even-for-hs512-0123456789abcdef0123456789"
"""The HMAC secret of tests: 64 bytes, so pyjwt has no reason to warn even for HS512."""


def _pem_public(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


@dataclass
class KeyPair:
    """A private key for signing and its public key as PEM text for the gateway."""

    private: Any
    public_pem: str
    algorithm: str


class Keys:
    """Key material made once per test session (RSA generation takes a moment)."""

    secret = SECRET

    @cached_property
    def rsa(self) -> KeyPair:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        return KeyPair(key, _pem_public(key), "RS256")

    @cached_property
    def ec(self) -> KeyPair:
        key = ec.generate_private_key(ec.SECP256R1())
        return KeyPair(key, _pem_public(key), "ES256")


KEYS = Keys()


def sign(claims: dict[str, Any], key: Any = SECRET, algorithm: str = "HS256") -> str:
    """A JWT carrying exactly ``claims``."""
    return jwt.encode(claims, key, algorithm=algorithm)


def connection_token(
    sub: str = "alice",
    *,
    ttl: float = 300,
    key: Any = SECRET,
    algorithm: str = "HS256",
    **claims: Any,
) -> str:
    """A connection token for ``sub`` expiring ``ttl`` seconds from now."""
    return sign({"sub": sub, "exp": int(time.time() + ttl), **claims}, key, algorithm)


def subscription_token(
    sub: str, channel: str, *, ttl: float = 300, key: Any = SECRET, algorithm: str = "HS256"
) -> str:
    """A subscription token letting ``sub`` subscribe to ``channel``."""
    return sign({"sub": sub, "channel": channel, "exp": int(time.time() + ttl)}, key, algorithm)


def unsigned_token(claims: dict[str, Any]) -> str:
    """A token with ``alg: none`` and no signature, as an attacker would forge it."""

    def part(value: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(orjson.dumps(value)).rstrip(b"=").decode()

    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(claims)}."


def forged_signature(token: str) -> str:
    """The token with its payload changed and the original signature kept."""
    header, payload, signature = token.split(".")
    claims = orjson.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["sub"] = "mallory"
    forged = base64.urlsafe_b64encode(orjson.dumps(claims)).rstrip(b"=").decode()
    return f"{header}.{forged}.{signature}"


def hand_signed_hs256(claims: dict[str, Any], secret: bytes) -> str:
    """An HS256 token signed by hand, so any bytes (a public key's PEM) can be the secret.

    pyjwt refuses to sign with a PEM key as an HMAC secret; an attacker does not.
    """
    import hashlib
    import hmac

    def part(value: bytes) -> str:
        return base64.urlsafe_b64encode(value).rstrip(b"=").decode()

    header = orjson.dumps({"alg": "HS256", "typ": "JWT"})
    signing_input = f"{part(header)}.{part(orjson.dumps(claims))}"
    signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{part(signature)}"
