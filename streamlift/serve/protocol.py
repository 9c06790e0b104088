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
INT64_MAX = 2**63 - 1  # seq and every counter fit a signed 64-bit integer in every language

# Every error code the server can send back, with what it means (docs/protocol.md lists them).
ERRORS = {
    "bad_msgpack": "the payload is not a single valid msgpack object",
    "bad_message": "not a map, a map key that is not a string or is repeated, a required field "
                   "missing or of the wrong type, or extra ZeroMQ frames",
    "unsupported_version": f"'v' is not the integer {VERSION}",
    "unknown_type": "'type' is not one of frame, end, stats, ping",
    "too_large": f"the payload is larger than the server's --max-message-bytes "
                 f"(default {MAX_MESSAGE_BYTES})",
    "bad_stream_id": "'stream' is not 1-64 characters of A-Z a-z 0-9 _ . : -",
    "unknown_layout": f"'layout' is not one of {sorted(LAYOUTS)}",
    "bad_shape": "an array has the wrong shape, dtype or byte length",
    "not_finite": "keypoints, confidences, the timestamp, image_size or intrinsics contain NaN "
                  "or infinity",
    "bad_value": "a value is out of range (confidence outside [0, 1], seq outside [0, 2^63), "
                 "non-positive timestamp, non-positive image_size, unusable intrinsics)",
    "duplicate_seq": "seq equals the stream's last accepted seq (a resend)",
    "out_of_order": "seq is lower than the stream's last accepted seq",
    "too_many_streams": "the server already serves --max-streams streams",
    "forbidden": "with CURVE on, the stream belongs to another client key",
    "overloaded": "the compute loop is behind; this frame was dropped",
    "internal_error": "the server failed on this message (a bug: it was logged and counted, "
                      "and the server goes on)",
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


def _is_int(x) -> bool:
    return type(x) is int  # bool is a subclass of int, and never a number on this wire


def _is_number(x) -> bool:
    return type(x) is int or type(x) is float


def _list_array(x: list, field: str) -> np.ndarray:
    """Nested lists (at most 3 deep, rectangular, numbers only) -> float64 array."""
    shape, level = [], x
    while isinstance(level, list):
        if len(shape) == 3:
            raise ProtocolError("bad_shape", f"{field}: more than 3 levels of nested lists")
        shape.append(len(level))
        if not level:
            break
        level = level[0]
    flat: list = []

    def walk(v, depth: int) -> None:
        if depth == len(shape):
            if not _is_number(v):
                raise ProtocolError("bad_shape", f"{field}: must be nested lists of numbers, "
                                                 f"found {_short(v)}")
            flat.append(v)
        elif not isinstance(v, list) or len(v) != shape[depth]:
            raise ProtocolError("bad_shape", f"{field}: nested lists are ragged")
        else:
            for e in v:
                walk(e, depth + 1)

    walk(x, 0)
    return np.array(flat, dtype=np.float64).reshape(shape)


def unpack_array(x, field: str = "array") -> np.ndarray:
    """Either array form (binary map or nested lists of numbers) -> float32 ndarray."""
    if isinstance(x, dict):
        if x.get("dtype") != "<f4":
            raise ProtocolError("bad_shape", f"{field}: dtype must be '<f4', got "
                                             f"{_short(x.get('dtype'))}")
        shape, data = x.get("shape"), x.get("data")
        if (not isinstance(shape, list) or not 1 <= len(shape) <= 3
                or not all(_is_int(s) and 0 <= s <= 4096 for s in shape)):
            raise ProtocolError("bad_shape", f"{field}: 'shape' must be a list of 1-3 sizes")
        if not isinstance(data, bytes):
            raise ProtocolError("bad_shape", f"{field}: 'data' must be msgpack bin")
        if len(data) != 4 * math.prod(shape):
            raise ProtocolError("bad_shape", f"{field}: {len(data)} bytes of data for shape "
                                             f"{shape} (expected {4 * math.prod(shape)})")
        return np.frombuffer(data, dtype="<f4").reshape(shape).astype(np.float32)
    if isinstance(x, list):
        with np.errstate(over="ignore"):
            return _list_array(x, field).astype(np.float32)  # beyond float32 -> inf -> not_finite
    raise ProtocolError("bad_shape", f"{field}: must be a binary array map or nested lists")


# ---------------------------------------------------------------------------------- decoding
def _short(x) -> str:
    """repr of an untrusted value, cut short so that an error reply stays small."""
    r = repr(x) if not isinstance(x, (list, dict)) or len(x) < 8 else f"<{type(x).__name__} " \
                                                                      f"of {len(x)}>"
    return r if len(r) <= 40 else r[:37] + "..."


class _BadKeys(Exception):
    """Raised from inside the msgpack parser: a map with a non-string or repeated key."""


def _string_keys(pairs: list) -> dict:
    if not all(type(k) is str for k, _ in pairs):
        raise _BadKeys("map keys must be strings")
    d = dict(pairs)
    if len(d) != len(pairs):
        raise _BadKeys("a map repeats a key")
    return d


def _unpack(raw: bytes):
    try:
        # Bounded parser: no container or string can claim more than the message could hold.
        return msgpack.unpackb(raw, raw=False, strict_map_key=False, use_list=True,
                               object_pairs_hook=_string_keys,
                               max_bin_len=len(raw), max_str_len=len(raw),
                               max_array_len=len(raw), max_map_len=len(raw), max_ext_len=0)
    except _BadKeys as e:
        raise ProtocolError("bad_message", str(e)) from None
    except Exception as e:  # msgpack raises several unrelated types for corrupt input
        raise ProtocolError("bad_msgpack", f"not valid msgpack ({type(e).__name__})") from None


# The schema: every field of every request, with the check that turns its wire value into what
# the server uses (or raises ProtocolError). Cross-field rules (kp's shape for its layout, one
# source of confidences) follow in `_frame`.
def _seq(v) -> int:
    if not _is_int(v):
        raise ProtocolError("bad_message", "'seq' must be an integer")
    if not 0 <= v <= INT64_MAX:
        raise ProtocolError("bad_value", f"seq must be in [0, 2^63 - 1], got {_short(v)}")
    return v


def _t_capture(v) -> float:
    if not _is_number(v):
        raise ProtocolError("bad_message", "'t_capture' must be a number (seconds since the "
                                           "Unix epoch)")
    t = float(v)
    if not math.isfinite(t):
        raise ProtocolError("not_finite", "'t_capture' is NaN or infinite")
    if t <= 0:
        raise ProtocolError("bad_value", f"'t_capture' must be > 0, got {v}")
    return t


def _stream(v) -> str:
    if not isinstance(v, str):
        raise ProtocolError("bad_message", "'stream' must be a string")
    if not STREAM_ID_RE.fullmatch(v):
        raise ProtocolError("bad_stream_id", f"stream id {_short(v)} is not 1-64 characters of "
                                             f"A-Z a-z 0-9 _ . : -")
    return v


def _layout(v) -> str:
    if not isinstance(v, str):
        raise ProtocolError("bad_message", "'layout' must be a string")
    if v not in LAYOUTS:
        raise ProtocolError("unknown_layout", f"joint layout {_short(v)}; known: "
                                              f"{sorted(LAYOUTS)}")
    return v


def _image_size(v) -> np.ndarray:
    a = unpack_array(v, "image_size")
    if a.shape != (2,):
        raise ProtocolError("bad_shape", f"image_size has shape {list(a.shape)}; expected [2]")
    if not np.isfinite(a).all():
        raise ProtocolError("not_finite", "image_size contains NaN or infinity")
    if a.min() <= 0:
        raise ProtocolError("bad_value", f"image_size [width, height] must be > 0, "
                                         f"got {a.tolist()}")
    return a


def _intrinsics(v) -> np.ndarray:
    a = unpack_array(v, "intrinsics")
    if a.shape != (3, 3):
        raise ProtocolError("bad_shape", f"intrinsics has shape {list(a.shape)}; expected [3, 3]")
    try:
        return check_intrinsics(a).astype(np.float32)
    except ValueError as e:
        raise ProtocolError("not_finite" if not np.isfinite(a).all() else "bad_value",
                            str(e)) from None


@dataclass(frozen=True)
class Field:
    key: str
    check: object  # wire value -> decoded value, or ProtocolError
    required: bool = True
    default: object = None  # for an optional field that is absent or nil


FRAME_FIELDS = (
    Field("stream", _stream), Field("seq", _seq), Field("t_capture", _t_capture),
    Field("layout", _layout, False, H36M17.name),
    Field("kp", lambda v: unpack_array(v, "kp")),
    Field("conf", lambda v: unpack_array(v, "conf"), False),
    Field("image_size", _image_size, False),  # checked, not used by the v1 model
    Field("intrinsics", _intrinsics, False),  # selects the virtual camera
)
END_FIELDS = (Field("stream", _stream),)


def _fields(msg: dict, schema: tuple[Field, ...]) -> dict:
    """Every field of `schema`, checked; errors carry the stream and seq decoded so far."""
    out: dict = {}
    for f in schema:
        v = msg.get(f.key)
        try:
            if v is None:
                if f.required:
                    raise ProtocolError("bad_message", f"missing '{f.key}'")
                out[f.key] = f.default
            else:
                out[f.key] = f.check(v)
        except ProtocolError as e:
            e.stream, e.seq = out.get("stream"), out.get("seq")
            raise
    return out


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
    if not (_is_int(v) and v == VERSION):
        raise ProtocolError("unsupported_version",
                            f"protocol version {_short(v)}; this server speaks v{VERSION} "
                            f"(the integer {VERSION})")
    kind = msg.get("type")
    if kind in ("stats", "ping") and isinstance(kind, str):
        return kind, None
    if kind == "end" and isinstance(kind, str):
        return "end", _fields(msg, END_FIELDS)["stream"]
    if kind == "frame" and isinstance(kind, str):
        return "frame", _frame(_fields(msg, FRAME_FIELDS))
    raise ProtocolError("unknown_type", f"message type {_short(kind)}; expected frame, end, "
                                        f"stats or ping")


def _frame(f: dict) -> Frame:
    """The checked fields of a frame -> Frame in H36M-17 order (the cross-field rules)."""
    stream, seq, layout, kp, conf = f["stream"], f["seq"], f["layout"], f["kp"], f["conf"]
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
    if layout != H36M17.name:
        M, src = _TO_H36M[layout]
        kp = M @ kp  # (17, 2) H36M order
        conf = np.where(src, conf[None, :], np.float32(1)).min(axis=1)  # (17,)
    return Frame(stream, seq, f["t_capture"], np.ascontiguousarray(kp, np.float32),
                 np.ascontiguousarray(conf, np.float32), f["intrinsics"])


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


HEARTBEAT_TOPIC = b"heartbeat"  # no stream topic starts with it: 'skel/' subscribers never see it


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
