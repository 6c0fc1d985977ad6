// One centrifuge-js client, driven by a test: commands arrive as JSON lines on stdin,
// everything the SDK reports leaves as JSON lines on stdout.
//
//   node client.mjs '{"url": "ws://127.0.0.1:PORT/connection/websocket", "protocol": "json"}'
//
// Commands: {"id": 1, "op": "connect"}, {"id": 2, "op": "subscribe", "channel": "c",
// "delta": "fossil", "since": {"offset": 1, "epoch": "e"}}, {"id": 3, "op": "publish",
// "channel": "c", "data": {...}}, and likewise "unsubscribe", "history" (limit, reverse,
// since), "presence", "presence_stats", "rpc" (method, data), "send" (data), "disconnect",
// "exit". Each command is answered by {"event": "result", "id": N, "result": ...} or
// {"event": "result", "id": N, "error": {"code": C, "message": M}}. Payloads are JSON
// values in both protocols: under Protobuf they travel as the UTF-8 bytes of their JSON.
import readline from 'node:readline';
import WebSocket from 'ws';

const config = JSON.parse(process.argv[2] ?? '{}');
const protobuf = config.protocol === 'protobuf';
const { Centrifuge } = protobuf
  ? await import('centrifuge/build/protobuf')
  : await import('centrifuge');

const encoder = new TextEncoder();
const decoder = new TextDecoder();

function emit(event) {
  process.stdout.write(JSON.stringify(event) + '\n');
}

function payload(value) {
  return protobuf ? encoder.encode(JSON.stringify(value)) : value;
}

// SDK values as plain JSON: byte payloads decoded back to the JSON they carry.
function plain(value) {
  if (value instanceof Uint8Array) {
    const text = decoder.decode(value);
    try {
      return JSON.parse(text);
    } catch {
      return { undecodable: text };
    }
  }
  if (Array.isArray(value)) return value.map(plain);
  if (value && typeof value === 'object') {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, plain(v)]));
  }
  if (typeof value === 'bigint') return Number(value);
  return value;
}

const client = new Centrifuge(config.url, {
  websocket: WebSocket,
  token: config.token ?? '',
  name: config.name ?? 'js',
  debug: Boolean(config.debug),
  minReconnectDelay: config.minReconnectDelay ?? 100,
  maxReconnectDelay: config.maxReconnectDelay ?? 500,
  timeout: config.timeout ?? 5000,
});

for (const name of ['connecting', 'connected', 'disconnected', 'error', 'message']) {
  client.on(name, (ctx) => emit({ event: name, scope: 'client', ...plain(ctx) }));
}
for (const name of ['subscribing', 'subscribed', 'unsubscribed', 'publication', 'join', 'leave']) {
  client.on(name, (ctx) => emit({ event: name, scope: 'server', ...plain(ctx) }));
}

function subscription(channel, options = {}) {
  let sub = client.getSubscription(channel);
  if (sub) return sub;
  sub = client.newSubscription(channel, options);
  for (const name of ['subscribing', 'subscribed', 'unsubscribed', 'publication', 'join', 'leave', 'error']) {
    sub.on(name, (ctx) => emit({ event: name, scope: 'subscription', channel, ...plain(ctx) }));
  }
  return sub;
}

async function run(command) {
  const { op, channel } = command;
  switch (op) {
    case 'connect':
      client.connect();
      return {};
    case 'disconnect':
      client.disconnect();
      return {};
    case 'subscribe': {
      const options = {};
      if (command.delta) options.delta = command.delta;
      if (command.since) options.since = command.since;
      if (command.token) options.token = command.token;
      if (command.joinLeave) options.joinLeave = true;
      subscription(channel, options).subscribe();
      return {};
    }
    case 'unsubscribe':
      subscription(channel).unsubscribe();
      return {};
    case 'publish':
      return plain(await client.publish(channel, payload(command.data)));
    case 'history':
      return plain(await client.history(channel, {
        limit: command.limit ?? 0,
        reverse: Boolean(command.reverse),
        ...(command.since ? { since: command.since } : {}),
      }));
    case 'presence':
      return plain(await client.presence(channel));
    case 'presence_stats':
      return plain(await client.presenceStats(channel));
    case 'rpc':
      return plain(await client.rpc(command.method, payload(command.data)));
    case 'send':
      await client.send(payload(command.data));
      return {};
    case 'exit':
      client.disconnect();
      setImmediate(() => process.exit(0));
      return {};
    default:
      throw Object.assign(new Error(`unknown op ${op}`), { code: -1 });
  }
}

const lines = readline.createInterface({ input: process.stdin });
lines.on('line', async (line) => {
  if (!line.trim()) return;
  const command = JSON.parse(line);
  try {
    emit({ event: 'result', id: command.id, result: await run(command) });
  } catch (error) {
    emit({ event: 'result', id: command.id, error: { code: error.code ?? 0, message: String(error.message ?? error) } });
  }
});
lines.on('close', () => {
  client.disconnect();
  process.exit(0);
});
emit({ event: 'ready', protocol: protobuf ? 'protobuf' : 'json' });
