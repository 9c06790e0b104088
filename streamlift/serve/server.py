"""The streaming server: ingest thread -> compute thread -> publish thread.

    producers --DEALER/PUSH--> [ingest: decode, validate, seq checks, eviction] --queue-->
    [compute: ring buffers, per tick one batch of windows or of steps of the streams'
     lifter states, runner] --queue-->
    [publish: PUB, topic per stream]

Only the I/O threads touch sockets; the compute thread only sees queues, so a slow socket can
never stall the model and the model can never stall ingest. The ingest thread owns stream
admission (max streams, seq order, ownership under CURVE, idle eviction) and tells the compute
thread about streams ending through the same FIFO queue as the frames, so their order is never
in doubt. Every message is checked against the protocol's schema before it is admitted; an
unexpected exception while handling one message or one tick is logged, counted as
`internal_error` and costs that message or tick only: the process ends only on shutdown.
"""

from __future__ import annotations

import gc
import os
import queue
import secrets
import sys
import threading
import time
import traceback

import numpy as np
import torch
import zmq

from streamlift.serve import protocol as P
from streamlift.serve.messages import (SKELETON_CONSTANTS, STOP, Ended, EndIn, FrameIn,
                                       Heartbeat, SkeletonBatch, Stop, StreamEnd)
from streamlift.serve.ring import RingStore, StreamState
from streamlift.serve.config import ServerConfig
from streamlift.serve.curve import load_server_keys
from streamlift.serve.runner import Runner, StepRunner, skeleton_fn
from streamlift.serve.record import Recorder2D
from streamlift.serve.shed import TickCost, plan
from streamlift.errors import UserError
from streamlift.lifter.model import NRSfMFormer
from streamlift.lifter.stream import StreamingNRSfMFormer
from streamlift.smoothing import smooth_config
from streamlift.serve.stats import Stats
from streamlift.virtual_camera import from_virtual
from streamlift.windows import lookahead, target_index

# frames of one stream in a tick above which its state catches up in one chunk forward
CATCH_UP = 8
LOCAL_HOSTS = ("127.0.0.1", "localhost", "[::1]", "::1")


def _is_local(endpoint: str) -> bool:
    if not endpoint.startswith("tcp://"):
        return True  # ipc:// and inproc:// never leave the machine
    host = endpoint[len("tcp://"):].rsplit(":", 1)[0]
    return host in LOCAL_HOSTS


