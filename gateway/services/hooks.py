"""The application's own Python code inside the gateway: hooks on connect, subscribe, publish
and disconnect, and methods a client calls with ``rpc``.

`Hooks` is the one service every client dialect calls (``/ws``, ``/websocket``, and any other
transport): it finds the hook that applies, builds the request object the hook gets, runs
the hook, and turns what happens into the gateway's vocabulary: a `Reject` (or any
`GatewayError`) passes through with its code and message; any other exception, and a hook
that does not answer within ``timeout`` seconds, becomes `internal`, with the traceback
logged. With no hook registered for an operation, the dialect's call costs one dictionary
look-up.

How a hook runs: an ``async def`` is awaited in the connection's own task, so it delays that
connection's next command and nothing else. A plain ``def`` runs in the thread pool
(`starlette.concurrency.run_in_threadpool`, as FastAPI runs plain ``def`` endpoints): calling
it inline would block the event loop, and with it every connection and the fan-out of the
whole replica, for as long as it runs; in a thread it delays only its own connection, which
still waits for it before its next command, so replies and publications keep their order.
The price is a thread hop per call (tens of microseconds) and that the function must be
thread-safe.

Which hook applies: at most one per operation. A namespace's own hook (``namespace="chat"``)
if one is registered, else the catch-all (``namespace=None``); registering two for the same
namespace is an error.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Callable, Generator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import orjson
from pydantic import BaseModel, TypeAdapter, ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers, QueryParams
from starlette.requests import HTTPConnection

from gateway.security import auth
from gateway.services.admission import client_address
from gateway.wire.channels import namespace_of
from gateway.wire.errors import ERRORS, ErrorCode, GatewayError

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 10.0
"""Seconds a hook may take before it is answered with `internal` (``hook_timeout``)."""
MAX_DETAILS = 32
"""Most validation errors an `invalid_data` reply lists."""

F = TypeVar("F", bound=Callable[..., Any])


class Reject(GatewayError):
    """Raised by a hook to refuse the operation with an error code of the protocol and a
    message the client sees: ``raise Reject("forbidden", "not a member of this room")``.

    On connect, ``unauthorized`` closes with 4001 and ``forbidden`` with 4003 (each code
    closes as `gateway.wire.errors.ERRORS` says); elsewhere the client gets an `error` frame.

    Raises:
        ValueError: ``code`` is not one of the protocol's error codes.
    """

    def __init__(self, code: ErrorCode | str, message: str = "") -> None:
        error_code = ErrorCode(code)
        super().__init__(error_code, message or ERRORS[error_code].meaning)


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a connection is, as ``on_connect`` decides: as if from a connection token with
    these claims (``sub``, ``info``, ``channels``, ``publish``; see `docs/protocol.md`).

    ``channels``: glob patterns of the channels the user may subscribe to; empty (the
    default), the namespaces' options decide, as for a token without the claim.
    ``publish``: patterns of the channels the user may publish to; None, the namespaces'
    options decide; empty, nowhere.
    """

    user: str
    info: Mapping[str, Any] | None = None
    channels: Sequence[str] = ()
    publish: Sequence[str] | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.user, str) or not self.user:
            raise ValueError("Principal.user must be a non-empty string")
        for name in ("channels", "publish"):
            value = getattr(self, name)
            if value is None:
                continue
            if isinstance(value, str) or not all(isinstance(item, str) for item in value):
                raise ValueError(f"Principal.{name} must be a sequence of glob patterns")
            object.__setattr__(self, name, tuple(value))

    def identity(self) -> auth.Principal:
        """The connection's principal, as the permission rules read it."""
        return auth.Principal(
            user=self.user,
            info=dict(self.info) if self.info is not None else None,
            channels=tuple(self.channels) or None,
            publish=None if self.publish is None else tuple(self.publish),
        )


