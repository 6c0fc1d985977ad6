"""All configuration in one place: ``GATEWAY_*`` environment variables and an optional TOML file.

Precedence, highest first: explicit overrides (CLI flags), environment, TOML file, defaults.
This is the only module that reads the environment.
"""

from __future__ import annotations

import difflib
import ipaddress
import logging
import os
import socket
import tomllib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, get_args, get_origin

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
)
from pydantic_settings import (
    BaseSettings,
    InitSettingsSource,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from gateway.redaction import redact_url
from gateway.wire.channels import DEFAULT_NAMESPACE, namespace_of

log = logging.getLogger(__name__)

ENV_PREFIX = "GATEWAY_"
CLIENT_VARIABLES = frozenset({"GATEWAY_URL"})
"""``GATEWAY_*`` variables that are no server setting: the default ``--url`` of
``gateway sub`` and ``gateway pub``."""


class ConfigError(Exception):
    """Settings could not be loaded; the message names the offending key."""


class NamespaceOptions(BaseModel):
    """Options of one channel namespace (``[namespaces.NAME]`` in the TOML file)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    history_size: int = Field(default=100, ge=0)
    history_ttl: float = Field(default=300, ge=0)
    presence: bool = False
    join_leave: bool = False
    publish: bool = True
    subscribe: Literal["anyone", "authenticated", "token"] = "anyone"
    # Centrifugo's namespace options (docs/centrifugo.md); /connection/websocket reads them.
    force_push_join_leave: bool = False
    force_recovery: bool = False
    allowed_delta_types: list[Literal["fossil"]] = Field(default_factory=list)
    delta_publish: bool = False
    allow_history_for_subscriber: bool = True
    allow_presence_for_subscriber: bool = True

    @property
    def history(self) -> bool:
        """History (offsets, recovery) is on when both its size and its lifetime are non-zero."""
        return self.history_size > 0 and self.history_ttl > 0


DEMO_NAMESPACES = {"demo": NamespaceOptions(presence=True, join_leave=True)}
"""The default of ``namespaces``: the demo's ``chat:`` rooms show who is there. Any
configured ``namespaces`` replaces it as a whole; unconfigured namespaces keep the
default namespace's options (presence off)."""


def _default_node_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


class Settings(BaseSettings):
    """Every setting of the gateway; see the configuration table in docs/protocol.md."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, extra="forbid", frozen=True, validate_default=True
    )

    redis_url: str | None = None
    redis_cluster: bool = False
    redis_prefix: str = Field(default="gw", min_length=1)
    jwt_secret: SecretStr | None = None
    jwt_public_key: SecretStr | None = None
    jwt_algorithms: Annotated[list[str], NoDecode] = Field(default_factory=list)
    jwt_audience: str | None = None
    jwt_issuer: str | None = None
    jwt_leeway: float = Field(default=5, ge=0)
    api_key: SecretStr | None = None
    allowed_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    config: Path | None = None
    node_id: str = Field(default_factory=_default_node_id, min_length=1, max_length=128)
    max_message_bytes: int = Field(default=65536, ge=64)
    max_queue: int = Field(default=1024, ge=1)
    max_queue_bytes: int = Field(default=4194304, ge=1024)
    history_reply_bytes: int = Field(default=1048576, ge=1)
    max_subscriptions: int = Field(default=128, ge=1)
    rate: float = Field(default=100, ge=0)
    max_connections: int = Field(default=0, ge=0)
    max_connections_per_ip: int = Field(default=0, ge=0)
    handshake_timeout: float = Field(default=10, gt=0)
    forwarded_allow_ips: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["127.0.0.1"]
    )
    internal_port: int | None = Field(default=None, ge=1, le=65535)
    ping_seconds: float = Field(default=25, gt=0)
    drain_seconds: float = Field(default=10, ge=0)
    connect_timeout: float = Field(default=10, gt=0)
    hook_timeout: float = Field(default=10, gt=0)
    broker_timeout: float = Field(default=5, gt=0)
    presence_ttl: float = Field(default=15, gt=0)
    idempotency_window: float = Field(default=300, gt=0)
    permessage_deflate: bool = False
    strict_namespaces: bool = False
    # Centrifugo compatibility (docs/centrifugo.md)
    jwt_require_exp: bool = True
    anonymous_connect: bool = False
    personal_channel: bool = False
    personal_channel_namespace: str = ""
    delta_max_bytes: int = Field(default=16384, ge=0)
    namespaces: dict[str, NamespaceOptions] = Field(default_factory=lambda: dict(DEMO_NAMESPACES))

    @field_validator("allowed_origins", "jwt_algorithms", "forwarded_allow_ips", mode="before")
    @classmethod
    def _split_commas(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("forwarded_allow_ips")
    @classmethod
    def _check_proxies(cls, value: list[str]) -> list[str]:
        if "*" in value and len(value) > 1:
            raise ValueError("* trusts every peer: give it alone")
        for entry in value:
            if entry != "*":
                try:
                    ipaddress.ip_network(entry)
                except ValueError:
                    raise ValueError(
                        f"{entry!r} is not an IP address, a network (CIDR, host bits zero) or *"
                    ) from None
        return value

    @field_validator("redis_url")
    @classmethod
    def _check_redis_url(cls, value: str | None) -> str | None:
        if value in (None, ""):
            return None
        assert value is not None
        if not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must be a redis://, rediss:// or unix:// URL")
        return value

    def namespace(self, channel: str) -> NamespaceOptions | None:
        """The options of the channel's namespace; None when strict and not configured."""
        name = namespace_of(channel)
        options = self.namespaces.get(name)
        if options is not None:
            return options
        if self.strict_namespaces and name != DEFAULT_NAMESPACE:
            return None
        return self.namespaces.get(DEFAULT_NAMESPACE, _DEFAULT_OPTIONS)

    def __repr_args__(self) -> Iterator[tuple[str | None, Any]]:
        """Fields for ``repr`` and ``str``: secrets are masked, the Redis password too."""
        for name, value in super().__repr_args__():
            if name == "redis_url" and isinstance(value, str):
                value = redact_url(value)
            yield name, value

    @property
    def auth_enabled(self) -> bool:
        """Connections must present a JWT when a secret or a public key is configured."""
        return self.jwt_secret is not None or self.jwt_public_key is not None


_DEFAULT_OPTIONS = NamespaceOptions()


def load_settings(config: Path | str | None = None, **overrides: Any) -> Settings:
    """Build the settings from overrides, the environment and the TOML file.

    The file is ``config`` if given, else ``GATEWAY_CONFIG``.

    Raises:
        ConfigError: the file is missing or unreadable, a key is unknown, or a value has the
            wrong type; the message names the key.
    """
    path = Path(config) if config else _env_config_path()
    try:
        if path is None:
            return Settings(**overrides)
        data = _read_toml(path)
        return _settings_with_file(data)(**{**overrides, "config": path})
    except ValidationError as exc:
        raise ConfigError(_describe(exc, path)) from None


def with_overrides(base: Settings, config: Path | str | None = None, **overrides: Any) -> Settings:
    """``base`` with the keys of the TOML file ``config`` over it, and ``overrides`` over
    those; the environment is not read again (``gateway serve --app`` applies its options
    to the settings an application built).

    Raises:
        ConfigError: as `load_settings`.
    """
    path = Path(config) if config else None
    values: dict[str, Any] = base.model_dump()
    if path is not None:
        values.update(_read_toml(path), config=path)
    values.update(overrides)
    try:
        return type(base).model_validate(values)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, path)) from None


