from __future__ import annotations

import logging
from pathlib import Path

import pytest
from pydantic import AliasChoices, Field

from gateway.settings import (
    ConfigError,
    NamespaceOptions,
    Settings,
    environment_names,
    load_settings,
    unknown_variables,
    warn_unknown_variables,
)


@pytest.fixture(autouse=True)
def clean_environment(settings_factory: object) -> None:
    """settings_factory removes every GATEWAY_* variable for the test."""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "gateway.toml"
    path.write_text(text)
    return path


def test_defaults_match_the_protocol_table() -> None:
    settings = load_settings()
    assert settings.redis_url is None
    assert settings.redis_cluster is False
    assert settings.max_message_bytes == 65536
    assert settings.max_queue == 1024
    assert settings.max_queue_bytes == 4194304
    assert settings.history_reply_bytes == 1048576
    assert settings.max_subscriptions == 128
    assert settings.rate == 100
    assert settings.max_connections == 0
    assert settings.ping_seconds == 25
    assert settings.drain_seconds == 10
    assert settings.allowed_origins == []
    assert settings.api_key is None and not settings.auth_enabled


def test_environment_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GATEWAY_REDIS_URL", "redis://127.0.0.1:7000/0")
    monkeypatch.setenv("GATEWAY_MAX_QUEUE", "10")
    monkeypatch.setenv("GATEWAY_ALLOWED_ORIGINS", "https://a.example, https://b.example")
    monkeypatch.setenv("GATEWAY_JWT_SECRET", "s3cret")
    monkeypatch.setenv("GATEWAY_NODE_ID", "n1")
    settings = load_settings()
    assert settings.redis_url == "redis://127.0.0.1:7000/0"
    assert settings.max_queue == 10
    assert settings.allowed_origins == ["https://a.example", "https://b.example"]
    assert settings.auth_enabled and settings.node_id == "n1"
    assert "s3cret" not in repr(settings)


def test_toml_file_with_namespaces(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "max_queue = 5\nstrict_namespaces = true\n"
        '[namespaces.chat]\nhistory_size = 50\npresence = true\nsubscribe = "authenticated"\n',
    )
    settings = load_settings(path)
    assert settings.max_queue == 5
    assert settings.namespace("chat:1") == NamespaceOptions(
        history_size=50, presence=True, subscribe="authenticated"
    )
    assert settings.namespace("other:1") is None
    assert settings.namespace("plain") == NamespaceOptions()


def test_the_demo_namespace_has_presence_until_namespaces_are_configured(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = load_settings()
    assert settings.namespace("demo:lobby") == NamespaceOptions(presence=True, join_leave=True)
    assert settings.namespace("chat:lobby") == NamespaceOptions()
    assert settings.namespace("chat") == NamespaceOptions()
    assert settings.namespace("news:today") == NamespaceOptions()
    assert NamespaceOptions().presence is False
    replaced = load_settings(write(tmp_path, "[namespaces.news]\npublish = false\n"))
    assert replaced.namespace("demo:lobby") == NamespaceOptions()
    monkeypatch.setenv("GATEWAY_NAMESPACES", "{}")
    assert load_settings().namespace("demo:lobby") == NamespaceOptions()


def test_unconfigured_namespace_takes_the_default_one(tmp_path: Path) -> None:
    path = write(tmp_path, "[namespaces.default]\nhistory_size = 0\n")
    settings = load_settings(path)
    assert settings.namespace("news:today").history_size == 0
    assert not settings.namespace("news:today").history


def test_environment_wins_over_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, "max_queue = 5\n")
    monkeypatch.setenv("GATEWAY_MAX_QUEUE", "9")
    assert load_settings(path).max_queue == 9


def test_config_path_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GATEWAY_CONFIG", str(write(tmp_path, "max_subscriptions = 3\n")))
    assert load_settings().max_subscriptions == 3


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("max_qeue = 5\n", "'max_qeue'"),
        ('max_queue = "many"\n', "'max_queue'"),
        ("[namespaces.chat]\nhistroy_size = 1\n", "'namespaces.chat.histroy_size'"),
        ('[namespaces.chat]\nsubscribe = "everyone"\n', "'namespaces.chat.subscribe'"),
        ("max_queue = 0\n", "'max_queue'"),
        ('redis_url = "http://x"\n', "'redis_url'"),
    ],
)
def test_bad_file_names_the_key(tmp_path: Path, text: str, named: str) -> None:
    with pytest.raises(ConfigError) as raised:
        load_settings(write(tmp_path, text))
    assert named in str(raised.value)


