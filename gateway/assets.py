"""Files the gateway serves as they are: the browser client."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

BROWSER_CLIENT_SOURCE = Path(__file__).resolve().parent.parent / "client" / "js" / "gateway.js"
"""Where the browser client lives in a source checkout."""


def browser_client() -> str:
    """The browser client's ES module text.

    From the source checkout when there is one (whatever the checkout did with the
    ``gateway/static/gateway.js`` symlink), else the copy packaged into ``gateway/static``
    when the wheel was built.
    """
    if BROWSER_CLIENT_SOURCE.is_file():
        return BROWSER_CLIENT_SOURCE.read_text("utf-8")
    return resources.files("gateway").joinpath("static/gateway.js").read_text("utf-8")
