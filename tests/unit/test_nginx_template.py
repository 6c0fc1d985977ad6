"""Rendering deploy/nginx.conf the way the nginx image's envsubst does."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.cli.nginx import (
    TEMPLATE,
    TemplateError,
    main_config,
    placeholders,
    render_site,
    render_template,
)


def test_render_site_fills_listen_and_one_server_per_replica() -> None:
    site = render_site(TEMPLATE.read_text(), "127.0.0.1:8000", ["127.0.0.1:1", "127.0.0.1:2"])
    assert "listen 127.0.0.1:8000;" in site
    assert "server 127.0.0.1:1;\n    server 127.0.0.1:2;" in site
    assert "${NGINX_" not in site


def test_nginx_variables_are_left_alone() -> None:
    template = "set $a $http_upgrade; ${NGINX_X} $NGINX_X; $HOME ${HOME}"
    assert render_template(template, {"NGINX_X": "x"}) == "set $a $http_upgrade; x x; $HOME ${HOME}"


def test_a_placeholder_without_a_value_is_named() -> None:
    with pytest.raises(TemplateError, match="NGINX_LISTEN, NGINX_OTHER"):
        render_template("listen ${NGINX_LISTEN}; ${NGINX_OTHER}", {})


def test_the_template_needs_exactly_listen_and_servers() -> None:
    assert placeholders(TEMPLATE.read_text()) == {"NGINX_LISTEN", "NGINX_UPSTREAM_SERVERS"}


def test_main_config_keeps_every_written_path_in_its_directory() -> None:
    config = main_config(Path("/tmp/c"), Path("/tmp/c/site.conf"), worker_connections=900)
    assert "daemon off;" in config and "pid /tmp/c/nginx.pid;" in config
    for name in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
        assert f" /tmp/c/{name};" in config
    assert "include /tmp/c/site.conf;" in config and "worker_connections 900;" in config
    assert not config.startswith("user ")
    assert main_config(Path("/t"), Path("/t/s"), user="me us").startswith("user me us;\n")
