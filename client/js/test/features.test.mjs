// The browser client against the server's history, recovery and presence: nothing is lost
// across a reconnect, and what cannot be recovered is said.

import assert from "node:assert/strict";
import { test } from "node:test";
import { channel, client, next, SKIP, startProxy, URLS, waitFor } from "./helpers.mjs";

/** A subscriber behind a proxy (so the test can drop it) and a publisher on another replica. */
async function pair(t, room) {
  const proxy = await startProxy(t, URLS[0]);
  const subscriber = client(t, proxy.url);
  const publisher = client(t, URLS[1]);
  const received = [];
  const subscription = subscriber.subscribe(room, (message) => received.push(message));
  await Promise.all([subscriber.connect(), publisher.connect()]);
  await waitFor(() => subscription.state === "subscribed", "subscribed");
  return { proxy, subscriber, publisher, subscription, received };
}

/** Drop the subscriber and keep it out until `whileDown()` is done. */
async function dropDuring(proxy, subscriber, whileDown) {
  const port = proxy.target;
  proxy.target = null;
  const disconnected = next(subscriber, "disconnected");
  proxy.cut();
  await disconnected;
  await whileDown();
  proxy.target = port;
}

test("messages published while disconnected are recovered once, in order", { skip: SKIP }, async (t) => {
  const room = channel("js");
  const { proxy, subscriber, publisher, subscription, received } = await pair(t, room);
  await publisher.publish(room, "before");
  await waitFor(() => received.length === 1, "the first message");
  const resubscribed = next(subscription, "subscribed", 6000, (event) => event.resubscribed);
  await dropDuring(proxy, subscriber, async () => {
    for (const text of ["missed 1", "missed 2", "missed 3"]) await publisher.publish(room, text);
  });
  const event = await resubscribed;
  assert.equal(event.recovered, true);
  assert.equal(event.missed, 3);
  await publisher.publish(room, "live");
  await waitFor(() => received.length === 5, "every message");
  assert.deepEqual(
    received.map((message) => message.data),
    ["before", "missed 1", "missed 2", "missed 3", "live"],
  );
  const offsets = received.map((message) => message.offset);
  assert.deepEqual(offsets, offsets.map((_, index) => offsets[0] + index));
});

test("a subscriber that saw nothing yet recovers from its subscribe position", { skip: SKIP }, async (t) => {
  const room = channel("js");
  const { proxy, subscriber, publisher, received } = await pair(t, room);
  await dropDuring(proxy, subscriber, async () => {
    await publisher.publish(room, "one");
    await publisher.publish(room, "two");
  });
  await waitFor(() => received.length === 2, "both messages", 6000);
  assert.deepEqual(received.map((message) => message.data), ["one", "two"]);
});

test("missed messages beyond the retained window are reported as unrecovered", { skip: SKIP }, async (t) => {
  const room = channel("short");
  const { proxy, subscriber, publisher, subscription, received } = await pair(t, room);
  await publisher.publish(room, 0);
  await waitFor(() => received.length === 1, "the first message");
  const unrecovered = next(subscription, "unrecovered", 6000);
  await dropDuring(proxy, subscriber, async () => {
    for (let n = 1; n <= 5; n += 1) await publisher.publish(room, n);
  });
  const event = await unrecovered;
  assert.equal(event.reason, "recovery_failed");
  assert.equal(event.recovered, false);
  await publisher.publish(room, "live");
  await waitFor(() => received.at(-1)?.data === "live", "the live stream after it");
});

test("history returns the latest messages with their offsets", { skip: SKIP }, async (t) => {
  const room = channel("js");
  const gateway = client(t, URLS[0]);
  await gateway.connect();
  for (const n of [1, 2, 3]) await gateway.publish(room, n);
  const latest = await gateway.history(room, { limit: 2 });
  assert.deepEqual(latest.messages.map((message) => message.data), [2, 3]);
  const since = { offset: latest.messages[0].offset - 1, epoch: latest.epoch };
  const after = await gateway.history(room, { since });
  assert.deepEqual(after.messages.map((message) => message.data), [2, 3]);
});

