// CurveZMQ keys for a server started with --curve-secret/--curve-clients (docs/protocol.md,
// section 11): read from the certificate files `streamlift keys` writes (ZeroMQ's own format,
// z85 text), as zeromq.js socket options.

import { readFileSync } from "node:fs";

function key(file, name) {
  const m = readFileSync(file, "utf8").match(new RegExp(`^\\s*${name}\\s*=\\s*"([^"]{40})"`, "m"));
  if (!m) throw new Error(`${file} holds no ${name} (is it a *.key_secret file?)`);
  return m[1];
}

// {} without keys; else the server's public key and this client's own pair.
export function curveOptions(serverKeyFile, secretFile) {
  if (serverKeyFile === undefined && secretFile === undefined) return {};
  if (serverKeyFile === undefined || secretFile === undefined) {
    throw new Error("CURVE needs both --curve-server-key SERVER.key and --curve-secret NAME.key_secret");
  }
  return {
    curveServerKey: key(serverKeyFile, "public-key"),
    curvePublicKey: key(secretFile, "public-key"),
    curveSecretKey: key(secretFile, "secret-key"),
  };
}
