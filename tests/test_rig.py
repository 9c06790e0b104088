"""Bone rotations from joint positions, and what carries them: BVH (read back by an
independent parser, bvhio), VMC (received by a real OSC server on loopback) and rerun (an .rrd
read back with rerun's own reader)."""

import math
import threading
import time

import numpy as np
import pytest

from streamlift.cli import main
from streamlift.data.sample import sample_streams
from streamlift.rig import rotations as R
from streamlift.rig.bvh import BvhRecorder, euler_zxy, matrix_zxy, write_bvh
from streamlift.serve.messages import Skeleton
from streamlift.skeleton import H36M17

ONE_CHILD = [j for j in R.PRIMARY if j not in (0, 8)]  # joints whose bone fixes their frame


@pytest.fixture(scope="module")
def mocap():
    """300 frames of real motion capture (constant bones), rig frame, mm (frame 0 of the
    CMU files is a calibration pose: skipped)."""
    _, kp3d, _, _ = sample_streams(1)
    P = next(iter(kp3d.values()))[1:301]
    return R.to_rig(P - P[:, :1])


def random_rotations(n, seed=0):
    q = np.random.default_rng(seed).normal(size=(n, 4))
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    x, y, z, w = q.T
    return np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w),
                     2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w),
                     2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
                    -1).reshape(n, 3, 3), q


def test_forward_kinematics_re_creates_motion_capture_with_fixed_bones(mocap):
    rig = R.Rig.fit(mocap)
    G, L = R.solve(rig, mocap)
    F = R.forward_kinematics(rig, L)
    off = F - mocap  # (T, 17, 3) mm
    assert np.linalg.norm(off, axis=-1).mean() < 5.0
    # what a limb adds to its root's offset is exactly its bone's length against the rig's
    # (the rig's bones are fixed, left = right); its direction is exact
    for j in ONE_CHILD:
        c = R.PRIMARY[j]
        data_len = np.linalg.norm(mocap[:, c] - mocap[:, j], axis=-1)
        np.testing.assert_allclose(np.linalg.norm(off[:, c] - off[:, j], axis=-1),
                                   np.abs(data_len - rig.lengths[c]), atol=1e-4)  # float32 mm
    np.testing.assert_allclose(off[:, 0], 0, atol=1e-9)
    for j, p in enumerate(R.PARENTS):  # bones exactly the rig's, every frame
        if p >= 0:
            np.testing.assert_allclose(np.linalg.norm(F[:, j] - F[:, p], axis=-1),
                                       rig.lengths[j], rtol=1e-9)
            assert rig.lengths[j] == pytest.approx(np.linalg.norm(rig.offsets[j]))
    for j in ONE_CHILD:  # a one-child joint's bone points exactly where the mocap's does
        c = R.PRIMARY[j]
        d_fk, d = F[:, c] - F[:, j], mocap[:, c] - mocap[:, j]
        cos = (d_fk * d).sum(-1) / np.linalg.norm(d_fk, axis=-1) / np.linalg.norm(d, axis=-1)
        assert cos.min() > 1 - 1e-6, H36M17.joints[j]  # float32 data
    assert np.allclose(rig.lengths, rig.lengths[R._MIRROR])  # left = right
    np.testing.assert_allclose(G @ np.swapaxes(G, -1, -2), np.broadcast_to(np.eye(3), G.shape),
                               atol=1e-9)  # rotations, not any matrices


def test_the_rest_pose_is_a_t_pose_and_solves_to_identity(mocap):
    rig = R.Rig.fit(mocap)
    rest = rig.rest_positions()
    assert rest[H36M17.index("l_wrist"), 0] > rest[H36M17.index("l_shoulder"), 0] > 0  # +X
    assert rest[H36M17.index("r_wrist"), 0] < 0 and rest[H36M17.index("head"), 1] > 0
    assert rest[H36M17.index("l_ankle"), 1] < rest[H36M17.index("l_knee"), 1] < 0
    G, L = R.solve(rig, rest[None])
    np.testing.assert_allclose(L[0], np.broadcast_to(np.eye(3), (17, 3, 3)), atol=1e-9)


def test_a_limb_straightening_and_bending_never_flips():
    """An elbow going from 90 degrees to straight and back in 1-degree steps: every local
    rotation moves by about a degree per frame, never by a flip."""
    rest = R.Rig(np.ones(17), R._rest_offsets(np.ones(17)))
    pos = np.repeat(rest.rest_positions()[None], 181, 0)
    el, wr = H36M17.index("l_elbow"), H36M17.index("l_wrist")
    for t, deg in enumerate(np.r_[np.arange(90, 0, -1), np.arange(0, 91)]):
        a = math.radians(deg)  # the forearm bends forward (+Z), as elbows do
        pos[t, wr] = pos[t, el] + [math.cos(a), 0.0, math.sin(a)]
    _, L = R.solve(rest, pos)
    q = R.quaternions(L)
    step = np.degrees(2 * np.arccos(np.clip(np.abs((q[1:] * q[:-1]).sum(-1)), 0, 1)))
    assert step.max() < 5  # the twist hands over from the hinge to the fixed term: no flip
    np.testing.assert_allclose(R.forward_kinematics(rest, L), pos, atol=1e-9)


