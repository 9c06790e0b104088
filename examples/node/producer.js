// A streamlift producer in Node.js: stream a few seconds of 2D keypoints to a server, the way
// a web/AR client would send its 2D detector's output. Wire protocol: docs/protocol.md.
//
//   node producer.js --stream web.cam0 --seconds 3
//
// The frames come from frames.json (3 s of the shipped CMU sample, made by make_frames.py);
// a real client would send each video frame's detections as they arrive instead.

import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { Dealer } from "zeromq";
import { encode, decode } from "@msgpack/msgpack";
import { curveOptions } from "./curve.js";

const { values: opt } = parseArgs({
  options: {
    to: { type: "string", default: "tcp://127.0.0.1:5555" }, // the server's ingest endpoint
    stream: { type: "string", default: "web.cam0" }, // 1-64 chars of A-Z a-z 0-9 _ . : -
    seconds: { type: "string" }, // how much to stream (default: all of frames.json)
    fps: { type: "string" }, // frame rate (default: the file's)
    frames: { type: "string", default: fileURLToPath(new URL("frames.json", import.meta.url)) },
    lists: { type: "boolean", default: false }, // send nested lists instead of binary float32
    "curve-server-key": { type: "string" }, // with CURVE: the server's public key file
    "curve-secret": { type: "string" }, // and this client's *.key_secret file
    help: { type: "boolean", short: "h", default: false },
  },
});
if (opt.help) {
  console.log(`usage: node producer.js [--to ENDPOINT] [--stream ID] [--seconds S] [--fps F]
                        [--frames FILE.json] [--lists]
                        [--curve-server-key SERVER.key --curve-secret NAME.key_secret]
Stream 2D keypoint frames (H36M-17 pixels) to a streamlift server, paced in real time, then
send 'end' and report any errors the server answered.
  --to       the server's ingest (ROUTER) endpoint (default tcp://127.0.0.1:5555)
  --stream   stream id (default web.cam0)
  --seconds  seconds to stream (default: every frame in the file)
  --fps      frames per second (default: the file's)
  --frames   JSON file {fps, layout, frames: [[[u, v] x 17] ...]} (default: frames.json here)
  --lists    send keypoints as nested lists instead of the binary float32 form
  --curve-server-key, --curve-secret
             talk CurveZMQ (authenticated, encrypted) to a server started with
             --curve-secret/--curve-clients: its public key, and this client's key pair
             (\`streamlift keys\` makes both)`);
  process.exit(0);
}
const curve = curveOptions(opt["curve-server-key"], opt["curve-secret"]);

const data = JSON.parse(readFileSync(opt.frames, "utf8"));
const fps = Number(opt.fps ?? data.fps);
const n = Math.min(data.frames.length, opt.seconds ? Math.round(Number(opt.seconds) * fps) : Infinity);

// The binary array form: {"dtype": "<f4", "shape": [...], "data": <bin>}, row-major
// little-endian float32. DataView makes the byte order explicit on any machine.
function packF32(rows) {
  const cols = rows[0].length;
  const buf = new Uint8Array(4 * rows.length * cols);
  const dv = new DataView(buf.buffer);
  rows.forEach((row, i) => row.forEach((x, j) => dv.setFloat32(4 * (i * cols + j), x, true)));
  return { dtype: "<f4", shape: [rows.length, cols], data: buf }; // Uint8Array -> msgpack bin
}

const sleep = (ms) => new Promise((r) => setTimeout(r, Math.max(0, ms)));

// A DEALER socket; every message is ONE ZeroMQ frame holding one msgpack map.
// receiveTimeout/sendTimeout make receive()/send() throw instead of waiting forever for a
// missing server.
const sock = new Dealer({ linger: 1000, receiveTimeout: 3000, sendTimeout: 3000, ...curve });
sock.connect(opt.to);

// Is a server there? 'ping' is answered with 'pong' (valid frames are never answered).
// The send is inside the try: against a CurveZMQ server without the right keys the
// handshake fails and the send itself can fail (EAGAIN), which also means "no server".
try {
  await sock.send(encode({ v: 1, type: "ping" }));
  const [reply] = await sock.receive();
  if (decode(reply).type !== "pong") throw new Error("unexpected reply");
} catch (e) {
  console.error(`no streamlift server answers at ${opt.to} (${e.message})`);
  sock.close();
  process.exit(1);
}

console.error(`streaming ${n} frames of ${opt.stream} at ${fps} fps to ${opt.to}`);
const t0 = Date.now();
for (let k = 0; k < n; k++) {
  await sleep(t0 + (1000 * k) / fps - Date.now()); // frame k is "captured" at t0 + k / fps
  const kp = data.frames[k]; // 17 x [u, v] pixels (add a third column for confidences)
  await sock.send(encode({
    v: 1,
    type: "frame",
    stream: opt.stream,
    seq: k, // strictly increasing per stream
    t_capture: Date.now() / 1000, // seconds since the Unix epoch, as a float
    layout: data.layout ?? "h36m17",
    kp: opt.lists ? kp : packF32(kp),
  }));
}
// 'end' publishes the stream's last skeletons at once and frees its slot on the server.
await sock.send(encode({ v: 1, type: "end", stream: opt.stream }));

// Errors arrive on this socket, in order; a 'stats' request is answered after all of them.
await sock.send(encode({ v: 1, type: "stats" }));
let errors = 0;
try {
  for (;;) {
    const msg = decode((await sock.receive())[0]);
    if (msg.type === "error") {
      errors++;
      console.error(`error ${msg.code} (stream ${msg.stream}, seq ${msg.seq}): ${msg.message}`);
    } else if (msg.type === "stats") {
      console.error(`server: ${msg.stats.frames_in} frames in, ${msg.stats.frames_out} skeletons out`);
      break;
    }
  }
} catch (e) {
  console.error(`no stats reply (${e.message})`);
}
console.log(`sent ${n} frames on ${opt.stream} in ${((Date.now() - t0) / 1000).toFixed(1)} s; ${errors} errors`);
sock.close();
process.exit(errors ? 1 : 0);
