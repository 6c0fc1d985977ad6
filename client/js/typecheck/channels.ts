// Typed channels: `gateway types --app tests.apps.typed:gw` writes generated/channels.ts,
// json-schema-to-typescript writes generated/reference.ts from the same JSON Schema
// (tests/integration/test_typescript.py). Every line must type-check, and every line
// marked `@ts-expect-error` must fail to.
import { GatewayClient } from "../gateway.js";
import type { Author, Channels, ChatMessage, Note, Vote } from "./generated/channels";
import type * as Reference from "./generated/reference";

const client = new GatewayClient<Channels>("ws://127.0.0.1:8000/ws");

export async function publishes(room: string): Promise<void> {
  await client.publish("chat:lobby", { text: "hi" });
  await client.publish("chat:lobby", {
    text: "hi",
    by: { name: "ada", age: null },
    tags: ["a"],
    kind: "me",
    position: [1, 2],
    scores: { ada: 3 },
    mood: "grumpy",
  });
  await client.publish("$chat:private", { text: "psst" });
  await client.publish(`chat:${room}`, { text: "templated" });
  await client.publish("votes:poll", { choice: "yes" });
  await client.publish("news:today", { body: "every other namespace takes a Note" });
  await client.publish("lobby", { body: "so does the default namespace" });
  await client.publish(room, "a name that is no literal is not checked");

  // @ts-expect-error text must be a string
  await client.publish("chat:lobby", { text: 5 });
  // @ts-expect-error text is required
  await client.publish("chat:lobby", {});
  // @ts-expect-error the model has no colour
  await client.publish("chat:lobby", { text: "hi", colour: "red" });
  // @ts-expect-error kind is "say" or "me"
  await client.publish("chat:lobby", { text: "hi", kind: "shout" });
  // @ts-expect-error a position is two numbers
  await client.publish("chat:lobby", { text: "hi", position: [1, 2, 3] });
  // @ts-expect-error choice is "yes" or "no"
  await client.publish("votes:poll", { choice: "maybe" });
  // @ts-expect-error a Note is not a ChatMessage
  await client.publish("news:today", { text: "hi" });
  // @ts-expect-error a template channel of the chat namespace takes a ChatMessage
  await client.publish(`chat:${room}`, { body: "no" });
}

type Same<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false;
type Within<A, B> = [A] extends [B] ? true : false;

// The same models as json-schema-to-typescript sees them: equal, except where it is less
// precise (it reads no `prefixItems`: a tuple is `[unknown, unknown]` there).
export const agree: [
  Same<Author, Reference.Author>,
  Same<Vote, Reference.Vote>,
  Same<Note, Reference.Note>,
  Within<ChatMessage, Reference.ChatMessage>,
  Same<Omit<ChatMessage, "position">, Omit<Reference.ChatMessage, "position">>,
  Same<keyof Channels, keyof Reference.Channels>,
] = [true, true, true, true, true, true];
