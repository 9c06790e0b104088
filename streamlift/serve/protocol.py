"""Wire protocol v1: msgpack messages between producers, the server and subscribers.

docs/protocol.md is the contract; this module is its reference implementation. Everything a
producer sends is untrusted: `decode_request` bounds the msgpack parser, checks every field and
raises `ProtocolError` with a machine-readable code, so that one bad message costs one error
reply and never reaches the compute loop. Nothing here ever unpickles.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import msgpack
import numpy as np

from streamlift.skeleton import H36M17, LAYOUTS, to_h36m
from streamlift.virtual_camera import check_intrinsics

VERSION = 1
STREAM_ID_RE = re.compile(r"^[A-Za-z0-9_.:\-]{1,64}$")
MAX_MESSAGE_BYTES = 64 * 1024  # answered with `too_large` above this
HARD_MAX_MESSAGE_BYTES = 1024 * 1024  # ZeroMQ drops the connection above this (no reply)

# Every error code the server can send back, with what it means (docs/protocol.md lists them).
ERRORS = {
    "bad_msgpack": "the payload is not a single valid msgpack object",
    "bad_message": "not a map, a required field is missing or has the wrong type, "
                   "or the message has extra ZeroMQ frames",
    "unsupported_version": f"'v' is not a protocol version this server speaks ({VERSION})",
    "unknown_type": "'type' is not one of frame, end, stats, ping",
    "too_large": f"the payload is larger than the server's --max-message-bytes "
                 f"(default {MAX_MESSAGE_BYTES})",
    "bad_stream_id": "'stream' is not 1-64 characters of A-Z a-z 0-9 _ . : -",
    "unknown_layout": f"'layout' is not one of {sorted(LAYOUTS)}",
    "bad_shape": "an array has the wrong shape, dtype or byte length",
    "not_finite": "keypoints, confidences, the timestamp, image_size or intrinsics contain NaN "
                  "or infinity",
    "bad_value": "a value is out of range (confidence outside [0, 1], negative seq, "
                 "non-positive timestamp, non-positive image_size, unusable intrinsics)",
    "duplicate_seq": "this stream already sent a frame with this seq",
    "out_of_order": "seq is lower than one this stream already sent",
    "too_many_streams": "the server already serves --max-streams streams",
    "overloaded": "the compute loop is behind; this frame was dropped",
}


def _linear_map(layout: str) -> tuple[np.ndarray, np.ndarray]:
    """`to_h36m` as a matrix (17, J) (it is linear in the coordinates) and its source mask."""
    n = LAYOUTS[layout].num_joints
    basis = np.broadcast_to(np.eye(n)[:, :, None], (n, n, 2))  # (n probes, J, 2)
    M = to_h36m(basis, layout)[:, :, 0].T  # (17, J): row j = weights of joint j's sources
    return M.astype(np.float32), M > 0


# The per-frame mapping is one small matmul (and a masked min for the confidences, which take
# the worst of their sources); `to_h36m` stays the definition, tests compare against it.
_TO_H36M = {name: _linear_map(name) for name in LAYOUTS if name != H36M17.name}


class ProtocolError(Exception):
    """A message the server refuses: `code` is one of ERRORS, `message` says why in words."""

    def __init__(self, code: str, message: str, stream: str | None = None,
                 seq: int | None = None):
        assert code in ERRORS, code
        super().__init__(f"{code}: {message}")
        self.code, self.message, self.stream, self.seq = code, message, stream, seq

    def to_msg(self) -> dict:
        return {"v": VERSION, "type": "error", "code": self.code, "message": self.message,
                "stream": self.stream, "seq": self.seq}


@dataclass
class Frame:
    """One validated 2D frame, already in H36M-17 order."""

    stream: str
    seq: int
    t_capture: float  # producer clock, seconds since the Unix epoch
    kp: np.ndarray  # (17, 2) float32 pixels
    conf: np.ndarray  # (17,) float32 in [0, 1]
    K: np.ndarray | None = None  # (3, 3) camera matrix, when the frame carries one


# ------------------------------------------------------------------------------------ arrays
def pack_array(a: np.ndarray) -> dict:
    """The binary array form: raw little-endian float32 bytes plus the shape."""
    a = np.ascontiguousarray(a, dtype="<f4")
    return {"dtype": "<f4", "shape": list(a.shape), "data": a.tobytes()}


def unpack_array(x, field: str = "array") -> np.ndarray:
    """Either array form (binary map or nested lists of numbers) -> float32 ndarray."""
    if isinstance(x, dict):
        if x.get("dtype") != "<f4":
            raise ProtocolError("bad_shape", f"{field}: dtype must be '<f4', got "
                                             f"{_short(x.get('dtype'))}")
        shape, data = x.get("shape"), x.get("data")
        if (not isinstance(shape, list) or not 1 <= len(shape) <= 3
                or not all(isinstance(s, int) and not isinstance(s, bool) and 0 <= s <= 4096
                           for s in shape)):
            raise ProtocolError("bad_shape", f"{field}: 'shape' must be a list of 1-3 sizes")
        if not isinstance(data, bytes):
            raise ProtocolError("bad_shape", f"{field}: 'data' must be msgpack bin")
        if len(data) != 4 * math.prod(shape):
            raise ProtocolError("bad_shape", f"{field}: {len(data)} bytes of data for shape "
                                             f"{shape} (expected {4 * math.prod(shape)})")
        return np.frombuffer(data, dtype="<f4").reshape(shape).astype(np.float32)
    if isinstance(x, list):
        try:
            a = np.array(x)
        except ValueError:  # ragged nested lists
            raise ProtocolError("bad_shape", f"{field}: nested lists are ragged") from None
        if a.dtype.kind not in "iuf" or a.ndim > 3:
            raise ProtocolError("bad_shape", f"{field}: must be nested lists of numbers")
        with np.errstate(over="ignore"):
            return a.astype(np.float32)  # float64 beyond float32 range -> inf -> not_finite
    raise ProtocolError("bad_shape", f"{field}: must be a binary array map or nested lists")


# ---------------------------------------------------------------------------------- decoding
def _short(x) -> str:
    """repr of an untrusted value, cut short so that an error reply stays small."""
    r = repr(x)
    return r if len(r) <= 40 else r[:37] + "..."


def _unpack(raw: bytes):
    try:
        # Bounded parser: no container or string can claim more than the message could hold.
        return msgpack.unpackb(raw, raw=False, strict_map_key=True, use_list=True,
                               max_bin_len=len(raw), max_str_len=len(raw),
                               max_array_len=len(raw), max_map_len=len(raw), max_ext_len=0)
    except Exception as e:  # msgpack raises several unrelated types for corrupt input
        raise ProtocolError("bad_msgpack", f"not valid msgpack ({type(e).__name__})") from None


def _int(msg: dict, key: str, stream=None) -> int:
    v = msg.get(key)
    if not isinstance(v, int) or isinstance(v, bool):
        raise ProtocolError("bad_message", f"'{key}' must be an integer", stream)
    return v


def decode_request(raw: bytes, max_bytes: int = MAX_MESSAGE_BYTES) -> tuple[str, object]:
    """Producer payload -> ('frame', Frame) | ('end', stream) | ('stats', None) | ('ping', None).

    Raises ProtocolError for anything the protocol does not allow.
    """
    if len(raw) > max_bytes:
        raise ProtocolError("too_large", f"message of {len(raw)} bytes; the limit is {max_bytes}")
    msg = _unpack(raw)
    if not isinstance(msg, dict):
        raise ProtocolError("bad_message", "a message must be a msgpack map")
    v = msg.get("v")
    if v != VERSION:
        raise ProtocolError("unsupported_version",
                            f"protocol version {_short(v)}; this server speaks v{VERSION}")
    kind = msg.get("type")
    if kind in ("stats", "ping"):
        return kind, None
    if kind not in ("frame", "end"):
        raise ProtocolError("unknown_type", f"message type {_short(kind)}; expected frame, end, "
                                            f"stats or ping")
    stream = msg.get("stream")
    if not isinstance(stream, str) or not STREAM_ID_RE.match(stream):
        raise ProtocolError("bad_stream_id", f"stream id {_short(stream)} is not 1-64 "
                                             f"characters of A-Z a-z 0-9 _ . : -")
    if kind == "end":
        return "end", stream
    return "frame", _decode_frame(msg, stream)


def _decode_frame(msg: dict, stream: str) -> Frame:
    seq = _int(msg, "seq", stream)
    if seq < 0:
        raise ProtocolError("bad_value", f"seq must be >= 0, got {seq}", stream, seq)
    t = _timestamp(msg, stream, seq)
    layout = msg.get("layout", H36M17.name)
    if layout not in LAYOUTS:
        raise ProtocolError("unknown_layout", f"joint layout {_short(layout)}; known: "
                                              f"{sorted(LAYOUTS)}", stream, seq)
    kp, conf = _keypoints(msg, layout, stream, seq)
    if msg.get("image_size") is not None:  # optional, checked but not used
        _camera_field(msg, "image_size", stream, seq)
    # optional; intrinsics select the virtual camera
    K = None if msg.get("intrinsics") is None else _camera_field(msg, "intrinsics", stream, seq)
    if layout != H36M17.name:
        M, src = _TO_H36M[layout]
        kp = M @ kp  # (17, 2) H36M order
        conf = np.where(src, conf[None, :], np.float32(1)).min(axis=1)  # (17,)
    return Frame(stream, seq, float(t), np.ascontiguousarray(kp, np.float32),
                 np.ascontiguousarray(conf, np.float32), K)


def _timestamp(msg: dict, stream: str, seq: int) -> float:
    """The checked 't_capture' (seconds since the Unix epoch)."""
    t = msg.get("t_capture")
    if not isinstance(t, (int, float)) or isinstance(t, bool):
        raise ProtocolError("bad_message", "'t_capture' must be a number (seconds since the "
                                           "Unix epoch)", stream, seq)
    if not math.isfinite(t):
        raise ProtocolError("not_finite", "'t_capture' is NaN or infinite", stream, seq)
    if t <= 0:
        raise ProtocolError("bad_value", f"'t_capture' must be > 0, got {t}", stream, seq)
    return t


def _field_array(msg: dict, key: str, stream: str, seq: int) -> np.ndarray:
    """`unpack_array` of msg[key], its error tagged with the frame's stream and seq."""
    try:
        return unpack_array(msg[key], key)
    except ProtocolError as e:
        raise ProtocolError(e.code, e.message, stream, seq) from None