def test_quaternions_match_their_matrices_even_near_a_half_turn():
    M, q = random_rotations(500)
    half = np.diag([1.0, -1.0, -1.0])  # exactly 180 degrees about x
    M = np.concatenate([M, half[None], (half @ M[:3])])
    got = R.quaternions(M[:, None])[:, 0]
    x, y, z, w = got.T
    rebuilt = np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w),
                        2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w),
                        2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
                       -1).reshape(-1, 3, 3)
    np.testing.assert_allclose(rebuilt, M, atol=1e-9)
    assert (np.abs(np.linalg.norm(got, axis=1) - 1) < 1e-12).all()
    cont = R.quaternions(np.repeat(M[:1, None], 3, 0))  # one matrix three frames running
    assert (cont[1:, 0] @ cont[0, 0] > 0).all()


def test_zxy_euler_angles_round_trip():
    M, _ = random_rotations(300, seed=1)
    e = euler_zxy(M)
    np.testing.assert_allclose(matrix_zxy(e), M, atol=1e-9)
    a, b, c = math.radians(30), math.radians(-20), math.radians(75)
    Rz = np.array([[math.cos(a), -math.sin(a), 0], [math.sin(a), math.cos(a), 0], [0, 0, 1]])
    Rx = np.array([[1, 0, 0], [0, math.cos(b), -math.sin(b)], [0, math.sin(b), math.cos(b)]])
    Ry = np.array([[math.cos(c), 0, math.sin(c)], [0, 1, 0], [-math.sin(c), 0, math.cos(c)]])
    np.testing.assert_allclose(euler_zxy(Rz @ Rx @ Ry), [a, b, c], atol=1e-12)


@pytest.mark.parametrize("up", ["y", "z"])
def test_bvh_read_by_an_independent_parser_re_creates_the_joints(mocap, tmp_path, up):
    bvhio = pytest.importorskip("bvhio")
    rig = R.Rig.fit(mocap)
    _, L = R.solve(rig, mocap[:60])
    F = R.forward_kinematics(rig, L) * 1e-3  # metres, Y-up
    if up == "z":
        F = F @ np.array([[1.0, 0, 0], [0, 0, -1], [0, 1, 0]]).T
    path = write_bvh(tmp_path / f"c{up}.bvh", rig, L, fps=50.0, up=up)
    text = path.read_text()
    assert "Frames: 60" in text and "Frame Time: 0.02000000" in text
    root = bvhio.readAsHierarchy(str(path))
    layout = root.layout()
    assert [j.Name for j, _, _ in layout] == [H36M17.joints[j] for j in
                                              [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13,
                                               14, 15, 16]]
    worst = 0.0
    for f in range(0, 60, 7):
        root.loadPose(f)
        for j, _, _ in layout:
            k = H36M17.joints.index(j.Name)
            worst = max(worst, np.linalg.norm(np.array(list(j.PositionWorld)) - F[f, k]))
    assert worst < 1e-5  # metres: the file holds the rotations exactly (6 decimals)


def test_cli_export_bvh_of_a_sample_view(tmp_path, capsys):
    bvhio = pytest.importorskip("bvhio")
    from streamlift.data.sample import sample_views
    from streamlift.data.views import save_views
    from streamlift.lifter.model import LifterConfig, NRSfMFormer, save_checkpoint
    import torch

    torch.manual_seed(0)
    ck = tmp_path / "tiny.pt"
    save_checkpoint(ck, NRSfMFormer(LifterConfig(dim=32, depth=1, heads=2, window=9)))
    name, view = next(iter(sample_views().items()))
    views = tmp_path / "v.npz"
    save_views(views, {name: view})
    out = tmp_path / "clip.bvh"
    assert main(["export", "--bvh", str(out), "--views", str(views), "--weights", str(ck),
                 "--device", "cpu", "--height-m", "1.8"]) == 0
    line = capsys.readouterr().out
    assert f"{view.frames} frames of {name} at 50 fps, y-up, metres, 1.8 m tall" in line
    root = bvhio.readAsHierarchy(str(out))
    assert len(root.Keyframes) == view.frames
    assert main(["export", "--bvh", str(out), "--views", str(views), "--view", "nope",
                 "--weights", str(ck)]) == 2
    assert "no view 'nope'" in capsys.readouterr().err
    assert main(["export"]) == 2
    assert "nothing to export" in capsys.readouterr().err


