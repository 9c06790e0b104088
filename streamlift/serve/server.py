"""The streaming server: ingest thread -> compute thread -> publish thread.

    producers --DEALER/PUSH--> [ingest: decode, validate, seq checks, eviction] --queue-->
    [compute: ring buffers, one batch of windows per tick, runner] --queue-->
    [publish: PUB, topic per stream]

Only the I/O threads touch sockets; the compute thread only sees queues, so a slow socket can
never stall the model and the model can never stall ingest. The ingest thread owns stream
admission (max streams, seq order, idle eviction) and tells the compute thread about streams
ending through the same FIFO queue as the frames, so their order is never in doubt.
"""

from __future__ import annotations

import queue
import sys
import threading
import time

import numpy as np
import torch
import zmq

from streamlift.serve import protocol as P
from streamlift.serve.messages import (SKELETON_CONSTANTS, STOP, Ended, EndIn, FrameIn,
                                       SkeletonBatch, Stop, StreamEnd)
from streamlift.serve.ring import RingStore, StreamState
from streamlift.serve.config import ServerConfig
from streamlift.serve.runner import Runner, skeleton_fn
from streamlift.errors import UserError
from streamlift.lifter.model import NRSfMFormer
from streamlift.serve.stats import Stats
from streamlift.virtual_camera import from_virtual
from streamlift.windows import lookahead, target_index

LOCAL_HOSTS = ("127.0.0.1", "localhost", "[::1]", "::1")


def _is_local(endpoint: str) -> bool:
    if not endpoint.startswith("tcp://"):
        return True  # ipc:// and inproc:// never leave the machine
    host = endpoint[len("tcp://"):].rsplit(":", 1)[0]
    return host in LOCAL_HOSTS


class _IngestStream:
    __slots__ = ("last_seq", "last_seen")

    def __init__(self, seq: int, now: float):
        self.last_seq, self.last_seen = seq, now


