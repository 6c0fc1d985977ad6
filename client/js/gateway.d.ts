// Types of the gateway's browser client (gateway.js), protocol v1.

export declare const SUBPROTOCOL: "pubsub.v1";

/** Error codes of the protocol. */
export type ServerErrorCode =
  | "bad_request"
  | "unknown_op"
  | "unauthorized"
  | "forbidden"
  | "unknown_namespace"
  | "already_subscribed"
  | "not_subscribed"
  | "too_many_subscriptions"
  | "rate_limited"
  | "too_large"
  | "unavailable"
  | "internal"
  | "unknown_method"
  | "invalid_data";

/** Codes the client produces itself. */
export declare const ClientErrorCode: {
  readonly DISCONNECTED: "disconnected";
  readonly CLOSED: "closed";
  readonly TIMEOUT: "timeout";
  /** `maxUnacknowledged` publishes are waiting for their reply. */
  readonly OVERFLOW: "overflow";
  /** The command is not available over the transport in use (SSE: `presence`, `history`, ...). */
  readonly UNSUPPORTED: "unsupported";
};
export type ClientErrorCodeValue = (typeof ClientErrorCode)[keyof typeof ClientErrorCode];

/** A command failed; `code` is the server's error code or one of the client's own. */
export declare class GatewayError extends Error {
  constructor(code: string, message?: string, frame?: Frame | null);
  readonly code: ServerErrorCode | ClientErrorCodeValue | string;
  /** The `error` frame, when the server sent one. */
  readonly frame: Frame | null;
  /** What exactly was wrong, when the server said (`invalid_data`: the validation errors). */
  readonly details: ValidationErrorDetail[] | null;
}

/** One validation error of `invalid_data` (pydantic's). */
export interface ValidationErrorDetail {
  loc: (string | number)[];
  msg: string;
  type: string;
}

/**
 * What each namespace's channels carry: `{ namespace: payload type }`, as `gateway types`
 * prints it (`"*"`: every namespace without its own; `"default"`: names without `:`).
 * Give it to `GatewayClient<Channels>` and `publish` checks `data` against the channel's type.
 */
export type ChannelMap = { [namespace: string]: unknown };

/** The namespace of a channel name: the part before the first `:` (a leading `$` is no part of it). */
export type NamespaceOf<Channel extends string> = Channel extends `$${infer Rest}`
  ? NamespaceOf<Rest>
  : Channel extends `${infer Namespace}:${string}`
    ? Namespace extends ""
      ? "default"
      : Namespace
    : "default";

/** The payload type of `Channel` in `Channels`; `unknown` for a name that is no literal. */
export type ChannelData<Channels, Channel extends string> = string extends Channel
  ? unknown
  : NamespaceOf<Channel> extends keyof Channels
    ? Channels[NamespaceOf<Channel>]
    : "*" extends keyof Channels
      ? Channels["*"]
      : unknown;

/** Any protocol frame. */
export interface Frame {
  op: string;
  id?: number | string;
  [field: string]: unknown;
}

/** A place in a channel's history. */
export interface StreamPosition {
  offset: number;
  epoch: string;
}

export interface Welcome extends Frame {
  op: "welcome";
  client: string;
  node: string;
  user: string | null;
  ping: number;
  version: number;
}

export interface MessageFrame<T = unknown> extends Frame {
  op: "message";
  channel: string;
  data: T;
  offset?: number;
  epoch?: string;
  /** `info` is the publisher's presence info (the token's, or `{name}` chosen with `name`). */
  from?: { client: string; user: string | null; info?: unknown };
}

export interface PresenceChange extends Frame {
  op: "join" | "leave";
  channel: string;
  client: string;
  user: string | null;
  info?: unknown;
}

export interface PublishedReply extends Frame {
  op: "published";
  channel: string;
  offset?: number;
}

export interface PresenceReply extends Frame {
  op: "presence";
  channel: string;
  clients: Record<string, { user: string | null; info: unknown }>;
}

export interface HistoryReply extends Frame {
  op: "history";
  channel: string;
  /** The channel's latest offset. */
  offset: number;
  epoch: string;
  /** Oldest first. */
  messages: MessageFrame[];
  /** Matching messages were left out to keep the reply within its size: ask again after the last one. */
  more: boolean;
}

export interface ConnectingEvent {
  attempt: number;
  url: string;
}

