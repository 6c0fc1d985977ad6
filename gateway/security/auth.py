"""Who a connection is: the principal its token (or the lack of one) establishes.

`TokenVerifier` checks connection and subscription JWTs with pyjwt. The accepted algorithms
are pinned to the configured keys: HS256 (or what ``jwt_algorithms`` allows of the HMAC
family) for ``jwt_secret``, RS256 for an RSA public key, ES256/ES384/ES512 for an EC key of
the matching curve. A token naming any other algorithm (``none`` included) is refused before
its signature is looked at, and each key is only ever used with its own family, so an HS256
token signed with the RSA public key as its secret (key confusion) fails.
"""

from __future__ import annotations

import logging
import time
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from gateway.settings import ConfigError, Settings
from gateway.wire.errors import ErrorCode, GatewayError

log = logging.getLogger(__name__)

MIN_SECRET_BYTES = 32
"""Shorter HS256 secrets can be brute-forced from one token; start-up warns about them."""

_HMAC = ("HS256", "HS384", "HS512")
_RSA = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512")
_EC_BY_CURVE = {"secp256r1": "ES256", "secp384r1": "ES384", "secp521r1": "ES512"}


@dataclass(frozen=True, slots=True)
class Principal:
    """The identity and grants of one connection.

    ``channels`` and ``publish`` are the glob patterns of the connection token's claims;
    None means the claim was absent (the namespace options decide).
    """

    user: str | None = None
    info: dict[str, Any] | None = None
    channels: tuple[str, ...] | None = None
    publish: tuple[str, ...] | None = None
    expires_at: float | None = None
    claims: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def authenticated(self) -> bool:
        """True when a verified token named the user."""
        return self.user is not None


ANONYMOUS = Principal()

MAX_NAME_LENGTH = 64
"""Most characters of the display name an anonymous client may choose (``?name=``)."""
_JOINERS = frozenset("\u200d")
"""Format characters a name may hold: the zero-width joiner of emoji sequences."""


def anonymous(name: str | None) -> Principal:
    """The principal of a connection without a token that chose a display name with
    ``?name=``: its presence ``info`` (and the ``from.info`` of its messages) becomes
    ``{"name": name}``. A missing or blank name gives `ANONYMOUS`.

    Raises:
        GatewayError: `bad_request` for a name over `MAX_NAME_LENGTH` characters, or with
            control or format characters (line breaks, bidirectional overrides, ...).
    """
    name = (name or "").strip()
    if not name:
        return ANONYMOUS
    if len(name) > MAX_NAME_LENGTH:
        raise GatewayError(
            ErrorCode.BAD_REQUEST, f"name must be at most {MAX_NAME_LENGTH} characters"
        )
    if any(unicodedata.category(char)[0] == "C" and char not in _JOINERS for char in name):
        raise GatewayError(
            ErrorCode.BAD_REQUEST, "name must not contain control or format characters"
        )
    return Principal(info={"name": name})


@dataclass(frozen=True, slots=True)
class SubscriptionGrant:
    """What a valid subscription token allows: ``user`` may subscribe to ``channel``."""

    user: str
    channel: str
    expires_at: float | None


class TokenError(Exception):
    """A token was refused. The message says why and never quotes the token."""

    def __init__(self, message: str, *, expired: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.expired = expired


class TokenVerifier:
    """Verifies JWTs against the configured keys; ``clock`` gives Unix time (for ``exp``).

    ``exp`` and ``nbf`` are checked with ``jwt_leeway`` seconds of tolerance, for clocks of
    the token issuer and the replica that disagree a little: a token is accepted until
    ``exp + leeway`` and from ``nbf - leeway``.
    """

    def __init__(self, settings: Settings, clock: Callable[[], float] = time.time) -> None:
        self._keys = _keys_by_algorithm(settings)
        self._audience = settings.jwt_audience
        self._issuer = settings.jwt_issuer
        self._clock = clock
        self._require_exp = settings.jwt_require_exp
        self.leeway = settings.jwt_leeway
        """Seconds of clock skew tolerated on ``exp`` and ``nbf``."""

    @property
    def enabled(self) -> bool:
        """True when a key is configured: every connection must then present a token."""
        return bool(self._keys)

    @property
    def algorithms(self) -> tuple[str, ...]:
        """The algorithms a token may be signed with."""
        return tuple(self._keys)

    def connection(self, token: str, *, require_sub: bool = True) -> Principal:
        """The principal a connection token establishes. Without ``require_sub`` a token
        whose ``sub`` is empty or absent is an anonymous user's (as Centrifugo has it).

        Raises:
            TokenError: bad signature or algorithm, expired, no ``sub``, or malformed claims.
        """
        claims = self._decode(token)
        if "channel" in claims:
            raise TokenError("a subscription token cannot open a connection")
        user = _subject(claims) if require_sub or claims.get("sub") else None
        return Principal(
            user=user,
            info=_object_claim(claims, "info"),
            channels=_patterns_claim(claims, "channels"),
            publish=_patterns_claim(claims, "publish"),
            expires_at=_expiry(claims),
            claims=claims,
        )

    def subscription(self, token: str) -> SubscriptionGrant:
        """What a subscription token grants.

        Raises:
            TokenError: bad signature or algorithm, expired, or no ``sub`` or ``channel``.
        """
        claims = self._decode(token)
        channel = claims.get("channel")
        if not isinstance(channel, str) or not channel:
            raise TokenError("a subscription token needs a channel claim")
        return SubscriptionGrant(_subject(claims), channel, _expiry(claims))

    def _decode(self, token: str) -> dict[str, Any]:
        if not self._keys:
            raise TokenError("tokens are not accepted: no key is configured")
        try:
            algorithm = jwt.get_unverified_header(token).get("alg")
        except jwt.InvalidTokenError:
            raise TokenError("malformed token") from None
        key = self._keys.get(algorithm) if isinstance(algorithm, str) else None
        if key is None or not isinstance(algorithm, str):
            raise TokenError("token algorithm not accepted")
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=[algorithm],
                audience=self._audience,
                issuer=self._issuer,
                options={  # times and subject are checked below, with the injected clock
                    "verify_exp": False,
                    "verify_nbf": False,
                    "verify_iat": False,
                    "verify_sub": False,
                    "verify_jti": False,
                },
            )
        except jwt.InvalidSignatureError:
            raise TokenError("invalid token signature") from None
        except (jwt.InvalidAudienceError, jwt.InvalidIssuerError, jwt.MissingRequiredClaimError):
            raise TokenError("token audience or issuer not accepted") from None
        except jwt.PyJWTError:
            raise TokenError("malformed token") from None
        self._check_times(claims)
        return claims

    def _check_times(self, claims: Mapping[str, Any]) -> None:
        now = self._clock()
        expires_at = _expiry(claims)
        if expires_at is None:
            if self._require_exp:
                raise TokenError("token needs an exp claim")
        elif expires_at + self.leeway <= now:
            raise TokenError("token expired", expired=True)
        not_before = _number_claim(claims, "nbf")
        if not_before is not None and not_before - self.leeway > now:
            raise TokenError("token not valid yet")


