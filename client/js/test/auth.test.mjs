// The browser client against a gateway that requires connection tokens (HS256).

import assert from "node:assert/strict";
import { test } from "node:test";
import { client, makeToken, next, SKIP, URLS, waitFor } from "./helpers.mjs";

test("a token string connects as its user", { skip: SKIP }, async (t) => {
  const gateway = client(t, URLS[0], { token: makeToken("alice", 60) });
  const welcome = await gateway.connect();
  assert.equal(welcome.user, "alice");
});

test("a token getter is asked for the token", { skip: SKIP }, async (t) => {
  const gateway = client(t, URLS[0], { token: async () => makeToken("bob", 60) });
  assert.equal((await gateway.connect()).user, "bob");
});

test("a short-lived token is refreshed before it expires", { skip: SKIP }, async (t) => {
  const issued = [];
  const gateway = client(t, URLS[0], {
    token: async () => {
      const token = makeToken("carol", 3);
      issued.push(token);
      return token;
    },
  });
  const disconnects = [];
  gateway.on("disconnected", (event) => disconnects.push(event));
  await gateway.connect();
  const firstExpiry = JSON.parse(Buffer.from(issued[0].split(".")[1], "base64url")).exp;
  await waitFor(() => issued.length >= 2, "a refresh", 5000);
  await waitFor(() => Date.now() > firstExpiry * 1000 + 1500, "the first token's expiry", 8000);
  assert.deepEqual(disconnects, []);
  assert.equal((await gateway.request({ op: "ping" })).op, "pong");
});

test("a rejected token (4001) is replaced by a new one from the getter", { skip: SKIP }, async (t) => {
  const tokens = [makeToken("dave", 60, "wrong secret"), makeToken("dave", 60)];
  const gateway = client(t, URLS[0], { token: async () => tokens.shift() });
  const disconnected = next(gateway, "disconnected");
  const welcome = await gateway.connect();
  assert.equal((await disconnected).code, 4001);
  assert.equal(welcome.user, "dave");
});

test("a rejected token string stops the client", { skip: SKIP }, async (t) => {
  const gateway = client(t, URLS[0], { token: makeToken("eve", 60, "wrong secret") });
  await assert.rejects(gateway.connect(), { code: "closed" });
  assert.equal(gateway.state, "disconnected");
});
