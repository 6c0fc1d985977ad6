// The gateway's browser client: protocol v1 over one WebSocket, as an ES module without
// dependencies. It reconnects with exponential backoff and full jitter, honours the
// protocol's close codes, keeps the connection token fresh, and recovers every
// subscription from the last message it saw (`since`), so an application sees each
// message once, in order, or is told that it cannot (`unrecovered`).
//
//   import { GatewayClient } from "/client/gateway.js";
//   const client = new GatewayClient("wss://example.com/ws", { token: fetchToken });
//   // or, without auth: new GatewayClient(url, { name: "Zoë" }): others see that name
//   client.subscribe("chat:lobby", { message: (m) => console.log(m.data) });
//   client.connect();
//   await client.publish("chat:lobby", { text: "hi" });

export const SUBPROTOCOL = "pubsub.v1";

const DEFAULTS = Object.freeze({
  minDelay: 250,
  maxDelay: 10000,
  pingInterval: null,
  pongTimeout: null,
  connectTimeout: 10000,
  commandTimeout: 10000,
  stableAfter: 5000,
  publishTimeout: 60000,
  maxUnacknowledged: 1000,
  transports: ["websocket", "sse"],
  fallbackAfter: 2,
});

/** Error codes the client itself produces (the server's are those of the protocol). */
export const ClientErrorCode = Object.freeze({
  DISCONNECTED: "disconnected",
  CLOSED: "closed",
  TIMEOUT: "timeout",
  OVERFLOW: "overflow",
  UNSUPPORTED: "unsupported",
});

