"""3D pose error metrics as the field computes them, batched in torch and usable from numpy.

Every function takes predictions and ground truth of shape `(..., J, 3)` (millimetres in, so
millimetres out) as torch tensors or numpy arrays. With `reduce=True` (the default) it returns
the mean over all poses; with `reduce=False` one value per pose, shape `(...)`. numpy in gives
numpy out (float64); torch in gives torch out.

- MPJPE: mean Euclidean joint error after aligning the roots (Protocol #1).
- N-MPJPE: MPJPE after the one scale s* = <P, G> / <P, P> of the root-centred poses
  (Rhodin et al. 2018), the standard metric for methods that only know shape up to scale.
- PA-MPJPE: MPJPE after a similarity Procrustes per pose: rotation (reflections excluded),
  scale, translation (Protocol #2).
- PCK@150 mm and AUC over thresholds 0..150 mm, on root-aligned poses (MPI-INF-3DHP style).
- The rotation to the truth: PA-MPJPE's rotation as a rotation vector, the turn that N-MPJPE
  counts and PA-MPJPE forgives; averaged over frames it shows a systematic tilt.
"""

from __future__ import annotations

import functools
from typing import Callable

import numpy as np
import torch

from streamlift.kernels import procrustes
from streamlift.skeleton import ROOT

AUC_THRESHOLDS_MM = tuple(float(t) for t in np.linspace(0.0, 150.0, 31))


def _torch_or_numpy(fn: Callable) -> Callable:
    """Run fn on torch tensors; convert numpy inputs (and the result) both ways."""

    @functools.wraps(fn)
    def wrapper(pred, gt, *args, **kwargs):
        from_numpy = not isinstance(pred, torch.Tensor)
        if from_numpy:
            pred = torch.as_tensor(np.asarray(pred, dtype=np.float64))
            gt = torch.as_tensor(np.asarray(gt, dtype=np.float64))
        else:
            gt = torch.as_tensor(gt, dtype=pred.dtype, device=pred.device)
        if pred.shape != gt.shape or pred.ndim < 2 or pred.shape[-1] != 3:
            raise ValueError(f"pred and gt must share a shape (..., J, 3); got "
                             f"{tuple(pred.shape)} and {tuple(gt.shape)}")
        out = fn(pred, gt, *args, **kwargs)
        if from_numpy:
            out = out.numpy()
            return float(out) if out.ndim == 0 else out
        return out

    return wrapper


def _reduce(per_pose: torch.Tensor, reduce: bool) -> torch.Tensor:
    return per_pose.mean() if reduce else per_pose


def _root_centre(p: torch.Tensor, root: int) -> torch.Tensor:
    return p - p[..., root:root + 1, :]


@_torch_or_numpy
def mpjpe(pred, gt, root: int = ROOT, reduce: bool = True):
    """Mean per-joint position error after root alignment (Protocol #1)."""
    err = (_root_centre(pred, root) - _root_centre(gt, root)).norm(dim=-1)  # (..., J)
    return _reduce(err.mean(dim=-1), reduce)


def optimal_scale(pred: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """s* = <P, G> / <P, P> per pose `(...)`, for root-centred poses `(..., J, 3)`."""
    num = (pred * gt).sum(dim=(-1, -2))
    den = pred.square().sum(dim=(-1, -2)).clamp_min(torch.finfo(pred.dtype).tiny)
    return num / den


@_torch_or_numpy
def n_mpjpe(pred, gt, root: int = ROOT, reduce: bool = True):
    """MPJPE after the least-squares scale of the root-centred prediction."""
    p, g = _root_centre(pred, root), _root_centre(gt, root)
    s = optimal_scale(p, g)[..., None, None]
    return _reduce((s * p - g).norm(dim=-1).mean(dim=-1), reduce)


@_torch_or_numpy
def pa_mpjpe(pred, gt, reduce: bool = True):
    """MPJPE after per-pose similarity Procrustes alignment (Protocol #2)."""
    batch, J = pred.shape[:-2], pred.shape[-2]
    res = procrustes(pred.reshape(-1, J, 3), gt.reshape(-1, J, 3))  # (N, J, 3) with N = prod(batch)
    return _reduce(res.err.reshape(batch), reduce)


@_torch_or_numpy
def rotation_to_truth(pred, gt):
    """Rotation vector v (..., 3), degrees, of the rotation R that best aligns the prediction
    onto the truth (orthogonal Procrustes of the centred poses, as in PA-MPJPE): gt ~ R pred.

    |v| is the angle of R, v / |v| its axis, in the poses' frame (a camera's: x right, y down,
    z forward, so v[..., 0] is a pitch). From R's skew part, sin|v| (v / |v|) =
    (R21 - R12, R02 - R20, R10 - R01) / 2, and cos|v| = (tr R - 1) / 2.
    """
    batch, J = pred.shape[:-2], pred.shape[-2]
    R = procrustes(pred.reshape(-1, J, 3), gt.reshape(-1, J, 3), scale=False).R  # (N, 3, 3)
    skew = torch.stack([R[:, 2, 1] - R[:, 1, 2], R[:, 0, 2] - R[:, 2, 0],
                        R[:, 1, 0] - R[:, 0, 1]], dim=-1) / 2  # (N, 3): sin(angle) axis
    sin = skew.norm(dim=-1)
    cos = (R.diagonal(dim1=-2, dim2=-1).sum(-1) - 1) / 2
    angle = torch.atan2(sin, cos)
    # angle / sin -> 1 as the rotation vanishes
    v = skew * torch.where(sin > 1e-12, angle / sin.clamp_min(1e-12), torch.ones_like(sin))[:, None]
    return torch.rad2deg(v).reshape(*batch, 3)


@_torch_or_numpy
def pck(pred, gt, threshold_mm: float = 150.0, root: int = ROOT, reduce: bool = True):
    """Fraction of joints within `threshold_mm` of the truth after root alignment."""
    err = (_root_centre(pred, root) - _root_centre(gt, root)).norm(dim=-1)  # (..., J)
    return _reduce((err <= threshold_mm).to(pred.dtype).mean(dim=-1), reduce)


@_torch_or_numpy
def auc(pred, gt, thresholds_mm=AUC_THRESHOLDS_MM, root: int = ROOT, reduce: bool = True):
    """Area under the PCK curve: mean PCK over `thresholds_mm` (0..150 mm in 31 steps)."""
    err = (_root_centre(pred, root) - _root_centre(gt, root)).norm(dim=-1)  # (..., J)
    th = torch.as_tensor(thresholds_mm, dtype=pred.dtype, device=pred.device)
    within = (err[..., None] <= th).to(pred.dtype)  # (..., J, n_thresholds)
    return _reduce(within.mean(dim=(-1, -2)), reduce)


def all_metrics(pred, gt) -> dict[str, float]:
    """MPJPE, N-MPJPE, PA-MPJPE (mm), PCK@150 and AUC, as plain floats."""
    return {
        "mpjpe": float(mpjpe(pred, gt)),
        "n_mpjpe": float(n_mpjpe(pred, gt)),
        "pa_mpjpe": float(pa_mpjpe(pred, gt)),
        "pck150": float(pck(pred, gt)),
        "auc": float(auc(pred, gt)),
    }
