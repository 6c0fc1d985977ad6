// centrifuge-js's own delta applier, as its subscriptions use it, for the fossil tests.
//
// Reads JSON lines {"protocol": "json" | "protobuf", "source": B64, "delta": B64} and
// answers each with {"target": B64} or {"error": MESSAGE}. Under "json" the delta is
// handed over as the string the JSON dialect carries (the UTF-8 decoding of the delta).
import readline from 'node:readline';
import WebSocket from 'ws';
import { Centrifuge as JsonCentrifuge } from 'centrifuge';
import { Centrifuge as ProtobufCentrifuge } from 'centrifuge/build/protobuf';

const unused = 'ws://127.0.0.1:9/connection/websocket';
const codecs = {
  json: new JsonCentrifuge(unused, { websocket: WebSocket })._codec,
  protobuf: new ProtobufCentrifuge(unused, { websocket: WebSocket })._codec,
};
const decoder = new TextDecoder('utf-8', { fatal: true });

const lines = readline.createInterface({ input: process.stdin });
lines.on('line', (line) => {
  if (!line.trim()) return;
  const request = JSON.parse(line);
  try {
    const source = new Uint8Array(Buffer.from(request.source, 'base64'));
    const delta = new Uint8Array(Buffer.from(request.delta, 'base64'));
    const data = request.protocol === 'json' ? decoder.decode(delta) : delta;
    const { newPrevValue } = codecs[request.protocol].applyDeltaIfNeeded({ delta: true, data }, source);
    process.stdout.write(JSON.stringify({ target: Buffer.from(newPrevValue).toString('base64') }) + '\n');
  } catch (error) {
    process.stdout.write(JSON.stringify({ error: String(error.message ?? error) }) + '\n');
  }
});
