"""Engine pieces without sockets: protocol decoding, published messages and gap counting,
recording, ring-buffer windows, runner padding."""

import json
import math
import re

import msgpack
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from streamlift.serve import protocol as P
from streamlift.serve.clients import Recorder
from streamlift.serve.messages import Gaps, Skeleton, StreamEnd, UnknownMessage, decode
from streamlift.serve.ring import RingStore
from streamlift.serve.runner import Runner, bucket, skeleton_fn
from streamlift.lifter.model import LifterConfig, NRSfMFormer
from streamlift.skeleton import to_h36m
from streamlift.windows import window_indices

RNG = np.random.default_rng(0)
KP = (RNG.uniform(300, 700, (17, 2))).astype(np.float32)


def frame(**over):
    msg = {"v": 1, "type": "frame", "stream": "cam0", "seq": 3, "t_capture": 1.7e9,
           "layout": "h36m17", "kp": P.pack_array(KP)}
    msg.update(over)
    return msgpack.packb({k: v for k, v in msg.items() if v is not None}, use_bin_type=True)


def code_of(raw, **kw):
    with pytest.raises(P.ProtocolError) as e:
        P.decode_request(raw, **kw)
    return e.value.code


# ------------------------------------------------------------------------------------ protocol
def test_frame_binary_and_lists_decode_the_same():
    kind, a = P.decode_request(frame())
    _, b = P.decode_request(frame(kp=KP.tolist()))
    assert kind == "frame" and a.stream == "cam0" and a.seq == 3
    np.testing.assert_array_equal(a.kp, KP)
    np.testing.assert_array_equal(b.kp, KP)
    np.testing.assert_array_equal(a.conf, np.ones(17, np.float32))


def test_confidence_channel_or_field_and_coco_mapping():
    conf = RNG.uniform(0, 1, 17).astype(np.float32)
    _, a = P.decode_request(frame(kp=P.pack_array(np.c_[KP, conf])))
    _, b = P.decode_request(frame(conf=conf.tolist()))
    np.testing.assert_array_equal(a.conf, conf)
    np.testing.assert_array_equal(b.conf, conf)
    _, c = P.decode_request(frame(layout="coco17", kp=P.pack_array(np.c_[KP, conf])))
    want = to_h36m(np.c_[KP, conf], "coco17")
    np.testing.assert_allclose(c.kp, want[:, :2], rtol=1e-6)
    np.testing.assert_allclose(c.conf, want[:, 2])


def test_intrinsics_travel_with_the_frame():
    K = np.array([[1150, 0, 500], [0, 1150, 480], [0, 0, 1]], np.float32)
    _, a = P.decode_request(frame(intrinsics=P.pack_array(K)))
    _, b = P.decode_request(frame(intrinsics=K.tolist()))
    _, c = P.decode_request(frame())
    np.testing.assert_array_equal(a.K, K)
    np.testing.assert_array_equal(b.K, K)
    assert c.K is None


def test_control_messages():
    assert P.decode_request(msgpack.packb({"v": 1, "type": "stats"})) == ("stats", None)
    assert P.decode_request(msgpack.packb({"v": 1, "type": "ping"})) == ("ping", None)
    assert P.decode_request(msgpack.packb({"v": 1, "type": "end", "stream": "a"})) == ("end", "a")


