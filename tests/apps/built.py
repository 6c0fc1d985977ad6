"""A module that builds its gateway's application at import (``gw.app``): its settings can no
longer change, so ``gateway serve --app`` refuses options that would change them."""

from __future__ import annotations

from gateway import Gateway
from gateway.settings import Settings

gw = Gateway(Settings(node_id="built"))
app = gw.app
