// Must fail to type-check (tests/integration/test_typescript.py): a chat message's text is a string.
import { GatewayClient } from "../gateway.js";
import type { Channels } from "./generated/channels";

const client = new GatewayClient<Channels>("ws://127.0.0.1:8000/ws");
void client.publish("chat:lobby", { text: 5 });