def child_environment(**settings: str | int | float | bool) -> dict[str, str]:
    """This process's environment plus ``GATEWAY_*`` variables for ``settings``.

    For starting other gateway processes: ``child_environment(node_id="gateway-1")``.

    Raises:
        ConfigError: a name is not a setting.
    """
    unknown = sorted(name for name in settings if name not in Settings.model_fields)
    if unknown:
        raise ConfigError(f"unknown setting(s): {', '.join(unknown)}")
    environment = dict(os.environ)
    for name, value in settings.items():
        text = ("true" if value else "false") if isinstance(value, bool) else str(value)
        environment[f"GATEWAY_{name.upper()}"] = text
    return environment


def environment_names(model: type[BaseSettings] = Settings) -> frozenset[str]:
    """Every ``GATEWAY_*`` variable something reads, upper case: one per field of the
    settings ``model`` (its alias, if it has one), and `CLIENT_VARIABLES`."""
    names = set(CLIENT_VARIABLES)
    for name, field in model.model_fields.items():
        alias = field.validation_alias
        if isinstance(alias, str):
            names.add(alias.upper())
        elif isinstance(alias, AliasChoices):
            names.update(choice.upper() for choice in alias.choices if isinstance(choice, str))
        else:
            names.add(f"{ENV_PREFIX}{name}".upper())
    return frozenset(names)