test("historyPages follows more until every matching message is read", { skip: SKIP }, async (t) => {
  const room = channel("js");
  const gateway = client(t, URLS[0]);
  await gateway.connect();
  const padding = "x".repeat(600);
  for (let n = 0; n < 10; n++) await gateway.publish(room, [n, padding]);
  const first = await gateway.history(room);
  assert.equal(first.more, true, "the replicas here bound a reply to 2 KiB");
  const pages = [];
  for await (const page of gateway.historyPages(room)) pages.push(page);
  assert.ok(pages.length > 1);
  assert.deepEqual(pages.map((page) => page.more), [...pages.slice(1).map(() => true), false]);
  const data = pages.flatMap((page) => page.messages.map((message) => message.data[0]));
  assert.deepEqual(data, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
  const latest = [];
  for await (const page of gateway.historyPages(room, { limit: 6 })) latest.push(...page.messages);
  assert.deepEqual(latest.map((message) => message.data[0]), [4, 5, 6, 7, 8, 9]);
});

test("presence lists the clients of a channel on every replica", { skip: SKIP }, async (t) => {
  const room = channel("pres");
  const alice = client(t, URLS[0]);
  const bob = client(t, URLS[1]);
  const aliceSubscription = alice.subscribe(room);
  const bobSubscription = bob.subscribe(room);
  const [aliceWelcome, bobWelcome] = await Promise.all([alice.connect(), bob.connect()]);
  await waitFor(
    () => aliceSubscription.state === "subscribed" && bobSubscription.state === "subscribed",
    "both subscribed",
  );
  const { clients } = await alice.presence(room);
  assert.deepEqual(Object.keys(clients).sort(), [aliceWelcome.client, bobWelcome.client].sort());
});

test("presence where the namespace has it off rejects with a code", { skip: SKIP }, async (t) => {
  const gateway = client(t, URLS[0]);
  await gateway.connect();
  const error = await gateway.presence(channel("js")).catch((failure) => failure);
  assert.equal(typeof error.code, "string");
  assert.equal(gateway.state, "connected");
});

test("join and leave reach the subscription", { skip: SKIP }, async (t) => {
  const room = channel("pres");
  const watcher = client(t, URLS[0]);
  const subscription = watcher.subscribe(room);
  await watcher.connect();
  await waitFor(() => subscription.state === "subscribed", "subscribed");
  const joined = next(subscription, "join");
  const visitor = client(t, URLS[1]);
  visitor.subscribe(room);
  const visitorWelcome = await visitor.connect();
  assert.equal((await joined).client, visitorWelcome.client);
  const left = next(subscription, "leave");
  visitor.close();
  assert.equal((await left).client, visitorWelcome.client);
});

test("a display name shows in presence, join and from.info; a function is asked at each connection", { skip: SKIP }, async (t) => {
  const room = channel("pres");
  const watcher = client(t, URLS[0], { name: "Watcher" });
  const received = [];
  const subscription = watcher.subscribe(room, (message) => received.push(message));
  await watcher.connect();
  await waitFor(() => subscription.state === "subscribed", "subscribed");
  const joined = next(subscription, "join", 5000, (event) => event.info?.name === "Zoë");
  let asked = 0;
  const visitor = client(t, URLS[1], { name: () => (asked++, "Zoë") });
  visitor.subscribe(room);
  const visitorWelcome = await visitor.connect();
  assert.deepEqual((await joined).info, { name: "Zoë" });
  const { clients } = await watcher.presence(room);
  assert.deepEqual(clients[visitorWelcome.client], { user: null, info: { name: "Zoë" } });
  await visitor.publish(room, "hi");
  await waitFor(() => received.length === 1, "the message");
  assert.deepEqual(received[0].from, { client: visitorWelcome.client, user: null, info: { name: "Zoë" } });
  assert.equal(asked, 1);
});