class _IngestStream:
    __slots__ = ("last_seq", "last_seen", "owner")

    def __init__(self, seq: int, now: float, owner: str | None):
        self.last_seq, self.last_seen, self.owner = seq, now, owner  # owner: CURVE key (z85)


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
        self.streaming = isinstance(model, StreamingNRSfMFormer)
        if self.streaming:  # its state re-primes from the ring: that many frames before the
            # frame it steps; the step of frame t lifts frame t - lookahead
            self.back, self.lookahead = model.prime_frames(), model.cfg.lookahead
        else:
            self.back = target_index(self.window, self.mode)  # frames before the target
            self.lookahead = lookahead(self.window, self.mode)  # frames after it
        self.log = log if log is not None else (lambda line: print(line, file=sys.stderr))
        self.stats = Stats()
        self.epoch = secrets.randbits(63)  # this run's id: subscribers detect a restart by it
        if (self.cfg.curve_secret is None) != (self.cfg.curve_clients is None):
            raise UserError("CURVE needs both the server's secret key and the directory of "
                            "client public keys")
        self.curve = None if self.cfg.curve_secret is None else \
            load_server_keys(self.cfg.curve_secret, self.cfg.curve_clients)
        self.ctx = zmq.Context()
        self._auth = None
        self._stop = threading.Event()
        # ingest -> compute: FrameIn | EndIn | Stop (bounded by queue_limit)
        self._frames: queue.Queue = queue.Queue()
        self._out: queue.Queue = queue.Queue()  # compute -> publish: SkeletonBatch | Ended | Stop
        self._threads: list[threading.Thread] = []
        self._error: BaseException | None = None
        self.input_endpoint = self.output_endpoint = self.pull_endpoint = None
        self.runner: Runner | None = None
        self._deferred: dict[int, StreamState] = {}  # by slot: pending frames for the next tick
        self._cost = TickCost()  # seconds per tick of n windows, for shedding
        self.recorder = None if self.cfg.record_2d is None else \
            Recorder2D(self.cfg.record_2d, self.cfg.record_2d_max_frames, self.log)

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
        if self.curve is not None:  # every socket: only listed client keys get through ZAP
            s.curve_publickey, s.curve_secretkey = self.curve
            s.curve_server = True
        try:
            s.bind(endpoint)
        except zmq.ZMQError as e:
            s.close(0)
            raise UserError(f"cannot bind {endpoint}: {e}") from None
        if not _is_local(endpoint) and self.curve is None:
            self.log(f"warning: {endpoint} accepts connections from other machines without "
                     f"authentication or encryption: anyone who reaches it can send, end and "
                     f"read streams (use --curve-secret and --curve-clients; docs/protocol.md)")
        return s, s.getsockopt_string(zmq.LAST_ENDPOINT)

    def start(self) -> "Server":
        cfg = self.cfg
        backend = cfg.backend or ("graphs" if self.device.type == "cuda" else "eager")
        sockets = []
        try:
            if self.curve is not None:
                from zmq.auth.thread import ThreadAuthenticator
                self._auth = ThreadAuthenticator(self.ctx, log=None)
                self._auth.start()
                self._auth.configure_curve(domain="*", location=str(cfg.curve_clients))
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
            self._build(backend)
            # Objects alive now (the model, torch's and numpy's) need no scanning by the cyclic
            # GC: without this a full collection paused a tick for 60-80 ms every few seconds
            # (p99 of 8 streams 74 ms instead of 20 ms on a 2-core CPU).
            gc.collect()
            gc.freeze()
        except BaseException:
            for s in sockets:
                s.close(0)
            if self._auth is not None:
                self._auth.stop()
            self.ctx.term()
            raise
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

    def _build(self, backend: str) -> None:
        """The runner and the ring buffers (also what tests drive the compute loop with)."""
        cfg, J = self.cfg, self.model.cfg.num_joints
        if self.streaming:
            workers = cfg.workers or (min(2, os.cpu_count() or 1) if self.device.type == "cpu"
                                      else 1)
            self.runner = StepRunner(self.model, cfg.height_m, cfg.max_streams, self.device,
                                     backend, cfg.sizes, workers)
        else:
            self.runner = Runner(skeleton_fn(self.model, cfg.height_m), self.window, J,
                                 self.device, backend, cfg.sizes)
        # a target's window (or a streaming state's priming frames) and --max-lag behind it
        self.ring = RingStore(cfg.max_streams, self.back + 1 + self.lookahead + cfg.backlog, J,
                              smooth_config(cfg.smooth))

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
            if self._auth is not None:
                self._auth.stop()
            self.ctx.term()  # every socket is closed by its own thread by now
            if self.recorder is not None and (line := self.recorder.save()):
                self.log(line)
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
    def _internal(self, where: str, stream: str | None, e: BaseException) -> None:
        """An unexpected exception: log it with its stream and count it; the thread goes on."""
        with self.stats.lock:
            self.stats.errors["internal_error"] += 1
        tb = "".join(traceback.format_exception_only(type(e), e)).strip()
        self.log(f"internal error in {where}" + (f" (stream {stream})" if stream else "")
                 + f": {tb}")

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
                            parts, user = self._recv(sock)
                        except zmq.Again:
                            break
                        self._handle(sock, parts, user, streams, sock is router)
                now = time.monotonic()
                if now >= next_sweep:
                    next_sweep = now + min(0.25, self.cfg.idle_timeout_s / 4)
                    self._evict_idle(streams, now)
            for name in streams:  # shutdown: flush every stream's pending frames
                self._frames.put(EndIn(name, "shutdown"))
        finally:
            self._frames.put(STOP)
            router.close(0)
            if pull is not None:
                pull.close(0)

    def _recv(self, sock: zmq.Socket) -> tuple[list[bytes], str | None]:
        """One message's frames, and the sender's CURVE public key (z85) when CURVE is on."""
        if self.curve is None:
            return sock.recv_multipart(zmq.NOBLOCK, copy=True), None
        frames = sock.recv_multipart(zmq.NOBLOCK, copy=False)
        return [f.bytes for f in frames], frames[-1].get("User-Id")

    def _evict_idle(self, streams: dict, now: float) -> None:
        for name in [n for n, s in streams.items() if now - s.last_seen > self.cfg.idle_timeout_s]:
            del streams[name]
            self._frames.put(EndIn(name, "idle"))
        with self.stats.lock:
            self.stats.active = len(streams)

    def _handle(self, sock, parts: list[bytes], user: str | None, streams: dict,
                can_reply: bool) -> None:
        envelope: list[bytes] = []
        if can_reply:
            # DEALER sends [payload] -> ROUTER sees [identity, payload]; a REQ-style empty
            # delimiter ([identity, b'', payload]) is answered with the same envelope.
            envelope = parts[:2] if len(parts) == 3 and parts[1] == b"" else parts[:1]
        body = parts[len(envelope):]
        try:
            if len(body) != 1:
                raise P.ProtocolError("bad_message", f"expected one payload frame, got "
                                                     f"{len(body)}")
            self._request(sock, envelope, *P.decode_request(body[0], self.cfg.max_message_bytes),
                          user, streams, can_reply)
        except P.ProtocolError as e:
            self._refuse(sock, envelope, e, can_reply)
        except Exception as e:  # a bug costs this one message, never the server
            self._internal("ingest", None, e)
            self._refuse(sock, envelope, P.ProtocolError(
                "internal_error", f"the server failed on this message ({type(e).__name__}); "
                                  f"it was logged"), can_reply, counted=True)

    def _refuse(self, sock, envelope, e: P.ProtocolError, can_reply: bool,
                counted: bool = False) -> None:
        if not counted:
            with self.stats.lock:
                self.stats.errors[e.code] += 1
        if can_reply:
            # ROUTER drops replies to peers that are gone or not reading: never blocks
            sock.send_multipart(envelope + [P.encode(e.to_msg())])

    def _request(self, sock, envelope, kind: str, obj, user, streams: dict,
                 can_reply: bool) -> None:
        if kind == "frame":
            self._admit(obj, user, streams)
        elif kind == "end":
            st = streams.get(obj)
            if st is not None:
                self._check_owner(st, user, obj, None)
                del streams[obj]
                self._frames.put(EndIn(obj, "end"))
                with self.stats.lock:
                    self.stats.active = len(streams)
        elif can_reply:
            if kind == "stats":
                msg = {"v": P.VERSION, "type": "stats", "epoch": self.epoch,
                       "stats": dict(self.stats.snapshot(), device=str(self.device),
                                     mode=self.mode, window=self.window, epoch=self.epoch,
                                     lookahead=self.lookahead, backend=self.runner.backend,
                                     max_streams=self.cfg.max_streams,
                                     max_latency_ms=self.cfg.max_latency_ms,
                                     curve=self.curve is not None)}
            else:
                msg = {"v": P.VERSION, "type": "pong", "t_server": time.time(),
                       "epoch": self.epoch}
            sock.send_multipart(envelope + [P.encode(msg)])

    def _check_owner(self, st: _IngestStream, user: str | None, stream: str, seq) -> None:
        if self.curve is not None and st.owner != user:
            raise P.ProtocolError("forbidden", f"stream {stream} was opened by another client "
                                               f"key", stream, seq)

    def _admit(self, f: P.Frame, user: str | None, streams: dict) -> None:
        now = time.monotonic()
        st = streams.get(f.stream)
        if st is None:
            if len(streams) >= self.cfg.max_streams:
                raise P.ProtocolError("too_many_streams", f"the server serves at most "
                                      f"{self.cfg.max_streams} streams", f.stream, f.seq)
        else:
            self._check_owner(st, user, f.stream, f.seq)
            st.last_seen = now  # a stream that keeps sending is alive, whatever its frames get
            if f.seq == st.last_seq:
                raise P.ProtocolError("duplicate_seq", f"seq {f.seq} is the stream's last "
                                      f"accepted seq", f.stream, f.seq)
            if f.seq < st.last_seq:
                raise P.ProtocolError("out_of_order", f"seq {f.seq} after seq {st.last_seq}",
                                      f.stream, f.seq)
        if self._frames.qsize() >= self.cfg.queue_limit:
            with self.stats.lock:
                self.stats.dropped += 1
            raise P.ProtocolError("overloaded", "the compute loop is behind; frame dropped",
                                  f.stream, f.seq)
        if st is None:
            streams[f.stream] = _IngestStream(f.seq, now, user)
        else:
            st.last_seq = f.seq
        with self.stats.lock:
            self.stats.frames_in += 1
            self.stats.active = len(streams)
        self._frames.put(FrameIn(f, time.time()))
        if self.recorder is not None:
            self.recorder.add(f)

    # ------------------------------------------------------------------------------ compute
    def _compute_loop(self) -> None:
        threads = self.cfg.threads
        if threads is None and self.streaming and self.device.type == "cpu":
            # a step is many small ops: a second torch thread gains little and, beside the
            # ingest/publish threads and producers on a 2-core CPU, oversubscribes it (64
            # streams: p99 2.3 s with 2 threads, 0.15 s with 1)
            threads = 1
        if threads:
            torch.set_num_threads(threads)
        if self.device.type == "cuda":
            torch.cuda.set_device(self.device)  # graphs replay on this thread's current device
        streams: dict[str, StreamState] = {}
        stopping = False
        while not stopping:
            items = self._take()
            if not items and not self._deferred:
                continue
            # by slot: a name may end and restart in a tick; deferred streams come first
            touched: dict[int, StreamState] = dict(self._deferred)
            self._deferred.clear()
            ended: list[tuple[StreamState, str]] = []
            for item in items:
                if isinstance(item, Stop):
                    stopping = True
                    continue
                try:
                    self._apply(item, streams, touched, ended)
                except Exception as e:  # costs this frame only
                    name = item.frame.stream if isinstance(item, FrameIn) else item.stream
                    self._internal("compute", name, e)
            try:
                self._finish(touched, ended)
            except Exception as e:  # costs this tick's skeletons only
                self._internal("compute", None, e)
                for st, _ in ended:  # free their slots all the same
                    self.ring.close(st)
                touched.clear()
                ended.clear()
        self._out.put(STOP)

    def _take(self) -> list:
        """Everything that arrived since the last tick (waiting up to 0.1 s for the first item,
        not at all when streams are deferred)."""
        try:
            items = [self._frames.get_nowait() if self._deferred else self._frames.get(timeout=0.1)]
        except queue.Empty:
            return []
        while len(items) < 65536:
            try:
                items.append(self._frames.get_nowait())
            except queue.Empty:
                break
        return items

    def _apply(self, item, streams: dict, touched: dict, ended: list) -> None:
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

    def _finish(self, touched: dict, ended: list) -> None:
        """Run the tick for the touched streams, then retire the ended ones (and clear both)."""
        self._tick(list(touched.values()))
        for st, reason in ended:
            self._out.put(Ended(st.name, reason, published=st.published, frames=st.n,
                                dropped=st.dropped))
            self.ring.close(st)
        with self.stats.lock:
            self.stats.evicted += sum(r == "idle" for _, r in ended)
            for st, _ in ended:
                self.stats.shed_per_stream.pop(st.name, None)
        touched.clear()
        ended.clear()

    def _drop(self, st: StreamState, k: int, shed: bool) -> None:
        """k of st's frames get no skeleton (their out_seq values are skipped: a visible gap)."""
        k = int(k)  # numpy arithmetic upstream; stats go out through msgpack
        st.dropped += k
        st.next_target += k  # the oldest pending frames: counted once, even if st then waits
        with self.stats.lock:
            self.stats.dropped += k
            if shed:
                self.stats.shed += k
                self.stats.shed_per_stream[st.name] += k

    def _pending(self, touched: list[StreamState]) -> list[list]:
        """[stream, first, last] target frames ready to lift; beyond --max-lag the oldest are
        dropped, since their windows have left the ring."""
        cap, out = self.ring.capacity, []
        for st in touched:
            ready = st.n - 1 if st.ended else st.n - 1 - self.lookahead
            lo = st.next_target
            if ready < lo:
                continue
            # the oldest target whose window (a streaming state's priming frames) is in the ring
            oldest = st.n - cap + self.back - (self.lookahead if self.streaming else 0)
            if lo < oldest:
                self._drop(st, oldest - lo, shed=False)
                lo = oldest
            out.append([st, lo, ready])
        return out

    def _shed(self, pending: list[list]) -> list[list]:
        """Newest wins (streamlift.serve.shed): drop what would publish later than
        --max-latency-ms, share the tick fairly, defer streams to the next tick if need be."""
        if not self._cost.known:
            return pending  # nothing measured yet: lift everything once
        cap = self.ring.capacity
        t_ready = [self.ring.t_receive[st.slot, np.minimum(np.arange(lo, hi + 1) + self.lookahead,
                                                           st.n - 1) % cap]
                   for st, lo, hi in pending]  # when each frame's window was complete
        first = plan(t_ready, [st.ended for st, _, _ in pending], time.time(),
                     self.cfg.max_latency_ms / 1e3, self._cost, self.runner.max_batch)
        kept = []
        for p, k in zip(pending, first):
            if k is None:
                self._deferred[p[0].slot] = p[0]
                continue
            if k:
                self._drop(p[0], k, shed=True)
                p[1] += k
                p[0].shed = True
            kept.append(p)
        return kept

    def _tick(self, touched: list[StreamState]) -> None:
        """One batch of windows: every target frame of every touched stream that is ready."""
        pending = self._pending(touched)
        if pending and self.cfg.max_latency_ms:
            pending = self._shed(pending)
        if not pending:
            return
        for st, lo, hi in pending:
            st.published += hi - lo + 1
        t0 = time.perf_counter()
        if self.streaming:
            self._lift_streaming(pending)
        else:
            self._lift_windows(pending)
        for st, _, _ in pending:
            st.shed = False  # the mark is per tick
        dt = 1e3 * (time.perf_counter() - t0)
        with self.stats.lock:
            self.stats.batches[int(sum(hi - lo + 1 for _, lo, hi in pending))] += 1  # msgpack: no numpy
            self.stats.compute_ms.append(dt)

    def _lift_windows(self, pending: list[list]) -> None:
        """A windowed lifter: one window per target frame, in runner-sized chunks."""
        slots_a = np.concatenate([np.full(hi - lo + 1, st.slot) for st, lo, hi in pending])
        targets_a = np.concatenate([np.arange(lo, hi + 1) for _, lo, hi in pending])
        n_a = np.concatenate([np.full(hi - lo + 1, st.n) for st, lo, hi in pending])
        owners = [st for st, lo, hi in pending for _ in range(hi - lo + 1)]
        for st, lo, hi in pending:
            st.next_target = hi + 1
        t_recv = self.ring.t_receive[slots_a, targets_a % self.ring.capacity]
        # Oldest frames first, published chunk by chunk: when the loop is behind, the first
        # skeletons do not wait for the whole tick. The sort is stable, so a stream's frames
        # stay in order. out_seq is the frame's index in its stream: a skipped one is a gap.
        order = np.argsort(t_recv, kind="stable")
        for i in range(0, len(order), self.runner.max_batch):
            sel = order[i:i + self.runner.max_batch]
            t1 = time.perf_counter()
            kp, conf = self.ring.windows(slots_a[sel], targets_a[sel], n_a[sel], self.window,
                                         self.mode)  # (b, T, J, 2), (b, T, J)
            joints = self.runner(kp, conf)  # (b, J, 3) metres, in each frame's virtual camera
            self._emit([owners[j] for j in sel], slots_a[sel], targets_a[sel], joints)
            self._cost.add(len(sel), time.perf_counter() - t1)

    def _lift_streaming(self, pending: list[list]) -> None:
        """A streaming lifter: each stream's state advances through its new frames, one step
        per frame for all streams at once (round r steps every stream's r-th new frame), and
        each round is published as it is done. The step of frame f lifts frame f - lookahead
        (with none, f itself); an ended stream steps on through repeats of its last frame until
        its last frame is lifted. A stream whose state is behind its first frame to step (a
        skipped frame, --max-lag) first steps through the frames it missed; one that is new or
        too far behind starts its state afresh (`StreamingNRSfMFormer.start`) at its first
        frame, or `prime_frames` frames before the frame to step, from the ring: the same
        estimate as a stream that never stopped; one with more than CATCH_UP frames shed in
        this tick starts afresh at its first target instead (feeding the shed frames would cost
        what shedding saved). A start lifts its own frame. Long runs of one stream go through
        the chunk forward in one call."""
        prime, cap, ahead = self.back, self.ring.capacity, self.lookahead
        self.ring.prepare()  # frames seen through their virtual cameras, before any is read
        # [stream, first frame to feed, first frame to step for a target, last frame to step]
        feeds, starts = [], []
        for st, lo, hi in pending:
            flo, fhi = lo + ahead, hi + ahead  # the frames whose steps lift targets lo .. hi
            restart = st.shed and st.primed and flo - st.fed > CATCH_UP
            if restart or not st.primed or st.fed < flo - prime:
                st.fed = lo if restart else max(0, flo - prime, st.n - cap)
                st.primed = True
                starts.append((st, st.fed, flo))
                feeds.append([st, st.fed + 1, max(flo, st.fed + 1), fhi])  # the start lifts st.fed
            else:
                feeds.append([st, st.fed, flo, fhi])
            st.next_target, st.fed = hi + 1, fhi + 1
        if starts:
            self._start_streams(starts)
        short = []
        for st, start, flo, fhi in sorted(feeds, key=lambda f: f[0].slot):
            if start > fhi:  # its one frame was the start's
                continue
            if fhi - start + 1 <= CATCH_UP:
                short.append((st, start, flo, fhi))
                continue
            t1 = time.perf_counter()
            i = np.arange(start, fhi + 1)
            i = (np.minimum(i, st.n - 1) if ahead else i) % cap  # an ended stream's repeats
            joints = self.runner.catch_up(st.slot, self.ring.kp[st.slot, i],
                                          self.ring.conf[st.slot, i])[flo - start:]
            self._emit([st] * (fhi - flo + 1), np.full(fhi - flo + 1, st.slot),
                       np.arange(flo, fhi + 1) - ahead, joints)
            self._cost.add(fhi - flo + 1, time.perf_counter() - t1)
        for r in range(max((fhi - start + 1 for _, start, _, fhi in short), default=0)):
            live = [f for f in short if f[1] + r <= f[3]]  # by slot: often consecutive rows
            t1 = time.perf_counter()
            slots = np.array([st.slot for st, *_ in live])
            frames = np.array([start + r for _, start, _, _ in live])
            last = np.array([st.n - 1 for st, *_ in live]) if ahead else None
            i = (np.minimum(frames, last) if ahead else frames) % cap  # an ended stream's repeats
            joints = self.runner.step(slots, self.ring.kp[slots, i], self.ring.conf[slots, i])
            out = frames >= np.array([flo for _, _, flo, _ in live])  # targets, not catch-up
            if out.any():
                self._emit([f[0] for f, o in zip(live, out) if o], slots[out],
                           frames[out] - ahead, joints[out])
            self._cost.add(len(live), time.perf_counter() - t1)

    def _start_streams(self, starts: list[tuple]) -> None:
        """All of a tick's new states ([stream, start frame, first frame to step for a target])
        in one call, which also lifts their start frames; those that lift targets (not priming
        frames) are published."""
        t1 = time.perf_counter()
        cap = self.ring.capacity
        owners = [st for st, _, _ in starts]
        s = np.array([st.slot for st in owners])
        f = np.array([fed for _, fed, _ in starts])
        joints = self.runner.start(s, self.ring.kp[s, f % cap], self.ring.conf[s, f % cap],
                                   lift=True)
        out = f >= np.array([flo for _, _, flo in starts])
        if out.any():
            self._emit([o for o, k in zip(owners, out) if k], s[out], f[out] - self.lookahead,
                       joints[out])
        self._cost.add(len(s), time.perf_counter() - t1)

    def _emit(self, owners: list, slots: np.ndarray, targets: np.ndarray,
              joints: np.ndarray) -> None:
        """Hand lifted target frames (joints (b, J, 3) metres in each frame's virtual camera)
        to the publisher, in the real camera's frame."""
        seq, t_cap, t_recv, virtual, rot = self.ring.meta(slots, targets)
        if virtual.any():  # rot is the identity for streams without K
            joints = from_virtual(joints, rot)
        self._out.put(SkeletonBatch(
            streams=[st.name for st in owners], out_seq=targets, seq=seq, t_capture=t_cap,
            t_receive=t_recv, joints=joints, virtual_camera=virtual))

    # ------------------------------------------------------------------------------ publish
    def _publish_loop(self, pub: zmq.Socket) -> None:
        base = {"v": P.VERSION, "type": "skeleton", **SKELETON_CONSTANTS,
                "height_m": self.cfg.height_m, "mode": self.mode, "window": self.window}
        beat = self.cfg.heartbeat_s
        next_beat = time.monotonic()
        try:
            while True:
                if beat and time.monotonic() >= next_beat:
                    next_beat = time.monotonic() + beat
                    self._heartbeat(pub)
                try:
                    item = self._out.get(timeout=max(0.0, next_beat - time.monotonic())
                                         if beat else None)
                except queue.Empty:
                    continue
                if isinstance(item, Stop):
                    break
                try:
                    self._publish(pub, base, item)
                except Exception as e:  # costs this item's messages only
                    self._internal("publish", getattr(item, "stream", None), e)
        finally:
            pub.close()  # LINGER 500 ms lets queued skeletons go out

    def _heartbeat(self, pub: zmq.Socket) -> None:
        with self.stats.lock:
            active = self.stats.active
        hb = Heartbeat(epoch=self.epoch, t_publish=time.time(),
                       uptime_s=round(time.time() - self.stats.start, 3), streams_active=active)
        pub.send_multipart([P.HEARTBEAT_TOPIC, P.encode(hb.to_msg())])

    def _publish(self, pub: zmq.Socket, base: dict, item) -> None:
        if isinstance(item, Ended):
            end = StreamEnd(item.stream, item.reason, frames=int(item.frames),
                            published=int(item.published), dropped=int(item.dropped),
                            t_publish=time.time(), epoch=self.epoch)
            pub.send_multipart([P.topic(item.stream), P.encode(end.to_msg())])
            return
        lat, srv = [], []
        for i, name in enumerate(item.streams):
            t_pub = time.time()
            msg = dict(base, stream=name, seq=int(item.seq[i]), out_seq=int(item.out_seq[i]),
                       t_capture=float(item.t_capture[i]), t_receive=float(item.t_receive[i]),
                       t_publish=t_pub, joints=P.pack_array(item.joints[i]),
                       virtual_camera=bool(item.virtual_camera[i]), epoch=self.epoch)
            # PUB never blocks: a subscriber whose queue is at SNDHWM just misses this
            pub.send_multipart([P.topic(name), P.encode(msg)])
            lat.append(1e3 * (t_pub - item.t_capture[i]))
            srv.append(1e3 * (t_pub - item.t_receive[i]))
        with self.stats.lock:
            self.stats.frames_out += len(item.streams)
            self.stats.latency.extend(lat)
            self.stats.server_ms.extend(srv)