def unknown_variables(environ: Mapping[str, str] | None = None) -> list[str]:
    """A sentence for each ``GATEWAY_*`` variable of ``environ`` (default: this process's)
    that nothing reads, naming the closest known name when one is close."""
    environ = os.environ if environ is None else environ
    known = environment_names()
    problems = []
    for variable in sorted(environ):
        name = variable.upper()
        if name.startswith(ENV_PREFIX) and name not in known:
            problems.append(f"{variable} is not a setting{_suggestion(name, known)}")
    return problems


def warn_unknown_variables(environ: Mapping[str, str] | None = None) -> None:
    """Log (level warning) each of `unknown_variables`: a misspelt variable is otherwise
    silently ignored."""
    for problem in unknown_variables(environ):
        log.warning("settings.unknown_variable %s", problem)


def _suggestion(name: str, known: frozenset[str]) -> str:
    """ "; did you mean NAME?" when a known name is close; the shared prefix is left out of
    the comparison, else every ``GATEWAY_*`` name would look close."""
    by_suffix = {known_name.removeprefix(ENV_PREFIX): known_name for known_name in known}
    close = difflib.get_close_matches(name.removeprefix(ENV_PREFIX), sorted(by_suffix), n=1)
    return f"; did you mean {by_suffix[close[0]]}?" if close else ""


def _env_config_path() -> Path | None:
    value = os.environ.get("GATEWAY_CONFIG")
    return Path(value) if value else None


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as file:
            return tomllib.load(file)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"config file {path} cannot be read: {exc.strerror}") from None


def _settings_with_file(data: dict[str, Any]) -> type[Settings]:
    class SettingsWithFile(Settings):
        @classmethod
        def settings_customise_sources(
            cls,
            settings_cls: type[BaseSettings],
            init_settings: PydanticBaseSettingsSource,
            env_settings: PydanticBaseSettingsSource,
            dotenv_settings: PydanticBaseSettingsSource,
            file_secret_settings: PydanticBaseSettingsSource,
        ) -> tuple[PydanticBaseSettingsSource, ...]:
            return (init_settings, env_settings, InitSettingsSource(settings_cls, data))

    return SettingsWithFile


def _describe(exc: ValidationError, path: Path | None) -> str:
    where = f" (config file {path})" if path else ""
    problems = []
    for error in exc.errors():
        key = ".".join(str(part) for part in error["loc"])
        if error["type"] == "extra_forbidden":
            problems.append(f"'{key}'{where} is not a setting{_closest_key(error['loc'])}")
        else:
            problems.append(f"setting '{key}'{where}: {error['msg']}")
    return "; ".join(problems)


def _closest_key(loc: tuple[int | str, ...]) -> str:
    """ "; did you mean 'KEY'?" for an unknown key at ``loc``, when a known one is close."""
    model = _model_at(loc[:-1])
    if model is None:
        return ""
    close = difflib.get_close_matches(str(loc[-1]), sorted(model.model_fields), n=1)
    if not close:
        return ""
    return "; did you mean '" + ".".join([*map(str, loc[:-1]), close[0]]) + "'?"


def _model_at(loc: tuple[int | str, ...]) -> type[BaseModel] | None:
    """The model whose keys sit at ``loc`` of the settings (``()``: `Settings`;
    ``("namespaces", "chat")``: `NamespaceOptions`), or None when ``loc`` is no table."""
    model: type[BaseModel] = Settings
    parts = list(loc)
    while parts:
        field = model.model_fields.get(str(parts.pop(0)))
        if field is None:
            return None
        annotation = field.annotation
        if get_origin(annotation) is dict:
            if not parts:
                return None
            parts.pop(0)
            annotation = get_args(annotation)[1]
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return None
        model = annotation
    return model
