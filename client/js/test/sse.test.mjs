// The browser client over its SSE transport (GET /sse and POST /publish), against real
// replicas sharing one Redis, with an EventSource over node's fetch: the same API and
// events as over a WebSocket, streams reopened without loss or duplicate, the fallback, and
// a stream that resumes from its Last-Event-ID on another replica after a kill.

import assert from "node:assert/strict";
import { test } from "node:test";
import { GatewayClient } from "../gateway.js";
import { channel, client, next, record, SKIP, startProxy, TestEventSource, URLS, VICTIM, waitFor } from "./helpers.mjs";

const SSE = { transports: ["sse"], EventSource: TestEventSource };

/** A WebSocket whose every connection fails before it opens (as through a proxy that refuses upgrades). */
class RefusedWebSocket {
  constructor() {
    setTimeout(() => this.onclose?.({ code: 1006, reason: "refused" }), 0);
  }
  send() {}
  close() {}
}

test("over SSE: the same connect, subscribe, publish and message events", { skip: SKIP }, async (t) => {
  const room = channel();
  const gateway = client(t, URLS[0], SSE);
  const events = record(gateway, ["connected"]);
  const received = [];
  const subscription = gateway.subscribe(room, (message) => received.push(message));
  const welcome = await gateway.connect();
  assert.equal(welcome.transport, "sse");
  assert.equal(gateway.transport, "sse");
  const subscribed = await next(subscription, "subscribed");
  assert.equal(subscribed.recovered, false);
  const reply = await gateway.publish(room, { text: "over http" });
  assert.equal(reply.op, "published");
  await waitFor(() => received.length === 1, "the message");
  assert.equal(received[0].offset, reply.offset);
  assert.equal(received[0].from.client, welcome.client);
  assert.equal(events.length, 1);
  await assert.rejects(gateway.history(room), { code: "unsupported" });
});

test("subscribing and unsubscribing over SSE lose and repeat nothing", { skip: SKIP }, async (t) => {
  const room = channel();
  const writer = client(t, URLS[1]);
  const reader = client(t, URLS[0], SSE);
  const received = [];
  const first = reader.subscribe(room, (message) => received.push(message.data));
  await Promise.all([writer.connect(), reader.connect()]);
  await next(first, "subscribed");
  let sent = 0;
  let stop = false;
  const writing = (async () => {
    while (!stop && sent < 400) await writer.publish(room, sent++);
  })();
  for (let round = 0; round < 4; round++) {
    const other = reader.subscribe(channel(), () => {});
    await next(other, "subscribed");
    other.unsubscribe();
  }
  stop = true;
  await writing;
  await waitFor(() => received.length >= sent, `${sent} messages`, 10000);
  assert.deepEqual(received, Array.from({ length: sent }, (_, n) => n));
});

test("the client falls back to SSE when the WebSocket cannot open", { skip: SKIP }, async (t) => {
  const gateway = client(t, URLS[0], { WebSocket: RefusedWebSocket, EventSource: TestEventSource, fallbackAfter: 2 });
  const switched = next(gateway, "transport");
  const welcome = await gateway.connect();
  assert.deepEqual(await switched, { transport: "sse", previous: "websocket" });
  assert.equal(welcome.transport, "sse");
  const room = channel();
  const received = [];
  const subscription = gateway.subscribe(room, (message) => received.push(message.data));
  await next(subscription, "subscribed");
  await gateway.publish(room, "fallen back");
  await waitFor(() => received.length === 1, "the message");
});

test("a publish over SSE whose reply was lost is sent again and delivered once", { skip: SKIP }, async (t) => {
  const room = channel();
  const reader = client(t, URLS[1]);
  const received = [];
  const subscription = reader.subscribe(room, (message) => received.push(message));
  await reader.connect();
  await next(subscription, "subscribed");
  const proxy = await startProxy(t, URLS[0]);
  const sender = client(t, proxy.url, SSE);
  await sender.connect();
  proxy.freezeReplies();
  const published = sender.publish(room, "once");
  await waitFor(() => received.length === 1, "the message");
  proxy.cut();
  proxy.thaw();
  const reply = await published;
  assert.equal(reply.offset, received[0].offset);
  await sender.publish(room, "after");
  await waitFor(() => received.length === 2, "the next message");
  assert.deepEqual(received.map((m) => m.data), ["once", "after"]);
});

test(
  "a stream resumes from its Last-Event-ID on another replica after its replica is killed",
  { skip: SKIP || !VICTIM },
  async (t) => {
    const room = channel();
    const proxy = await startProxy(t, VICTIM.url);
    const writer = client(t, URLS[1]);
    const reader = client(t, proxy.url, SSE);
    const received = [];
    const subscription = reader.subscribe(room, (message) => received.push(message.data));
    const events = record(reader, ["disconnected", "connected"]);
    await Promise.all([writer.connect(), reader.connect()]);
    await next(subscription, "subscribed");
    await writer.publish(room, 1);
    await waitFor(() => received.length === 1, "the first message");
    const stream = reader._socket.ws._streams.at(-1).source;
    assert.ok(stream.lastEventId.startsWith("1."));
    proxy.target = Number(new URL(URLS[0]).port);
    process.kill(VICTIM.pid, "SIGKILL");
    await waitFor(() => events.some(([name]) => name === "disconnected"), "the interruption");
    await writer.publish(room, 2);
    await writer.publish(room, 3);
    await waitFor(() => received.length === 3, "the missed messages", 10000);
    assert.deepEqual(received, [1, 2, 3]);
    assert.equal(stream.connections, 2, "EventSource itself reconnected");
    assert.deepEqual(events.map(([name]) => name), ["connected", "disconnected", "connected"]);
    await writer.publish(room, 4);
    await waitFor(() => received.length === 4, "the live stream");
    assert.deepEqual(received, [1, 2, 3, 4]);
  },
);