BAD = [
    (b"\xc1", "bad_msgpack"),  # a byte msgpack never uses
    (b"\x92\x01", "bad_msgpack"),  # truncated array
    (msgpack.packb(1) + msgpack.packb(2), "bad_msgpack"),  # two objects
    (msgpack.packb([1, 2]), "bad_message"),
    (frame(v=2), "unsupported_version"),
    (frame(v=None), "unsupported_version"),
    (frame(type="video"), "unknown_type"),
    (frame(stream="bad id!"), "bad_stream_id"),
    (frame(stream="x" * 65), "bad_stream_id"),
    (frame(layout="openpose25"), "unknown_layout"),
    (frame(kp=KP[:16].tolist()), "bad_shape"),
    (frame(kp={"dtype": "<f4", "shape": [17, 2], "data": b"\0" * 12}), "bad_shape"),
    (frame(kp={"dtype": "<f8", "shape": [17, 2], "data": b"\0" * 272}), "bad_shape"),
    (frame(kp=[[1, 2]] * 16 + [[1]]), "bad_shape"),  # ragged
    (frame(kp=[["a", "b"]] * 17), "bad_shape"),
    (frame(conf=[1.0] * 16), "bad_shape"),
    (frame(kp=np.where(np.arange(34).reshape(17, 2) == 5, np.nan, KP).tolist()), "not_finite"),
    (frame(kp=np.full((17, 2), 1e39).tolist()), "not_finite"),  # beyond float32
    (frame(t_capture=math.inf), "not_finite"),
    (frame(conf=[1.5] * 17), "bad_value"),
    (frame(conf=[1.0] * 16 + [1.0001]), "bad_value"),  # one joint just above 1
    (frame(conf=[-0.25] + [1.0] * 16), "bad_value"),  # one negative joint
    (frame(conf=[0.5] * 8 + [-1e-6] + [0.5] * 8), "bad_value"),
    (frame(kp=P.pack_array(np.c_[KP, np.r_[-0.5, np.ones(16)]])), "bad_value"),  # 3rd column
    (frame(layout="coco17", conf=[1.0] * 11 + [-1.0] + [1.0] * 5), "bad_value"),  # l_hip
    (frame(seq=-1), "bad_value"),
    (frame(t_capture=-5.0), "bad_value"),
    (frame(t_capture=0), "bad_value"),  # int 0: not a capture time
    (frame(t_capture=0.0), "bad_value"),
    (frame(t_capture=-0.0), "bad_value"),
    (frame(t_capture=math.nan), "not_finite"),
    (frame(t_capture=-math.inf), "not_finite"),
    (frame(image_size=[1280, 720, 3]), "bad_shape"),
    (frame(image_size=[[1280, 720]]), "bad_shape"),
    (frame(image_size=[math.nan, 720]), "not_finite"),
    (frame(image_size=[1280, math.inf]), "not_finite"),
    (frame(image_size=[1280, 0]), "bad_value"),
    (frame(image_size=[-1280, 720]), "bad_value"),
    (frame(seq="7"), "bad_message"),
    (frame(t_capture=None), "bad_message"),
    (frame(kp=None), "bad_message"),
    (frame(pad=b"\0" * 70000), "too_large"),
    (frame(intrinsics=[[1.0, 0, 0], [0, 1, 0]]), "bad_shape"),
    (frame(intrinsics=np.full((3, 3), np.nan).tolist()), "not_finite"),
    (frame(intrinsics=[[-900.0, 0, 500], [0, 900, 500], [0, 0, 1]]), "bad_value"),
    (frame(intrinsics=[[900.0, 0, 500], [0, 900, 500], [0, 0, 2]]), "bad_value"),
    (frame(intrinsics=[[1.0, 1, 0], [1, 1, 0], [0, 0, 1]]), "bad_value"),  # singular
    # the schema: types before values, every field (these crashed or slipped through before)
    (frame(layout=["h36m17"]), "bad_message"),  # unhashable: crashed the ingest thread
    (frame(layout={"h36m17": 1}), "bad_message"),
    (frame(layout=17), "bad_message"),
    (frame(seq=2**63), "bad_value"),  # beyond int64: crashed the compute thread in the ring
    (frame(seq=2**64 - 1), "bad_value"),
    (frame(seq=True), "bad_message"),  # a boolean is not an integer
    (frame(seq=3.0), "bad_message"),
    (frame(t_capture=True), "bad_message"),
    (frame(v=True), "unsupported_version"),  # True == 1 in Python, not on the wire
    (frame(v=1.0), "unsupported_version"),
    (frame(type=["frame"]), "unknown_type"),
    (frame(stream="cam0\n"), "bad_stream_id"),  # `$` matched before a trailing newline
    (frame(stream="cam\x000"), "bad_stream_id"),
    (frame(stream=None), "bad_message"),  # missing
    (frame(stream=7), "bad_message"),
    (msgpack.packb({"v": 1, "type": "end"}), "bad_message"),
    (msgpack.packb({"v": 1, "type": "end", "stream": ["a"]}), "bad_message"),
    (frame(kp=[[1.0, True]] * 17), "bad_shape"),  # booleans were read as 1 and 0
    (frame(kp=[[[[1.0]]]]), "bad_shape"),  # 4 levels
    (frame(kp=[[1.0, None]] * 17), "bad_shape"),
    (frame(kp={"dtype": "<f4", "shape": [17, True], "data": b"\0" * 68}), "bad_shape"),
    (frame(conf=[True] * 17), "bad_shape"),
    (frame(image_size=[True, 720]), "bad_shape"),
    (msgpack.packb({1: 1, "v": 1, "type": "ping"}), "bad_message"),  # a non-string key
    (msgpack.packb({"v": 1, "type": "frame", "kp": {0: 1}}), "bad_message"),  # nested too
    (b"\x83\xa1v\x01\xa4type\xa4ping\xa1v\x02", "bad_message"),  # "v" twice
    (b"\x91" * 5000, "bad_msgpack"),  # nested beyond the parser's stack
]


