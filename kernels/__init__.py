"""Compute kernels shared by serving and training (installed as `streamlift.kernels`).

Each op has a PyTorch reference that tests and benchmarks import, an autograd.Function around
its fused Triton kernels (forward and backward), and one entry point that dispatches to the
fastest implementation available for the tensors it is given (`impl="auto"`: Triton for CUDA
tensors; PyTorch otherwise) or to the one named by `impl`. Triton is imported only when a
Triton kernel is used, so the package works where Triton is absent.
"""

from streamlift.kernels.attention import attention, attention_reference
from streamlift.kernels.procrustes import ProcrustesResult, procrustes, procrustes_reference

__all__ = ["attention", "attention_reference", "ProcrustesResult", "procrustes", "procrustes_reference"]
