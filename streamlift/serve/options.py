"""The settings of `streamlift send`, `watch` and `demo` (their flags are made from these
fields, streamlift.cli.common.add_config); nothing heavy is imported here."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from streamlift.serve.config import INPUT, OUTPUT
from streamlift.windows import MODES


@dataclass
class SendConfig:
    """Stream 2D keypoints to a server at a fixed frame rate, one stream per view, timestamped
    as they are sent. Without --views it streams the shipped CMU sample through the studio
    camera rig."""
    to: str = field(default=INPUT, metadata={"help": "the server's ingest endpoint"})
    views: Path | None = field(default=None, metadata={
        "type": "path", "help": "views .npz to replay (default: the shipped CMU sample, 5 clips "
        "seen by one camera each, more cameras when --streams asks for more)"})
    view: list[str] | None = field(default=None, metadata={
        "action": "append", "metavar": "NAME",
        "help": "replay only this view (repeatable; default: all)"})
    streams: int | None = field(default=None, metadata={
        "type": "positive_int", "help": "number of streams; views are reused (ids get -1, -2, "
        "...) when there are more streams than views (default: one per view)"})
    fps: float | None = field(default=None, metadata={
        "type": "positive_float",
        "help": "frames per second per stream (default: the views' frame rate)"})
    frames: int | None = field(default=None, metadata={
        "type": "positive_int", "help": "frames per stream (default: the whole view)"})
    loop: int = field(default=1, metadata={
        "type": "positive_int", "help": "play each view this many times (seq keeps counting up)"})
    noise_px: float = field(default=0.0, metadata={
        "type": "non_negative",
        "help": "std. dev. of Gaussian noise added to every keypoint, pixels"})
    jitter_ms: float = field(default=0.0, metadata={
        "type": "non_negative", "help": "std. dev. of Gaussian timing jitter of each send, ms"})
    seed: int = field(default=0, metadata={"type": "int", "help": "noise and jitter seed"})
    prefix: str = field(default="", metadata={
        "help": "prepended to every stream id (keeps several senders' streams apart)"})
    lists: bool = field(default=False, metadata={
        "help": "send keypoints as nested lists instead of raw float32 bytes"})
    no_intrinsics: bool = field(default=False, metadata={
        "help": "leave the views' camera matrices out of the frames (by default each frame "
        "carries its camera's intrinsics, and the server lifts through a virtual camera looking "
        "at the subject)"})


@dataclass
class WatchConfig:
    """Subscribe to a server's skeletons (all streams, or the ones named), print one line per
    skeleton and optionally record them (.npz: per stream joints/seq/out_seq/timestamps; .jsonl:
    one message per line), draw them into a video clip (--render) or show them in a window
    (--show). Skeleton messages carry no 2D input, so drawings have the 3D panels only (camera
    view and side view over a ground grid; docs/rendering.md)."""
    source: str = field(default=OUTPUT, metadata={
        "flag": "--from", "help": "the server's PUB endpoint"})
    stream: list[str] | None = field(default=None, metadata={
        "action": "append", "metavar": "ID",
        "help": "only this stream (repeatable; default: all)"})
    out: Path | None = field(default=None, metadata={
        "type": "path", "help": "record to this .npz or .jsonl file"})
    count: int | None = field(default=None, metadata={
        "type": "positive_int", "help": "stop after this many skeletons"})
    duration: float | None = field(default=None, metadata={
        "type": "positive_float", "help": "stop after this many seconds"})


@dataclass
class WatchSinks:
    """Where else `watch` sends one stream's skeletons (the first --stream, else the first
    heard) as bone rotations, or every stream's joints (rerun); docs/integrations.md."""
    bvh: Path | None = field(default=None, metadata={
        "type": "path", "metavar": "CLIP.bvh", "help": "record one stream as a BVH clip (a fixed "
        "skeleton fitted to all it heard, Y-up, metres), written when watching stops"})
    vmc: str | None = field(default=None, metadata={
        "metavar": "HOST:PORT", "help": "send one stream live over the VMC protocol (OSC/UDP; "
        "VSeeFace, VMagicMirror, Warudo, Unity: usually 127.0.0.1:39539), the Unity humanoid "
        "bones from H36M-17 (needs the vmc extra)"})
    rerun: bool = field(default=False, metadata={
        "help": "show every stream's skeleton live in a rerun viewer (needs the rerun extra)"})
    rerun_save: Path | None = field(default=None, metadata={
        "type": "path", "metavar": "CLIP.rrd", "help": "log the same to an .rrd file instead"})