@pytest.mark.parametrize("raw,code", BAD, ids=[f"{c}-{i}" for i, (_, c) in enumerate(BAD)])
def test_bad_messages_get_their_code(raw, code):
    assert code_of(raw) == code
    assert code in P.ERRORS


def test_values_on_the_edge_of_their_range_are_accepted():
    """Confidences 0 and 1 are inside [0, 1]; any finite t_capture > 0 is a time (int or
    float, kept exactly); a landscape image_size is [width, height]."""
    conf = np.r_[0.0, 1.0, np.full(15, 0.5)].astype(np.float32)
    for raw in (frame(conf=conf.tolist()), frame(kp=P.pack_array(np.c_[KP, conf]))):
        _, f = P.decode_request(raw)
        np.testing.assert_array_equal(f.conf, conf)
    for t in (1e-6, 1, 1.7e9 + 0.123456, 4.1e9):
        _, f = P.decode_request(frame(t_capture=t))
        assert f.t_capture == t and isinstance(f.t_capture, float)
    for size in ([1280, 720], P.pack_array(np.array([1280, 720], np.float32)), [0.5, 0.5]):
        _, f = P.decode_request(frame(image_size=size))
        np.testing.assert_array_equal(f.kp, KP)
    for seq in (0, 2**63 - 1):  # the whole int64 range
        assert P.decode_request(frame(seq=seq))[1].seq == seq
    _, f = P.decode_request(frame(kp=[[1, 2.5]] * 17, unknown_key={"any": [1, None]}))
    np.testing.assert_array_equal(f.kp, np.tile([1, 2.5], (17, 1)))  # ints are numbers


def test_bad_value_errors_say_what_is_wrong():
    with pytest.raises(P.ProtocolError) as e:
        P.decode_request(frame(conf=[-0.25] + [1.0] * 16, seq=4))
    assert (e.value.code, e.value.stream, e.value.seq) == ("bad_value", "cam0", 4)
    assert "[0, 1]" in e.value.message and "-0.25" in e.value.message
    with pytest.raises(P.ProtocolError) as e:
        P.decode_request(frame(t_capture=0))
    assert e.value.code == "bad_value" and "'t_capture' must be > 0" in e.value.message
    with pytest.raises(P.ProtocolError) as e:
        P.decode_request(frame(image_size=[720, -1280]))
    assert e.value.code == "bad_value" and "[width, height]" in e.value.message


def test_the_protocol_doc_lists_exactly_the_error_codes():
    """docs/protocol.md section 9 is the contract: its table names every code and no other."""
    from pathlib import Path

    doc = (Path(__file__).parents[1] / "docs" / "protocol.md").read_text()
    table = doc.split("## 9. Errors", 1)[1].split("## 10.", 1)[0]
    rows = re.findall(r"^\| `([a-z_]+)` \|", table, re.M)
    assert sorted(rows) == sorted(P.ERRORS) and len(rows) == len(set(rows))
    bad_value = next(line for line in table.splitlines() if line.startswith("| `bad_value`"))
    for case in ("< 0 or > 1", "`seq` < 0", "`t_capture` ≤ 0", "`image_size` ≤ 0"):
        assert case in bad_value, case


def test_errors_name_the_stream_and_seq_when_known():
    with pytest.raises(P.ProtocolError) as e:
        P.decode_request(frame(layout="nope", seq=9))
    msg = e.value.to_msg()
    assert msg["stream"] == "cam0" and msg["seq"] == 9 and msg["type"] == "error"