def _subject(claims: Mapping[str, Any]) -> str:
    subject = claims.get("sub")
    if not isinstance(subject, str) or not subject:
        raise TokenError("token needs a sub claim (a non-empty string)")
    return subject


def _expiry(claims: Mapping[str, Any]) -> float | None:
    return _number_claim(claims, "exp")


def _number_claim(claims: Mapping[str, Any], name: str) -> float | None:
    value = claims.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TokenError(f"claim {name} must be a number")
    return float(value)


def _patterns_claim(claims: Mapping[str, Any], name: str) -> tuple[str, ...] | None:
    value = claims.get(name)
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise TokenError(f"claim {name} must be a list of strings")
    return tuple(value)


def _object_claim(claims: Mapping[str, Any], name: str) -> dict[str, Any] | None:
    value = claims.get(name)
    if value is None:
        return None
    if not isinstance(value, dict):
        raise TokenError(f"claim {name} must be an object")
    return value


def _keys_by_algorithm(settings: Settings) -> dict[str, Any]:
    """Each accepted algorithm with the one key it may be verified with.

    Raises:
        ConfigError: the public key does not parse, or ``jwt_algorithms`` names an
            algorithm no configured key can verify.
    """
    families: dict[str, tuple[tuple[str, ...], Any]] = {}
    if settings.jwt_secret is not None:
        secret = settings.jwt_secret.get_secret_value().encode()
        if len(secret) < MIN_SECRET_BYTES:
            log.warning("auth.weak_secret bytes=%d minimum=%d", len(secret), MIN_SECRET_BYTES)
        families["hmac"] = (_HMAC, secret)
    if settings.jwt_public_key is not None:
        key = _load_public_key(settings.jwt_public_key.get_secret_value())
        families["public"] = (_public_algorithms(key), key)
    chosen = settings.jwt_algorithms
    keys: dict[str, Any] = {}
    for allowed, key in families.values():
        for algorithm in allowed if chosen else allowed[:1]:
            if not chosen or algorithm in chosen:
                keys[algorithm] = key
    unusable = [algorithm for algorithm in chosen if algorithm not in keys]
    if unusable:
        raise ConfigError(
            f"setting 'jwt_algorithms': no configured key can verify {', '.join(unusable)}"
        )
    return keys


def _load_public_key(value: str) -> Any:
    """A PEM public key given inline, or the path of a PEM file."""
    text = value.strip()
    if not text.startswith("-----BEGIN"):
        try:
            text = Path(text).read_text()
        except OSError as exc:
            raise ConfigError(
                f"setting 'jwt_public_key': neither a PEM key nor a readable file ({exc.strerror})"
            ) from None
    try:
        return load_pem_public_key(text.encode())
    except ValueError:
        raise ConfigError("setting 'jwt_public_key': not a PEM public key") from None


def _public_algorithms(key: Any) -> tuple[str, ...]:
    if isinstance(key, rsa.RSAPublicKey):
        return _RSA
    if isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name in _EC_BY_CURVE:
        return (_EC_BY_CURVE[key.curve.name],)
    raise ConfigError(
        "setting 'jwt_public_key': only RSA and EC (P-256/384/521) keys are supported"
    )