def _keypoints(msg: dict, layout: str, stream: str, seq: int) -> tuple[np.ndarray, np.ndarray]:
    """The checked keypoints (J, 2) and confidences (J,) of the frame's own layout."""
    if "kp" not in msg:
        raise ProtocolError("bad_message", "missing 'kp' (keypoints)", stream, seq)
    kp = _field_array(msg, "kp", stream, seq)
    conf = None if msg.get("conf") is None else _field_array(msg, "conf", stream, seq)
    nj = LAYOUTS[layout].num_joints
    if kp.shape not in ((nj, 2), (nj, 3)):
        raise ProtocolError("bad_shape", f"kp has shape {list(kp.shape)}; expected [{nj}, 2] or "
                                         f"[{nj}, 3] for layout {layout}", stream, seq)
    if kp.shape[1] == 3:
        if conf is not None:
            raise ProtocolError("bad_message", "confidence given twice (kp [J, 3] and 'conf')",
                                stream, seq)
        kp, conf = kp[:, :2], kp[:, 2]
    elif conf is None:
        conf = np.ones(nj, dtype=np.float32)
    if conf.shape != (nj,):
        raise ProtocolError("bad_shape", f"conf has shape {list(conf.shape)}; expected [{nj}]",
                            stream, seq)
    if not (np.isfinite(kp).all() and np.isfinite(conf).all()):
        raise ProtocolError("not_finite", "keypoints or confidences contain NaN or infinity",
                            stream, seq)
    if conf.min() < 0 or conf.max() > 1:
        raise ProtocolError("bad_value", f"confidences must lie in [0, 1], got values from "
                                         f"{conf.min():g} to {conf.max():g}", stream, seq)
    return kp, conf


