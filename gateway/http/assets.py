"""Files the gateway serves: the browser client and the HTML pages."""

from __future__ import annotations

import base64
import hashlib
import re
from html import escape
from importlib import resources
from pathlib import Path

BROWSER_CLIENT_SOURCE = Path(__file__).resolve().parents[2] / "client" / "js" / "gateway.js"
"""Where the browser client lives in a source checkout: its one source."""


def browser_client() -> str:
    """The browser client's ES module text.

    From the source checkout when the gateway runs from one (an editable install sees
    edits at once), else the copy the wheel build puts into ``gateway/http/static``
    (``force-include`` in pyproject.toml).
    """
    if BROWSER_CLIENT_SOURCE.is_file():
        return BROWSER_CLIENT_SOURCE.read_text("utf-8")
    return resources.files("gateway.http").joinpath("static/gateway.js").read_text("utf-8")


def static_text(name: str) -> str:
    """A text file of ``gateway/http/static``: a page or the stylesheet the pages share."""
    return resources.files("gateway.http").joinpath(f"static/{name}").read_text("utf-8")


def with_base(html: str, root_path: str) -> str:
    """``html`` with a ``<base href>`` at the app's mount point, so relative URLs resolve
    under any prefix the gateway is mounted at."""
    base = root_path.rstrip("/") + "/"
    return html.replace("<head>", f'<head>\n<base href="{escape(base)}">', 1)


def locked_down(html: str) -> dict[str, str]:
    """Response headers for a page that holds a secret: a Content-Security-Policy that
    allows only the page's own inline script and style (by hash), stylesheets and requests
    of its own origin, no framing, no caching, no referrer."""
    script, style = (
        " ".join(f"'sha256-{_digest(body)}'" for body in _INLINE[tag].findall(html))
        for tag in ("script", "style")
    )
    policy = (
        f"default-src 'none'; script-src {script}; style-src 'self' {style}; connect-src 'self'; "
        "img-src 'self'; base-uri 'self'; form-action 'none'; frame-ancestors 'none'"
    )
    return {
        "Content-Security-Policy": policy,
        "Cache-Control": "no-store",
        "Referrer-Policy": "no-referrer",
        "X-Content-Type-Options": "nosniff",
        "X-Frame-Options": "DENY",
    }


_INLINE = {tag: re.compile(rf"<{tag}[^>]*>(.*?)</{tag}>", re.DOTALL) for tag in ("script", "style")}


def _digest(text: str) -> str:
    return base64.b64encode(hashlib.sha256(text.encode()).digest()).decode()
