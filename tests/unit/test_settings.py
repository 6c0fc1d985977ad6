from __future__ import annotations

from pathlib import Path

import pytest

from gateway.settings import ConfigError, NamespaceOptions, Settings, load_settings


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


def test_the_demos_chat_namespace_has_presence_until_namespaces_are_configured(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = load_settings()
    assert settings.namespace("chat:lobby") == NamespaceOptions(presence=True, join_leave=True)
    assert settings.namespace("chat") == NamespaceOptions()
    assert settings.namespace("news:today") == NamespaceOptions()
    assert NamespaceOptions().presence is False
    replaced = load_settings(write(tmp_path, "[namespaces.news]\npublish = false\n"))
    assert replaced.namespace("chat:lobby") == NamespaceOptions()
    monkeypatch.setenv("GATEWAY_NAMESPACES", "{}")
    assert load_settings().namespace("chat:lobby") == NamespaceOptions()


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