def _camera_field(msg: dict, key: str, stream: str, seq: int) -> np.ndarray:
    """The checked 'image_size' [width, height] (pixels) or 'intrinsics' K (3, 3) float32."""
    a = _field_array(msg, key, stream, seq)
    want = (2,) if key == "image_size" else (3, 3)
    if a.shape != want:
        raise ProtocolError("bad_shape", f"{key} has shape {list(a.shape)}; expected "
                                         f"{list(want)}", stream, seq)
    if key == "image_size":
        if not np.isfinite(a).all():
            raise ProtocolError("not_finite", "image_size contains NaN or infinity", stream, seq)
        if a.min() <= 0:
            raise ProtocolError("bad_value", f"image_size [width, height] must be > 0, "
                                             f"got {a.tolist()}", stream, seq)
        return a
    try:
        return check_intrinsics(a).astype(np.float32)
    except ValueError as e:
        code = "not_finite" if not np.isfinite(a).all() else "bad_value"
        raise ProtocolError(code, str(e), stream, seq) from None


# ---------------------------------------------------------------------------------- encoding
def encode(msg: dict) -> bytes:
    return msgpack.packb(msg, use_bin_type=True)


def frame_msg(stream: str, seq: int, t_capture: float, kp: np.ndarray, layout: str = "h36m17",
              lists: bool = False, **extra) -> dict:
    """A producer's frame message; kp (J, 2|3) pixels [, confidence]."""
    kp = np.asarray(kp, dtype=np.float32)
    return {"v": VERSION, "type": "frame", "stream": stream, "seq": int(seq),
            "t_capture": float(t_capture), "layout": layout,
            "kp": kp.tolist() if lists else pack_array(kp), **extra}


def topic(stream: str) -> bytes:
    """PUB topic of a stream. The trailing '/' makes a subscription match this stream only."""
    return f"skel/{stream}/".encode()


def decode_output(raw: bytes) -> dict:
    """A server message -> dict, with 'joints' as a (17, 3) float32 array when present.

    Producers read their replies (error, stats, pong) with it; subscribers use
    `streamlift.serve.messages.decode`, which gives a typed Skeleton or StreamEnd."""
    msg = msgpack.unpackb(raw, raw=False)
    if isinstance(msg, dict) and "joints" in msg:
        msg["joints"] = unpack_array(msg["joints"], "joints")
    return msg
