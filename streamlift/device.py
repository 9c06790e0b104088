"""Choosing the torch device from a --device flag."""

from __future__ import annotations

import torch

from streamlift.errors import UserError


def pick_device(name: str) -> torch.device:
    """'auto' (CUDA when present, else CPU), 'cpu' or 'cuda' -> a torch.device."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda: no CUDA device is available (use --device cpu)")
    return torch.device(name)
