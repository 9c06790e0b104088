"""The streaming engine: `streamlift serve` and its clients (docs/protocol.md is the contract).

- `protocol`: wire protocol v1 (msgpack), decoding and validation of untrusted input;
- `messages`: the typed items the server's threads hand each other, and decoded outputs;
- `ring`: per-stream ring buffers in one block, and the windows they make;
- `runner`: batches of windows -> skeletons, CUDA-graph ladder on GPU, eager on CPU;
- `server`: the ingest / compute / publish loops; `stats`: their counters;
- `clients`: producer, subscriber, paced replay, recorder; `demo`: all of them in one process.

Nothing is imported here, so that `streamlift --help` does not pay for torch and ZeroMQ.
"""
