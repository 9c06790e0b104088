"""Choosing the torch device by name."""

from __future__ import annotations

import torch

from streamlift.errors import UserError


def pick_device(name: str, threads: int | None = None) -> torch.device:
    """'auto' (CUDA when present, else CPU), 'cpu' or 'cuda' -> a torch.device; `threads`:
    torch.set_num_threads first."""
    if threads:
        torch.set_num_threads(threads)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("no CUDA device is available")
    return torch.device(name)