@dataclass(frozen=True, slots=True)
class ConnectRequest:
    """What ``on_connect`` knows of a new client: its handshake.

    ``headers`` are case-insensitive; ``claims`` are the verified claims of the connection
    token the handshake carried, else None; ``transport`` names the endpoint's dialect
    (``"pubsub"`` for ``/ws``, ``"plain"`` for ``/websocket``, ...).
    """

    headers: Headers
    cookies: Mapping[str, str]
    query: QueryParams
    client_ip: str | None
    path: str
    claims: Mapping[str, Any] | None = None
    transport: str = "pubsub"

    @classmethod
    def from_scope(
        cls, scope: Any, claims: Mapping[str, Any] | None = None, transport: str = "pubsub"
    ) -> ConnectRequest:
        """The request of an ASGI ``websocket`` or ``http`` scope."""
        connection = HTTPConnection(scope)
        return cls(
            headers=connection.headers,
            cookies=connection.cookies,
            query=connection.query_params,
            client_ip=client_address(scope),
            path=str(scope.get("path", "")),
            claims=claims,
            transport=transport,
        )


@dataclass(frozen=True, slots=True)
class SubscribeRequest:
    """A client asks to subscribe; the built-in permission checks passed."""

    channel: str
    namespace: str
    user: str | None
    client: str
    info: Mapping[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class PublishRequest:
    """A client publishes; ``data`` is an instance of the hook's ``model`` when it has one,
    else the JSON value as sent.

    ``idempotency_key`` is the publication's key, when it has one. The gateway checks it
    after the hook, atomically with the offset, so a client's resend of a publication
    whose reply it lost runs the hook again (and is then not delivered again): a hook with
    side effects (storing the message) makes them idempotent with the key.
    """

    channel: str
    namespace: str
    user: str | None
    client: str
    data: Any
    info: Mapping[str, Any] | None = None
    idempotency_key: str | None = None


@dataclass(frozen=True, slots=True)
class RpcRequest:
    """A client calls ``method`` with ``data`` (any JSON value; None when it sent none)."""

    method: str
    data: Any
    user: str | None
    client: str
    info: Mapping[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class DisconnectEvent:
    """A connection ended, with this close code."""

    client: str
    user: str | None
    code: int


@dataclass(frozen=True, slots=True)
class Hook:
    """One registered function, and how it is run."""

    function: Callable[[Any], Any]
    asynchronous: bool
    name: str

    @classmethod
    def of(cls, function: Callable[[Any], Any]) -> Hook:
        if not callable(function):
            raise TypeError(f"a hook must be callable, not {function!r}")
        name = getattr(function, "__qualname__", None) or repr(function)
        return cls(function, _is_async(function), name)


@dataclass(frozen=True, slots=True)
class PublishRule:
    """What a namespace's publications go through: validation against ``model``, then the
    hook."""

    hook: Hook
    model: Any | None = None
    adapter: TypeAdapter[Any] | None = field(default=None, compare=False)


class Hooks:
    """The hooks of one gateway; registered before it starts, run by every dialect."""

    def __init__(self, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.timeout = timeout
        """Seconds a hook may take; then its client is answered `internal`."""
        self.on_connect: Hook | None = None
        self.on_disconnect: Hook | None = None
        self.subscribe_hooks: dict[str | None, Hook] = {}
        self.publish_rules: dict[str | None, PublishRule] = {}
        self.methods: dict[str, Hook] = {}
        self._started = False

    # Registration

    def add_connect(self, function: F) -> F:
        self._check_open()
        if self.on_connect is not None:
            raise ValueError(f"an on_connect hook is registered already ({self.on_connect.name})")
        self.on_connect = Hook.of(function)
        return function

    def add_disconnect(self, function: F) -> F:
        self._check_open()
        if self.on_disconnect is not None:
            raise ValueError(
                f"an on_disconnect hook is registered already ({self.on_disconnect.name})"
            )
        self.on_disconnect = Hook.of(function)
        return function

    def add_subscribe(self, namespace: str | None, function: F) -> F:
        self._check_open()
        _register(self.subscribe_hooks, namespace, Hook.of(function), "on_subscribe")
        return function

    def add_publish(self, namespace: str | None, function: F, model: Any | None = None) -> F:
        self._check_open()
        adapter = TypeAdapter(model) if model is not None else None
        rule = PublishRule(Hook.of(function), model, adapter)
        _register(self.publish_rules, namespace, rule, "on_publish")
        return function

    def add_rpc(self, method: str, function: F) -> F:
        self._check_open()
        if not isinstance(method, str) or not method:
            raise ValueError("an rpc method name is a non-empty string")
        if method in self.methods:
            raise ValueError(f"rpc method {method!r} is registered already")
        self.methods[method] = Hook.of(function)
        return function

    def start(self) -> None:
        """The gateway starts: no hook may be registered from now on."""
        self._started = True

    def _check_open(self) -> None:
        if self._started:
            raise RuntimeError("hooks are registered before the gateway starts")

    def models(self) -> dict[str | None, Any]:
        """Each namespace's payload model (None: the catch-all's), as registered."""
        return {
            namespace: rule.model
            for namespace, rule in self.publish_rules.items()
            if rule.model is not None
        }

    # What the dialects call

    async def connect(self, request: ConnectRequest) -> auth.Principal | None:
        """Run ``on_connect``: the principal it chose, or None (the token rules decide;
        also when no hook is registered).

        Raises:
            GatewayError: the hook's `Reject`; `internal` when it failed, timed out, or
                returned something that is neither a `Principal` nor None.
        """
        hook = self.on_connect
        if hook is None:
            return None
        chosen = await self._run(hook, request, "on_connect")
        if chosen is None:
            return None
        if not isinstance(chosen, Principal):
            log.error("hook.bad_result hook=%s type=%s", hook.name, type(chosen).__name__)
            raise GatewayError(ErrorCode.INTERNAL, "internal error")
        return chosen.identity()

    async def subscribe(
        self, channel: str, user: str | None, client: str, info: Mapping[str, Any] | None
    ) -> None:
        """Run the ``on_subscribe`` hook of ``channel``'s namespace, if any.

        Raises:
            GatewayError: the hook's `Reject`; `internal`.
        """
        hooks = self.subscribe_hooks
        if not hooks:
            return
        namespace = namespace_of(channel)
        hook = hooks.get(namespace) or hooks.get(None)
        if hook is not None:
            request = SubscribeRequest(channel, namespace, user, client, info)
            await self._run(hook, request, "on_subscribe")

    def publishes_through(self, channel: str) -> PublishRule | None:
        """The validation and hook ``channel``'s publications go through, if any."""
        rules = self.publish_rules
        if not rules:
            return None
        return rules.get(namespace_of(channel)) or rules.get(None)

    async def publish(
        self,
        rule: PublishRule,
        channel: str,
        data: Any,
        user: str | None,
        client: str,
        info: Mapping[str, Any] | None,
        idempotency_key: str | None = None,
    ) -> Any:
        """Validate ``data`` against the rule's model and run its hook; what to publish.

        Raises:
            GatewayError: `invalid_data` with pydantic's errors as details (the hook is not
                called); the hook's `Reject`; `internal`.
        """
        value = data
        if rule.adapter is not None:
            try:
                value = rule.adapter.validate_python(data)
            except ValidationError as error:
                raise invalid_data(error) from None
        request = PublishRequest(
            channel, namespace_of(channel), user, client, value, info, idempotency_key
        )
        result = await self._run(rule.hook, request, "on_publish")
        if result is None:
            return data
        return self._json_value(result, rule.hook)

    async def rpc(
        self, method: str, data: Any, user: str | None, client: str, info: Mapping[str, Any] | None
    ) -> Any:
        """Call the method a client asked for; the reply's data (a JSON value).

        Raises:
            GatewayError: `unknown_method`; the method's `Reject`; `internal`.
        """
        hook = self.methods.get(method)
        if hook is None:
            raise GatewayError(ErrorCode.UNKNOWN_METHOD, f"unknown method {method[:64]!r}")
        result = await self._run(hook, RpcRequest(method, data, user, client, info), "rpc")
        return self._json_value(result, hook)

    async def disconnect(self, client: str, user: str | None, code: int) -> None:
        """Run ``on_disconnect``; its failures are logged, never raised."""
        hook = self.on_disconnect
        if hook is None:
            return
        try:
            await self._run(hook, DisconnectEvent(client, user, code), "on_disconnect")
        except GatewayError:
            pass

    async def _run(self, hook: Hook, request: Any, kind: str) -> Any:
        """Run a hook within ``timeout``. An ``async def`` hook that finishes without ever
        waiting (validation, a dictionary look-up) costs no timer: its first step runs at
        once, and only a hook that suspends is resumed under `asyncio.timeout`."""
        try:
            if hook.asynchronous:
                coroutine = hook.function(request)
                try:
                    first = coroutine.send(None)
                except StopIteration as done:
                    return done.value
                async with asyncio.timeout(self.timeout):
                    return await _Resumed(coroutine, first)
            async with asyncio.timeout(self.timeout):
                result = await run_in_threadpool(hook.function, request)
                if inspect.isawaitable(result):
                    return await result
                return result
        except GatewayError as error:
            if kind == "on_disconnect":
                log.info("hook.rejected hook=%s code=%s", hook.name, error.code.value)
            raise
        except TimeoutError:
            log.error("hook.timeout kind=%s hook=%s seconds=%g", kind, hook.name, self.timeout)
            raise GatewayError(ErrorCode.INTERNAL, "internal error") from None
        except Exception:
            log.exception("hook.failed kind=%s hook=%s", kind, hook.name)
            raise GatewayError(ErrorCode.INTERNAL, "internal error") from None

    @staticmethod
    def _json_value(result: Any, hook: Hook) -> Any:
        """A hook's result as a JSON value (a pydantic model as its JSON form).

        Raises:
            GatewayError: `internal` when it cannot be encoded as JSON.
        """
        if isinstance(result, BaseModel):
            return result.model_dump(mode="json")
        try:
            orjson.dumps(result)
        except orjson.JSONEncodeError as exc:
            log.error("hook.bad_result hook=%s error=%s", hook.name, exc)
            raise GatewayError(ErrorCode.INTERNAL, "internal error") from None
        return result


class _Resumed:
    """Awaits the rest of a coroutine whose first step already ran and yielded ``first``:
    what ``await`` would have done from there (futures pass through to the task, and so do
    cancellations, into the coroutine)."""

    __slots__ = ("_coroutine", "_first")

    def __init__(self, coroutine: Any, first: Any) -> None:
        self._coroutine = coroutine
        self._first = first

    def __await__(self) -> Generator[Any, Any, Any]:
        coroutine, yielded = self._coroutine, self._first
        while True:
            try:
                sent = yield yielded
            except BaseException as error:  # thrown in by the task (a cancellation)
                try:
                    yielded = coroutine.throw(error)
                except StopIteration as done:
                    return done.value
            else:
                try:
                    yielded = coroutine.send(sent)
                except StopIteration as done:
                    return done.value


def json_value(data: Any) -> Any:
    """``data`` to publish: a pydantic model as its JSON form, anything else as it is."""
    return data.model_dump(mode="json") if isinstance(data, BaseModel) else data


def invalid_data(error: ValidationError) -> GatewayError:
    """`invalid_data` with pydantic's errors (``loc``, ``msg``, ``type`` each) as details."""
    errors = error.errors(include_url=False, include_context=False, include_input=False)
    details = [
        {"loc": list(item["loc"]), "msg": item["msg"], "type": item["type"]}
        for item in errors[:MAX_DETAILS]
    ]
    count = len(errors)
    more = f" (the first {MAX_DETAILS} are listed)" if count > MAX_DETAILS else ""
    noun = "error" if count == 1 else "errors"
    return GatewayError(
        ErrorCode.INVALID_DATA,
        f"data does not match the channel's model: {count} validation {noun}{more}",
        details=details,
    )


def _register(table: dict[str | None, Any], namespace: str | None, value: Any, kind: str) -> None:
    if namespace is not None and (not isinstance(namespace, str) or not namespace):
        raise ValueError(f"{kind}: a namespace is a non-empty string, or None for every one")
    if namespace in table:
        where = "every namespace" if namespace is None else f"namespace {namespace!r}"
        raise ValueError(f"an {kind} hook is registered already for {where}")
    table[namespace] = value


def _is_async(function: Callable[..., Any]) -> bool:
    if inspect.iscoroutinefunction(function):
        return True
    call = getattr(function, "__call__", None)  # noqa: B004 - an object with async __call__
    return call is not None and inspect.iscoroutinefunction(call)
