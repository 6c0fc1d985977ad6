// The client's pure parts: framing, backoff, close codes, token expiry, stream positions.

import assert from "node:assert/strict";
import { test } from "node:test";
import {
  advance,
  backoffDelay,
  closeAction,
  GatewayClient,
  refreshDelay,
  splitFrames,
  tokenExpiry,
  withName,
} from "../gateway.js";
import { makeToken } from "./helpers.mjs";

test("a frame of several lines yields one object per line, blank lines skipped", () => {
  assert.deepEqual(splitFrames('{"op":"pong"}\n\n{"op":"message","data":1}\n'), [
    { op: "pong" },
    { op: "message", data: 1 },
  ]);
});

test("a frame that is not JSON throws", () => {
  assert.throws(() => splitFrames("{nope"), SyntaxError);
});

test("backoff is full jitter under an exponential cap", () => {
  const limits = { minDelay: 100, maxDelay: 1000 };
  assert.equal(backoffDelay(0, limits, () => 0.999), 99.9);
  assert.equal(backoffDelay(3, limits, () => 0.5), 400);
  assert.equal(backoffDelay(30, limits, () => 0.5), 500);
  assert.equal(backoffDelay(5, limits, () => 0), 0);
});

test("close codes map to the protocol's advice", () => {
  for (const code of [1000, 1003, 1009, 4003]) assert.equal(closeAction(code), "stop", `${code}`);
  assert.equal(closeAction(4001), "refresh");
  for (const code of [1001, 1012]) assert.equal(closeAction(code), "now", `${code}`);
  for (const code of [1006, 1011, 4008, 4029, 1005]) assert.equal(closeAction(code), "backoff");
});

test("token expiry is read from the JWT's exp claim", () => {
  const token = makeToken("alice", 60, "secret");
  assert.equal(tokenExpiry(token), Math.floor(Date.now() / 1000) + 60);
  assert.equal(tokenExpiry("not-a-jwt"), null);
  assert.equal(tokenExpiry(`a.${Buffer.from('{"sub":"x"}').toString("base64url")}.c`), null);
});

test("a token is refreshed a fifth of its remaining life, at most 30 s, before it expires", () => {
  assert.equal(refreshDelay(110, 100_000), 8000);
  assert.equal(refreshDelay(3700, 100_000), 3_570_000);
  assert.equal(refreshDelay(50, 100_000), 0);
});

test("the next offset is delivered and moves the position", () => {
  const position = { offset: 4, epoch: "e1" };
  assert.deepEqual(advance(position, { offset: 5, epoch: "e1" }), {
    verdict: "deliver",
    position: { offset: 5, epoch: "e1" },
    missed: 0,
  });
});

test("an offset already seen is a duplicate and leaves the position", () => {
  const position = { offset: 4, epoch: "e1" };
  for (const offset of [3, 4]) {
    assert.deepEqual(advance(position, { offset, epoch: "e1" }), {
      verdict: "duplicate",
      position,
      missed: 0,
    });
  }
});

test("a jump in offsets is a gap naming how many were missed", () => {
  const result = advance({ offset: 4, epoch: "e1" }, { offset: 8, epoch: "e1" });
  assert.deepEqual(result, { verdict: "gap", position: { offset: 8, epoch: "e1" }, missed: 3 });
});

test("a new epoch resets the position", () => {
  const result = advance({ offset: 40, epoch: "e1" }, { offset: 1, epoch: "e2" });
  assert.deepEqual(result, { verdict: "epoch", position: { offset: 1, epoch: "e2" }, missed: 0 });
});

test("messages without an offset are always delivered", () => {
  const position = { offset: 4, epoch: "e1" };
  assert.deepEqual(advance(position, { data: 1 }), { verdict: "deliver", position, missed: 0 });
  assert.equal(advance(null, { data: 1 }).position, null);
});

test("the first message with an offset starts the position", () => {
  assert.deepEqual(advance(null, { offset: 9, epoch: "e" }).position, { offset: 9, epoch: "e" });
});

test("a client without a WebSocket implementation says so", (t) => {
  const global = globalThis.WebSocket;
  t.after(() => {
    globalThis.WebSocket = global;
  });
  globalThis.WebSocket = undefined;
  assert.throws(() => new GatewayClient("ws://x/ws"), /no WebSocket implementation/);
});

test("a client needs a URL", () => {
  assert.throws(() => new GatewayClient([]), /URL/);
});

test("commands of a closed client fail at once with the code closed", async () => {
  const client = new GatewayClient("ws://127.0.0.1:9/ws", { WebSocket: class {} });
  client.connect().catch(() => {});
  client.close();
  await assert.rejects(client.publish("a", 1), { code: "closed" });
});

test("a display name goes into the URL's query, kept with the other parameters", () => {
  assert.equal(withName("ws://h:1/ws", "Zoë & co"), "ws://h:1/ws?name=Zo%C3%AB+%26+co");
  assert.equal(withName("ws://h:1/ws?x=1&name=old", " bob "), "ws://h:1/ws?x=1&name=bob");
  assert.equal(withName("ws://h:1/ws", "  "), "ws://h:1/ws");
  assert.equal(withName("ws://h:1/ws", undefined), "ws://h:1/ws");
});
