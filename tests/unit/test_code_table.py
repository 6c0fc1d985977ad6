"""The one table of error and close codes (gateway/wire/errors.py) and everything that must
agree with it: docs/protocol.md, both clients' reconnect policies, `Disconnect` values."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gateway.wire import errors
from gateway.wire.errors import CLOSES, ERRORS, CloseCode, Disconnect, ErrorCode, close_action
from gateway.wire.protocol import SUBPROTOCOL
from gateway_client import policy
from gateway_client.client import RETRYABLE_SUBSCRIBE_ERRORS as CLIENT_RETRYABLE
from tests.support.gateways import REPO_ROOT
from tests.support.node import run_node_suite

PROTOCOL_DOC = REPO_ROOT / "docs" / "protocol.md"


def test_every_code_has_a_row() -> None:
    assert set(ERRORS) == set(ErrorCode) and set(CLOSES) == set(CloseCode)


@pytest.mark.parametrize("table", errors.markdown_tables(), ids=["errors", "closes"])
def test_the_tables_of_docs_protocol_md_are_the_code_table(table: str) -> None:
    assert table in PROTOCOL_DOC.read_text(), (
        "docs/protocol.md differs from gateway/wire/errors.py: paste the output of "
        "`python -m gateway.wire.errors` over its two tables"
    )


def test_every_disconnect_reconnects_as_its_close_code_says() -> None:
    values = [value for value in vars(errors).values() if isinstance(value, Disconnect)]
    assert len(values) >= 10
    for value in values:
        assert value.reconnect is (CLOSES[value.code].action != "stop"), value


def test_the_python_client_follows_the_table() -> None:
    for code, rule in CLOSES.items():
        assert policy.close_action(int(code)) == rule.action
    assert policy.close_action(1006) == errors.UNLISTED_CLOSE_ACTION
    retryable = {code.value for code, rule in ERRORS.items() if rule.retry}
    assert retryable == CLIENT_RETRYABLE == {"unavailable", "internal", "rate_limited"}


@pytest.mark.parametrize("code", [int(code) for code in CloseCode])
def test_a_disconnect_frames_reconnect_overrides_the_code(code: int) -> None:
    assert close_action(code, False) == "stop"
    assert close_action(code, True) != "stop"
    assert close_action(code, None) == CLOSES[CloseCode(code)].action


def test_the_browser_client_follows_the_table(tmp_path: Path) -> None:
    table = tmp_path / "codes.json"
    table.write_text(json.dumps({**errors.as_json(), "subprotocol": SUBPROTOCOL}))
    status, output = run_node_suite("table", {"GATEWAY_CODE_TABLE": str(table)})
    assert status == 0, output
    assert "# fail 0" in output and "# skipped 0" in output, output