# ------------------------------------------------------------------------ published messages
def skeleton_msg(stream="cam", out_seq=0, seq=None, joints=None, epoch=77) -> dict:
    """A published skeleton as the server builds it; every number differs from the others."""
    j = np.arange(51, dtype=np.float32).reshape(17, 3) / 100 if joints is None else joints
    return {"v": 1, "type": "skeleton", "layout": "h36m17", "units": "m", "frame": "camera",
            "root_relative": True, "height_m": 1.83, "mode": "centred", "window": 27,
            "stream": stream, "seq": out_seq + 40 if seq is None else seq, "out_seq": out_seq,
            "t_capture": 1.7e9 + 0.25, "t_receive": 1.7e9 + 0.5, "t_publish": 1.7e9 + 0.75,
            "joints": P.pack_array(j), "virtual_camera": True, "epoch": epoch}


def end_msg(stream="cam", published=5, dropped=2, reason="idle", epoch=77) -> dict:
    return {"v": 1, "type": "end", "stream": stream, "reason": reason,
            "frames": published + dropped, "published": published, "dropped": dropped,
            "t_publish": 1.7e9 + 9.5, "epoch": epoch}


def test_a_published_skeleton_decodes_field_by_field():
    msg = skeleton_msg("cam0", out_seq=3, seq=47)
    s = decode(P.encode(msg))
    assert isinstance(s, Skeleton)
    assert (s.stream, s.seq, s.out_seq) == ("cam0", 47, 3)
    assert (s.t_capture, s.t_receive, s.t_publish) == (1.7e9 + 0.25, 1.7e9 + 0.5, 1.7e9 + 0.75)
    assert (s.mode, s.window, s.height_m, s.virtual_camera) == ("centred", 27, 1.83, True)
    assert s.epoch == 77
    assert s.joints.dtype == np.float32 and s.joints.shape == (17, 3)
    np.testing.assert_array_equal(s.joints, np.arange(51, dtype=np.float32).reshape(17, 3) / 100)
    assert s.latency_ms == pytest.approx(500.0)
    back = s.to_msg()  # the published dict again, keys in the server's order
    assert list(back) == list(msg)
    assert {k: v for k, v in back.items() if k != "joints"} == \
        {k: v for k, v in msg.items() if k != "joints"}


def test_a_published_end_decodes_field_by_field():
    e = decode(P.encode(end_msg("cam1", published=5)))
    assert e == StreamEnd("cam1", "idle", frames=7, published=5, dropped=2, t_publish=1.7e9 + 9.5,
                          epoch=77)
    assert e.to_msg() == end_msg("cam1", published=5)
    assert list(e.to_msg()) == list(end_msg())


@pytest.mark.parametrize("msg", [{"v": 1, "type": "error", "code": "bad_message"},
                                 {"v": 1, "type": "pose"}, [1, 2], {"v": 1, "type": "end"}])
def test_other_published_messages_raise_unknown_message(msg):
    with pytest.raises(UnknownMessage):
        decode(P.encode(msg))
    with pytest.raises(UnknownMessage):
        decode(b"\xc1")


def skel(stream, out_seq, seq=None, epoch=77):
    return Skeleton.from_msg(skeleton_msg(stream, out_seq, seq, epoch=epoch))


def test_gaps_count_missed_skeletons_per_stream():
    g = Gaps()
    assert [g.add(skel("a", k)) for k in (0, 1, 4, 5, 9)] == [0, 0, 2, 0, 3]
    assert [g.add(skel("b", k)) for k in (0, 2)] == [0, 1]
    assert (g["a"], g["b"], g["c"], g.total) == (5, 1, 0, 6)
    assert g.per_stream == {"a": 5, "b": 1}


def test_gaps_reset_on_end_so_a_recreated_stream_is_no_gap():
    g = Gaps()
    for k in range(6):
        g.add(skel("a", k))
    assert g.add(StreamEnd.from_msg(end_msg("a", published=6, dropped=0))) == 0
    assert [g.add(skel("a", k)) for k in (0, 1, 3)] == [0, 0, 1]  # out_seq from 0 again
    # frames after the last one seen are missed just before the end (published or not)
    assert g.add(StreamEnd.from_msg(end_msg("a", published=6, dropped=1))) == 3
    assert g.total == 4
    # an end missed too: a lower out_seq means the stream was re-created
    g.add(skel("a", 0))
    g.add(skel("a", 1))
    assert g.add(skel("a", 0)) == 0 and g.add(skel("a", 2)) == 1
    assert g.total == 5


