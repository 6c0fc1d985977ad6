"""nginx configuration for `gateway cluster`, from the same template docker compose uses.

``deploy/nginx.conf`` holds the http-level part (upstream and server) with two placeholders,
``${NGINX_LISTEN}`` and ``${NGINX_UPSTREAM_SERVERS}``. The nginx image fills them with
envsubst; `render_site` fills them here, the same way: only those names, nothing else.
`main_config` is what the image's own ``/etc/nginx/nginx.conf`` provides there: process
settings, with every path nginx writes to inside one private directory. Pure functions.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path

TEMPLATE = Path(__file__).resolve().parents[2] / "deploy" / "nginx.conf"
"""The template in a source checkout (`gateway cluster` is a development tool)."""

PLACEHOLDER = re.compile(r"\$\{(NGINX_\w+)\}|\$(NGINX_\w+)", re.ASCII)
"""``${NGINX_NAME}`` or ``$NGINX_NAME``: the two forms envsubst replaces."""


class TemplateError(Exception):
    """The template names a placeholder that was given no value."""


def render_template(template: str, values: Mapping[str, str]) -> str:
    """Replace each ``${NAME}`` or ``$NAME`` of ``values`` in ``template``, as envsubst would.

    Raises:
        TemplateError: a ``${NGINX_...}`` placeholder is left without a value.
    """
    missing = sorted(placeholders(template) - set(values))
    if missing:
        raise TemplateError(f"no value for {', '.join(missing)} in the nginx template")
    return PLACEHOLDER.sub(lambda match: values[match.group(1) or match.group(2)], template)


def placeholders(template: str) -> set[str]:
    """The ``NGINX_...`` names a template needs."""
    return {braced or bare for braced, bare in PLACEHOLDER.findall(template)}


def render_site(template: str, listen: str, upstreams: Sequence[str]) -> str:
    """The server block: listening on ``listen``, balancing over ``upstreams`` (HOST:PORT)."""
    servers = "\n    ".join(f"server {address};" for address in upstreams)
    return render_template(template, {"NGINX_LISTEN": listen, "NGINX_UPSTREAM_SERVERS": servers})


def main_config(
    directory: Path, site: Path, user: str | None = None, worker_connections: int = 1024
) -> str:
    """A complete nginx.conf: errors to stderr, pid and temp files under ``directory``.

    ``user`` is needed only when nginx starts as root (it then runs its workers as that
    user); otherwise nginx runs as whoever starts it and the directive would be ignored.
    """
    user_line = f"user {user};\n" if user else ""
    temp = {name: directory / name for name in ("body", "proxy", "fastcgi", "uwsgi", "scgi")}
    return (
        f"{user_line}"
        "daemon off;\n"
        "worker_processes 1;\n"
        f"pid {directory / 'nginx.pid'};\n"
        "error_log stderr warn;\n"
        f"events {{\n    worker_connections {worker_connections};\n}}\n"
        "http {\n"
        "    access_log off;\n"
        "    default_type application/octet-stream;\n"
        f"    client_body_temp_path {temp['body']};\n"
        f"    proxy_temp_path {temp['proxy']};\n"
        f"    fastcgi_temp_path {temp['fastcgi']};\n"
        f"    uwsgi_temp_path {temp['uwsgi']};\n"
        f"    scgi_temp_path {temp['scgi']};\n"
        f"    include {site};\n"
        "}\n"
    )