/** How the client reaches the gateway: a WebSocket, or `GET /sse` plus `POST /publish`. */
export type TransportName = "websocket" | "sse";

export interface ConnectedEvent extends Welcome {
  url: string;
  /** The transport this connection uses. */
  transport: TransportName;
}

/** The client moved to another transport (after `fallbackAfter` attempts that never opened). */
export interface TransportEvent {
  transport: TransportName;
  previous: TransportName;
}

export interface DisconnectedEvent {
  code: number;
  reason: string;
  /** False when the client stopped for good (1000, 1003, 1009, 4003, close()). */
  reconnect: boolean;
  /** Milliseconds until the next attempt; null when not reconnecting. */
  delay: number | null;
}

export interface SubscribedEvent {
  channel: string;
  offset: number;
  epoch: string;
  /** True when every message missed since the last one seen follows. */
  recovered: boolean;
  /** True on every subscription after the first (after a reconnect). */
  resubscribed: boolean;
  /** How many missed messages follow when recovered. */
  missed: number;
}

export interface UnrecoveredEvent {
  channel: string;
  /** recovery_failed: `recovered: false` on resubscribe; gap: offsets skipped; epoch_changed: history reset. */
  reason: "recovery_failed" | "gap" | "epoch_changed";
  since: StreamPosition | null;
  offset?: number;
  epoch?: string;
  missed?: number;
}

export interface SubscriptionEvents {
  subscribed: SubscribedEvent;
  message: MessageFrame;
  unrecovered: UnrecoveredEvent;
  error: GatewayError;
  join: PresenceChange;
  leave: PresenceChange;
  unsubscribed: { channel: string };
}

export interface ClientEvents {
  connecting: ConnectingEvent;
  connected: ConnectedEvent;
  disconnected: DisconnectedEvent;
  transport: TransportEvent;
  error: GatewayError;
  message: MessageFrame;
  join: PresenceChange;
  leave: PresenceChange;
}

declare class Emitter<Events> {
  /** Call `listener` on each `event`; returns a function that removes it. */
  on<E extends keyof Events>(event: E, listener: (detail: Events[E]) => void): () => void;
  off<E extends keyof Events>(event: E, listener: (detail: Events[E]) => void): void;
}

export type SubscriptionHandlers =
  | ((message: MessageFrame) => void)
  | { [E in keyof SubscriptionEvents]?: (detail: SubscriptionEvents[E]) => void };

export interface SubscribeOptions {
  /** Start from this position (e.g. one the application stored). */
  since?: StreamPosition;
  /** Resubscribe with `since` after a reconnect (default true). */
  recover?: boolean;
  /**
   * Ask for the channel's latest message right after `subscribed` (when `since` is not
   * sent, or cannot be recovered), then the live stream: for current-value channels (a
   * price, a status), usually with `recover: false`. A latest message seen already is not
   * delivered again.
   */
  latest?: boolean;
  /** A subscription JWT, or a function of the channel returning one. */
  token?: string | ((channel: string) => string | Promise<string>);
}

export declare class Subscription extends Emitter<SubscriptionEvents> {
  readonly client: GatewayClient<any>;
  readonly channel: string;
  readonly state: "pending" | "subscribing" | "subscribed" | "failed" | "unsubscribed";
  /** The offset and epoch of the last message seen; null on a channel without history. */
  readonly since: StreamPosition | null;
  /** Stop wanting the channel; no events follow. */
  unsubscribe(): void;
}