@dataclass
class WatchDrawing:
    render: Path | None = field(default=None, metadata={
        "type": "path", "metavar": "CLIP.mp4", "help": "draw one stream's skeletons into this "
        ".mp4 (mp4v) as they arrive: the first --stream, else the first stream heard. 3D panels "
        "only (camera view, side view with a ground grid): the protocol does not send the 2D "
        "input back"})
    show: bool = field(default=False, metadata={
        "help": "show the same drawing live in a window (needs a display and OpenCV with GUI "
        "support; q or Esc in the window stops watching)"})
    render_fps: float | None = field(default=None, metadata={
        "type": "positive_float", "help": "frame rate of the --render clip (default: estimated "
        "from the first skeletons' capture times)"})
    render_size: int = field(default=480, metadata={
        "type": "panel",
        "help": "panel size of --render/--show drawings, pixels (two panels side by side)"})


@dataclass
class DemoConfig:
    """Start a server in this process on free loopback ports, stream the shipped CMU sample
    (test-split motion) as live streams, subscribe, and report frames sent/received,
    capture->publish latency p50/p99 and accuracy against the sample's 3D ground truth
    (PA-MPJPE and N-MPJPE, which are scale-invariant)."""
    streams: int = field(default=5, metadata={
        "type": "positive_int",
        "help": "concurrent streams (the 5 sample clips, then more cameras)"})
    fps: float | None = field(default=None, metadata={
        "type": "positive_float", "help": "frames per second per stream (default: the sample's "
        "50 on CUDA, 15 on CPU, where 5 streams at 50 fps exceed what 2 cores lift; the frames "
        "and so the accuracy are the same at any rate)"})
    frames: int = field(default=300, metadata={
        "type": "positive_int", "help": "frames per stream (the clips have 600)"})
    noise_px: float = field(default=0.0, metadata={
        "type": "non_negative", "help": "std. dev. of Gaussian 2D detector noise, pixels"})
    no_intrinsics: bool = field(default=False, metadata={
        "help": "stream the 2D without the cameras' matrices (the server then lifts as if each "
        "subject stood on the optical axis)"})
    curve: bool = field(default=False, metadata={
        "help": "run every socket through CurveZMQ (authenticated, encrypted), with keys made "
        "for this run, to see what it costs"})
    json: Path | None = field(default=None, metadata={
        "type": "path", "metavar": "OUT", "help": "also write the report as JSON (frames_sent, "
        "frames_received, latency_ms_p50, latency_ms_p99, pa_mpjpe_mm, n_mpjpe_mm, ...)"})


@dataclass
class ServeOptions:
    """Receive 2D keypoint frames from many producers (ZeroMQ DEALER -> ROUTER), lift every
    frame to 3D with the trained lifter, batching all streams into one batch per tick, and
    publish the skeletons on a PUB socket, one topic per stream. Wire protocol:
    docs/protocol.md. Binds to 127.0.0.1 by default: without --curve-secret/--curve-clients
    (CurveZMQ, keys from `streamlift keys`) the protocol has no authentication or encryption.
    Every message is checked against the protocol's schema; a bad one costs its own error
    reply. When frames come faster than the model lifts them, stale ones are shed so that
    latency stays within --max-latency-ms (gaps in out_seq, counted in stats)."""
    window: int | None = field(default=None, metadata={
        "type": "positive_int",
        "help": "frames per window; must match the checkpoint (default: the checkpoint's)"})
    mode: str | None = field(default=None, metadata={
        "choices": MODES, "help": "causal: a frame is published as soon as it arrives; centred: "
        "once the frames after it arrive (more accurate, window//2 frames later). Must match the "
        "checkpoint (default: the checkpoint's)"})
    no_graphs: bool = field(default=False, metadata={
        "help": "on CUDA, run eagerly instead of replaying CUDA graphs"})
    stats_every: float = field(default=10.0, metadata={
        "type": "non_negative",
        "help": "print a stats line every this many seconds (0: only at exit)"})
