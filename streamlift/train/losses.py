"""Unsupervised training losses for the NRSfMFormer: they see 2D only (reprojection, Procrustean
canonicalisation, smoothness, bone priors; the diffusion prior's loss is `streamlift.prior.loss`).

All losses work on a `LifterOutput` in the model's normalised units and return scalars.
"""

from __future__ import annotations

import torch

from streamlift.lifter.model import LifterOutput
from streamlift.skeleton import BONE_PROPORTION_LOG_TOL, BONE_PROPORTIONS, H36M17, SYMMETRIC_BONES

_PARENT, _CHILD = (torch.tensor(a) for a in zip(*H36M17.bones))
# positions in H36M17.bones of each symmetric (left child, right child) pair
_BONE_OF_CHILD = {c: i for i, (_, c) in enumerate(H36M17.bones)}
_SYM_L = torch.tensor([_BONE_OF_CHILD[left] for left, _ in SYMMETRIC_BONES])
_SYM_R = torch.tensor([_BONE_OF_CHILD[right] for _, right in SYMMETRIC_BONES])


def bones(P: torch.Tensor) -> torch.Tensor:
    """Bone lengths (..., 16) of poses (..., 17, 3)."""
    return (P[..., _CHILD, :] - P[..., _PARENT, :]).norm(dim=-1)


def reprojection(out: LifterOutput) -> torch.Tensor:
    """Confidence-weighted distance between the projection of X and the 2D.

    Weak perspective (x = X_xy) unless `out.extras["perspective"]` gives k = scale / focal per
    window (B,): then full perspective through a camera that looks at the root, whose depth is
    1/k model units, so x = X_xy / (1 + k X_z) (the virtual camera's 2D, root on the axis).
    """
    k = out.extras.get("perspective")
    proj = out.X[..., :2]
    if k is not None:
        # clamped so that a joint pushed behind the camera gets a bounded, not a flipped, image
        proj = proj / (1 + k[:, None, None, None] * out.X[..., 2:]).clamp_min(0.1)
    d = (proj - out.x2d).norm(dim=-1)  # (B, T, J)
    return (d * out.conf).sum() / out.conf.sum().clamp_min(1e-6)


def canonicalisation(out: LifterOutput) -> torch.Tensor:
    """The shapes S[t] = B + D[t] must carry no rigid rotation of their own.

    The rotation Q that best aligns S[t] to B (orthogonal Procrustes) is the polar factor of
    H = sum_j s_j b_j^T; Q = I exactly when H is symmetric positive semi-definite. So we
    penalise the skew-symmetric part of H (scale-normalised): smooth, and free of the SVD
    gradient's blow-up at repeated singular values.
    """
    S = out.B[:, None] + out.D  # (B, T, J, 3)
    H = S.transpose(-1, -2) @ out.B[:, None]  # (B, T, 3, 3) = sum_j s_j b_j^T
    norm = (S.square().sum(dim=(-1, -2)) * out.B[:, None].square().sum(dim=(-1, -2))).sqrt()
    skew = (H - H.transpose(-1, -2)) / norm.clamp_min(1e-6)[..., None, None]
    return skew.square().sum(dim=(-1, -2)).mean()


def smoothness(out: LifterOutput) -> torch.Tensor:
    """Mean squared acceleration of X over the window (a person's joints move smoothly)."""
    if out.X.shape[1] < 3:
        return out.X.new_zeros(())
    acc = out.X[:, 2:] - 2 * out.X[:, 1:-1] + out.X[:, :-2]  # (B, T-2, J, 3)
    return acc.square().sum(dim=-1).mean()


def bone_constancy(out: LifterOutput) -> torch.Tensor:
    """Bone lengths of S[t] stay constant over the window (relative std over time)."""
    L = bones(out.B[:, None] + out.D)  # (B, T, 16)
    return (L.std(dim=1) / L.mean(dim=1).clamp_min(1e-6)).mean() if L.shape[1] > 1 \
        else L.new_zeros(())


def bone_symmetry(out: LifterOutput) -> torch.Tensor:
    """Left and right limbs of the reference skeleton have equal lengths."""
    L = bones(out.B)  # (B, 16)
    return ((L[:, _SYM_L] - L[:, _SYM_R]).abs() / L.mean(dim=1, keepdim=True).clamp_min(1e-6)).mean()


_PROP = torch.tensor(BONE_PROPORTIONS).log()
_PROP_TOL = torch.tensor(BONE_PROPORTION_LOG_TOL)


def bone_proportions(out: LifterOutput) -> torch.Tensor:
    """Bones of S[t] keep human proportions (within a tolerance).

    Reprojection fixes only the image-plane part of each bone; without a length prior the
    depth part is free, and bones grow arbitrarily long towards and away from the camera.
    """
    L = bones(out.B[:, None] + out.D)  # (B, T, 16)
    logp = (L / L.sum(dim=-1, keepdim=True).clamp_min(1e-6)).clamp_min(1e-6).log()
    return torch.relu((logp - _PROP.to(L)).abs() - _PROP_TOL.to(L)).mean()


def depth_extent(out: LifterOutput) -> torch.Tensor:
    """Mean squared root-relative depth: among poses that explain the 2D equally well (same
    projection, same proportions) prefer the one with the least depth - the tie-breaker that
    fixes the skeleton's overall size, which proportions alone leave free."""
    return out.X[..., 2].square().mean()


def deformation(out: LifterOutput) -> torch.Tensor:
    """Small deformations, so the shared reference skeleton carries the shape (low rank)."""
    return out.D.square().sum(dim=-1).mean()


LOSSES = {
    "reprojection": reprojection,
    "canonicalisation": canonicalisation,
    "smoothness": smoothness,
    "bone_constancy": bone_constancy,
    "bone_symmetry": bone_symmetry,
    "bone_proportions": bone_proportions,
    "depth_extent": depth_extent,
    "deformation": deformation,
}