class Server:
    """A running engine. `start()` binds and starts the threads; `close()` stops them cleanly.

    Endpoints may use port '*' (e.g. tcp://127.0.0.1:*); `input_endpoint` and
    `output_endpoint` give the addresses actually bound.
    """

    def __init__(self, model: NRSfMFormer, cfg: ServerConfig | None = None, device="cpu",
                 log=None):
        self.model, self.cfg = model, cfg or ServerConfig()
        self.device = torch.device(device)
        self.window, self.mode = model.cfg.window, model.cfg.mode
        self.back = target_index(self.window, self.mode)  # frames before the target
        self.lookahead = lookahead(self.window, self.mode)  # frames after it
        self.log = log if log is not None else (lambda line: print(line, file=sys.stderr))
        self.stats = Stats()
        self.ctx = zmq.Context()
        self._stop = threading.Event()
        # ingest -> compute: FrameIn | EndIn | Stop (bounded by queue_limit)
        self._frames: queue.Queue = queue.Queue()
        self._out: queue.Queue = queue.Queue()  # compute -> publish: SkeletonBatch | Ended | Stop
        self._threads: list[threading.Thread] = []
        self._error: BaseException | None = None
        self.input_endpoint = self.output_endpoint = self.pull_endpoint = None
        self.runner: Runner | None = None

    # ---------------------------------------------------------------------------- lifecycle
    def _bind(self, kind: int, endpoint: str) -> tuple[zmq.Socket, str]:
        s = self.ctx.socket(kind)
        s.setsockopt(zmq.LINGER, 0)
        if kind in (zmq.ROUTER, zmq.PULL):
            # ZeroMQ itself drops (and disconnects) anything above the hard cap before it is
            # buffered; the soft cap below it gets a `too_large` reply.
            s.setsockopt(zmq.MAXMSGSIZE, max(P.HARD_MAX_MESSAGE_BYTES,
                                              2 * self.cfg.max_message_bytes))
        if kind == zmq.PUB:
            s.setsockopt(zmq.SNDHWM, self.cfg.pub_hwm)
            s.setsockopt(zmq.LINGER, 500)  # let the last skeletons out on a clean shutdown
        try:
            s.bind(endpoint)
        except zmq.ZMQError as e:
            s.close(0)
            raise UserError(f"cannot bind {endpoint}: {e}") from None
        if not _is_local(endpoint):
            self.log(f"warning: {endpoint} accepts connections from other machines; the "
                     f"protocol has no authentication or encryption")
        return s, s.getsockopt_string(zmq.LAST_ENDPOINT)

    def start(self) -> "Server":
        cfg = self.cfg
        backend = cfg.backend or ("graphs" if self.device.type == "cuda" else "eager")
        sockets = []
        try:
            router, self.input_endpoint = self._bind(zmq.ROUTER, cfg.input)
            sockets.append(router)
            pull = None
            if cfg.pull:
                pull, self.pull_endpoint = self._bind(zmq.PULL, cfg.pull)
                sockets.append(pull)
            pub, self.output_endpoint = self._bind(zmq.PUB, cfg.output)
            sockets.append(pub)
            # Build the runner (and capture its graphs) before taking traffic.
            if backend == "graphs":
                self.log(f"capturing CUDA graphs for batch sizes {', '.join(map(str, cfg.sizes))}")
            self.runner = Runner(skeleton_fn(self.model, cfg.height_m), self.window,
                                 self.model.cfg.num_joints, self.device, backend, cfg.sizes)
        except BaseException:
            for s in sockets:
                s.close(0)
            self.ctx.term()
            raise
        self.ring = RingStore(cfg.max_streams, self.window + cfg.backlog,
                              self.model.cfg.num_joints)
        # Sockets are created here and handed to their one thread (thread start is the memory
        # barrier ZeroMQ asks for when a socket moves between threads).
        self._threads = [
            threading.Thread(target=self._guard(self._ingest_loop), args=(router, pull),
                             name="streamlift-ingest", daemon=True),
            threading.Thread(target=self._guard(self._compute_loop), name="streamlift-compute",
                             daemon=True),
            threading.Thread(target=self._guard(self._publish_loop), args=(pub,),
                             name="streamlift-publish", daemon=True),
        ]
        for t in self._threads:
            t.start()
        return self

    def _guard(self, fn):
        def run(*args):
            try:
                fn(*args)
            except BaseException as e:  # surface a crashed thread to the caller and stop all
                self._error = e
                self._stop.set()
                self._frames.put(STOP)
                self._out.put(STOP)
        return run

    def stop(self) -> None:
        """Ask the threads to stop (safe from a signal handler)."""
        self._stop.set()

    def close(self, timeout: float = 10.0) -> None:
        """Stop, flush the pending skeletons of every stream, join the threads, free sockets."""
        self._stop.set()
        deadline = time.monotonic() + timeout
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))
        if any(t.is_alive() for t in self._threads):
            self.log(f"warning: the server threads did not finish within {timeout:g} s; "
                     f"unpublished skeletons are lost")
        elif not self.ctx.closed:
            self.ctx.term()  # every socket is closed by its own thread by now
        if self._error is not None:
            raise RuntimeError(f"streamlift server thread failed: {self._error!r}") from self._error

    def wait(self, timeout: float | None = None) -> bool:
        """Block until stop() (or a thread failure); True if stopped."""
        return self._stop.wait(timeout)

    def __enter__(self) -> "Server":
        return self.start() if not self._threads else self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------------------------- ingest
    def _ingest_loop(self, router: zmq.Socket, pull: zmq.Socket | None) -> None:
        streams: dict[str, _IngestStream] = {}
        poller = zmq.Poller()
        poller.register(router, zmq.POLLIN)
        if pull is not None:
            poller.register(pull, zmq.POLLIN)
        next_sweep = time.monotonic()
        try:
            while not self._stop.is_set():
                for sock, _ in poller.poll(50):
                    for _ in range(1000):  # bounded drain, then check stop and eviction
                        try:
                            parts = sock.recv_multipart(zmq.NOBLOCK, copy=True)
                        except zmq.Again:
                            break
                        self._handle(sock, parts, streams, sock is router)
                now = time.monotonic()
                if now >= next_sweep:
                    next_sweep = now + min(0.25, self.cfg.idle_timeout_s / 4)
                    for name in [n for n, s in streams.items()
                                 if now - s.last_seen > self.cfg.idle_timeout_s]:
                        del streams[name]
                        self._frames.put(EndIn(name, "idle"))
                    with self.stats.lock:
                        self.stats.active = len(streams)
            for name in streams:  # shutdown: flush every stream's pending frames
                self._frames.put(EndIn(name, "shutdown"))
        finally:
            self._frames.put(STOP)
            router.close(0)
            if pull is not None:
                pull.close(0)

    def _handle(self, sock, parts: list[bytes], streams: dict, can_reply: bool) -> None:
        envelope: list[bytes] = []
        if can_reply:
            # DEALER sends [payload] -> ROUTER sees [identity, payload]; a REQ-style empty
            # delimiter ([identity, b'', payload]) is answered with the same envelope.
            envelope = parts[:2] if len(parts) == 3 and parts[1] == b"" else parts[:1]
            body = parts[len(envelope):]
        else:
            body = parts
        try:
            if len(body) != 1:
                raise P.ProtocolError("bad_message", f"expected one payload frame, got "
                                                     f"{len(body)}")
            kind, obj = P.decode_request(body[0], self.cfg.max_message_bytes)
            if kind == "frame":
                self._admit(obj, streams)
            elif kind == "end":
                if streams.pop(obj, None) is not None:
                    self._frames.put(EndIn(obj, "end"))
                    with self.stats.lock:
                        self.stats.active = len(streams)
            elif kind == "stats" and can_reply:
                snap = self.stats.snapshot()
                snap.update(device=str(self.device), mode=self.mode, window=self.window,
                            backend=self.runner.backend, max_streams=self.cfg.max_streams)
                sock.send_multipart(envelope + [P.encode({"v": P.VERSION, "type": "stats",
                                                          "stats": snap})])
            elif kind == "ping" and can_reply:
                sock.send_multipart(envelope + [P.encode({"v": P.VERSION, "type": "pong",
                                                          "t_server": time.time()})])
        except P.ProtocolError as e:
            with self.stats.lock:
                self.stats.errors[e.code] += 1
            if can_reply:
                # ROUTER drops replies to peers that are gone or not reading: never blocks
                sock.send_multipart(envelope + [P.encode(e.to_msg())])

    def _admit(self, f: P.Frame, streams: dict) -> None:
        now = time.monotonic()
        st = streams.get(f.stream)
        if st is None:
            if len(streams) >= self.cfg.max_streams:
                raise P.ProtocolError("too_many_streams", f"the server serves at most "
                                      f"{self.cfg.max_streams} streams", f.stream, f.seq)
        elif f.seq == st.last_seq:
            raise P.ProtocolError("duplicate_seq", f"seq {f.seq} was already received",
                                  f.stream, f.seq)
        elif f.seq < st.last_seq:
            raise P.ProtocolError("out_of_order", f"seq {f.seq} after seq {st.last_seq}",
                                  f.stream, f.seq)
        if self._frames.qsize() >= self.cfg.queue_limit:
            with self.stats.lock:
                self.stats.dropped += 1
            raise P.ProtocolError("overloaded", "the compute loop is behind; frame dropped",
                                  f.stream, f.seq)
        if st is None:
            streams[f.stream] = _IngestStream(f.seq, now)
        else:
            st.last_seq, st.last_seen = f.seq, now
        with self.stats.lock:
            self.stats.frames_in += 1
            self.stats.active = len(streams)
        self._frames.put(FrameIn(f, time.time()))

    # ------------------------------------------------------------------------------ compute
    def _compute_loop(self) -> None:
        if self.cfg.threads:
            torch.set_num_threads(self.cfg.threads)
        if self.device.type == "cuda":
            torch.cuda.set_device(self.device)  # graphs replay on this thread's current device
        streams: dict[str, StreamState] = {}
        stopping = False
        while not stopping:
            try:
                items = [self._frames.get(timeout=0.1)]
            except queue.Empty:
                continue
            while len(items) < 65536:  # everything that arrived since the last tick
                try:
                    items.append(self._frames.get_nowait())
                except queue.Empty:
                    break
            touched: dict[int, StreamState] = {}  # by slot: a name may end and restart in a tick
            ended: list[tuple[StreamState, str]] = []
            for item in items:
                if isinstance(item, FrameIn):
                    f = item.frame
                    st = streams.get(f.stream)
                    if st is None:
                        if not self.ring.free_slots:
                            # a stream ended in this very tick still holds its slot: finish it
                            self._finish(touched, ended)
                        st = streams[f.stream] = self.ring.open(f.stream)
                    self.ring.push(st, f.kp, f.conf, f.seq, f.t_capture, item.t_receive, f.K)
                    touched[st.slot] = st
                elif isinstance(item, EndIn):
                    st = streams.pop(item.stream, None)
                    if st is not None:
                        st.ended = True
                        touched[st.slot] = st
                        ended.append((st, item.reason))
                else:
                    assert isinstance(item, Stop), item
                    stopping = True
            self._finish(touched, ended)
        self._out.put(STOP)

    def _finish(self, touched: dict, ended: list) -> None:
        """Run the tick for the touched streams, then retire the ended ones (and clear both)."""
        self._tick(list(touched.values()))
        for st, reason in ended:
            self._out.put(Ended(st.name, reason, published=st.out_seq, frames=st.n,
                                dropped=st.dropped))
            self.ring.close(st)
        if ended:
            with self.stats.lock:
                self.stats.evicted += sum(r == "idle" for _, r in ended)
        touched.clear()
        ended.clear()

    def _tick(self, touched: list[StreamState]) -> None:
        """One batch of windows: every target frame of every touched stream that is ready."""
        cap = self.ring.capacity
        slots, targets, ns, owners = [], [], [], []
        for st in touched:
            ready = st.n - 1 if st.ended else st.n - 1 - self.lookahead
            lo = st.next_target
            if ready < lo:
                continue
            oldest = st.n - cap + self.back  # the oldest target whose window is still in the ring
            if lo < oldest:
                st.dropped += oldest - lo
                with self.stats.lock:
                    self.stats.dropped += oldest - lo
                lo = oldest
            k = ready - lo + 1
            slots.append(np.full(k, st.slot))
            targets.append(np.arange(lo, ready + 1))
            ns.append(np.full(k, st.n))
            owners.extend([st] * k)
            st.next_target = ready + 1
        if not owners:
            return
        slots_a, targets_a, n_a = (np.concatenate(x) for x in (slots, targets, ns))
        seq, t_cap, t_recv, virtual, rot = self.ring.meta(slots_a, targets_a)
        out_seq = np.empty(len(owners), np.int64)
        for i, st in enumerate(owners):  # owners are grouped by stream, in frame order
            out_seq[i] = st.out_seq
            st.out_seq += 1
        # Oldest frames first, published chunk by chunk: when the loop is behind, the first
        # skeletons do not wait for the whole tick. The sort is stable, so a stream's frames
        # stay in order.
        order = np.argsort(t_recv, kind="stable")
        t0 = time.perf_counter()
        for i in range(0, len(order), self.runner.max_batch):
            sel = order[i:i + self.runner.max_batch]
            kp, conf = self.ring.windows(slots_a[sel], targets_a[sel], n_a[sel], self.window,
                                         self.mode)  # (b, T, J, 2), (b, T, J)
            joints = self.runner(kp, conf)  # (b, J, 3) metres, in each frame's virtual camera
            if virtual[sel].any():  # rot is the identity for streams without K
                joints = from_virtual(joints, rot[sel])
            self._out.put(SkeletonBatch(
                streams=[owners[j].name for j in sel], out_seq=out_seq[sel], seq=seq[sel],
                t_capture=t_cap[sel], t_receive=t_recv[sel], joints=joints,
                virtual_camera=virtual[sel]))
        dt = 1e3 * (time.perf_counter() - t0)
        with self.stats.lock:
            self.stats.batches[len(owners)] += 1
            self.stats.compute_ms.append(dt)

    # ------------------------------------------------------------------------------ publish
    def _publish_loop(self, pub: zmq.Socket) -> None:
        base = {"v": P.VERSION, "type": "skeleton", **SKELETON_CONSTANTS,
                "height_m": self.cfg.height_m, "mode": self.mode, "window": self.window}
        try:
            while True:
                item = self._out.get()
                if isinstance(item, Stop):
                    break
                if isinstance(item, Ended):
                    end = StreamEnd(item.stream, item.reason, frames=int(item.frames),
                                    published=int(item.published), dropped=int(item.dropped),
                                    t_publish=time.time())
                    pub.send_multipart([P.topic(item.stream), P.encode(end.to_msg())])
                    continue
                lat, srv = [], []
                for i, name in enumerate(item.streams):
                    t_pub = time.time()
                    msg = dict(base, stream=name, seq=int(item.seq[i]),
                               out_seq=int(item.out_seq[i]), t_capture=float(item.t_capture[i]),
                               t_receive=float(item.t_receive[i]), t_publish=t_pub,
                               joints=P.pack_array(item.joints[i]),
                               virtual_camera=bool(item.virtual_camera[i]))
                    # PUB never blocks: a subscriber whose queue is at SNDHWM just misses this
                    pub.send_multipart([P.topic(name), P.encode(msg)])
                    lat.append(1e3 * (t_pub - item.t_capture[i]))
                    srv.append(1e3 * (t_pub - item.t_receive[i]))
                with self.stats.lock:
                    self.stats.frames_out += len(item.streams)
                    self.stats.latency.extend(lat)
                    self.stats.server_ms.extend(srv)
        finally:
            pub.close()  # LINGER 500 ms lets queued skeletons go out