/** A random idempotency key: 128 bits, base64url (22 characters). */
export function newIdempotencyKey() {
  const bytes = new Uint8Array(16);
  if (globalThis.crypto?.getRandomValues) globalThis.crypto.getRandomValues(bytes);
  else for (let i = 0; i < bytes.length; i++) bytes[i] = Math.floor(Math.random() * 256);
  let text = "";
  for (const byte of bytes) text += String.fromCharCode(byte);
  return btoa(text).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

/** A command failed: `code` is the protocol's error code, or one of `ClientErrorCode`. */
export class GatewayError extends Error {
  constructor(code, message, frame = null) {
    super(message ? `${code}: ${message}` : code);
    this.name = "GatewayError";
    this.code = code;
    this.frame = frame;
    /** What exactly was wrong, when the server said (`invalid_data`: the validation errors). */
    this.details = frame?.details ?? null;
  }
}

/** Parse one text frame: one JSON object per non-empty line (NDJSON). */
export function splitFrames(text) {
  const frames = [];
  for (const line of String(text).split("\n")) {
    if (line.trim()) frames.push(JSON.parse(line));
  }
  return frames;
}

/**
 * `url` with `?name=` set to a display name, or unchanged without one. An anonymous
 * connection's name becomes its presence `info` and the `from.info` of its messages
 * (`{name}`); with auth on the server ignores it (the token's `info` shows instead).
 */
export function withName(url, name) {
  const chosen = typeof name === "string" ? name.trim() : "";
  if (!chosen) return url;
  const parsed = new URL(url);
  parsed.searchParams.set("name", chosen);
  return parsed.href;
}

/** Full-jitter backoff: a random delay in [0, min(maxDelay, minDelay * 2^attempt)). */
export function backoffDelay(attempt, { minDelay, maxDelay }, random = Math.random) {
  return random() * Math.min(maxDelay, minDelay * 2 ** attempt);
}

// The protocol's code table (the server's gateway/wire/errors.py; the node tests compare).
const CLOSE_ACTIONS = Object.freeze({
  1000: "stop",
  1001: "now",
  1003: "stop",
  1009: "stop",
  1011: "backoff",
  1012: "now",
  4001: "refresh",
  4003: "stop",
  4008: "backoff",
  4029: "backoff",
});

/** Error codes after which a refused `subscribe` is retried with backoff. */
export const RETRYABLE_SUBSCRIBE_ERRORS = new Set(["unavailable", "internal", "rate_limited"]);

/**
 * Error codes after which a publish is sent again, with its idempotency key, after a
 * backoff: the same retryable codes (a resend is never delivered twice).
 */
export const RETRYABLE_PUBLISH_ERRORS = RETRYABLE_SUBSCRIBE_ERRORS;

/**
 * What to do after the server closed with `code`, per the protocol's close-code table:
 * "stop", "refresh" (get a new token, then reconnect), "now" (reconnect at once, to the
 * next URL), or "backoff" (also for codes the table does not list). `reconnect` is the
 * server's own word from its `disconnect` frame, if it sent one: false stops whatever the
 * code; true never lets a code stop.
 */
export function closeAction(code, reconnect = null) {
  const action = CLOSE_ACTIONS[code] ?? "backoff";
  if (reconnect === false) return "stop";
  if (reconnect === true && action === "stop") return "backoff";
  return action;
}

/** The `exp` claim of a JWT, in seconds, or null; the signature is not checked here. */
export function tokenExpiry(token) {
  try {
    const part = String(token).split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    const claims = JSON.parse(atob(part + "=".repeat((4 - (part.length % 4)) % 4)));
    return typeof claims.exp === "number" ? claims.exp : null;
  } catch {
    return null;
  }
}

/** Milliseconds from `nowMs` until a token expiring at `exp` (seconds) should be refreshed. */
export function refreshDelay(exp, nowMs) {
  const remaining = exp * 1000 - nowMs;
  return Math.max(0, remaining - Math.min(30000, remaining / 5));
}

/**
 * Where a `message` leaves a channel's stream position.
 *
 * Returns `{ verdict, position, missed }`: verdict "deliver"; "duplicate" (offset at or
 * below the last seen: drop it); "gap" (`missed` offsets were skipped: deliver, but
 * continuity is lost); or "epoch" (the channel's history was reset: deliver, continuity
 * is lost). Messages without an offset (channels without history) are always delivered.
 */
export function advance(position, message) {
  if (typeof message.offset !== "number") return { verdict: "deliver", position, missed: 0 };
  const next = { offset: message.offset, epoch: message.epoch ?? position?.epoch ?? "" };
  if (!position) return { verdict: "deliver", position: next, missed: 0 };
  if (next.epoch !== position.epoch) return { verdict: "epoch", position: next, missed: 0 };
  if (message.offset <= position.offset) return { verdict: "duplicate", position, missed: 0 };
  const missed = message.offset - position.offset - 1;
  return { verdict: missed > 0 ? "gap" : "deliver", position: next, missed };
}

/** An epoch as a stream's event id writes it (gateway/wire/sse.py). */
export function encodeEpoch(epoch) {
  const base64url = (bytes) => {
    let text = "";
    for (const byte of bytes) text += String.fromCharCode(byte);
    return btoa(text).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  };
  if (/^(?:[0-9a-f]{2})+$/.test(epoch)) {
    return base64url(epoch.match(/../g).map((pair) => parseInt(pair, 16)));
  }
  return "~" + base64url(new TextEncoder().encode(epoch));
}

/**
 * The event id of a stream standing at `positions` (one per channel of its request, in
 * order; null where there is none): what `/sse` resumes from (gateway/wire/sse.py).
 */
export function encodePositions(positions) {
  return "1." + positions.map((p) => (p ? `${p.offset}:${encodeEpoch(p.epoch)}` : "")).join(".");
}

/** The `/sse` and `POST /publish` URLs beside a `/ws` URL. */
export function streamUrls(url) {
  const parsed = new URL(url);
  parsed.protocol = parsed.protocol === "wss:" ? "https:" : "http:";
  parsed.search = "";
  parsed.hash = "";
  const base = parsed.pathname.replace(/\/ws\/?$/, "").replace(/\/$/, "");
  const at = (path) => {
    const copy = new URL(parsed.href);
    copy.pathname = base + path;
    return copy.href;
  };
  return { stream: at("/sse"), publish: at("/publish") };
}

class Emitter {
  constructor() {
    this._listeners = new Map();
  }

  /** Call `listener` on each `event`; returns a function that removes it. */
  on(event, listener) {
    if (!this._listeners.has(event)) this._listeners.set(event, new Set());
    this._listeners.get(event).add(listener);
    return () => this.off(event, listener);
  }

  off(event, listener) {
    this._listeners.get(event)?.delete(listener);
  }

  _emit(event, detail) {
    for (const listener of [...(this._listeners.get(event) ?? [])]) {
      try {
        listener(detail);
      } catch (error) {
        queueMicrotask(() => {
          throw error;
        });
      }
    }
  }
}

/**
 * One channel the application wants. It stays wanted across reconnects until
 * `unsubscribe()`; events: "subscribed", "message", "unrecovered", "error", "join",
 * "leave", "unsubscribed".
 */
export class Subscription extends Emitter {
  constructor(client, channel, options) {
    super();
    this.client = client;
    this.channel = channel;
    this.state = "pending";
    this.position = options.since ?? null;
    this.recover = options.recover !== false;
    this.latest = options.latest === true;
    this._token = options.token ?? null;
    this._attempt = 0;
    this._retryTimer = null;
    this._subscribedOnce = false;
  }

  /** The offset and epoch of the last message seen, or null on a channel without history. */
  get since() {
    return this.position ? { ...this.position } : null;
  }

  /** Stop wanting the channel; no events follow. */
  unsubscribe() {
    this.client._unsubscribe(this);
  }

  /** The `subscribe` command to send now; `token` is the subscription JWT, if any. */
  _command(id, token) {
    const command = { op: "subscribe", id, channel: this.channel };
    const since = this.recover && this.position?.epoch ? { ...this.position } : null;
    if (since) command.since = since;
    if (this.latest) command.latest = true;
    if (token) command.token = token;
    return { command, since };
  }

  _onSubscribed(frame, since) {
    this.state = "subscribed";
    this._attempt = 0;
    const resubscribed = this._subscribedOnce;
    this._subscribedOnce = true;
    const recovered = Boolean(since) && frame.recovered === true;
    const detail = {
      channel: this.channel,
      offset: frame.offset,
      epoch: frame.epoch,
      recovered,
      resubscribed,
      missed: recovered ? Math.max(0, frame.offset - since.offset) : 0,
    };
    if (!recovered) this.position = this._startingAt(frame);
    this._emit("subscribed", detail);
    if (since && !recovered) {
      this._emit("unrecovered", { channel: this.channel, reason: "recovery_failed", since, ...detail });
    }
  }

  /**
   * Where the stream continues after an unrecovered `subscribed`: at its offset, or with
   * `latest` (the newest message follows) from whatever comes next, unless that message
   * was seen already (then it is dropped as a duplicate).
   */
  _startingAt(frame) {
    if (!frame.epoch) return null;
    if (!this.latest) return { offset: frame.offset, epoch: frame.epoch };
    const seen = this.position;
    return seen && seen.epoch === frame.epoch && seen.offset >= frame.offset ? seen : null;
  }

  /** Track and deliver one `message`; false when it was a duplicate and was dropped. */
  _onMessage(frame) {
    const { verdict, position, missed } = advance(this.position, frame);
    if (verdict === "duplicate") return false;
    const before = this.position;
    this.position = position;
    if (verdict === "gap" || verdict === "epoch") {
      this._emit("unrecovered", {
        channel: this.channel,
        reason: verdict === "gap" ? "gap" : "epoch_changed",
        since: before,
        offset: frame.offset,
        epoch: frame.epoch,
        missed,
      });
    }
    this._emit("message", frame);
    return true;
  }
}

/**
 * The SSE transport, shaped like the WebSocket the client otherwise drives (`send`,
 * `close`, `onopen`, `onmessage`, `onclose`): commands sent to it are carried out over
 * `GET /sse` and `POST /publish`, and their replies and the stream's frames come back
 * through `onmessage`. A subscribe or unsubscribe reopens the stream with the new channel
 * list and the current position of each channel; the old stream is closed only once the
 * new one has subscribed every channel, and what both delivered meanwhile is told apart
 * by offset (no loss, no duplicate; on channels without history a message published during
 * the switch may arrive twice). Network errors are left to `EventSource`, which reconnects
 * by itself and resumes every channel from its `Last-Event-ID`.
 */
class SseSocket {
  constructor(client, url, token) {
    this._client = client;
    this._urls = streamUrls(url);
    this._url = url;
    this._token = token;
    this._EventSource = client._EventSource;
    this._fetch = client._fetch;
    this._wanted = new Set();
    this._pending = new Map();
    this._streams = [];
    this._welcomed = false;
    this._closed = false;
    this._clientId = null;
    this._reopening = null;
    this.onopen = this.onmessage = this.onclose = this.onerror = null;
    queueMicrotask(() => this._reopen());
  }

  send(text) {
    for (const line of String(text).split("\n")) {
      if (line.trim()) this._command(JSON.parse(line));
    }
  }

  close() {
    if (this._closed) return;
    this._closed = true;
    clearTimeout(this._reopening);
    for (const stream of this._streams) stream.source.close();
    this._streams = [];
  }

  _command(command) {
    const { op, id, channel } = command;
    switch (op) {
      case "subscribe":
        if (command.token) {
          this._reply({ op: "error", id, code: ClientErrorCode.UNSUPPORTED, message: "subscription tokens are not carried over SSE: grant the channel in the connection token" });
          return;
        }
        this._wanted.add(channel);
        this._pending.set(channel, id);
        this._reopenSoon();
        return;
      case "unsubscribe":
        this._wanted.delete(channel);
        this._pending.delete(channel);
        this._reply({ op: "unsubscribed", id, channel });
        this._reopenSoon();
        return;
      case "publish":
        this._publish(command);
        return;
      case "ping":
        this._reply({ op: "pong", id });
        return;
      case "connect":
        return;
      case "refresh":
        this._token = command.token;
        this._reopenSoon();
        this._reply({ op: "refreshed", id, exp: tokenExpiry(command.token) });
        return;
      default:
        this._reply({ op: "error", id, code: ClientErrorCode.UNSUPPORTED, message: `${op} is not available over the SSE transport` });
    }
  }

  _reply(frame) {
    if (!this._closed) this.onmessage?.({ data: JSON.stringify(frame) });
  }

  _publish(command) {
    const headers = { "content-type": "application/json" };
    if (this._token) headers.authorization = `Bearer ${this._token}`;
    const body = { channel: command.channel, data: command.data };
    if (command.idempotency_key) body.idempotency_key = command.idempotency_key;
    if (this._clientId) body.client = this._clientId;
    this._fetch(this._urls.publish, { method: "POST", headers, body: JSON.stringify(body) })
      .then(async (response) => {
        let frame = null;
        try {
          frame = await response.json();
        } catch {
          frame = null;
        }
        if (!frame || typeof frame.op !== "string") {
          const code = response.status >= 500 ? "unavailable" : "bad_request";
          frame = { op: "error", code, message: `POST /publish answered HTTP ${response.status}` };
        }
        this._reply({ ...frame, id: command.id });
      })
      .catch((error) => {
        this._reply({ op: "error", id: command.id, code: "unavailable", message: `POST /publish failed: ${error?.message ?? error}` });
      });
  }

  _reopenSoon() {
    if (this._reopening === null && !this._closed) {
      this._reopening = setTimeout(() => {
        this._reopening = null;
        this._reopen();
      }, 0);
    }
  }

  _reopen() {
    if (this._closed) return;
    const channels = [...this._wanted];
    const wanted = channels.map((channel) => this._client._streamPosition(channel));
    const url = new URL(this._urls.stream);
    for (const channel of channels) url.searchParams.append("channel", channel);
    if (wanted.some((want) => want.position)) {
      url.searchParams.set("lastEventId", encodePositions(wanted.map((want) => want.position)));
    }
    channels.forEach((channel, index) => wanted[index].latest && url.searchParams.append("latest", channel));
    if (this._token) url.searchParams.set("token", this._token);
    const { name } = this._client.options;
    const chosen = typeof name === "function" ? name() : name;
    const source = new this._EventSource(withName(url.href, chosen));
    const stream = { source, channels, waiting: new Set(channels), welcomed: false, resuming: false };
    this._streams.push(stream);
    source.onmessage = (event) => this._onEvent(stream, event.data);
    source.onerror = () => this._onError(stream);
  }

  _newest(stream) {
    return this._streams[this._streams.length - 1] === stream;
  }

  _onEvent(stream, data) {
    if (this._closed) return;
    const frame = JSON.parse(data);
    const { op } = frame;
    if (op === "message" || op === "join" || op === "leave") {
      this.onmessage?.({ data });
      return;
    }
    if (!this._newest(stream)) return;
    if (op === "welcome") {
      const resumed = stream.resuming && stream.welcomed;
      stream.welcomed = true;
      if (!this._welcomed) {
        this._welcomed = true;
        this._clientId = frame.client;
        this.onopen?.();
        this.onmessage?.({ data });
      } else if (resumed) {
        this._client._onStreamResumed(frame);
      }
      this._settleIfSubscribed(stream);
    } else if ((op === "subscribed" || op === "error") && stream.waiting.has(frame.id)) {
      const channel = frame.id;
      stream.waiting.delete(channel);
      const id = this._pending.get(channel);
      if (id !== undefined) {
        this._pending.delete(channel);
        this._reply({ ...frame, id });
      } else if (stream.resuming || (op === "subscribed" && !frame.recovered && frame.epoch)) {
        this._client._onStreamResubscribed(frame);
      }
      this._settleIfSubscribed(stream);
    } else if (op === "disconnect") {
      this.onmessage?.({ data });
      this.close();
      this.onclose?.({ code: frame.code, reason: frame.reason });
    } else {
      this.onmessage?.({ data });
    }
  }

  _settleIfSubscribed(stream) {
    if (!stream.welcomed || stream.waiting.size) return;
    stream.resuming = false;
    for (const older of this._streams.slice(0, -1)) older.source.close();
    this._streams = [stream];
  }

  _onError(stream) {
    if (this._closed) return;
    if (!this._newest(stream)) {
      stream.source.close();
      this._streams = this._streams.filter((other) => other !== stream);
      return;
    }
    if (!this._welcomed || stream.source.readyState === 2) {
      this.close();
      this.onclose?.({ code: 1006, reason: "the event stream could not be opened" });
      return;
    }
    if (!stream.resuming) {
      stream.resuming = true;
      stream.waiting = new Set(stream.channels);
      this._client._onStreamInterrupted();
    }
  }
}

/**
 * A connection to the gateway that stays up: it reconnects (trying each URL in turn),
 * resubscribes with recovery, and queues commands while disconnected.
 *
 * Events: "connecting" `{attempt, url}`, "connected" (the `welcome` frame plus `url`),
 * "disconnected" `{code, reason, reconnect, delay}`, "error" (a GatewayError that no
 * command owns), "join"/"leave"/"message" for every subscription.
 */
export class GatewayClient extends Emitter {
  /**
   * @param {string | string[]} urls
   * @param {import("./gateway.js").ClientOptions} [options]
   */
  constructor(urls, options = {}) {
    super();
    this.urls = Array.isArray(urls) ? [...urls] : [urls];
    if (!this.urls.length) throw new TypeError("GatewayClient needs at least one URL");
    this.options = { ...DEFAULTS, ...options };
    this._WebSocket = options.WebSocket ?? globalThis.WebSocket;
    this._EventSource = options.EventSource ?? globalThis.EventSource;
    this._fetch = options.fetch ?? globalThis.fetch?.bind(globalThis);
    const usable = {
      websocket: typeof this._WebSocket === "function",
      sse: typeof this._EventSource === "function" && typeof this._fetch === "function",
    };
    this._transports = this.options.transports.filter((name) => usable[name]);
    if (!this._transports.length) {
      throw new TypeError("no WebSocket implementation (nor EventSource and fetch): pass one as options.WebSocket");
    }
    /** The transport in use: "websocket", or "sse" (`GET /sse` and `POST /publish`). */
    this.transport = this._transports[0];
    this._unopened = 0;
    this.state = "disconnected";
    this.welcome = null;
    this.subscriptions = new Map();
    this._urlIndex = 0;
    this._attempt = 0;
    this._nextId = 1;
    this._socket = null;
    this._queue = [];
    this._pending = new Map();
    this._unacknowledged = new Set();
    this._token = typeof options.token === "string" ? options.token : null;
    this._reconnectTimer = null;
    this._refreshTimer = null;
    this._wanted = false;
    this._closed = false;
  }

  /** Connect (and stay connected); resolves with the next `welcome`. */
  connect() {
    const welcomed = new Promise((resolve, reject) => {
      const stop = [
        this.on("connected", (welcome) => {
          stop.forEach((off) => off());
          resolve(welcome);
        }),
        this.on("disconnected", (event) => {
          if (event.reconnect) return;
          stop.forEach((off) => off());
          reject(new GatewayError(ClientErrorCode.CLOSED, event.reason || `closed with ${event.code}`));
        }),
      ];
    });
    welcomed.catch(() => {});
    this._closed = false;
    if (!this._wanted) {
      this._wanted = true;
      this._open();
    }
    return welcomed;
  }

  /** Close for good: nothing reconnects, queued and pending commands fail with "closed". */
  close() {
    if (!this._wanted) return;
    this._wanted = false;
    clearTimeout(this._reconnectTimer);
    const socket = this._socket;
    this._detach();
    if (socket) {
      try {
        socket.ws.close(1000);
      } catch {
        // already closing
      }
    }
    this._closed = true;
    this._failAll(ClientErrorCode.CLOSED, "the client was closed");
    this.state = "disconnected";
    this._emit("disconnected", { code: 1000, reason: "closed by the client", reconnect: false, delay: null });
  }

  /**
   * Want a channel: subscribed now if connected, else on the next connection, and again
   * (with recovery) after every reconnect. `handlers` maps event names to listeners; a
   * function is the "message" listener. Options: `since`, `recover` (default true),
   * `latest` (the channel's newest message follows `subscribed`, when `since` cannot be
   * recovered or is not sent: for current-value channels, with `recover: false`),
   * `token` (a subscription JWT, or a function returning one).
   */
  subscribe(channel, handlers = {}, options = {}) {
    if (this.subscriptions.has(channel)) throw new Error(`already subscribed to ${channel}`);
    const subscription = new Subscription(this, channel, options);
    const listeners = typeof handlers === "function" ? { message: handlers } : handlers;
    for (const [event, listener] of Object.entries(listeners)) subscription.on(event, listener);
    this.subscriptions.set(channel, subscription);
    if (this.state === "connected") this._sendSubscribe(subscription);
    return subscription;
  }

  /**
   * Publish `data` (any JSON value); resolves with the `published` reply, once.
   *
   * Every publish carries an idempotency key (`options.idempotencyKey`, else a random one):
   * one not acknowledged when the connection drops is sent again after the reconnect, and
   * one refused as `unavailable` again after a backoff, so the message is delivered once
   * however often it is sent. It rejects with "timeout" if not acknowledged within
   * `publishTimeout` ms (then it may or may not have been published: publish again with
   * the same key, within the server's `idempotency_window`, to find out), and at once with
   * "overflow" while `maxUnacknowledged` publishes are waiting.
   */
  publish(channel, data, options = {}) {
    if (this._closed) {
      return Promise.reject(new GatewayError(ClientErrorCode.CLOSED, "the client was closed"));
    }
    if (this._unacknowledged.size >= this.options.maxUnacknowledged) {
      const limit = this.options.maxUnacknowledged;
      return Promise.reject(new GatewayError(ClientErrorCode.OVERFLOW, `${limit} publishes wait for their reply`));
    }
    const idempotency_key = options.idempotencyKey ?? newIdempotencyKey();
    return this._track({ op: "publish", channel, data, idempotency_key }, this.options.publishTimeout, true);
  }

  /**
   * Call a method the application serves in Python (`@gw.rpc(method)`); resolves with the
   * reply's `data`, rejects with a GatewayError (`unknown_method`, or what the method raised).
   */
  async rpc(method, data = null) {
    const reply = await this.request({ op: "rpc", method, data });
    return reply.data;
  }

  /** Who is subscribed to `channel`; resolves with the `presence` reply (`clients`). */
  presence(channel) {
    return this.request({ op: "presence", channel });
  }

  /**
   * A channel's retained messages; resolves with the `history` reply (`messages`, oldest
   * first). The server bounds a reply in bytes: `more` is true when matching messages were
   * left out; `historyPages` asks for them.
   *
   * @param {string} channel
   * @param {{ since?: import("./gateway.js").StreamPosition, limit?: number }} [options]
   */
  history(channel, { since, limit } = {}) {
    const command = { op: "history", channel };
    if (since) command.since = since;
    if (limit !== undefined) command.limit = limit;
    return this.request(command);
  }

  /**
   * Every `history` reply it takes to read all the messages that match (those after
   * `since`, else the latest `limit`), oldest first: each next request asks for what
   * follows the last message received, while the reply says `more`.
   *
   * @param {string} channel
   * @param {{ since?: import("./gateway.js").StreamPosition, limit?: number }} [options]
   */
  async *historyPages(channel, { since, limit } = {}) {
    for (;;) {
      const reply = await this.history(channel, { since, limit });
      yield reply;
      const { messages } = reply;
      if (!reply.more || messages.length === 0) return;
      since = { offset: messages.at(-1).offset, epoch: reply.epoch };
      if (limit !== undefined) {
        limit -= messages.length;
        if (limit <= 0) return;
      }
    }
  }

  /**
   * Send any command (an `id` is added) and resolve with its reply, or reject with a
   * GatewayError carrying the error code. Sent once connected if not connected yet.
   */
  request(command) {
    if (this._closed) {
      return Promise.reject(new GatewayError(ClientErrorCode.CLOSED, "the client was closed"));
    }
    return this._track(command, this.options.commandTimeout, false);
  }

  /** Send `command` once connected, and settle with its reply within `timeout` ms. */
  _track(command, timeout, resend) {
    return new Promise((resolve, reject) => {
      const entry = { frame: { ...command, id: this._nextId++ }, resolve, reject, timer: null, resend, attempt: 0 };
      if (resend) {
        this._unacknowledged.add(entry);
        const settle = (done) => (value) => {
          this._unacknowledged.delete(entry);
          clearTimeout(entry.retry);
          done(value);
        };
        entry.resolve = settle(resolve);
        entry.reject = settle(reject);
      }
      entry.timer = setTimeout(() => {
        this._pending.delete(entry.frame.id);
        this._queue = this._queue.filter((queued) => queued !== entry);
        const unsure = resend ? ": it may or may not have been published" : "";
        entry.reject(new GatewayError(ClientErrorCode.TIMEOUT, `no reply to ${command.op} in time${unsure}`));
      }, timeout);
      if (this.state === "connected") this._sendEntry(entry);
      else this._queue.push(entry);
    });
  }

  /** Send a publish refused as retryable again after a backoff, on whatever connection is up. */
  _retryLater(entry) {
    const delay = backoffDelay(entry.attempt++, this.options);
    entry.retry = setTimeout(() => {
      if (!this._unacknowledged.has(entry)) return;
      if (this.state === "connected") this._sendEntry(entry);
      else this._queue.push(entry);
    }, delay);
  }

  _currentUrl() {
    return this.urls[this._urlIndex % this.urls.length];
  }

  async _open() {
    this._reconnectTimer = null;
    const url = this._currentUrl();
    this.state = "connecting";
    this._emit("connecting", { attempt: this._attempt, url });
    let token = null;
    try {
      token = await this._connectionToken();
    } catch (error) {
      this._emit("error", new GatewayError("unauthorized", `token getter failed: ${error?.message ?? error}`));
      this._scheduleReconnect({ code: 4001, reason: "no token" }, "backoff");
      return;
    }
    if (!this._wanted) return;
    let ws;
    try {
      const { name } = this.options;
      if (this.transport === "sse") ws = new SseSocket(this, url, token);
      else ws = new this._WebSocket(withName(url, typeof name === "function" ? name() : name), SUBPROTOCOL);
    } catch (error) {
      this._scheduleReconnect({ code: 1006, reason: String(error?.message ?? error) }, "backoff");
      return;
    }
    const socket = {
      ws,
      url,
      token,
      welcomed: false,
      opened: false,
      welcomedAt: 0,
      lastSeen: Date.now(),
      timers: [],
      ticker: null,
      deadline: null,
      disconnect: null,
    };
    this._socket = socket;
    socket.timers.push(
      setTimeout(() => this._abandon(socket, "no welcome in time"), this.options.connectTimeout),
    );
    ws.onopen = () => {
      socket.opened = true;
      this._unopened = 0;
      if (token) ws.send(JSON.stringify({ op: "connect", id: `connect-${this._nextId++}`, token }));
    };
    ws.onmessage = (event) => this._onData(socket, event.data);
    ws.onclose = (event) => this._onClose(socket, event.code, event.reason);
    ws.onerror = () => {};
  }

  async _connectionToken() {
    const { token } = this.options;
    if (typeof token !== "function") return token ?? null;
    if (!this._token) this._token = await token();
    return this._token;
  }

  _onData(socket, data) {
    if (socket !== this._socket || typeof data !== "string") return;
    socket.lastSeen = Date.now();
    let frames;
    try {
      frames = splitFrames(data);
    } catch (error) {
      this._emit("error", new GatewayError("bad_frame", `unparseable frame from the server: ${error.message}`));
      return;
    }
    for (const frame of frames) {
      if (socket !== this._socket) return;
      this._onFrame(socket, frame);
    }
  }

  _onFrame(socket, frame) {
    switch (frame.op) {
      case "welcome":
        if (!socket.welcomed) this._onWelcome(socket, frame);
        return;
      case "message":
      case "join":
      case "leave": {
        const subscription = this.subscriptions.get(frame.channel);
        if (!subscription || subscription.state !== "subscribed") return;
        if (frame.op !== "message") subscription._emit(frame.op, frame);
        else if (!subscription._onMessage(frame)) return;
        this._emit(frame.op, frame);
        return;
      }
      case "disconnect":
        socket.disconnect = frame;
        return;
    }
    const entry = frame.id !== undefined ? this._pending.get(frame.id) : undefined;
    if (entry) {
      this._pending.delete(frame.id);
      clearTimeout(entry.timer);
      if (frame.op !== "error") entry.resolve(frame);
      else if (entry.resend && RETRYABLE_PUBLISH_ERRORS.has(frame.code)) this._retryLater(entry);
      else entry.reject(new GatewayError(frame.code, frame.message, frame));
    } else if (frame.op === "error" && !String(frame.id ?? "").startsWith("connect-")) {
      this._emit("error", new GatewayError(frame.code, frame.message, frame));
    }
  }

  _onWelcome(socket, frame) {
    socket.welcomed = true;
    socket.welcomedAt = Date.now();
    socket.timers.forEach(clearTimeout);
    socket.timers = [];
    this.welcome = frame;
    this.state = "connected";
    this._startKeepalive(socket, frame);
    this._scheduleRefresh(socket);
    for (const subscription of this.subscriptions.values()) this._sendSubscribe(subscription);
    const queued = this._queue;
    this._queue = [];
    for (const entry of queued) this._sendEntry(entry);
    this._emit("connected", { ...frame, url: socket.url, transport: this.transport });
  }

  _sendEntry(entry) {
    this._pending.set(entry.frame.id, entry);
    entry.socket = this._socket;
    this._socket.ws.send(JSON.stringify(entry.frame));
  }

  _sendSubscribe(subscription) {
    subscription.state = "subscribing";
    clearTimeout(subscription._retryTimer);
    const token = subscription._token;
    if (typeof token !== "function") {
      this._sendSubscribeCommand(subscription, token);
      return;
    }
    const socket = this._socket;
    Promise.resolve()
      .then(() => token(subscription.channel))
      .then(
        (value) => {
          if (socket === this._socket && this.subscriptions.get(subscription.channel) === subscription) {
            this._sendSubscribeCommand(subscription, value);
          }
        },
        (error) => {
          const message = `subscription token getter failed: ${error?.message ?? error}`;
          this._onSubscribeError(subscription, new GatewayError("forbidden", message));
        },
      );
  }

  _sendSubscribeCommand(subscription, token) {
    const { command, since } = subscription._command(this._nextId++, token);
    const entry = {
      frame: command,
      timer: null,
      resolve: (frame) => {
        if (this.subscriptions.get(subscription.channel) === subscription) subscription._onSubscribed(frame, since);
      },
      reject: (error) => {
        if (this.subscriptions.get(subscription.channel) !== subscription) return;
        if (error.code === ClientErrorCode.DISCONNECTED) return;
        this._onSubscribeError(subscription, error);
      },
    };
    this._sendEntry(entry);
  }

  _onSubscribeError(subscription, error) {
    if (RETRYABLE_SUBSCRIBE_ERRORS.has(error.code)) {
      subscription.state = "pending";
      subscription._emit("error", error);
      const delay = backoffDelay(subscription._attempt++, this.options);
      subscription._retryTimer = setTimeout(() => {
        if (this.state === "connected" && this.subscriptions.get(subscription.channel) === subscription) {
          this._sendSubscribe(subscription);
        }
      }, delay);
      return;
    }
    subscription.state = "failed";
    this.subscriptions.delete(subscription.channel);
    subscription._emit("error", error);
  }

  _unsubscribe(subscription) {
    if (this.subscriptions.get(subscription.channel) !== subscription) return;
    this.subscriptions.delete(subscription.channel);
    clearTimeout(subscription._retryTimer);
    const wasLive = subscription.state === "subscribed" || subscription.state === "subscribing";
    subscription.state = "unsubscribed";
    if (wasLive && this.state === "connected") {
      this.request({ op: "unsubscribe", channel: subscription.channel }).catch(() => {});
    }
    subscription._emit("unsubscribed", { channel: subscription.channel });
  }

  _startKeepalive(socket, welcome) {
    const interval = this.options.pingInterval ?? (welcome.ping ? welcome.ping * 1000 : 25000);
    const timeout = this.options.pongTimeout ?? Math.min(10000, interval);
    socket.ticker = setInterval(() => {
      if (socket !== this._socket) return;
      try {
        socket.ws.send('{"op":"ping"}');
      } catch {
        return;
      }
      if (socket.deadline) return;
      const sentAt = Date.now();
      socket.deadline = setTimeout(() => {
        socket.deadline = null;
        if (socket.lastSeen < sentAt) this._abandon(socket, "no pong: the connection is presumed dead");
      }, timeout);
    }, interval);
  }

  _scheduleRefresh(socket) {
    clearTimeout(this._refreshTimer);
    if (typeof this.options.token !== "function") return;
    const exp = tokenExpiry(socket.token);
    if (exp !== null) this._planRefresh(socket, exp);
  }

  _planRefresh(socket, exp) {
    clearTimeout(this._refreshTimer);
    this._refreshTimer = setTimeout(() => this._refresh(socket), refreshDelay(exp, Date.now()));
  }

  async _refresh(socket) {
    if (socket !== this._socket || !this._wanted) return;
    try {
      const source = this.options.token;
      const token = typeof source === "function" ? await source() : source;
      const reply = await this.request({ op: "refresh", token });
      this._token = token;
      socket.token = token;
      const exp = typeof reply.exp === "number" ? reply.exp : tokenExpiry(token);
      if (exp !== null && socket === this._socket) this._planRefresh(socket, exp);
    } catch (error) {
      this._emit("error", error instanceof GatewayError ? error : new GatewayError("unauthorized", String(error?.message ?? error)));
    }
  }

  _abandon(socket, reason) {
    if (socket !== this._socket) return;
    try {
      socket.ws.close();
    } catch {
      // a socket that never opened
    }
    this._onClose(socket, 1006, reason);
  }

  _detach() {
    const socket = this._socket;
    this._socket = null;
    clearTimeout(this._refreshTimer);
    if (!socket) return;
    socket.timers.forEach(clearTimeout);
    clearInterval(socket.ticker);
    clearTimeout(socket.deadline);
    socket.ws.onopen = socket.ws.onmessage = socket.ws.onclose = null;
    const resent = [];
    for (const [id, entry] of this._pending) {
      if (entry.socket !== socket) continue;
      this._pending.delete(id);
      if (entry.resend) {
        resent.push(entry);
        continue;
      }
      clearTimeout(entry.timer);
      entry.reject(new GatewayError(ClientErrorCode.DISCONNECTED, "the connection closed before the reply"));
    }
    this._queue = resent.concat(this._queue);
    for (const subscription of this.subscriptions.values()) {
      clearTimeout(subscription._retryTimer);
      subscription.state = "pending";
    }
  }

  _onClose(socket, code, reason) {
    if (socket !== this._socket) return;
    if (!socket.opened) this._fallBack();
    const stable = socket.welcomed && Date.now() - socket.welcomedAt >= this.options.stableAfter;
    this._detach();
    this.welcome = null;
    if (stable) this._attempt = 0;
    this._urlIndex += 1;
    const reconnect = typeof socket.disconnect?.reconnect === "boolean" ? socket.disconnect.reconnect : null;
    let action = closeAction(code, reconnect);
    if (action === "refresh") {
      if (typeof this.options.token === "function") this._token = null;
      else action = "stop";
    }
    const why = { code, reason: reason || socket.disconnect?.reason || "" };
    if (action === "stop" || !this._wanted) {
      this._wanted = false;
      this._closed = true;
      this.state = "disconnected";
      this._failAll(ClientErrorCode.CLOSED, `the connection closed with ${code}`);
      this._emit("disconnected", { ...why, reconnect: false, delay: null });
      return;
    }
    this._scheduleReconnect(why, action);
  }

  /** After `fallbackAfter` transport attempts that never opened, move to the next transport. */
  _fallBack() {
    this._unopened += 1;
    const next = this._transports[this._transports.indexOf(this.transport) + 1];
    if (next === undefined || this._unopened < this.options.fallbackAfter) return;
    const previous = this.transport;
    this.transport = next;
    this._unopened = 0;
    this._emit("transport", { transport: next, previous });
  }

  // What the SSE transport asks of the client (see SseSocket).

  _streamPosition(channel) {
    const subscription = this.subscriptions.get(channel);
    if (!subscription) return { position: null, latest: false };
    const position = subscription.recover ? subscription.since : null;
    subscription._streamSince = position;
    return { position, latest: subscription.latest };
  }

  _onStreamInterrupted() {
    if (this.state !== "connected") return;
    this.state = "connecting";
    for (const subscription of this.subscriptions.values()) {
      subscription._streamSince = subscription.recover ? subscription.since : null;
    }
    this._emit("disconnected", { code: 1006, reason: "the event stream was interrupted", reconnect: true, delay: null });
  }

  _onStreamResumed(welcome) {
    if (!this._socket) return;
    this.state = "connected";
    this.welcome = welcome;
    const queued = this._queue;
    this._queue = [];
    for (const entry of queued) this._sendEntry(entry);
    this._emit("connected", { ...welcome, url: this._socket.url, transport: this.transport });
  }

  _onStreamResubscribed(frame) {
    const subscription = this.subscriptions.get(frame.channel);
    if (!subscription || subscription.state !== "subscribed") return;
    if (frame.op === "error") subscription._emit("error", new GatewayError(frame.code, frame.message, frame));
    else subscription._onSubscribed(frame, subscription._streamSince ?? null);
  }

  _scheduleReconnect(why, action) {
    const delay = action === "now" ? 0 : backoffDelay(this._attempt++, this.options);
    this.state = "disconnected";
    this._emit("disconnected", { ...why, reconnect: true, delay });
    this._reconnectTimer = setTimeout(() => {
      if (this._wanted) this._open();
    }, delay);
  }

  _failAll(code, message) {
    const entries = new Set([...this._queue, ...this._pending.values(), ...this._unacknowledged]);
    for (const entry of entries) {
      clearTimeout(entry.timer);
      entry.reject(new GatewayError(code, message));
    }
    this._queue = [];
    this._pending.clear();
  }
}
