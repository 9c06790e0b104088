"""CurveZMQ keys: making them (`streamlift keys`), loading the server's pair and a client's.

The files are ZeroMQ's own certificate format (`zmq.auth`: z85 text, `*.key` public,
`*.key_secret` public + secret), so keys made by other ZeroMQ tools work too. docs/protocol.md
section 11 is the user's guide and the threat model.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from streamlift.errors import UserError

SERVER_NAME = "server"


@dataclass
class KeysConfig:
    """Make CurveZMQ certificates for `serve --curve-secret/--curve-clients` and its clients:
    OUT/server.key and OUT/server.key_secret (the server's pair), and per client
    OUT/clients/NAME.key (the public key the server accepts: pass OUT/clients as
    --curve-clients) and OUT/NAME.key_secret (that client's pair, for its --curve-secret).
    Secret files are readable by their owner only. Nothing is overwritten."""
    out: Path | None = field(default=None, metadata={
        "type": "path", "metavar": "DIR", "required": True,
        "help": "directory to write the keys to (created)"})
    client: list[str] | None = field(default=None, metadata={
        "action": "append", "metavar": "NAME",
        "help": "a client to make a key pair for (repeatable; default: one named 'client')"})


def _load(path: Path, need_secret: bool) -> tuple[bytes, bytes | None]:
    import zmq.auth

    if not Path(path).is_file():
        raise UserError(f"no CURVE key file at {path}")
    try:
        public, secret = zmq.auth.load_certificate(path)
    except (OSError, ValueError) as e:
        raise UserError(f"cannot read the CURVE key {path}: {e}") from None
    if need_secret and secret is None:
        raise UserError(f"{path} is a public key; this needs the matching *.key_secret file")
    return public, secret


def make_keys(out: Path, clients: list[str] | None = None) -> list[Path]:
    """Write the server's and each client's certificates under `out`; the files written."""
    import zmq.auth

    out, names = Path(out), clients or ["client"]
    for name in names:
        if not name or name == SERVER_NAME or Path(name).name != name or name.startswith("."):
            raise UserError(f"{name!r} cannot name a client key (a plain file name other "
                            f"than {SERVER_NAME!r})")
    if len(set(names)) != len(names):
        raise UserError("a client name is given twice")
    targets = [out / f"{SERVER_NAME}.key", out / f"{SERVER_NAME}.key_secret"] + \
        [p for n in names for p in (out / "clients" / f"{n}.key", out / f"{n}.key_secret")]
    if existing := [str(p) for p in targets if p.exists()]:
        raise UserError(f"{existing[0]} already exists; keys are never overwritten")
    (out / "clients").mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out) as tmp:
        for name in [SERVER_NAME, *names]:
            zmq.auth.create_certificates(tmp, name)
        for p in targets:
            src = Path(tmp) / p.name
            if p.suffix == ".key_secret":
                os.chmod(src, 0o600)
            shutil.move(src, p)
    return targets


def load_server_keys(secret: Path, clients: Path) -> tuple[bytes, bytes]:
    """The server's key pair from its *.key_secret file; checks that the client key directory
    holds at least one public key."""
    clients = Path(clients)
    if not clients.is_dir() or not any(clients.glob("*.key")):
        raise UserError(f"{clients} holds no client public keys (*.key); `streamlift keys` "
                        f"writes them to DIR/clients/")
    return _load(Path(secret), need_secret=True)


@dataclass(frozen=True)
class CurveKeys:
    """A client's CurveZMQ keys (z85): the server's public key and the client's own pair."""

    server_public: bytes
    public: bytes
    secret: bytes

    @classmethod
    def load(cls, server_key: Path, secret: Path) -> "CurveKeys":
        """From the files `streamlift keys` writes: server.key and <client>.key_secret."""
        server_public, _ = _load(Path(server_key), need_secret=False)
        public, private = _load(Path(secret), need_secret=True)
        return cls(server_public, public, private)

    def apply(self, sock) -> None:
        """Before connect: the socket then only talks to the server holding that key."""
        sock.curve_serverkey, sock.curve_publickey, sock.curve_secretkey = (
            self.server_public, self.public, self.secret)


@dataclass
class ClientCurve:
    """The CURVE flags of `send` and `watch`."""
    curve_server_key: Path | None = field(default=None, metadata={
        "type": "path", "metavar": "server.key",
        "help": "the server's public key: talk CurveZMQ (authenticated, encrypted) to a server "
                "started with --curve-secret; needs --curve-secret"})
    curve_secret: Path | None = field(default=None, metadata={
        "type": "path", "metavar": "NAME.key_secret",
        "help": "this client's key pair (`streamlift keys`); its public key must be in the "
                "server's --curve-clients directory"})

    def keys(self) -> CurveKeys | None:
        if (self.curve_server_key is None) != (self.curve_secret is None):
            raise UserError("CURVE needs both the server's public key and this client's secret "
                            "key file")
        return None if self.curve_secret is None else CurveKeys.load(self.curve_server_key,
                                                                      self.curve_secret)
