"""The example clients in examples/ against a live server on free loopback ports: the Python
robot subscriber (seq gaps, staleness, named points) and the Node.js producer + subscriber
(skipped with the reason when node/npm or the npm packages are not available).

Covers examples/README.md: `python examples/python/robot_subscriber.py --stream ...`,
`cd examples/node && npm ci`, `node subscriber.js ...` and `node producer.js ...`.
"""

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from streamlift.serve.clients import Producer
from streamlift.serve.server import Server, ServerConfig
from streamlift.lifter.model import load_lifter
from streamlift.skeleton import H36M17

from test_engine_cli import weights  # noqa: F401  (the tiny-lifter fixture)

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
NODE_DIR = EXAMPLES / "node"
ENV = dict(os.environ, OMP_NUM_THREADS="1")


@pytest.fixture()
def server(weights):  # noqa: F811
    model, _ = load_lifter(weights, torch.device("cpu"))
    cfg = ServerConfig(input="tcp://127.0.0.1:*", output="tcp://127.0.0.1:*", threads=1,
                       max_latency_ms=0.0)  # every frame lifted, however loaded the machine
    with Server(model, cfg, "cpu", log=lambda line: None) as s:
        yield s


def start(cmd, cwd=ROOT) -> subprocess.Popen:
    return subprocess.Popen(cmd, cwd=cwd, env=ENV, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def wait_for_line(proc: subprocess.Popen, word: str, timeout: float = 30.0) -> str:
    """Read the process's stderr until a line containing `word` (it has subscribed)."""
    box = {}

    def read():
        for line in proc.stderr:
            if word in line:
                box["line"] = line
                return

    t = threading.Thread(target=read, daemon=True)
    t.start()
    t.join(timeout)
    if "line" not in box:
        proc.kill()
        out, err = proc.communicate()
        pytest.fail(f"{proc.args} never printed {word!r}\n{out}\n{err}")
    return box["line"]


def finish(proc: subprocess.Popen, timeout: float = 30.0) -> tuple[int, str, str]:
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        pytest.fail(f"{proc.args} did not finish\n{out}\n{err}")
    return proc.returncode, out, err


# -------------------------------------------------------------------------------- Python
def test_python_robot_subscriber(server):
    sub = start([sys.executable, str(EXAMPLES / "python" / "robot_subscriber.py"), "--from",
                 server.output_endpoint, "--stream", "robot.cam0", "--json", "--timeout", "20",
                 "--max-age-ms", "2000"])
    wait_for_line(sub, "subscribed to")
    time.sleep(0.5)  # PUB/SUB: let the subscription reach the server
    p = Producer(server.input_endpoint)
    kp = np.random.default_rng(0).uniform(300, 700, (17, 2)).astype(np.float32)
    seqs = [0, 1, 2, 3, 4, 7, 8, 9]  # frames 5 and 6 never sent: a seq gap
    for s in seqs:
        # frame 8 was captured 5 s ago: the subscriber must call it stale
        p.frame("robot.cam0", s, kp, t_capture=time.time() - (5.0 if s == 8 else 0.0))
        p.frame("other", s, kp)  # another stream: not subscribed, never printed
        time.sleep(0.01)
    p.end("robot.cam0")
    assert p.poll_errors(200) == []
    p.close()
    rc, out, err = finish(sub)
    assert rc == 0, err
    rows = [json.loads(line) for line in out.splitlines()]
    assert [r["seq"] for r in rows] == seqs
    assert {r["stream"] for r in rows} == {"robot.cam0"}
    for r in rows:
        assert list(r["points"]) == list(H36M17.joints)  # named, in H36M-17 order
        assert r["points"]["pelvis"] == [0.0, 0.0, 0.0]  # root-relative
        assert all(len(v) == 3 for v in r["points"].values())
    assert "seq jumped 4 -> 7" in err
    assert "seq 8 is stale" in err and "seq 9 is stale" not in err
    assert "stream ended (end): 8 skeletons published" in err
    assert "8 skeletons, 0 missed, 2 seq gaps, 1 stale" in err


def test_python_robot_subscriber_help():
    r = subprocess.run([sys.executable, str(EXAMPLES / "python" / "robot_subscriber.py"),
                        "--help"], capture_output=True, text=True, env=ENV, timeout=60)
    assert r.returncode == 0
    for flag in ("--from", "--stream", "--max-age-ms", "--count", "--timeout", "--json"):
        assert flag in r.stdout


# ---------------------------------------------------------------------------------- Node
@pytest.fixture(scope="module")
def node():
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        pytest.skip("node/npm not found on PATH: the Node.js examples are not tested")
    if not (NODE_DIR / "node_modules" / "zeromq").is_dir() or \
            not (NODE_DIR / "node_modules" / "@msgpack" / "msgpack").is_dir():
        try:
            r = subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=NODE_DIR,
                               capture_output=True, text=True, timeout=300)
        except subprocess.TimeoutExpired:
            pytest.skip("`npm ci` in examples/node took over 300 s (no network?)")
        if r.returncode != 0:
            tail = (r.stderr or r.stdout).strip().splitlines()[-3:]
            pytest.skip(f"`npm ci` in examples/node failed (no network?): {' | '.join(tail)}")
    r = subprocess.run([node, "-e", "import('zeromq').then(() => console.log('ok'))"],
                       cwd=NODE_DIR, capture_output=True, text=True, timeout=60)
    if r.returncode != 0 or "ok" not in r.stdout:
        pytest.skip(f"the zeromq npm package does not load here: {r.stderr.strip()[-300:]}")
    return node