def test_gaps_from_the_start_or_from_the_first_skeleton_seen():
    late, early = Gaps(), Gaps(from_start=True)
    assert late.add(skel("a", 7)) == 0  # joined mid-stream: the first one seen is no gap
    assert early.add(skel("a", 7)) == 7  # subscribed before the stream's skeleton 0
    assert late.add(StreamEnd.from_msg(end_msg("x", 4))) == 0  # never seen: nothing known
    assert early.add(StreamEnd.from_msg(end_msg("x", 4))) == 6  # 4 published, 2 dropped


def test_gaps_count_frames_lost_across_a_server_restart_from_the_input_seq():
    """A new epoch is a new server run: out_seq starts again, the input seq goes on."""
    g = Gaps()
    for k in range(3):
        g.add(skel("a", k, seq=10 + k, epoch=1))
    assert g.add(skel("a", 0, seq=20, epoch=2)) == 7  # seq 13..19 never came back
    assert (g.restarts, g.epoch) == (1, 2)
    assert g.add(skel("a", 2, seq=22, epoch=2)) == 1  # and within the new run, out_seq again
    # a clean restart: the shutdown `end` of the old run, then the new run
    h = Gaps()
    h.add(skel("b", 0, seq=5, epoch=1))
    assert h.add(StreamEnd.from_msg(end_msg("b", 1, 0, "shutdown", epoch=1))) == 0
    assert h.add(skel("b", 0, seq=9, epoch=2)) == 3
    # a stream that really ended is a new stream in a later run: nothing lost
    e = Gaps()
    e.add(skel("c", 0, seq=5, epoch=1))
    e.add(StreamEnd.from_msg(end_msg("c", 1, 0, "end", epoch=1)))
    assert e.add(skel("c", 0, seq=40, epoch=2)) == 0 and e.restarts == 1
    # a producer that restarted too (seq from 0 again) lost nothing we can count
    assert e.add(skel("c", 0, seq=0, epoch=3)) == 0


def test_heartbeats_decode_and_tell_a_restart():
    hb = {"v": 1, "type": "heartbeat", "epoch": 5, "t_publish": 1.7e9, "uptime_s": 3.5,
          "streams_active": 2}
    h = decode(P.encode(hb))
    assert (h.epoch, h.uptime_s, h.streams_active, h.to_msg()) == (5, 3.5, 2, hb)
    g = Gaps()
    assert g.add(h) == 0 and g.restarts == 0  # the first run heard is no restart
    assert g.see_epoch(5) is False and g.see_epoch(6) is True and g.restarts == 1


def test_recorder_writes_the_published_messages(tmp_path):
    msgs = [skeleton_msg("a", 0), skeleton_msg("b", 0), skeleton_msg("a", 1), end_msg("a", 2)]
    for suffix in (".jsonl", ".npz"):
        rec = Recorder(tmp_path / f"out{suffix}")
        for m in msgs:
            rec.add(decode(P.encode(m)))
        rec.close()
    lines = [json.loads(x) for x in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert lines[3] == end_msg("a", 2)
    for line, m in zip(lines, msgs):
        want = dict(m, joints=P.unpack_array(m["joints"]).round(6).tolist()) \
            if "joints" in m else m
        assert list(line) == list(want) and line == want
    z = np.load(tmp_path / "out.npz")
    assert sorted(z.files) == sorted(f"{s}/{k}" for s in "ab" for k in
                                     ("joints", "seq", "out_seq", "t_capture", "t_receive",
                                      "t_publish"))
    assert z["a/out_seq"].tolist() == [0, 1] and z["a/seq"].tolist() == [40, 41]
    assert z["a/joints"].shape == (2, 17, 3) and z["a/joints"].dtype == np.float32
    assert z["b/t_receive"].dtype == np.float64 and z["b/t_receive"][0] == 1.7e9 + 0.5


# ------------------------------------------------------------------------------------ ring
@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 60), window=st.integers(1, 12), mode=st.sampled_from(["causal", "centred"]),
       slack=st.integers(0, 5))
