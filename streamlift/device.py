"""Choosing the torch device by name."""

from __future__ import annotations

import torch

from streamlift.errors import UserError


def pick_device(name: str) -> torch.device:
    """'auto' (CUDA when present, else CPU), 'cpu' or 'cuda' -> a torch.device."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("no CUDA device is available")
    return torch.device(name)
