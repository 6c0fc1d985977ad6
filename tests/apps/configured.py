"""A gateway built with settings of its own (no environment): ``gateway serve --app``
serves it with them, under the command's options."""

from __future__ import annotations

from gateway import Gateway, RpcRequest
from gateway.settings import NamespaceOptions, Settings

gw = Gateway(
    Settings(
        node_id="from-the-app",
        strict_namespaces=True,
        namespaces={"default": NamespaceOptions(), "app": NamespaceOptions(history_size=5)},
    )
)


@gw.rpc("settings")
async def settings(request: RpcRequest) -> dict[str, object]:
    return {"node": gw.settings.node_id, "rate": gw.settings.rate}