export interface ClientOptions {
  /** A connection JWT, or a function returning a fresh one (called again before expiry and after 4001). */
  token?: string | (() => string | Promise<string>);
  /**
   * Without auth: the display name others see (presence `info` and `from.info`: `{name}`),
   * sent as `?name=` (at most 64 characters); a function is asked before each connection.
   * Ignored by a server with auth on, where the token's `info` shows.
   */
  name?: string | (() => string | null | undefined);
  /** A WebSocket implementation; defaults to globalThis.WebSocket. */
  WebSocket?: typeof WebSocket;
  /** An EventSource implementation for the SSE transport; defaults to globalThis.EventSource. */
  EventSource?: typeof EventSource;
  /** A fetch implementation for `POST /publish`; defaults to globalThis.fetch. */
  fetch?: typeof fetch;
  /**
   * The transports to try, in order; default ["websocket", "sse"]. Those this environment
   * cannot run (no EventSource or fetch) are left out.
   */
  transports?: TransportName[];
  /** Attempts of a transport that never opened before the next one is tried; default 2. */
  fallbackAfter?: number;
  /** Backoff base and cap in ms (full jitter): defaults 250 and 10000. */
  minDelay?: number;
  maxDelay?: number;
  /** Interval of the app-level `ping` in ms; defaults to the `ping` of `welcome`. */
  pingInterval?: number | null;
  /** A connection silent this long (ms) after a ping is dropped; default min(10000, pingInterval). */
  pongTimeout?: number | null;
  /** ms to wait for `welcome` after opening; default 10000. */
  connectTimeout?: number;
  /** ms to wait for a command's reply; default 10000. */
  commandTimeout?: number;
  /** A connection that lived this long (ms) resets the backoff; default 5000. */
  stableAfter?: number;
  /**
   * ms a publish may take, resends included, before it rejects with "timeout" (then it may
   * or may not have been published); default 60000. Keep it below the server's
   * `idempotency_window` (300 s by default), or a late resend may be delivered twice.
   */
  publishTimeout?: number;
  /** Publishes that may wait for their reply at once; the next rejects with "overflow". Default 1000. */
  maxUnacknowledged?: number;
}

export interface PublishOptions {
  /**
   * The publish's idempotency key (at most 64 characters); default a random one. A key the
   * server accepted on the channel within its `idempotency_window` is not delivered again.
   */
  idempotencyKey?: string;
}

export declare class GatewayClient<Channels = ChannelMap> extends Emitter<ClientEvents> {
  constructor(urls: string | string[], options?: ClientOptions);
  readonly urls: string[];
  readonly state: "disconnected" | "connecting" | "connected";
  /** The transport in use (or tried next); the "transport" event tells of a change. */
  readonly transport: TransportName;
  /** The current connection's `welcome`, or null. */
  readonly welcome: Welcome | null;
  readonly subscriptions: Map<string, Subscription>;
  /** Connect (and stay connected); resolves with the next `welcome`. */
  connect(): Promise<ConnectedEvent>;
  /** Close for good. */
  close(): void;
  subscribe(channel: string, handlers?: SubscriptionHandlers, options?: SubscribeOptions): Subscription;
  /** Resolves once, and the message is delivered once, across reconnects (see `PublishOptions`). */
  publish<Channel extends string>(
    channel: Channel,
    data: ChannelData<Channels, Channel>,
    options?: PublishOptions,
  ): Promise<PublishedReply>;
  /** Call a method the application serves in Python (`@gw.rpc(method)`); resolves with the reply's `data`. */
  rpc<Result = unknown>(method: string, data?: unknown): Promise<Result>;
  presence(channel: string): Promise<PresenceReply>;
  history(channel: string, options?: { since?: StreamPosition; limit?: number }): Promise<HistoryReply>;
  /** Every reply it takes to read all matching messages, following `more`. */
  historyPages(
    channel: string,
    options?: { since?: StreamPosition; limit?: number },
  ): AsyncGenerator<HistoryReply, void>;
  /** Send any command; resolves with its reply, rejects with a GatewayError. */
  request<R extends Frame = Frame>(command: Omit<Frame, "id">): Promise<R>;
}

export declare function splitFrames(text: string): Frame[];
/** `url` with `?name=` set to the display name (unchanged when blank). */
export declare function withName(url: string, name?: string | null): string;
export declare function backoffDelay(
  attempt: number,
  limits: { minDelay: number; maxDelay: number },
  random?: () => number,
): number;
export declare function closeAction(
  code: number,
  reconnect?: boolean | null,
): "stop" | "refresh" | "now" | "backoff";
/** Error codes after which a refused `subscribe` is retried with backoff. */
export declare const RETRYABLE_SUBSCRIBE_ERRORS: ReadonlySet<string>;
/** Error codes after which a publish is sent again, with its idempotency key, after a backoff. */
export declare const RETRYABLE_PUBLISH_ERRORS: ReadonlySet<string>;
/** A random idempotency key (128 bits, base64url). */
export declare function newIdempotencyKey(): string;
export declare function tokenExpiry(token: string): number | null;
export declare function refreshDelay(exp: number, nowMs: number): number;
export declare function advance(
  position: StreamPosition | null,
  message: Partial<MessageFrame>,
): { verdict: "deliver" | "duplicate" | "gap" | "epoch"; position: StreamPosition | null; missed: number };
