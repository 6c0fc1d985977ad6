// Test helpers for the browser client under node: the gateways under test (started by
// pytest, named in environment variables), waiting with a deadline, a loopback TCP proxy
// that can cut or freeze connections, and HS256 tokens.

import { createHmac } from "node:crypto";
import net from "node:net";
import { GatewayClient } from "../gateway.js";

const split = (value) => (value ? value.split(",").filter(Boolean) : []);

/** ws:// URLs of replicas sharing one Redis; empty when not run by pytest. */
export const URLS = split(process.env.GW_TEST_URLS);
/** A replica a test may terminate: `{url, pid}`, or null. */
export const VICTIM = process.env.GW_TEST_VICTIM
  ? { url: process.env.GW_TEST_VICTIM.split("|")[0], pid: Number(process.env.GW_TEST_VICTIM.split("|")[1]) }
  : null;
export const JWT_SECRET = process.env.GW_TEST_JWT_SECRET ?? "";
export const SKIP = URLS.length === 0 ? "needs gateways: run through pytest (tests/e2e/test_js_client.py)" : false;

/** Fast reconnects for tests. */
export const FAST = { minDelay: 20, maxDelay: 200, commandTimeout: 5000, connectTimeout: 1000 };

let channelCounter = 0;
/** A channel name no other test uses. */
export function channel(namespace = "js") {
  return `${namespace}:${process.pid}-${Date.now().toString(36)}-${channelCounter++}`;
}

/** A client that is closed when the test ends. */
export function client(t, urls, options = {}) {
  const created = new GatewayClient(urls, { ...FAST, ...options });
  t.after(() => created.close());
  return created;
}

/** Wait until `condition()` holds; fail after `timeout` ms naming `what`. */
export async function waitFor(condition, what, timeout = 5000) {
  const deadline = Date.now() + timeout;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeout} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

/** The next `event` of `emitter`, within `timeout` ms. */
export function next(emitter, event, timeout = 5000, accept = () => true) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      off();
      reject(new Error(`no ${event} event within ${timeout} ms`));
    }, timeout);
    const off = emitter.on(event, (detail) => {
      if (!accept(detail)) return;
      clearTimeout(timer);
      off();
      resolve(detail);
    });
  });
}

/** Record every event of `names` on `emitter` in order, as `[name, detail]`. */
export function record(emitter, names) {
  const events = [];
  for (const name of names) emitter.on(name, (detail) => events.push([name, detail]));
  return events;
}

/**
 * A loopback TCP proxy in front of a gateway: `cut()` drops every connection at once (as a
 * killed replica would), `freeze()` silently stops forwarding on the current connections
 * (a dead peer that never closes), `target = null` refuses new connections.
 */
export async function startProxy(t, targetUrl) {
  const pairs = new Set();
  const proxy = {
    target: targetUrl ? Number(new URL(targetUrl).port) : null,
    url: "",
    cut() {
      for (const pair of pairs) pair.forEach((socket) => socket.destroy());
      pairs.clear();
    },
    freeze() {
      for (const pair of pairs) pair.frozen = true;
    },
    /** Stop only what the server sends, on every connection until `thaw()` (commands still reach it). */
    freezeReplies() {
      proxy.repliesFrozen = true;
    },
    thaw() {
      proxy.repliesFrozen = false;
    },
    repliesFrozen: false,
    get connections() {
      return pairs.size;
    },
  };
  const server = net.createServer((downstream) => {
    if (proxy.target === null) {
      downstream.destroy();
      return;
    }
    const upstream = net.connect(proxy.target, "127.0.0.1");
    const pair = [downstream, upstream];
    pair.frozen = false;
    pairs.add(pair);
    const end = () => {
      pairs.delete(pair);
      downstream.destroy();
      upstream.destroy();
    };
    downstream.on("data", (data) => pair.frozen || upstream.write(data));
    upstream.on("data", (data) => pair.frozen || proxy.repliesFrozen || downstream.write(data));
    for (const socket of pair) {
      socket.on("error", end);
      socket.on("close", end);
    }
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  proxy.url = `ws://127.0.0.1:${server.address().port}/ws`;
  t.after(() => {
    proxy.cut();
    server.close();
  });
  return proxy;
}

const base64url = (value) => Buffer.from(value).toString("base64url");

/** An HS256 connection token for `sub`, valid for `seconds`. */
export function makeToken(sub, seconds, secret = JWT_SECRET, claims = {}) {
  const header = base64url(JSON.stringify({ alg: "HS256", typ: "JWT" }));
  const body = base64url(
    JSON.stringify({ sub, exp: Math.floor(Date.now() / 1000) + seconds, ...claims }),
  );
  const signature = createHmac("sha256", secret).update(`${header}.${body}`).digest("base64url");
  return `${header}.${body}.${signature}`;
}

/**
 * A WHATWG EventSource over node's fetch (node 20 has none): parses `id`, `data` and
 * `retry`, and reconnects by itself after a network error, sending `Last-Event-ID`.
 */
export class TestEventSource {
  static CONNECTING = 0;
  static OPEN = 1;
  static CLOSED = 2;

  constructor(url) {
    this.url = url;
    this.readyState = TestEventSource.CONNECTING;
    this.lastEventId = "";
    this.onopen = this.onmessage = this.onerror = null;
    this.connections = 0;
    this._retry = 1000;
    this._controller = null;
    this._timer = null;
    this._connect();
  }

  close() {
    this.readyState = TestEventSource.CLOSED;
    clearTimeout(this._timer);
    this._controller?.abort();
  }

  async _connect() {
    const controller = (this._controller = new AbortController());
    const headers = { accept: "text/event-stream" };
    if (this.lastEventId) headers["last-event-id"] = this.lastEventId;
    let response;
    try {
      response = await fetch(this.url, { headers, signal: controller.signal });
    } catch {
      this._reconnect();
      return;
    }
    if (response.status !== 200 || !String(response.headers.get("content-type")).startsWith("text/event-stream")) {
      this.readyState = TestEventSource.CLOSED;
      this.onerror?.({});
      return;
    }
    this.connections += 1;
    this.readyState = TestEventSource.OPEN;
    this.onopen?.({});
    const decoder = new TextDecoder();
    let buffer = "";
    let data = [];
    let id = null;
    try {
      for await (const chunk of response.body) {
        buffer += decoder.decode(chunk, { stream: true });
        for (let end = buffer.indexOf("\n"); end >= 0; end = buffer.indexOf("\n")) {
          const line = buffer.slice(0, end).replace(/\r$/, "");
          buffer = buffer.slice(end + 1);
          if (line === "") {
            if (id !== null) this.lastEventId = id;
            id = null;
            if (data.length && this.readyState === TestEventSource.OPEN) {
              this.onmessage?.({ data: data.join("\n"), lastEventId: this.lastEventId });
            }
            data = [];
            continue;
          }
          if (line.startsWith(":")) continue;
          const colon = line.indexOf(":");
          const field = colon < 0 ? line : line.slice(0, colon);
          const value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
          if (field === "data") data.push(value);
          else if (field === "id") id = value;
          else if (field === "retry" && /^\d+$/.test(value)) this._retry = Number(value);
        }
      }
    } catch {
      // the connection dropped
    }
    this._reconnect();
  }

  _reconnect() {
    if (this.readyState === TestEventSource.CLOSED) return;
    this.readyState = TestEventSource.CONNECTING;
    this.onerror?.({});
    if (this.readyState === TestEventSource.CLOSED) return;
    this._timer = setTimeout(() => this._connect(), this._retry);
  }
}
