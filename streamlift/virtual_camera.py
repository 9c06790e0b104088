"""Lifting through a virtual camera that looks at the subject (needs the camera's intrinsics K).

The lifter reasons under weak perspective, as if the subject stood on the optical axis. A subject
off the axis is seen along an oblique ray, and its 2D is that of a body turned by the ray's angle
(14 degrees for a subject 1 m to the side at 4 m): lifted as it is, the pose comes out turned by
up to that angle in the camera frame. With K, each frame is re-projected into a virtual camera
with the same K and centre, rotated to look along the root joint's ray; the lifter lifts that
2D, and the pose goes back into the real camera frame:

    d_j = K^-1 [u_j, v_j, 1]^T           the joint's ray
    R   = the least rotation with R z = d_root / |d_root|   (Rodrigues about z x d_root)
    d'_j = R^T d_j,  [u'_j, v'_j, 1]^T = K d'_j / d'_j,z    the virtual camera's pixels
    X_camera = R X_virtual                                 (per frame, its own R)

Only rays are used, so this is exact for any pinhole K and any depth: no 3D enters.
"""

from __future__ import annotations

import numpy as np

from streamlift.geometry import ray_rotations
from streamlift.skeleton import ROOT

MIN_FOCAL = 1e-3  # px; intrinsics of normalised image coordinates (f = 1) still pass
MAX_ENTRY = 1e8  # px; far beyond any real camera


def check_intrinsics(K, what: str = "intrinsics") -> np.ndarray:
    """K as float64 (3, 3), or ValueError saying what is wrong with it."""
    K = np.asarray(K, dtype=np.float64)
    if K.shape != (3, 3):
        raise ValueError(f"{what} must be a 3x3 camera matrix, got shape {list(K.shape)}")
    if not np.isfinite(K).all():
        raise ValueError(f"{what} contains NaN or infinity")
    (fx, _, _), (d, fy, _), (a, b, c) = K.tolist()  # plain floats: cheap per streamed frame
    # upper triangular with fx, fy > 0: always invertible (det = fx fy), which the compute
    # thread relies on; the range keeps K^-1 and the re-projected pixels finite
    if not (MIN_FOCAL <= fx and MIN_FOCAL <= fy) or max(abs(d), abs(a), abs(b), abs(c - 1)) > 1e-6:
        raise ValueError(f"{what} must be a pinhole matrix [[fx, s, cx], [0, fy, cy], [0, 0, 1]]"
                         f" with fx, fy > 0 (at least {MIN_FOCAL:g} px)")
    if np.abs(K).max() > MAX_ENTRY:
        raise ValueError(f"{what} has an entry beyond {MAX_ENTRY:.0e} px")
    return K


def root_pixels(kp2d: np.ndarray) -> np.ndarray:
    """(N, J, 2|3) -> (N, 2) the pixel the virtual camera looks at: the root where it was
    detected (confidence > 0), else the mean of the detected joints, else the first joint."""
    xy = kp2d[..., :2].astype(np.float64)
    if kp2d.shape[-1] < 3:
        return xy[:, ROOT]
    seen = (kp2d[..., 2] > 0).astype(np.float64)  # (N, J)
    n = seen.sum(axis=1, keepdims=True)
    mean = (xy * seen[..., None]).sum(axis=1) / np.maximum(n, 1)
    fallback = np.where(n > 0, mean, xy[:, ROOT])
    return np.where(seen[:, ROOT:ROOT + 1] > 0, xy[:, ROOT], fallback)


def to_virtual(kp2d: np.ndarray, K, checked: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Pixels (N, J, 2|3) seen through K (3, 3), or through one K per frame (N, 3, 3) -> the
    virtual cameras' pixels (N, J, 2|3) float32 (confidences passed through) and each frame's
    rotation R (N, 3, 3) float32. `checked`: the caller has already run check_intrinsics on
    every K (the server checks each as it arrives)."""
    K = np.asarray(K, dtype=np.float64)
    if not checked:
        for k in np.unique(K.reshape(-1, 3, 3), axis=0):
            check_intrinsics(k)
    kp2d = np.asarray(kp2d)
    Kt = np.swapaxes(K, -1, -2)  # (3, 3) or (N, 3, 3): rows @ Kt broadcast over the frames
    Kit = np.linalg.inv(Kt)  # (K^-1)^T
    ones = np.ones(kp2d.shape[:2] + (1,))
    px = np.concatenate([kp2d[..., :2].astype(np.float64), ones], axis=-1)  # (N, J, 3)
    d = px @ Kit  # (N, J, 3) rays
    root = np.concatenate([root_pixels(kp2d), ones[:, 0]], axis=-1)[:, None] @ Kit  # (N, 1, 3)
    R = ray_rotations(root[:, 0])  # (N, 3, 3)
    dv = d @ R  # (N, J, 3): rows R^T d_j
    # a joint 90 degrees or more from the root's ray has no image in the virtual camera; such
    # a pose would not fit any real lens, so it is pushed far out rather than wrapped around
    dv[..., 2] = np.maximum(dv[..., 2], 1e-6)
    uv = (dv / dv[..., 2:]) @ Kt  # (N, J, 3), last column 1
    out = np.array(kp2d, dtype=np.float32, copy=True)
    out[..., :2] = uv[..., :2]
    return out, R.astype(np.float32)


def from_virtual(X: np.ndarray, R: np.ndarray) -> np.ndarray:
    """Poses (N, J, 3) in each frame's virtual camera -> the real camera frame: X R^T."""
    return np.einsum("nij,nkj->nki", R, X).astype(X.dtype, copy=False)