def test_node_producer_and_subscriber(node, server):
    sub = start([node, "subscriber.js", "--from", server.output_endpoint, "--stream",
                 "web.cam0", "--timeout", "20"], cwd=NODE_DIR)
    wait_for_line(sub, "subscribed to")
    time.sleep(0.5)  # PUB/SUB: let the subscription reach the server
    prod = start([node, "producer.js", "--to", server.input_endpoint, "--stream", "web.cam0",
                  "--seconds", "0.5", "--fps", "50"], cwd=NODE_DIR)
    rc, out, err = finish(prod)
    assert rc == 0, err
    assert "sent 25 frames on web.cam0" in out and "0 errors" in out
    rc, out, err = finish(sub)
    assert rc == 0, err
    lines = out.splitlines()
    assert len(lines) == 25
    for k, line in enumerate(lines):
        assert line.startswith(f"web.cam0 seq {k} latency ")
        assert "head (" in line and "l_wrist (" in line and "r_wrist (" in line
    assert "web.cam0 ended (end): 25 skeletons" in err


def test_node_lists_and_json(node, server):
    """Nested lists on the wire, every joint by name out (--json)."""
    sub = start([node, "subscriber.js", "--from", server.output_endpoint, "--stream", "web.b",
                 "--json", "--count", "10", "--timeout", "20"], cwd=NODE_DIR)
    wait_for_line(sub, "subscribed to")
    time.sleep(0.5)
    prod = start([node, "producer.js", "--to", server.input_endpoint, "--stream", "web.b",
                  "--seconds", "0.2", "--fps", "50", "--lists"], cwd=NODE_DIR)
    rc, out, err = finish(prod)
    assert rc == 0 and "sent 10 frames on web.b" in out, err
    rc, out, err = finish(sub)
    assert rc == 0, err
    rows = [json.loads(line) for line in out.splitlines()]
    assert [r["seq"] for r in rows] == list(range(10))
    assert list(rows[0]["points"]) == list(H36M17.joints)
    assert rows[0]["points"]["pelvis"] == [0, 0, 0]


def test_node_producer_without_a_server_fails_clearly(node):
    from test_engine_cli import free_port

    r = subprocess.run([node, "producer.js", "--to", f"tcp://127.0.0.1:{free_port()}"],
                       cwd=NODE_DIR, capture_output=True, text=True, timeout=60)
    assert r.returncode == 1
    assert "no streamlift server answers at" in r.stderr


def test_node_clients_through_curve(node, weights, tmp_path):  # noqa: F811
    """With CURVE on, the Node producer and subscriber get through with their keys (and the
    skeletons are the server's), and the producer without keys finds no server."""
    from streamlift.serve.curve import make_keys

    make_keys(tmp_path, ["web"])
    model, _ = load_lifter(weights, torch.device("cpu"))
    cfg = ServerConfig(input="tcp://127.0.0.1:*", output="tcp://127.0.0.1:*", threads=1,
                       max_latency_ms=0.0, curve_secret=tmp_path / "server.key_secret",
                       curve_clients=tmp_path / "clients")
    keys = ["--curve-server-key", str(tmp_path / "server.key"),
            "--curve-secret", str(tmp_path / "web.key_secret")]
    with Server(model, cfg, "cpu", log=lambda line: None) as server:
        sub = start([node, "subscriber.js", "--from", server.output_endpoint, "--stream",
                     "web.c", "--timeout", "20", *keys], cwd=NODE_DIR)
        wait_for_line(sub, "subscribed to")
        time.sleep(0.5)
        prod = start([node, "producer.js", "--to", server.input_endpoint, "--stream", "web.c",
                      "--seconds", "0.2", "--fps", "50", *keys], cwd=NODE_DIR)
        rc, out, err = finish(prod)
        assert rc == 0 and "sent 10 frames on web.c" in out and "0 errors" in out, err
        rc, out, err = finish(sub)
        assert rc == 0 and len(out.splitlines()) == 10, err
        assert "web.c ended (end): 10 skeletons" in err
        r = subprocess.run([node, "producer.js", "--to", server.input_endpoint], cwd=NODE_DIR,
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 1 and "no streamlift server answers at" in r.stderr


# ---------------------------------------------------------------------------------- ROS 2
def test_ros2_bridge_imports_without_ros_and_converts_skeletons():
    """rclpy is not on PyPI: the bridge (examples/ros2/streamlift_bridge.py) is import-checked
    here and its conversion tested; it is not run against ROS 2 (docs/integrations.md says
    so)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("bridge", EXAMPLES / "ros2" /
                                                  "streamlift_bridge.py")
    bridge = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bridge)  # no rclpy import at module level
    joints = np.arange(51, dtype=np.float32).reshape(17, 3) / 10
    spheres, lines = bridge.skeleton_markers("lab.cam0", joints, 1, "rig_")
    assert spheres["frame_id"] == lines["frame_id"] == "rig_lab.cam0_optical"
    assert spheres["points"] == [tuple(map(float, p)) for p in joints]
    from streamlift.rig.rotations import PARENTS
    want = [(p, j) for j, p in enumerate(PARENTS) if p >= 0]
    assert sorted(bridge.BONES) == sorted(want)  # the same skeleton as the package's
    assert lines["points"][2:4] == [spheres["points"][1], spheres["points"][2]]
    assert bridge.joint_poses(joints)[16] == pytest.approx((4.8, 4.9, 5.0, 0.0, 0.0, 0.0, 1.0))
    r = subprocess.run([sys.executable, str(EXAMPLES / "ros2" / "streamlift_bridge.py"),
                        "--help"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "--from" in r.stdout
