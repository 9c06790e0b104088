"""Compute kernels shared by serving and training (installed as `streamlift.kernels`).

Each op has a PyTorch reference that tests and benchmarks import, and one entry point that
dispatches to the fastest implementation available for the tensors it is given.
"""

from streamlift.kernels.attention import attention, attention_reference
from streamlift.kernels.procrustes import ProcrustesResult, procrustes, procrustes_reference

__all__ = ["attention", "attention_reference", "ProcrustesResult", "procrustes", "procrustes_reference"]
