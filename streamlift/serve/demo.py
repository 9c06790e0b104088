"""`streamlift demo`: a server in-process, the shipped sample streamed live, accuracy and latency.

The shipped sample is CMU motion from the shared data's *test* split, so the accuracy it
reports is on motion the lifter never trained on. PA-MPJPE and N-MPJPE are the two metrics
that ignore the unknown global scale of a monocular lifter, so the published metres (scaled to
a stated height) can be compared with the ground truth in millimetres directly.
"""

from __future__ import annotations

import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

from streamlift.data.sample import sample_streams
from streamlift.serve.clients import Producer, Subscriber, replay
from streamlift.serve.messages import Gaps, Skeleton, StreamEnd
from streamlift.serve.server import Server, ServerConfig
from streamlift.lifter.model import NRSfMFormer
from streamlift.lifter.stream import StreamingNRSfMFormer

# The sample's 50 fps x 5 streams is 250 windows/s, more than a 2-core CPU lifts in real time
# with a windowed lifter (BENCHMARKS.md: at 120/s ticks already run back to back); past that,
# frames queue and the latency grows for as long as the demo runs. A streaming lifter does one
# frame's work per frame and plays the sample at its own rate.
CPU_FPS = 15.0


def run_demo(model: NRSfMFormer, device: torch.device, streams: int = 5, fps: float | None = None,
             frames: int | None = 300, noise_px: float = 0.0, height_m: float = 1.70,
             threads: int | None = None, progress: bool = True, log=print,
             intrinsics: bool = True, curve: bool = False,
             max_latency_ms: float | None = None) -> dict:
    """Serve, stream, subscribe, measure. Returns the report (see `streamlift demo --help`).

    `fps` None: the sample's rate on CUDA or with a streaming lifter, else at most CPU_FPS on
    CPU.

    `intrinsics`: send each stream's camera matrix with its frames (the server then lifts
    through a virtual camera looking at the subject). `curve`: every socket through CurveZMQ,
    with keys made for this run only. `max_latency_ms`: the server's latency bound (None: its
    default); frames it sheds are missing from the report's `frames_received`."""
    kp2d, kp3d, sample_fps, K = sample_streams(streams, noise_px)
    # on CPU the clips play slower than captured: the same windows, within the CPU's rate
    fast = device.type == "cuda" or isinstance(model, StreamingNRSfMFormer)
    fps = fps or (sample_fps if fast else min(sample_fps, CPU_FPS))
    with _keys(curve) as (server_keys, keys):
        cfg = ServerConfig(input="tcp://127.0.0.1:*", output="tcp://127.0.0.1:*",
                           height_m=height_m, max_streams=max(streams, 1), threads=threads,
                           idle_timeout_s=30.0, **server_keys,
                           **({} if max_latency_ms is None else {"max_latency_ms": max_latency_ms}))
        server = Server(model, cfg, device, log=log).start()
    with server:
        collector = _Collector(Subscriber(server.output_endpoint, curve=keys), list(kp2d))
        collector.start()
        producer = Producer(server.input_endpoint, curve=keys)
        producer.request("ping", 5.0)  # the server is up and answering
        time.sleep(0.3)  # PUB/SUB: let the subscription reach the publisher before frame 0
        n = min(len(v) if frames is None else min(frames, len(v)) for v in kp2d.values())
        log(f"demo: {len(kp2d)} streams x {n} frames "
            f"at {fps:g} fps -> {getattr(model.cfg, 'kind', 'windowed')} {model.cfg.mode} lifter "
            f"(window {model.cfg.window}"
            + (f", lookahead {server.lookahead}" if server.lookahead else "") + ") on "
            f"{device} ({server.runner.backend})")
        res = replay(producer, kp2d, fps, frames, progress=progress,
                     intrinsics=K if intrinsics else None)
        collector.finish(10.0 + 0.01 * res.sent)  # every stream's 'end' (or give up, bounded)
        stats = producer.request("stats", 5.0)["stats"]
        producer.close()
    return {
        "frames_sent": res.sent,
        **_accuracy(collector.received, kp3d),
        "streams": len(kp2d),
        "fps": fps,
        "seconds": round(res.seconds, 3),
        "send_errors": len(res.errors),
        "subscriber_gaps": collector.gaps.total,
        "frames_shed": stats["frames_shed"],  # the server's, to keep its latency bound
        "intrinsics": intrinsics,
        "curve": curve,
        "mode": model.cfg.mode,
        "window": model.cfg.window,
        "device": str(device),
        "server": stats,
    }


@contextmanager
def _keys(curve: bool):
    """ServerConfig's CURVE settings and the clients' CurveKeys, from keys made for one run
    (the server has read its files by the time this exits)."""
    if not curve:
        yield {}, None
        return
    from streamlift.serve.curve import CurveKeys, make_keys

    with tempfile.TemporaryDirectory(prefix="streamlift-demo-keys-") as tmp:
        make_keys(Path(tmp), ["demo"])
        yield ({"curve_secret": Path(tmp, "server.key_secret"),
                "curve_clients": Path(tmp, "clients")},
               CurveKeys.load(Path(tmp, "server.key"), Path(tmp, "demo.key_secret")))


class _Collector:
    """A subscriber thread keeping every stream's skeletons until each stream has ended."""

    def __init__(self, sub: Subscriber, streams: list[str]):
        self.sub, self.streams = sub, streams
        self.received: dict[str, list[Skeleton]] = {s: [] for s in streams}
        self.gaps = Gaps(from_start=True)  # subscribed before any stream's first skeleton
        self.ended: set[str] = set()
        self.done = threading.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="demo-subscriber", daemon=True)

    def start(self) -> None:
        self._thread.start()
        self._ready.wait(5)

    def _run(self) -> None:
        self._ready.set()
        while not self.done.is_set():
            msg = self.sub.recv(100)
            if msg is None:
                continue
            self.gaps.add(msg)
            if isinstance(msg, Skeleton):
                self.received[msg.stream].append(msg)
            elif isinstance(msg, StreamEnd):
                self.ended.add(msg.stream)
                if len(self.ended) == len(self.streams):
                    self.done.set()
        self.sub.close()

    def finish(self, timeout: float) -> None:
        """Wait up to `timeout` s for every stream's end, then stop the thread."""
        self.done.wait(timeout)
        self.done.set()
        self._thread.join(5)


def _accuracy(received: dict[str, list[Skeleton]], kp3d: dict[str, np.ndarray]) -> dict:
    """Latency percentiles and PA-/N-MPJPE (mm) of the received skeletons against the truth."""
    from streamlift.metrics import n_mpjpe, pa_mpjpe

    skels = [(s, m) for s, msgs in received.items() for m in msgs]
    pred = np.stack([m.joints * 1000.0 for _, m in skels]) if skels else None  # metres -> mm
    gt = np.stack([kp3d[s][m.seq] for s, m in skels]) if skels else None
    lat = [m.latency_ms for _, m in skels]
    return {
        "frames_received": len(skels),
        "latency_ms_p50": float(np.percentile(lat, 50)) if lat else None,
        "latency_ms_p99": float(np.percentile(lat, 99)) if lat else None,
        "pa_mpjpe_mm": float(pa_mpjpe(pred, gt)) if skels else None,
        "n_mpjpe_mm": float(n_mpjpe(pred, gt)) if skels else None,
    }
