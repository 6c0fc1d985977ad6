// Node socket.io with @socket.io/redis-adapter: the Node peer most users pick.
//
// The same events as the python-socketio peer (bench/servers/sio.py): "subscribe" (a room
// name; acknowledged with true once joined) and "publish" ({channel, data}; emitted to that
// room on every process through the Redis adapter, acknowledged with true). Subscribers
// receive "message" events carrying {channel, data}. GET /readyz answers 200 once both
// Redis clients are connected.
//
// Run: node bench/servers/node/server.mjs --port 8001 --redis-url redis://127.0.0.1:6379/0
// (after `npm ci` in this directory; `python -m bench` does that from package-lock.json).

import http from "node:http";
import { parseArgs } from "node:util";

import { createAdapter } from "@socket.io/redis-adapter";
import { createClient } from "redis";
import { Server } from "socket.io";

const { values } = parseArgs({
  options: {
    port: { type: "string" },
    "redis-url": { type: "string" },
  },
});
if (!values.port || !values["redis-url"]) {
  console.error("usage: server.mjs --port PORT --redis-url URL");
  process.exit(2);
}

let ready = false;
const httpServer = http.createServer((request, response) => {
  if (request.url === "/readyz") {
    response.writeHead(ready ? 200 : 503, { "content-type": "text/plain" });
    response.end(ready ? "ready\n" : "starting\n");
    return;
  }
  response.writeHead(404);
  response.end();
});

const publisher = createClient({ url: values["redis-url"] });
const subscriber = publisher.duplicate();
for (const client of [publisher, subscriber]) {
  client.on("error", (error) => console.error(`redis: ${error.message}`));
}
await Promise.all([publisher.connect(), subscriber.connect()]);

const io = new Server(httpServer, {
  adapter: createAdapter(publisher, subscriber),
  serveClient: false,
  maxHttpBufferSize: 65536,
});

io.on("connection", (socket) => {
  socket.on("subscribe", (channel, ack) => {
    if (typeof channel !== "string") {
      if (typeof ack === "function") ack(false);
      return;
    }
    socket.join(channel);
    if (typeof ack === "function") ack(true);
  });
  socket.on("publish", (message, ack) => {
    if (message === null || typeof message !== "object" || typeof message.channel !== "string") {
      if (typeof ack === "function") ack(false);
      return;
    }
    io.to(message.channel).emit("message", message);
    if (typeof ack === "function") ack(true);
  });
});

function stop() {
  io.close();
  Promise.allSettled([publisher.quit(), subscriber.quit()]).finally(() => process.exit(0));
  setTimeout(() => process.exit(0), 2000).unref();
}
process.on("SIGTERM", stop);
process.on("SIGINT", stop);

httpServer.listen(Number(values.port), "127.0.0.1", () => {
  ready = true;
});
