#!/usr/bin/env python3
"""A robot's view of streamlift: subscribe to the 3D skeletons of ONE stream and turn each into
named 3D points, checking for missed messages and stale data on the way.

Only pyzmq and msgpack: this speaks the wire protocol (docs/protocol.md, section 6) directly,
without importing streamlift, so it is what a client in any language has to do.

    python examples/python/robot_subscriber.py --stream lab.cam0 --count 100

prints one line per skeleton, e.g.

    seq 41  age 12.3 ms  pelvis (+0.000, +0.000, +0.000)  head (+0.051, -0.702, -0.083) ...

and, with --json, one JSON object per skeleton instead ({"seq": .., "points": {"pelvis": [x, y,
z], ...}}), for piping into another program.
"""

from __future__ import annotations

import argparse
import json
import struct
import sys
import time

import msgpack
import zmq

# H36M-17, the joint order of every published skeleton (docs/protocol.md, section 5).
JOINTS = ("pelvis", "r_hip", "r_knee", "r_ankle", "l_hip", "l_knee", "l_ankle", "spine",
          "thorax", "neck_nose", "head", "l_shoulder", "l_elbow", "l_wrist",
          "r_shoulder", "r_elbow", "r_wrist")


def decode_joints(arr) -> list[tuple[float, float, float]]:
    """The `joints` field -> 17 (x, y, z) tuples in metres.

    The server sends the binary form {"dtype": "<f4", "shape": [17, 3], "data": <bytes>}:
    little-endian float32, row-major. Nested lists are accepted too, for other servers.
    """
    if isinstance(arr, dict):
        if arr["dtype"] != "<f4" or list(arr["shape"]) != [17, 3]:
            raise ValueError(f"unexpected joints array {arr['dtype']} {arr['shape']}")
        flat = struct.unpack("<51f", arr["data"])
        return [tuple(flat[3 * j:3 * j + 3]) for j in range(17)]
    return [tuple(float(c) for c in row) for row in arr]


def named_points(msg: dict) -> dict[str, tuple[float, float, float]]:
    """A skeleton message -> {joint name: (x, y, z)}: metres in the input camera's frame
    (x right, y down, z forward), pelvis at the origin, scaled to msg['height_m']."""
    return dict(zip(JOINTS, decode_joints(msg["joints"])))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description="Subscribe to one stream's 3D skeletons from a streamlift server and print "
                    "them as named 3D points, warning about missed messages and stale data.")
    ap.add_argument("--from", dest="source", default="tcp://127.0.0.1:5556",
                    help="the server's PUB endpoint (default: %(default)s)")
    ap.add_argument("--stream", required=True, help="the stream id to follow, e.g. lab.cam0")
    ap.add_argument("--max-age-ms", type=float, default=200.0,
                    help="warn when a skeleton is older than this on arrival (now - t_capture; "
                         "meaningful when the producer's clock agrees with ours; default: "
                         "%(default)s)")
    ap.add_argument("--count", type=int, default=None,
                    help="stop after this many skeletons (default: run until the stream ends)")
    ap.add_argument("--timeout", type=float, default=30.0,
                    help="give up after this many seconds without a message (default: "
                         "%(default)s)")
    ap.add_argument("--json", action="store_true",
                    help="print one JSON object per skeleton instead of a readable line")
    a = ap.parse_args(argv)

    ctx = zmq.Context()
    sub = ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.LINGER, 0)
    # Topics are "skel/<stream>/": the trailing slash keeps "cam1" from also matching "cam10".
    sub.setsockopt(zmq.SUBSCRIBE, f"skel/{a.stream}/".encode())
    sub.connect(a.source)
    print(f"subscribed to {a.stream!r} at {a.source}", file=sys.stderr, flush=True)

    last_seq = last_out = None
    n = missed = skipped = stale = 0
    try:
        while a.count is None or n < a.count:
            if not sub.poll(int(a.timeout * 1000)):
                print(f"no message for {a.timeout:g} s; giving up", file=sys.stderr)
                return 1
            _topic, payload = sub.recv_multipart()  # two frames: topic, msgpack payload
            msg = msgpack.unpackb(payload, raw=False)
            if msg.get("v") != 1:
                print(f"ignoring a message of protocol version {msg.get('v')!r}", file=sys.stderr)
                continue
            if msg["type"] == "end":  # the stream is over (reason: end, idle or shutdown)
                print(f"stream ended ({msg['reason']}): {msg['published']} skeletons published, "
                      f"{msg['dropped']} dropped by the server", file=sys.stderr)
                break
            if msg["type"] != "skeleton":
                continue  # newer servers may publish other types: skip, don't fail
            # out_seq numbers the stream's frames: a gap means skeletons we did not get (we
            # read too slowly, or the server shed them to keep its latency bound).
            if last_out is not None and msg["out_seq"] != last_out + 1:
                missed += msg["out_seq"] - last_out - 1
                print(f"warning: missed {msg['out_seq'] - last_out - 1} skeletons",
                      file=sys.stderr)
            # seq is the producer's frame number: a gap means frames never reached us (the
            # producer skipped them or the server dropped them to stay real-time).
            if last_seq is not None and msg["seq"] != last_seq + 1:
                skipped += msg["seq"] - last_seq - 1
                print(f"warning: seq jumped {last_seq} -> {msg['seq']}", file=sys.stderr)
            last_out, last_seq = msg["out_seq"], msg["seq"]
            # Staleness: how old the pose is now. A robot should not act on an old pose.
            age_ms = 1e3 * (time.time() - msg["t_capture"])
            if age_ms > a.max_age_ms:
                stale += 1
                print(f"warning: seq {msg['seq']} is stale ({age_ms:.0f} ms old)",
                      file=sys.stderr)
            points = named_points(msg)
            n += 1
            if a.json:
                print(json.dumps({"stream": msg["stream"], "seq": msg["seq"],
                                  "age_ms": round(age_ms, 2),
                                  "points": {k: [round(c, 4) for c in p]
                                             for k, p in points.items()}}), flush=True)
            else:
                shown = ("pelvis", "head", "l_wrist", "r_wrist")
                print(f"seq {msg['seq']}  age {age_ms:.1f} ms  " + "  ".join(
                    f"{k} ({points[k][0]:+.3f}, {points[k][1]:+.3f}, {points[k][2]:+.3f})"
                    for k in shown), flush=True)
    except KeyboardInterrupt:
        pass
    finally:
        sub.close()
        ctx.term()
    print(f"{n} skeletons, {missed} missed, {skipped} seq gaps, {stale} stale", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
