"""Who a connection is: the principal its token (or the lack of one) establishes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


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
