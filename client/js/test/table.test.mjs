// The browser client against the server's own tables: the close and error codes and the
// subprotocol (the JSON of gateway/wire/errors.py plus SUBPROTOCOL, at GATEWAY_CODE_TABLE) and the continuity
// vectors (client/vectors/continuity.json) that the Python client and the hub follow too.

import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { test } from "node:test";
import { advance, closeAction, encodePositions, RETRYABLE_SUBSCRIBE_ERRORS, SUBPROTOCOL } from "../gateway.js";

const tablePath = process.env.GATEWAY_CODE_TABLE;
const table = tablePath ? JSON.parse(readFileSync(tablePath, "utf8")) : null;
const vectors = JSON.parse(readFileSync(new URL("../../vectors/continuity.json", import.meta.url), "utf8"));
const sseIds = JSON.parse(readFileSync(new URL("../../vectors/sse_ids.json", import.meta.url), "utf8"));

test("the code table is given", () => {
  assert.ok(table, "set GATEWAY_CODE_TABLE to the JSON of python -m gateway.wire.errors --json");
});

test("the subprotocol is the server's", { skip: !table }, () => {
  assert.equal(SUBPROTOCOL, table.subprotocol);
});

test("every close code is followed as the table says", { skip: !table }, () => {
  for (const [code, rule] of Object.entries(table.closes)) {
    assert.equal(closeAction(Number(code)), rule.action, `close code ${code}`);
  }
  assert.equal(closeAction(1006), table.unlisted_close_action, "a code the table does not list");
});

test("a disconnect frame's reconnect overrides the code", { skip: !table }, () => {
  for (const [code, rule] of Object.entries(table.closes)) {
    assert.equal(closeAction(Number(code), false), "stop", `close code ${code}, reconnect false`);
    const expected = rule.action === "stop" ? table.unlisted_close_action : rule.action;
    assert.equal(closeAction(Number(code), true), expected, `close code ${code}, reconnect true`);
  }
});

test("exactly the retryable error codes retry a subscribe", { skip: !table }, () => {
  const retryable = Object.entries(table.errors).filter(([, rule]) => rule.retry).map(([code]) => code);
  assert.deepEqual([...RETRYABLE_SUBSCRIBE_ERRORS].sort(), retryable.sort());
});

for (const vector of vectors.vectors) {
  test(`continuity: ${vector.name}`, () => {
    const step = advance(vector.position, vector.message);
    assert.deepEqual(step, { verdict: vector.verdict, position: vector.after, missed: vector.missed });
  });
}

// offsets past 2^53 have no exact JavaScript number (nor in any JSON a browser parses)
const exact = (vector) => vector.positions.every((p) => p === null || Number.isSafeInteger(p.offset));
for (const vector of sseIds.vectors.filter(exact)) {
  test(`SSE event id: ${vector.name}`, () => {
    assert.equal(encodePositions(vector.positions), vector.id);
  });
}