def test_ring_windows_match_offline_padding(n, window, mode, slack):
    """Streaming a sequence frame by frame gives every frame the window lift_sequence uses."""
    kp = np.arange(n, dtype=np.float32)[:, None, None] * np.ones((1, 17, 2), np.float32)
    ring = RingStore(2, window + slack)
    other = ring.open("other")  # a second stream in the same block must not leak in
    st_ = ring.open("s")
    look = 0 if mode == "causal" else window - 1 - window // 2
    got = {}
    for t in range(n):
        ring.push(other, kp[t] + 1000, np.ones(17), t, 1.0, 1.0)
        ring.push(st_, kp[t], np.ones(17), t, 1.0, 1.0)
        ready = t - look
        if ready >= 0:
            w, _ = ring.windows(np.array([st_.slot]), np.array([ready]), np.array([st_.n]),
                                window, mode)
            got[ready] = w[0, :, 0, 0]
    for ready in range(max(0, n - look), n):  # the stream ends: flush the rest
        w, _ = ring.windows(np.array([st_.slot]), np.array([ready]), np.array([n]), window, mode)
        got[ready] = w[0, :, 0, 0]
    want = window_indices(n, window, mode).astype(np.float32)
    assert sorted(got) == list(range(n))
    np.testing.assert_array_equal(np.stack([got[t] for t in range(n)]), want)


def test_ring_sees_frames_after_a_camera_matrix_through_the_virtual_camera():
    """Frames before a stream's first K are stored as they are; from it on (K holds for later
    frames too) they are re-projected, in one batch, exactly as offline lifting does."""
    from streamlift.virtual_camera import to_virtual

    K = np.array([[1150, 0, 500], [0, 1150, 480], [0, 0, 1]], np.float32)
    kp = RNG.uniform(100, 900, (6, 17, 2)).astype(np.float32)
    conf = RNG.uniform(0.2, 1, (6, 17)).astype(np.float32)
    ring = RingStore(2, 8)
    plain, s = ring.open("plain"), ring.open("s")
    for t in range(6):
        ring.push(plain, kp[t], conf[t], t, 1.0, 1.0)
        ring.push(s, kp[t], conf[t], t, 1.0, 1.0, K if t == 2 else None)
    w, c = ring.windows(np.array([s.slot, plain.slot]), np.array([5, 5]), np.array([6, 6]), 6,
                        "causal")
    kpv, R = to_virtual(np.concatenate([kp, conf[..., None]], -1)[2:], K)
    np.testing.assert_array_equal(w[0, :2], kp[:2])
    np.testing.assert_allclose(w[0, 2:], kpv[..., :2], rtol=1e-6)
    np.testing.assert_array_equal(w[1], kp)  # the other stream is untouched
    np.testing.assert_array_equal(c[0], conf)
    *_, virtual, rot = ring.meta(np.array([s.slot] * 6), np.arange(6))
    assert virtual.tolist() == [False, False, True, True, True, True]
    np.testing.assert_allclose(rot[2:], R, rtol=1e-6)
    np.testing.assert_array_equal(rot[:2], np.broadcast_to(np.eye(3), (2, 3, 3)))


def test_a_reused_slot_never_gets_the_previous_stream_s_camera():
    K = np.array([[1150, 0, 500], [0, 1150, 480], [0, 0, 1]], np.float32)
    ring = RingStore(1, 4)
    a = ring.open("a")
    ring.push(a, KP, np.ones(17), 0, 1.0, 1.0, K)  # never lifted: the stream ends at once
    ring.close(a)
    b = ring.open("b")
    ring.push(b, KP, np.ones(17), 0, 1.0, 1.0)
    w, _ = ring.windows(np.array([b.slot]), np.array([0]), np.array([1]), 1, "causal")
    np.testing.assert_array_equal(w[0, 0], KP)
    assert b.K is None and not ring.meta(np.array([b.slot]), np.array([0]))[3][0]


def test_ring_slots_are_reused():
    ring = RingStore(2, 4)
    a, b = ring.open("a"), ring.open("b")
    assert ring.free_slots == 0
    ring.close(a)
    assert ring.open("c").slot == a.slot
    with pytest.raises(RuntimeError):
        ring.open("d")
    assert b.slot != a.slot


# ------------------------------------------------------------------------------------ runner
@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return NRSfMFormer(LifterConfig(dim=32, depth=1, heads=2, window=9)).eval()


def test_bucket():
    assert [bucket(n, (1, 2, 4, 8)) for n in (1, 2, 3, 5, 8)] == [1, 2, 4, 8, 8]
    with pytest.raises(ValueError):
        bucket(9, (1, 2, 4, 8))


