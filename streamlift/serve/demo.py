"""`streamlift demo`: a server in-process, the shipped sample streamed live, accuracy and latency.

The shipped sample is CMU motion from the shared data's *test* split, so the accuracy it
reports is on motion the lifter never trained on. PA-MPJPE and N-MPJPE are the two metrics
that ignore the unknown global scale of a monocular lifter, so the published metres (scaled to
a stated height) can be compared with the ground truth in millimetres directly.
"""

from __future__ import annotations

import threading
import time

import numpy as np
import torch

from streamlift.data.sample import sample_streams
from streamlift.serve.clients import Producer, Subscriber, replay
from streamlift.serve.server import Server, ServerConfig
from streamlift.lifter.model import NRSfMFormer

# The sample's 50 fps x 5 streams is 250 windows/s, more than a 2-core CPU lifts in real time
# (BENCHMARKS.md: at 120/s ticks already run back to back); past that, frames queue and the
# latency grows for as long as the demo runs.
CPU_FPS = 15.0


def run_demo(model: NRSfMFormer, device: torch.device, streams: int = 5, fps: float | None = None,
             frames: int | None = 300, noise_px: float = 0.0, height_m: float = 1.70,
             threads: int | None = None, progress: bool = True, log=print,
             intrinsics: bool = True) -> dict:
    """Serve, stream, subscribe, measure. Returns the report (see `streamlift demo --help`).

    `fps` None: the sample's rate on CUDA, at most CPU_FPS on CPU.

    `intrinsics`: send each stream's camera matrix with its frames (the server then lifts
    through a virtual camera looking at the subject)."""
    from streamlift.metrics import n_mpjpe, pa_mpjpe

    kp2d, kp3d, sample_fps, K = sample_streams(streams, noise_px)
    # on CPU the clips play slower than captured: the same windows, within the CPU's rate
    fps = fps or (sample_fps if device.type == "cuda" else min(sample_fps, CPU_FPS))
    cfg = ServerConfig(input="tcp://127.0.0.1:*", output="tcp://127.0.0.1:*", height_m=height_m,
                       max_streams=max(streams, 1), threads=threads, idle_timeout_s=30.0)
    received: dict[str, list[dict]] = {s: [] for s in kp2d}
    ends: set[str] = set()
    done = threading.Event()
    with Server(model, cfg, device, log=log) as server:
        sub = Subscriber(server.output_endpoint)
        ready = threading.Event()

        def collect():
            ready.set()
            while not done.is_set():
                msg = sub.recv(100)
                if msg is None:
                    continue
                if msg["type"] == "skeleton":
                    received[msg["stream"]].append(msg)
                elif msg["type"] == "end":
                    ends.add(msg["stream"])
                    if len(ends) == len(kp2d):
                        done.set()
            sub.close()

        t = threading.Thread(target=collect, name="demo-subscriber", daemon=True)
        t.start()
        ready.wait(5)
        producer = Producer(server.input_endpoint)
        producer.request("ping", 5.0)  # the server is up and answering
        time.sleep(0.3)  # PUB/SUB: let the subscription reach the publisher before frame 0
        n = min(len(v) if frames is None else min(frames, len(v)) for v in kp2d.values())
        log(f"demo: {len(kp2d)} streams x {n} frames "
            f"at {fps:g} fps -> {model.cfg.mode} lifter (window {model.cfg.window}) on "
            f"{device} ({server.runner.backend})")
        res = replay(producer, kp2d, fps, frames, progress=progress,
                     intrinsics=K if intrinsics else None)
        done.wait(10.0 + 0.01 * res.sent)  # every stream's 'end' (or give up, bounded)
        done.set()
        t.join(5)
        stats = producer.request("stats", 5.0)["stats"]
        producer.close()

    pred, gt, lat = [], [], []
    gaps = 0
    for s, msgs in received.items():
        for m in msgs:
            pred.append(m["joints"] * 1000.0)  # metres -> mm
            gt.append(kp3d[s][m["seq"]])
            lat.append(1e3 * (m["t_publish"] - m["t_capture"]))
        outs = [m["out_seq"] for m in msgs]
        gaps += (max(outs) + 1 - len(outs)) if outs else 0
    received_n = len(pred)
    report = {
        "frames_sent": res.sent,
        "frames_received": received_n,
        "latency_ms_p50": float(np.percentile(lat, 50)) if lat else None,
        "latency_ms_p99": float(np.percentile(lat, 99)) if lat else None,
        "pa_mpjpe_mm": float(pa_mpjpe(np.stack(pred), np.stack(gt))) if pred else None,
        "n_mpjpe_mm": float(n_mpjpe(np.stack(pred), np.stack(gt))) if pred else None,
        "streams": len(kp2d),
        "fps": fps,
        "seconds": round(res.seconds, 3),
        "send_errors": len(res.errors),
        "subscriber_gaps": gaps,
        "intrinsics": intrinsics,
        "mode": model.cfg.mode,
        "window": model.cfg.window,
        "device": str(device),
        "server": stats,
    }
    return report
