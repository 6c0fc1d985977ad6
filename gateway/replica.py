"""The composition root: one replica's services, built from its settings, started, stopped
and drained.

Everything is built here and handed what it uses, and nothing else reaches through the
replica: the hub gets the broker's channel feed, the publisher its pub/sub, presence its
store and the publisher, the sessions one `SessionContext`, the control channel and the
registry their part of the broker and the connection registry. `Replica` keeps them as
attributes for the application (`gateway.http.app`), the CLI and tests.
"""

from __future__ import annotations

import asyncio
import logging

from gateway.broker import Broker, create_broker
from gateway.broker.base import BrokerRoutes
from gateway.control.channel import ControlChannel
from gateway.control.registry import NodeRegistry
from gateway.core.hub import Hub
from gateway.core.passes import LoopPasses
from gateway.core.stats import Stats
from gateway.ops.activity import NodeReport
from gateway.ops.metrics import Metrics, MetricSources
from gateway.security.guard import Security
from gateway.security.origins import OriginPolicy
from gateway.services.admission import Admission, HandshakePolicy
from gateway.services.channels import Channels
from gateway.services.connections import ConnectionRegistry
from gateway.services.hooks import Hooks
from gateway.services.http_publish import HttpPublishing
from gateway.services.namespaces import Namespaces
from gateway.services.presence import Presence
from gateway.services.publisher import Publisher
from gateway.session.centrifugo_control import ServerSideCommands
from gateway.session.commands import Commands
from gateway.session.connection import SessionContext
from gateway.session.handshake import Endpoints
from gateway.session.sse import SseEndpoint
from gateway.settings import Settings
from gateway.wire.errors import DRAIN, SHUTDOWN

log = logging.getLogger(__name__)

STOP_DEADLINE = 5.0
"""Seconds `Replica.stop` waits for connections to close before stopping the broker."""
DRAIN_STEPS_PER_SECOND = 10
"""How finely a drain spreads its closes over the drain window."""


class Replica:
    """Everything one replica owns; built by `create_app`, started and stopped by its lifespan."""

    def __init__(
        self, settings: Settings, broker: Broker | None = None, hooks: Hooks | None = None
    ) -> None:
        """``hooks`` are the application's (`gateway.Gateway` registers them), run by every
        session.

        Raises:
            ConfigError: a key, an algorithm or an allowed origin in the settings is unusable.
        """
        self.settings = settings
        self.hooks = hooks if hooks is not None else Hooks(settings.hook_timeout)
        self.broker = broker if broker is not None else create_broker(settings)
        self.stats = Stats()
        self.metrics = Metrics()
        self.connections = ConnectionRegistry()
        self.security = Security(settings)
        self.admission = Admission(settings)
        self.hub = Hub(self.broker, self.metrics.publish_to_deliver.observe)
        self.namespaces = Namespaces(settings)
        self.publisher = Publisher(
            self.broker,
            self.namespaces,
            self.stats,
            settings.max_message_bytes,
            self.metrics.broker_roundtrip.labels("publish").observe,
        )
        self.presence = Presence(self.broker, self.publisher, settings.presence_ttl)
        self.channels = Channels(
            self.namespaces,
            self.broker,
            self.presence,
            max_message_bytes=settings.max_message_bytes,
            history_reply_bytes=settings.history_reply_bytes,
        )
        self.control = ControlChannel(self.broker, self.connections, settings.node_id)
        self.control.handlers.update(ServerSideCommands(self.connections).handlers())
        self.report = NodeReport(
            settings.node_id, self.stats, self.hub, self.connections, self.readiness
        )
        self.registry = NodeRegistry(self.broker, settings.node_id, self.report.state)
        self.metrics.collect_from(
            MetricSources(
                settings.node_id,
                self.stats,
                self.hub,
                self.connections,
                self.admission,
                self.broker,
                self.readiness,
            )
        )
        context = SessionContext(
            settings=settings,
            hub=self.hub,
            publisher=self.publisher,
            channels=self.channels,
            presence=self.presence,
            security=self.security,
            stats=self.stats,
            passes=LoopPasses(),
            on_backlog=self.metrics.queue_depth.observe,
            hooks=self.hooks,
        )
        self.origins = OriginPolicy(settings.allowed_origins)
        policy = HandshakePolicy(self.origins, self.readiness, self.admission, self.connections)
        commands = Commands(settings, self.channels, self.publisher, self.presence, self.hooks)
        self.endpoints = Endpoints(
            context, commands, policy, self.admission, self.connections, self.security
        )
        self.serve_sse = SseEndpoint(
            context, commands, policy, self.admission, self.connections, self.security
        )
        """``GET /sse``, an ASGI application."""
        self.http_publishing = HttpPublishing(
            settings, self.security, self.origins, self.namespaces, self.publisher, self.hooks
        )

        self.serve_protocol = self.endpoints.serve_protocol
        self.serve_plain_text = self.endpoints.serve_plain_text
        self.serve_centrifugo = self.endpoints.serve_centrifugo
        self.draining = False
        self._running = False

    @property
    def started_at(self) -> float:
        """Unix time the replica was built."""
        return self.report.started_at

    def readiness(self) -> tuple[bool, str]:
        """Whether the replica accepts clients (`/readyz`), and why not."""
        if not self._running:
            return False, "not started"
        if self.draining:
            return False, "draining"
        if not self.broker.accepting:
            return False, "broker unreachable"
        if not self.broker.ready:
            return False, "broker pub/sub link down"
        if not self.control.live:
            return False, "control channel not subscribed yet"
        if not self.registry.listed:
            return False, "not in the replica registry yet"
        return True, "ready"

    async def start(self) -> None:
        """Connect the broker (in the background) and begin accepting clients."""
        routes = BrokerRoutes(
            self.hub.on_publication, self.control.on_control, self.hub.on_reconnected
        )
        self.hooks.start()
        await self.broker.start(routes)
        self.presence.start()
        await self.control.start()
        await self.registry.start()
        self._running = True
        log.info(
            "replica.started node=%s broker=%s", self.settings.node_id, type(self.broker).__name__
        )

    async def stop(self) -> None:
        """Close every connection (1001), wait a little for them, then stop the broker."""
        self._running = False
        self.connections.close_all(SHUTDOWN)
        await self.connections.wait_until_empty(STOP_DEADLINE)
        await self.registry.stop()
        await self.control.stop()
        await self.presence.close()
        await self.hub.close()
        await self.broker.close()
        log.info("replica.stopped node=%s", self.settings.node_id)

    async def drain(self) -> None:
        """Stop being ready at once, then close every client with 1012, spread over
        ``drain_seconds`` so they do not all reconnect to the other replicas at the same
        moment, and wait (briefly) for the last ones to go."""
        self.draining = True
        connections = list(self.connections)
        log.info("replica.draining node=%s clients=%d", self.settings.node_id, len(connections))
        window = self.settings.drain_seconds
        steps = max(1, min(len(connections), int(window * DRAIN_STEPS_PER_SECOND)))
        for step in range(steps):
            for connection in connections[step::steps]:
                connection.close(DRAIN)
            if step < steps - 1:
                await asyncio.sleep(window / steps)
        await self.connections.wait_until_empty(STOP_DEADLINE)
