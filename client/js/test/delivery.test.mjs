// Delivery across failures, against real replicas sharing one Redis: a publish whose reply
// was lost with its replica (SIGKILL) is sent again, with its idempotency key, to another
// replica, and is delivered once.

import assert from "node:assert/strict";
import { test } from "node:test";
import { newIdempotencyKey } from "../gateway.js";
import { channel, client, next, SKIP, startProxy, URLS, VICTIM, waitFor } from "./helpers.mjs";

test("every publish carries a fresh idempotency key; a repeated key publishes once", { skip: SKIP }, async (t) => {
  const room = channel();
  const gateway = client(t, URLS[0]);
  const received = [];
  const subscription = gateway.subscribe(room, (message) => received.push(message));
  await gateway.connect();
  await next(subscription, "subscribed");
  assert.notEqual(newIdempotencyKey(), newIdempotencyKey());
  const first = await gateway.publish(room, "a", { idempotencyKey: "same" });
  const again = await gateway.publish(room, "a", { idempotencyKey: "same" });
  const other = await gateway.publish(room, "b");
  assert.equal(again.offset, first.offset);
  assert.equal(other.offset, first.offset + 1);
  await waitFor(() => received.length === 2, "two messages");
  assert.deepEqual(received.map((m) => m.data), ["a", "b"]);
});

test("unacknowledged publishes are bounded", { skip: SKIP }, async (t) => {
  const gateway = client(t, URLS[0], { maxUnacknowledged: 2 });
  const waiting = [gateway.publish(channel(), 1), gateway.publish(channel(), 2)];
  await assert.rejects(gateway.publish(channel(), 3), { code: "overflow" });
  gateway.connect();
  await Promise.all(waiting);
});

test("a publish not acknowledged in time rejects, saying it may have been published", { skip: SKIP }, async (t) => {
  const proxy = await startProxy(t, URLS[0]);
  const gateway = client(t, proxy.url, { publishTimeout: 300, pingInterval: 60000 });
  await gateway.connect();
  proxy.freezeReplies();
  await assert.rejects(gateway.publish(channel(), 1), (error) => {
    assert.equal(error.code, "timeout");
    assert.match(error.message, /may or may not have been published/);
    return true;
  });
});

test(
  "a publish in flight when its replica is killed is resent to another and delivered once",
  { skip: SKIP || !VICTIM },
  async (t) => {
    const room = channel();
    const receiver = client(t, URLS[0]);
    const received = [];
    const subscription = receiver.subscribe(room, (message) => received.push(message));
    await receiver.connect();
    await next(subscription, "subscribed");
    const proxy = await startProxy(t, VICTIM.url);
    const sender = client(t, [proxy.url, URLS[1]]);
    const connected = await sender.connect();
    assert.equal(connected.url, proxy.url);
    proxy.freezeReplies();
    let settled = 0;
    const published = sender.publish(room, "once").finally(() => settled++);
    await waitFor(() => received.length === 1, "the message, published by the doomed replica");
    const reconnected = next(sender, "connected");
    process.kill(VICTIM.pid, "SIGKILL");
    const reply = await published;
    assert.equal((await reconnected).url, URLS[1]);
    assert.equal(reply.offset, received[0].offset);
    await sender.publish(room, "after");
    await waitFor(() => received.length >= 2, "the next message");
    assert.deepEqual(received.map((m) => m.data), ["once", "after"]);
    assert.equal(settled, 1);
  },
);

test("latest: the newest message follows subscribed, and is not repeated after a reconnect", { skip: SKIP }, async (t) => {
  const room = channel();
  const writer = client(t, URLS[1]);
  await writer.connect();
  for (const n of [1, 2, 3]) await writer.publish(room, n);
  const proxy = await startProxy(t, URLS[0]);
  const reader = client(t, proxy.url);
  const received = [];
  const subscription = reader.subscribe(room, (m) => received.push(m.data), { latest: true, recover: false });
  await reader.connect();
  await waitFor(() => received.length === 1, "the latest message");
  assert.deepEqual(received, [3]);
  const resubscribed = next(subscription, "subscribed", 5000, (event) => event.resubscribed);
  proxy.cut();
  await resubscribed;
  await writer.publish(room, 4);
  await waitFor(() => received.length === 2, "the live message");
  assert.deepEqual(received, [3, 4]);
});
