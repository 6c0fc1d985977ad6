"""The hooks service (gateway/services/hooks.py) on its own: registration, which hook
applies, how hooks run, and what their failures become."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest
from pydantic import BaseModel, Field

from gateway import Principal, Reject
from gateway.services.hooks import MAX_DETAILS, Hooks
from gateway.wire.errors import ErrorCode, GatewayError


class Line(BaseModel):
    text: str = Field(min_length=1)


def test_reject_takes_a_protocol_code_and_defaults_its_message() -> None:
    assert Reject("forbidden", "no").code is ErrorCode.FORBIDDEN
    assert Reject(ErrorCode.UNAVAILABLE).message == "the broker is unreachable; retry later"
    with pytest.raises(ValueError):
        Reject("teapot", "short and stout")


def test_a_principal_reads_as_the_claims_of_a_token() -> None:
    granted = Principal(user="ada", info={"name": "Ada"}, channels=["chat:*"], publish=[])
    assert granted.channels == ("chat:*",) and granted.publish == ()
    identity = granted.identity()
    assert (identity.user, identity.info, identity.channels, identity.publish) == (
        "ada",
        {"name": "Ada"},
        ("chat:*",),
        (),
    )
    plain = Principal(user="bob").identity()
    assert plain.channels is None and plain.publish is None and plain.authenticated


@pytest.mark.parametrize(
    "arguments",
    [
        {"user": ""},
        {"user": None},
        {"user": "a", "channels": "chat:*"},
        {"user": "a", "publish": [1]},
    ],
)
def test_a_principal_refuses_what_no_token_could_say(arguments: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        Principal(**arguments)


def test_one_hook_per_namespace_method_and_event() -> None:
    hooks = Hooks()
    hooks.add_subscribe("chat", lambda request: None)
    hooks.add_subscribe(None, lambda request: None)
    with pytest.raises(ValueError, match="namespace 'chat'"):
        hooks.add_subscribe("chat", lambda request: None)
    with pytest.raises(ValueError, match="every namespace"):
        hooks.add_subscribe(None, lambda request: None)
    hooks.add_rpc("whoami", lambda request: None)
    with pytest.raises(ValueError):
        hooks.add_rpc("whoami", lambda request: None)
    with pytest.raises(ValueError):
        hooks.add_rpc("", lambda request: None)
    hooks.add_connect(lambda request: None)
    with pytest.raises(ValueError):
        hooks.add_connect(lambda request: None)
    with pytest.raises(TypeError):
        hooks.add_disconnect("not callable")  # type: ignore[arg-type]


def test_no_hook_is_registered_once_the_gateway_started() -> None:
    hooks = Hooks()
    hooks.start()
    with pytest.raises(RuntimeError, match="before the gateway starts"):
        hooks.add_publish("chat", lambda request: None)


def test_a_namespaces_own_hook_replaces_the_catch_all() -> None:
    hooks = Hooks()
    own, catch_all = (lambda request: "own"), (lambda request: "all")
    hooks.add_publish("chat", own)
    hooks.add_publish(None, catch_all)
    assert hooks.publishes_through("chat:x").hook.function is own  # type: ignore[union-attr]
    assert hooks.publishes_through("$chat:x").hook.function is own  # type: ignore[union-attr]
    assert hooks.publishes_through("news:x").hook.function is catch_all  # type: ignore[union-attr]
    assert hooks.publishes_through("lobby").hook.function is catch_all  # type: ignore[union-attr]
    assert Hooks().publishes_through("chat:x") is None


async def test_validation_comes_first_and_none_publishes_the_data_as_sent() -> None:
    hooks = Hooks()
    calls: list[Any] = []

    async def record(request: Any) -> None:
        calls.append(request.data)

    hooks.add_publish("chat", record, Line)
    rule = hooks.publishes_through("chat:x")
    assert rule is not None
    sent = {"text": "hi", "extra": 1}
    assert await hooks.publish(rule, "chat:x", sent, "u", "c", None) is sent
    assert calls == [Line(text="hi")]
    with pytest.raises(GatewayError) as invalid:
        await hooks.publish(rule, "chat:x", {"text": ""}, "u", "c", None)
    assert invalid.value.code is ErrorCode.INVALID_DATA and len(calls) == 1


async def test_invalid_data_lists_at_most_max_details_errors() -> None:
    hooks = Hooks()
    hooks.add_publish("ints", lambda request: None, list[int])
    rule = hooks.publishes_through("ints:x")
    assert rule is not None
    with pytest.raises(GatewayError) as invalid:
        await hooks.publish(rule, "ints:x", ["x"] * 100, None, "c", None)
    assert invalid.value.details is not None and len(invalid.value.details) == MAX_DETAILS
    assert invalid.value.details[0] == {
        "loc": [0],
        "msg": "Input should be a valid integer, unable to parse string as an integer",
        "type": "int_parsing",
    }
    assert "100 validation errors (the first 32 are listed)" in invalid.value.message


async def test_a_replacement_model_is_published_as_json_and_a_non_json_value_is_internal() -> None:
    hooks = Hooks()
    hooks.add_publish("a", lambda request: Line(text="replaced"))
    hooks.add_publish("b", lambda request: object())
    rule_a, rule_b = hooks.publishes_through("a:x"), hooks.publishes_through("b:x")
    assert rule_a is not None and rule_b is not None
    assert await hooks.publish(rule_a, "a:x", 1, None, "c", None) == {"text": "replaced"}
    with pytest.raises(GatewayError) as bad:
        await hooks.publish(rule_b, "b:x", 1, None, "c", None)
    assert bad.value.code is ErrorCode.INTERNAL


async def test_plain_defs_run_in_a_thread_and_async_defs_in_the_task() -> None:
    hooks = Hooks()
    hooks.add_rpc("thread", lambda request: threading.current_thread() is threading.main_thread())

    async def here(request: Any) -> bool:
        await asyncio.sleep(0)
        return threading.current_thread() is threading.main_thread()

    hooks.add_rpc("task", here)
    assert await hooks.rpc("thread", None, None, "c", None) is False
    assert await hooks.rpc("task", None, None, "c", None) is True


async def test_a_hook_that_waits_past_the_timeout_is_cancelled_and_internal() -> None:
    hooks = Hooks(timeout=0.05)
    cancelled = asyncio.Event()

    async def forever(request: Any) -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    hooks.add_rpc("forever", forever)
    with pytest.raises(GatewayError) as late:
        await hooks.rpc("forever", None, None, "c", None)
    assert late.value.code is ErrorCode.INTERNAL and cancelled.is_set()


async def test_a_suspended_hook_sees_its_awaits_results_and_exceptions() -> None:
    hooks = Hooks()

    async def awaits(request: Any) -> Any:
        loop = asyncio.get_running_loop()
        value = loop.create_future()
        loop.call_soon(value.set_result, 41)
        failing = loop.create_future()
        loop.call_soon(failing.set_exception, KeyError("inner"))
        try:
            await failing
        except KeyError:
            return await value + 1
        return None

    hooks.add_rpc("awaits", awaits)
    assert await hooks.rpc("awaits", None, None, "c", None) == 42


async def test_an_unknown_method_and_a_failing_method(caplog: pytest.LogCaptureFixture) -> None:
    hooks = Hooks()

    def failing(request: Any) -> None:
        raise ZeroDivisionError("a bug")

    hooks.add_rpc("failing", failing)
    with pytest.raises(GatewayError) as unknown:
        await hooks.rpc("nope", None, None, "c", None)
    assert unknown.value.code is ErrorCode.UNKNOWN_METHOD
    with pytest.raises(GatewayError) as failed:
        await hooks.rpc("failing", None, None, "c", None)
    assert failed.value.code is ErrorCode.INTERNAL
    assert "ZeroDivisionError: a bug" in caplog.text


async def test_on_connect_must_return_a_principal_or_none() -> None:
    hooks = Hooks()
    hooks.add_connect(lambda request: {"user": "ada"})
    with pytest.raises(GatewayError) as bad:
        await hooks.connect(None)  # type: ignore[arg-type]
    assert bad.value.code is ErrorCode.INTERNAL


async def test_on_disconnect_never_raises() -> None:
    hooks = Hooks()

    async def failing(event: Any) -> None:
        raise Reject("forbidden", "ignored")

    hooks.add_disconnect(failing)
    await hooks.disconnect("c", None, 1000)
