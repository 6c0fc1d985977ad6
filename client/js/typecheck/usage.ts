// How an application uses the browser client: every call here must type-check against
// ../gateway.d.ts (and the `@ts-expect-error` lines must not).
import {
  GatewayClient,
  GatewayError,
  type ChannelData,
  type HistoryReply,
  type MessageFrame,
  type NamespaceOf,
  type PublishedReply,
  backoffDelay,
  closeAction,
  splitFrames,
  withName,
} from "../gateway.js";

type Same<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false;

const client = new GatewayClient(["ws://127.0.0.1:8000/ws"], {
  token: async () => "jwt",
  name: () => "ada",
  minDelay: 100,
});
client.on("disconnected", ({ code, delay, reconnect }) => {
  const action: "stop" | "refresh" | "now" | "backoff" = closeAction(code, reconnect);
  void action;
  void (delay ?? 0);
});
const subscription = client.subscribe("chat:lobby", {
  message: (message: MessageFrame) => void message.from?.user,
  unrecovered: ({ reason }) => void reason,
  error: (error: GatewayError) => void error.code,
});
subscription.unsubscribe();
client.subscribe("news", (message) => void message.data, { recover: false });

async function untyped(): Promise<void> {
  await client.connect();
  const reply: PublishedReply = await client.publish("chat:lobby", { anything: [1, 2] });
  void reply.offset;
  const page: HistoryReply = await client.history("chat:lobby", { limit: 10 });
  for await (const more of client.historyPages("chat:lobby", { since: { offset: 1, epoch: page.epoch } })) {
    void more.messages.length;
  }
  const who = await client.rpc<{ user: string | null }>("whoami");
  const user: string | null = who.user;
  void user;
  const anything: unknown = await client.rpc("typing", { room: "lobby" });
  void anything;
  try {
    await client.request({ op: "warp" });
  } catch (error) {
    if (error instanceof GatewayError && error.code === "invalid_data") {
      for (const detail of error.details ?? []) void `${detail.loc.join(".")}: ${detail.msg} (${detail.type})`;
    }
  }
  // @ts-expect-error rpc needs a method name
  await client.rpc();
}
void untyped;

// Channel names map to namespaces as the server maps them.
const lobby: Same<NamespaceOf<"chat:lobby">, "chat"> = true;
const plain: Same<NamespaceOf<"lobby">, "default"> = true;
const privateRoom: Same<NamespaceOf<"$chat:alice">, "chat"> = true;
const colonFirst: Same<NamespaceOf<":odd">, "default"> = true;
type Map = { chat: { text: string }; "*": number };
const typed: Same<ChannelData<Map, "chat:x">, { text: string }> = true;
const fallback: Same<ChannelData<Map, "news:x">, number> = true;
const dynamic: Same<ChannelData<Map, string>, unknown> = true;
void [lobby, plain, privateRoom, colonFirst, typed, fallback, dynamic];

void splitFrames('{"op":"pong"}\n{"op":"pong"}').length;
void withName("ws://h/ws", "ada").length;
void backoffDelay(3, { minDelay: 250, maxDelay: 10_000 }, Math.random);