def skeletons(P_rig_mm, stream="cam", fps=50.0):
    """Published skeletons (metres, camera frame) of rig-frame poses (T, 17, 3) mm."""
    return [Skeleton(stream=stream, seq=t, out_seq=t, t_capture=1.7e9 + t / fps,
                     t_receive=0.0, t_publish=0.0, joints=(R.to_rig(p) * 1e-3).astype(np.float32),
                     mode="causal", window=27, height_m=1.7, virtual_camera=False)
            for t, p in enumerate(P_rig_mm)]


def test_watch_bvh_recorder_writes_what_it_heard_at_the_stream_s_rate(mocap, tmp_path):
    bvhio = pytest.importorskip("bvhio")
    rec = BvhRecorder(tmp_path / "live.bvh")
    for s in skeletons(mocap[:40]) + skeletons(mocap[:5], stream="other"):
        rec.add(s)
    assert rec.close() == f"wrote {tmp_path / 'live.bvh'}: 40 frames of cam at 50 fps"
    text = (tmp_path / "live.bvh").read_text()
    assert float(text.split("Frame Time: ")[1].split()[0]) == pytest.approx(0.02, rel=1e-5)
    assert len(bvhio.readAsHierarchy(str(tmp_path / "live.bvh")).Keyframes) == 40
    with pytest.raises(ValueError, match="must end in .bvh"):
        BvhRecorder(tmp_path / "live.txt")


def test_vmc_every_bone_of_every_frame_reaches_a_real_osc_server(mocap):
    pytest.importorskip("pythonosc")
    from pythonosc.dispatcher import Dispatcher
    from pythonosc.osc_server import ThreadingOSCUDPServer
    from streamlift.rig.vmc import BONES, VmcSender, from_unity

    got, lock = [], threading.Lock()
    disp = Dispatcher()
    disp.set_default_handler(lambda addr, *args: (lock.acquire(), got.append((addr, args)),
                                                  lock.release()))
    server = ThreadingOSCUDPServer(("127.0.0.1", 0), disp)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        sender = VmcSender(f"127.0.0.1:{server.server_address[1]}", fit_frames=5)
        for s in skeletons(mocap[:20]) + skeletons(mocap[:3], stream="ignored"):
            sender.add(s)
        assert sender.close().startswith("sent 20 frames of cam as VMC")
        deadline = time.monotonic() + 5
        while len(got) < 20 * (len(BONES) + 3) and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        server.shutdown()
    bones = [a for addr, a in got if addr == "/VMC/Ext/Bone/Pos"]
    assert len(bones) == 20 * 17 and {b[0] for b in bones} == set(BONES)
    assert sum(addr == "/VMC/Ext/Root/Pos" for addr, _ in got) == 20
    assert [a[0] for addr, a in got if addr == "/VMC/Ext/T"] == pytest.approx(
        [1.7e9 + t / 50 for t in range(20)])
    q = np.array([b[4:8] for b in bones]).reshape(20, 17, 4)
    assert np.abs(np.linalg.norm(q, axis=-1) - 1).max() < 1e-6  # unit quaternions (float32)
    assert ((q[1:] * q[:-1]).sum(-1) > 0).all()  # no sign flips between frames
    # the same rotations as the BVH path: the rig fitted on the first 5, solved per frame
    P = np.stack([R.to_rig(s.joints.astype(np.float64)) * 1e3 for s in skeletons(mocap[:20])])
    rig = R.Rig.fit(P[:5])
    want = R.quaternions(R.solve(rig, P)[1])
    back, _ = from_unity(q, np.zeros(3))
    assert np.abs(np.abs((back * want).sum(-1)) - 1).max() < 1e-5


def test_rerun_recording_holds_every_skeleton_at_its_capture_time(mocap, tmp_path):
    pytest.importorskip("rerun")
    from rerun.chunk import RrdReader
    from streamlift.rig.rerun_log import RerunLogger

    log = RerunLogger(spawn=False, save=tmp_path / "s.rrd")
    sk = skeletons(mocap[:10]) + skeletons(mocap[10:14], stream="b")
    for s in sk:
        log.add(s)
    assert log.close().startswith("logged 14 skeletons of 2 streams")
    del log
    rows = {}
    for ch in RrdReader(str(tmp_path / "s.rrd")).stream():
        rb = ch.to_record_batch()
        if ch.entity_path.endswith("/joints"):
            pos = rb.column("Points3D:positions").to_pylist()
            t = rb.column("capture").cast("int64").to_pylist()
            rows.setdefault(ch.entity_path, []).extend(zip(t, pos))
    assert sorted(rows) == ["/streams/b/joints", "/streams/cam/joints"]
    for path, mine in (("/streams/cam/joints", sk[:10]), ("/streams/b/joints", sk[10:])):
        got = sorted(rows[path])
        np.testing.assert_allclose([t for t, _ in got], [s.t_capture * 1e9 for s in mine],
                                   atol=1e3)  # ns
        np.testing.assert_allclose(np.array([p for _, p in got]),
                                   np.stack([R.to_rig(s.joints.astype(np.float64)) for s in mine]),
                                   atol=1e-6)