def test_missing_and_malformed_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "nope.toml")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(write(tmp_path, "max_queue = = 1\n"))


def test_settings_are_immutable() -> None:
    settings = Settings()
    with pytest.raises(ValueError):
        settings.max_queue = 3  # type: ignore[misc]


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (
            "max_qeue = 5\n",
            "'max_qeue' (config file {path}) is not a setting; did you mean 'max_queue'?",
        ),
        (
            "[namespaces.chat]\nhistroy_size = 1\n",
            "'namespaces.chat.histroy_size' (config file {path}) is not a setting;"
            " did you mean 'namespaces.chat.history_size'?",
        ),
        ("[namespace.chat]\npresence = true\n", "did you mean 'namespaces'?"),
        ("zzzz = 1\n", "'zzzz' (config file {path}) is not a setting"),
    ],
)
def test_an_unknown_key_in_the_file_gets_the_closest_known_name(
    tmp_path: Path, text: str, problem: str
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as raised:
        load_settings(path)
    assert problem.format(path=path) in str(raised.value)
    assert "Extra inputs" not in str(raised.value)
    if text.startswith("zzzz"):
        assert "did you mean" not in str(raised.value)


def test_every_field_is_a_known_environment_name() -> None:
    names = environment_names()
    assert {f"GATEWAY_{field.upper()}" for field in Settings.model_fields} <= names
    assert {"GATEWAY_URL", "GATEWAY_CONFIG", "GATEWAY_API_KEY"} <= names


def test_known_names_follow_the_fields_and_their_aliases() -> None:
    class Wider(Settings):
        new_knob: int = 1
        renamed: int = Field(default=1, validation_alias=AliasChoices("GATEWAY_OLD", "gw_new"))

    names = environment_names(Wider)
    assert {"GATEWAY_NEW_KNOB", "GATEWAY_OLD", "GW_NEW"} <= names
    assert "GATEWAY_RENAMED" not in names and "GATEWAY_NEW_KNOB" not in environment_names()


@pytest.mark.parametrize(
    ("variable", "problem"),
    [
        ("GATEWAY_APIKEY", "GATEWAY_APIKEY is not a setting; did you mean GATEWAY_API_KEY?"),
        ("GATEWAY_REDISURL", "GATEWAY_REDISURL is not a setting; did you mean GATEWAY_REDIS_URL?"),
        ("gateway_max_qeue", "gateway_max_qeue is not a setting; did you mean GATEWAY_MAX_QUEUE?"),
        ("GATEWAY_ZZZZQQQ", "GATEWAY_ZZZZQQQ is not a setting"),
    ],
)
def test_an_unknown_gateway_variable_is_named_with_the_closest_setting(
    variable: str, problem: str
) -> None:
    assert unknown_variables({variable: "1", "HOME": "/root"}) == [problem]


def test_known_variables_and_other_prefixes_are_not_reported() -> None:
    environ = {
        "GATEWAY_URL": "ws://127.0.0.1:8000/ws",
        "GATEWAY_CONFIG": "/etc/gateway.toml",
        "GATEWAY_API_KEY": "k",
        "gateway_rate": "5",
        "MY_GATEWAY_THING": "1",
        "GATEWAYS": "1",
    }
    assert unknown_variables(environ) == []


def test_unknown_variables_are_logged_as_warnings(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="gateway.settings"):
        warn_unknown_variables({"GATEWAY_APIKEY": "x", "GATEWAY_RATE": "1"})
    [record] = caplog.records
    assert record.levelno == logging.WARNING
    assert record.getMessage() == (
        "settings.unknown_variable GATEWAY_APIKEY is not a setting; did you mean GATEWAY_API_KEY?"
    )


def test_the_byte_limits_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GATEWAY_MAX_QUEUE_BYTES", "65536")
    monkeypatch.setenv("GATEWAY_HISTORY_REPLY_BYTES", "4096")
    settings = load_settings()
    assert (settings.max_queue_bytes, settings.history_reply_bytes) == (65536, 4096)
    monkeypatch.setenv("GATEWAY_HISTORY_REPLY_BYTES", "0")
    with pytest.raises(ConfigError, match="history_reply_bytes"):
        load_settings()
