"""Reading and writing checkpoints safely: `weights_only=True` (tensors, numbers, strings,
lists and dicts only: no pickled code runs) and atomic writes (a crash mid-write never leaves a
broken file)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import torch

from streamlift.errors import UserError


def read(path, fmt: str, what: str, device="cpu") -> dict:
    """The checkpoint dict at `path` whose "format" is `fmt`, or UserError saying why not.
    `what` names the kind of file in the message ("lifter", "prior")."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{what} checkpoint not found: {path}")
    try:
        ck = torch.load(path, map_location=device, weights_only=True)
    except Exception as e:  # a truncated file, or a pickle that needs more than tensors
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserError(f"{path}: not a readable {what} checkpoint ({first})") from None
    if not isinstance(ck, dict) or ck.get("format") != fmt:
        raise UserError(f"{path} is not a streamlift {what} checkpoint")
    return ck


def write(obj: dict, path) -> None:
    """torch.save to a temporary file beside `path`, then rename it into place."""
    tmp = f"{path}.tmp"
    torch.save(obj, tmp)
    os.replace(tmp, path)


def plain(d: dict) -> dict:
    """Tuples -> lists, so that a saved config loads with weights_only=True."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}


def file_digest(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:16]
