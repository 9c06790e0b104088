"""Every rotation streamlift builds, in one place.

Camera frames are OpenCV's (x right, y down, z forward); the mocap world is z up. Rotations act
on column vectors (`X_cam = R X_world`), and batched code applies them to row vectors as
`X @ R^T`.

- `rotation_6d`: the lifter's continuous rotation parameterisation (Gram-Schmidt on two vectors);
- `look_at`: a studio camera at a point looking at another (numpy);
- `camera_rotation`: a camera by yaw, pitch and roll (torch, batched: the prior's random views);
- `ray_rotations`: the least rotation taking the optical axis to a ray (Rodrigues), for the
  virtual camera;
- `view_basis`: the orthographic screen axes of the renderer's camera, side and top views.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

# torch is imported by the functions that use it, so that the numpy ones (the studio cameras of
# `streamlift data views`, the renderer's axes) do not pay for it


def rotation_6d(a: torch.Tensor) -> torch.Tensor:
    """(..., 6) -> (..., 3, 3) rotation by Gram-Schmidt on two 3-vectors (Zhou et al. 2019)."""
    import torch
    import torch.nn.functional as F

    a1, a2 = a[..., :3], a[..., 3:]
    b1 = F.normalize(a1, dim=-1)
    b2 = F.normalize(a2 - (b1 * a2).sum(-1, keepdim=True) * b1, dim=-1)
    b3 = torch.cross(b1, b2, dim=-1)
    return torch.stack([b1, b2, b3], dim=-1)  # columns b1, b2, b3


def look_at(eye: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(R, t) of a camera at `eye` looking at `target`, image 'up' towards world +z."""
    fwd = target - eye
    fwd = fwd / np.linalg.norm(fwd)
    right = np.cross(fwd, [0.0, 0.0, 1.0])
    right = right / np.linalg.norm(right)
    down = np.cross(fwd, right)
    R = np.stack([right, down, fwd])
    return R, -R @ eye


def camera_rotation(yaw: torch.Tensor, pitch: torch.Tensor, roll: torch.Tensor) -> torch.Tensor:
    """World (z up) -> camera (x right, y down, z forward) rotations (B, 3, 3), radians in.

    The camera looks along azimuth `yaw`, tilted down by `pitch`, rolled by `roll` about its axis.
    """
    import torch

    cp, sp = pitch.cos(), pitch.sin()
    fwd = torch.stack([cp * yaw.cos(), cp * yaw.sin(), -sp], dim=-1)  # (B, 3)
    right = torch.stack([yaw.sin(), -yaw.cos(), torch.zeros_like(yaw)], dim=-1)
    down = torch.cross(fwd, right, dim=-1)
    R0 = torch.stack([right, down, fwd], dim=-2)  # rows: camera axes in world coordinates
    cr, sr = roll.cos(), roll.sin()
    z, o = torch.zeros_like(roll), torch.ones_like(roll)
    Rz = torch.stack([torch.stack([cr, -sr, z], -1), torch.stack([sr, cr, z], -1),
                      torch.stack([z, z, o], -1)], dim=-2)  # (B, 3, 3)
    return Rz @ R0


def ray_rotations(rays: np.ndarray) -> np.ndarray:
    """Rays (N, 3) with positive z -> (N, 3, 3) rotations R with R z = ray / |ray|.

    Rodrigues with the unnormalised axis v = z x r and c = z . r: R = I + [v]x + [v]x^2 / (1 + c),
    which stays exact as r -> z (no division by sin).
    """
    r = rays / np.linalg.norm(rays, axis=-1, keepdims=True)
    vx, vy = -r[:, 1], r[:, 0]  # z x r = (-r_y, r_x, 0)
    c = r[:, 2]
    V = np.zeros((len(r), 3, 3))
    V[:, 0, 2], V[:, 1, 2] = vy, -vx
    V[:, 2, 0], V[:, 2, 1] = -vy, vx
    return np.eye(3) + V + (V @ V) / (1 + c)[:, None, None]


def view_basis(kind: str, up: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(screen right, screen down, viewing direction) in camera coordinates, for an orthographic
    view: 'camera' (the input camera itself), 'side' (from the camera's right, 25 degrees from
    above; the camera is on the left of the panel) or 'top' (from above and behind the camera,
    70 degrees down)."""
    if kind == "camera":
        return np.eye(3)[0], np.eye(3)[1], np.eye(3)[2]
    up = up / np.linalg.norm(up)
    fwd = np.array([0.0, 0.0, 1.0]) - up[2] * up  # the camera's forward, made horizontal
    fwd /= np.linalg.norm(fwd)
    right = np.cross(-up, fwd)  # horizontal right of the camera
    if kind == "side":
        h, elev = -right, np.radians(25.0)
    elif kind == "top":
        h, elev = fwd, np.radians(70.0)
    else:
        raise ValueError(f"unknown view {kind!r}")
    d = np.cos(elev) * h - np.sin(elev) * up
    sr = np.cross(-up, d)
    sr /= np.linalg.norm(sr)
    sd = np.cross(d, sr)
    return sr, sd, d
