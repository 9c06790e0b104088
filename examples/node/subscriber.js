// A streamlift subscriber in Node.js: receive the 3D skeletons of one stream (or all of them)
// and print their joints, the way an AR/web client would drive an avatar. Protocol: docs/protocol.md.
//
//   node subscriber.js --stream web.cam0
//
// Prints one line per skeleton; with --json one JSON object per skeleton with all 17 joints.

import { parseArgs } from "node:util";
import { Subscriber } from "zeromq";
import { decode } from "@msgpack/msgpack";
import { curveOptions } from "./curve.js";

const { values: opt } = parseArgs({
  options: {
    from: { type: "string", default: "tcp://127.0.0.1:5556" }, // the server's PUB endpoint
    stream: { type: "string" }, // follow this stream only (default: every stream)
    count: { type: "string" }, // stop after this many skeletons
    timeout: { type: "string", default: "30" }, // give up after this many quiet seconds
    json: { type: "boolean", default: false },
    "curve-server-key": { type: "string" }, // with CURVE: the server's public key file
    "curve-secret": { type: "string" }, // and this client's *.key_secret file
    help: { type: "boolean", short: "h", default: false },
  },
});
if (opt.help) {
  console.log(`usage: node subscriber.js [--from ENDPOINT] [--stream ID] [--count N] [--timeout S] [--json]
                          [--curve-server-key SERVER.key --curve-secret NAME.key_secret]
Print the 3D joints (metres, camera frame: x right, y down, z forward; pelvis at the origin)
of every skeleton a streamlift server publishes. With --stream, exits when that stream ends.
  --from     the server's PUB endpoint (default tcp://127.0.0.1:5556)
  --stream   only this stream (default: all streams)
  --count    stop after this many skeletons
  --timeout  give up after this many seconds without a message (default 30)
  --json     one JSON object per skeleton, all 17 joints by name
  --curve-server-key, --curve-secret
             subscribe through CurveZMQ to a server started with --curve-secret/--curve-clients
             (its public key, and this client's key pair; \`streamlift keys\` makes both)`);
  process.exit(0);
}
const curve = curveOptions(opt["curve-server-key"], opt["curve-secret"]);

// H36M-17: the joint order of every published skeleton (docs/protocol.md, section 5).
const JOINTS = ["pelvis", "r_hip", "r_knee", "r_ankle", "l_hip", "l_knee", "l_ankle", "spine",
  "thorax", "neck_nose", "head", "l_shoulder", "l_elbow", "l_wrist", "r_shoulder", "r_elbow",
  "r_wrist"];

// {"dtype": "<f4", "shape": [17, 3], "data": <bin>} -> [[x, y, z] x 17]. The bytes may not
// be 4-aligned inside the message buffer, so read them through a DataView, little-endian.
function unpackF32(a) {
  if (Array.isArray(a)) return a; // nested lists (the server itself always sends binary)
  const dv = new DataView(a.data.buffer, a.data.byteOffset, a.data.byteLength);
  const [rows, cols] = a.shape;
  return Array.from({ length: rows }, (_, i) =>
    Array.from({ length: cols }, (_, j) => dv.getFloat32(4 * (i * cols + j), true)));
}

const fmt = (p) => `(${p.map((x) => (x >= 0 ? "+" : "") + x.toFixed(3)).join(", ")})`;

const sub = new Subscriber({ receiveTimeout: 1000 * Number(opt.timeout), ...curve });
sub.connect(opt.from);
// Topics are "skel/<stream>/": the trailing slash keeps "cam1" from matching "cam10".
sub.subscribe(opt.stream ? `skel/${opt.stream}/` : "skel/");
console.error(`subscribed to ${opt.stream ?? "all streams"} at ${opt.from}`);

let n = 0;
let code = 0;
try {
  while (opt.count === undefined || n < Number(opt.count)) {
    const [, payload] = await sub.receive(); // two frames: topic, msgpack payload
    const msg = decode(payload);
    if (msg.type === "end") {
      console.error(`${msg.stream} ended (${msg.reason}): ${msg.published} skeletons`);
      if (opt.stream) break;
      continue;
    }
    if (msg.type !== "skeleton") continue; // newer servers may add types: skip them
    n++;
    const joints = unpackF32(msg.joints);
    const latencyMs = 1000 * (msg.t_publish - msg.t_capture);
    if (opt.json) {
      const points = Object.fromEntries(JOINTS.map((name, j) => [name, joints[j]]));
      console.log(JSON.stringify({ stream: msg.stream, seq: msg.seq, latency_ms: latencyMs, points }));
    } else {
      const j = (name) => joints[JOINTS.indexOf(name)];
      console.log(`${msg.stream} seq ${msg.seq} latency ${latencyMs.toFixed(1)} ms  ` +
        `head ${fmt(j("head"))}  l_wrist ${fmt(j("l_wrist"))}  r_wrist ${fmt(j("r_wrist"))} m`);
    }
  }
} catch (e) {
  console.error(`no message for ${opt.timeout} s (${e.message})`);
  code = 1;
}
console.error(`${n} skeletons`);
sub.close();
process.exit(code);
