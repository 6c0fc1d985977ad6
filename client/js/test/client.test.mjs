// The browser client against real gateway replicas sharing one Redis: what works on any
// protocol-v1 server (connect, subscribe, publish, queueing, errors, close codes,
// reconnects and keepalive).

import assert from "node:assert/strict";
import { test } from "node:test";
import { GatewayError } from "../gateway.js";
import { channel, client, next, record, SKIP, startProxy, URLS, VICTIM, waitFor } from "./helpers.mjs";

test("connects and reports the replica in the connected event", { skip: SKIP }, async (t) => {
  const gateway = client(t, URLS[0]);
  const events = record(gateway, ["connecting", "connected"]);
  const welcome = await gateway.connect();
  assert.equal(gateway.state, "connected");
  assert.equal(welcome.url, URLS[0]);
  assert.ok(welcome.node && welcome.client);
  assert.deepEqual(events.map(([name]) => name), ["connecting", "connected"]);
  assert.equal(events[0][1].url, URLS[0]);
});

test("a publication on one replica reaches a subscriber on another", { skip: SKIP }, async (t) => {
  const room = channel();
  const alice = client(t, URLS[0]);
  const bob = client(t, URLS[1]);
  const received = [];
  alice.subscribe(room, { message: (message) => received.push(message) });
  const subscribed = next(alice.subscriptions.get(room), "subscribed");
  const [aliceWelcome, bobWelcome] = await Promise.all([alice.connect(), bob.connect()]);
  assert.notEqual(aliceWelcome.node, bobWelcome.node);
  await subscribed;
  const reply = await bob.publish(room, { text: "hi from bob" });
  assert.equal(reply.op, "published");
  assert.equal(reply.channel, room);
  await waitFor(() => received.length === 1, "the message");
  assert.deepEqual(received[0].data, { text: "hi from bob" });
  assert.equal(received[0].from.client, bobWelcome.client);
});

test("commands made before the socket opens are queued and sent in order", { skip: SKIP }, async (t) => {
  const room = channel();
  const gateway = client(t, URLS[0]);
  const received = [];
  gateway.subscribe(room, (message) => received.push(message.data));
  const published = [gateway.publish(room, "one"), gateway.publish(room, "two")];
  gateway.connect();
  await Promise.all(published);
  await waitFor(() => received.length === 2, "both messages");
  assert.deepEqual(received, ["one", "two"]);
});

test("every message of a burst arrives once and in order", { skip: SKIP }, async (t) => {
  const room = channel();
  const receiver = client(t, URLS[0]);
  const sender = client(t, URLS[1]);
  const received = [];
  const subscription = receiver.subscribe(room, (message) => received.push(message.data));
  const subscribed = next(subscription, "subscribed");
  await Promise.all([receiver.connect(), sender.connect()]);
  await subscribed;
  const count = 300;
  await Promise.all(Array.from({ length: count }, (_, n) => sender.publish(room, n)));
  await waitFor(() => received.length === count, `${count} messages`, 10000);
  assert.deepEqual(received, Array.from({ length: count }, (_, n) => n));
});

test("a refused publish rejects with an Error carrying the code", { skip: SKIP }, async (t) => {
  const gateway = client(t, URLS[0]);
  await gateway.connect();
  const forbidden = await gateway.publish(channel("nopub"), "x").catch((error) => error);
  assert.ok(forbidden instanceof GatewayError && forbidden instanceof Error);
  assert.equal(forbidden.code, "forbidden");
  await assert.rejects(gateway.publish("bad channel", 1), { code: "bad_request" });
  await assert.rejects(gateway.request({ op: "warp" }), { code: "unknown_op" });
  assert.equal(gateway.state, "connected");
});

test("a subscription the server refuses emits error and is dropped", { skip: SKIP }, async (t) => {
  const gateway = client(t, URLS[0]);
  await gateway.connect();
  const subscription = gateway.subscribe("bad channel");
  const error = await next(subscription, "error");
  assert.equal(error.code, "bad_request");
  assert.equal(subscription.state, "failed");
  assert.equal(gateway.subscriptions.has("bad channel"), false);
});

test("subscribing twice to one channel throws", { skip: SKIP }, async (t) => {
  const gateway = client(t, URLS[0]);
  const room = channel();
  gateway.subscribe(room);
  assert.throws(() => gateway.subscribe(room), /already subscribed/);
});