def test_standin_pads_to_the_ladder_and_slices(tiny):
    """The graph path's padding/slicing, on CPU: results equal an unpadded eager call."""
    fn = skeleton_fn(tiny, 1.7)
    seen = []

    def recording(kp, conf):
        seen.append(kp.shape[0])
        return fn(kp, conf)

    r = Runner(recording, 9, 17, "cpu", "standin", sizes=(1, 2, 4, 8))
    assert sorted(seen) == [1, 2, 4, 8]  # one construction call per captured size
    g = np.random.default_rng(1)
    for n in (8, 3, 1, 5, 13, 20, 2):  # big first so that stale rows are left in the buffers
        seen.clear()
        kp = g.uniform(200, 800, (n, 9, 17, 2)).astype(np.float32)
        conf = g.uniform(0, 1, (n, 9, 17)).astype(np.float32)
        out = r(kp, conf)
        want = fn(torch.from_numpy(kp), torch.from_numpy(conf)).numpy()
        assert out.shape == (n, 17, 3)
        np.testing.assert_allclose(out, want, atol=1e-5, rtol=1e-5)
        chunks = [min(8, n - i) for i in range(0, n, 8)]
        assert seen == [bucket(c, (1, 2, 4, 8)) for c in chunks]  # padded to the next size


def test_eager_runner_matches_model(tiny):
    fn = skeleton_fn(tiny, 1.7)
    r = Runner(fn, 9, 17, "cpu", "eager")
    kp = np.random.default_rng(2).uniform(200, 800, (300, 9, 17, 2)).astype(np.float32)
    conf = np.ones((300, 9, 17), np.float32)
    want = fn(torch.from_numpy(kp), torch.from_numpy(conf)).numpy()
    np.testing.assert_allclose(r(kp, conf), want, atol=1e-5, rtol=1e-5)
    assert set(r.calls) == {32, 300 % 32}  # chunked at EAGER_CHUNK


@pytest.mark.gpu
def test_cuda_graph_runner_matches_eager(tiny):
    model = NRSfMFormer(tiny.cfg).cuda().eval()
    model.load_state_dict(tiny.state_dict())
    fn = skeleton_fn(model, 1.7)
    graphs = Runner(fn, 9, 17, "cuda", "graphs", sizes=(1, 2, 4, 8, 16))
    eager = Runner(fn, 9, 17, "cuda", "eager")
    g = np.random.default_rng(3)
    for n in (16, 1, 3, 7, 40):
        kp = g.uniform(200, 800, (n, 9, 17, 2)).astype(np.float32)
        conf = np.ones((n, 9, 17), np.float32)
        np.testing.assert_allclose(graphs(kp, conf), eager(kp, conf), atol=1e-4, rtol=1e-4)


# msgpack-able values, nested a little, with the keys a frame uses so that fuzzing gets deep
_leaf = st.one_of(st.none(), st.booleans(), st.integers(-2**63, 2**64 - 1), st.floats(),
                  st.text(max_size=8), st.binary(max_size=140))
_value = st.recursive(_leaf, lambda c: st.lists(c, max_size=18) | st.dictionaries(
    st.sampled_from(["dtype", "shape", "data", "x"]), c, max_size=4), max_leaves=40)
_message = st.fixed_dictionaries(
    {"v": st.sampled_from([1, 1, 2, "1", None])},
    optional={k: _value for k in ("type", "stream", "seq", "t_capture", "layout", "kp", "conf",
                                  "image_size", "intrinsics")})


@settings(max_examples=150, deadline=None)
@given(raw=st.binary(max_size=300))
def test_random_bytes_only_ever_raise_protocol_errors(raw):
    try:
        P.decode_request(raw)
    except P.ProtocolError as e:
        assert e.code in P.ERRORS


@settings(max_examples=150, deadline=None)
@given(msg=_message, frame_type=st.booleans())
def test_random_messages_only_ever_raise_protocol_errors(msg, frame_type):
    if frame_type:
        msg = dict(msg, type="frame", stream="s")
    try:
        kind, f = P.decode_request(msgpack.packb(msg, use_bin_type=True))
    except P.ProtocolError as e:
        assert e.code in P.ERRORS
        return
    if kind == "frame":  # anything accepted is exactly what the compute loop expects
        assert f.kp.shape == (17, 2) and f.conf.shape == (17,)
        assert f.kp.dtype == f.conf.dtype == np.float32
        assert np.isfinite(f.kp).all() and ((f.conf >= 0) & (f.conf <= 1)).all()