test("after unsubscribe no message of the channel arrives", { skip: SKIP }, async (t) => {
  const [left, kept] = [channel(), channel()];
  const receiver = client(t, URLS[0]);
  const sender = client(t, URLS[1]);
  const received = [];
  const leaving = receiver.subscribe(left, (message) => received.push(message.channel));
  receiver.subscribe(kept, (message) => received.push(message.channel));
  await Promise.all([receiver.connect(), sender.connect()]);
  await waitFor(() => leaving.state === "subscribed", "subscribed");
  const unsubscribed = next(leaving, "unsubscribed");
  leaving.unsubscribe();
  await unsubscribed;
  await receiver.request({ op: "ping" });
  await sender.publish(left, "gone");
  await sender.publish(kept, "here");
  await waitFor(() => received.length === 1, "the kept channel's message");
  assert.deepEqual(received, [kept]);
});

test("a frame over the size limit closes with 1009 and the client stops", { skip: SKIP }, async (t) => {
  const gateway = client(t, URLS[0]);
  await gateway.connect();
  const disconnected = next(gateway, "disconnected");
  const publish = gateway.publish(channel(), "x".repeat(20000));
  const event = await disconnected;
  assert.equal(event.code, 1009);
  assert.equal(event.reconnect, false);
  assert.equal(gateway.state, "disconnected");
  // a publish outlives a dropped connection (it is sent again), not a client that stopped
  await assert.rejects(publish, { code: "closed" });
  await assert.rejects(gateway.publish(channel(), 1), { code: "closed" });
});

test("a dropped connection reconnects and resubscribes", { skip: SKIP }, async (t) => {
  const proxy = await startProxy(t, URLS[0]);
  const room = channel();
  const gateway = client(t, proxy.url);
  const sender = client(t, URLS[1]);
  const received = [];
  const subscription = gateway.subscribe(room, (message) => received.push(message.data));
  await Promise.all([gateway.connect(), sender.connect()]);
  await waitFor(() => subscription.state === "subscribed", "subscribed");
  const disconnected = next(gateway, "disconnected");
  const resubscribed = next(subscription, "subscribed");
  proxy.cut();
  const event = await disconnected;
  assert.equal(event.code, 1006);
  assert.equal(event.reconnect, true);
  assert.ok(event.delay >= 0 && event.delay <= 200);
  assert.equal((await resubscribed).resubscribed, true);
  await sender.publish(room, "after the drop");
  await waitFor(() => received.includes("after the drop"), "the message after the drop");
});

test("a client given several URLs moves on when its replica vanishes", { skip: SKIP }, async (t) => {
  const proxy = await startProxy(t, URLS[0]);
  const gateway = client(t, [proxy.url, URLS[1]]);
  const first = await gateway.connect();
  const reconnected = next(gateway, "connected");
  proxy.target = null;
  proxy.cut();
  const second = await reconnected;
  assert.equal(second.url, URLS[1]);
  assert.notEqual(second.node, first.node);
});

test("a connection that stops answering pings is dropped and replaced", { skip: SKIP }, async (t) => {
  const proxy = await startProxy(t, URLS[0]);
  const gateway = client(t, proxy.url, { pingInterval: 150, pongTimeout: 300 });
  await gateway.connect();
  const disconnected = next(gateway, "disconnected");
  const reconnected = next(gateway, "connected");
  proxy.freeze();
  const event = await disconnected;
  assert.match(event.reason, /no pong/);
  assert.equal(event.reconnect, true);
  await reconnected;
  assert.equal(gateway.state, "connected");
});

const NO_VICTIM = SKIP || (!VICTIM && "needs a replica to terminate (GW_TEST_VICTIM)");

test("a server going away is left at once for the next URL", { skip: NO_VICTIM }, async (t) => {
  const gateway = client(t, [VICTIM.url, URLS[0]], { minDelay: 60000, maxDelay: 60000 });
  await gateway.connect();
  const disconnected = next(gateway, "disconnected", 20000);
  const reconnected = next(gateway, "connected", 20000);
  process.kill(VICTIM.pid, "SIGTERM");
  const event = await disconnected;
  assert.ok([1001, 1012].includes(event.code), `close code ${event.code}`);
  assert.equal(event.delay, 0);
  assert.equal((await reconnected).url, URLS[0]);
});

test("close() ends the connection for good and fails what is pending", { skip: SKIP }, async (t) => {
  const gateway = client(t, URLS[0]);
  await gateway.connect();
  const disconnected = next(gateway, "disconnected");
  const queued = gateway.request({ op: "ping" });
  gateway.close();
  assert.deepEqual(await disconnected, {
    code: 1000,
    reason: "closed by the client",
    reconnect: false,
    delay: null,
  });
  await assert.rejects(queued, { code: /closed|disconnected/ });
  await assert.rejects(gateway.publish(channel(), 1), { code: "closed" });
});
