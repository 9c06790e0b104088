"""Perspective pinhole cameras placed like a capture studio's, and projection to pixels.

Camera frame: x right, y down, z forward (OpenCV). World frame of the mocap: z up.
A camera maps a world point X to `X_cam = R @ X + t` and to pixels `u = K @ X_cam / z`.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np

from streamlift.geometry import look_at

IMAGE_SIZE = (1000, 1000)  # (width, height) px
FOCAL_PX = 1150.0
DISTANCE_M = (3.0, 6.0)
HEIGHT_M = (1.0, 2.0)
CLEARANCE_M = 2.0  # the subject never comes closer to a camera than this


@dataclass(frozen=True)
class Camera:
    R: np.ndarray  # (3, 3) world -> camera rotation
    t: np.ndarray  # (3,) mm
    K: np.ndarray  # (3, 3) intrinsics, px
    image_size: tuple[int, int]  # (width, height)

    @property
    def extrinsics(self) -> np.ndarray:
        """(3, 4) [R | t], world mm -> camera mm."""
        return np.concatenate([self.R, self.t[:, None]], axis=1).astype(np.float32)

    def to_camera(self, X: np.ndarray) -> np.ndarray:
        """World points (..., 3) mm -> camera frame (..., 3) mm."""
        return (X @ self.R.T + self.t).astype(np.float32)


def project(X_cam: np.ndarray, K: np.ndarray) -> np.ndarray:
    """Camera-frame points (..., 3) -> pixels (..., 2) through intrinsics K (3, 3)."""
    z = X_cam[..., 2:3]
    if np.any(z <= 0):
        raise ValueError("a point lies behind the camera (z <= 0); it cannot be projected")
    xy = X_cam[..., :2] / z
    return (xy * np.array([K[0, 0], K[1, 1]]) + K[:2, 2]).astype(np.float32)


def seeded_rng(seed: int, name: str) -> np.random.Generator:
    # Seeded by the sequence name too, so a view's camera does not depend on which other
    # sequences share the file or in what order they come.
    return np.random.default_rng([seed, zlib.crc32(name.encode())])


def studio_rig(motion: np.ndarray, n_cameras: int, seed: int, name: str,
               image_size: tuple[int, int] = IMAGE_SIZE) -> list[Camera]:
    """Cameras around the motion `(T, 17, 3)` mm (z up), like a studio's.

    The rig is centred on the mean pelvis position. Cameras are spread evenly in azimuth (with
    jitter), 3-6 m from the centre (further when the subject's path is wide, so it stays
    `CLEARANCE_M` in front of every camera), 1-2 m high, looking at the mean pelvis, with a focal
    length near 1,150 px for a 1,000 px image (scaled with the image width).
    """
    if n_cameras < 1:
        raise ValueError("n_cameras must be >= 1")
    rng = seeded_rng(seed, name)
    pelvis = motion[:, 0, :].astype(np.float64)
    centre = pelvis.mean(axis=0)
    radius = np.linalg.norm(pelvis[:, :2] - centre[:2], axis=1).max() / 1000.0  # m
    extent = np.linalg.norm(motion - pelvis[:, None], axis=-1).max() / 1000.0  # body reach, m
    a0 = rng.uniform(0, 2 * np.pi)
    w, h = image_size
    cams = []
    for k in range(n_cameras):
        az = a0 + 2 * np.pi * k / n_cameras + rng.uniform(-0.3, 0.3)
        dist = max(rng.uniform(*DISTANCE_M), radius + extent + CLEARANCE_M)
        height = rng.uniform(*HEIGHT_M)
        eye = np.array([centre[0] + 1000 * dist * np.cos(az),
                        centre[1] + 1000 * dist * np.sin(az), 1000 * height])
        R, t = look_at(eye, centre)
        f = FOCAL_PX * (w / 1000.0) * rng.uniform(0.95, 1.05)
        K = np.array([[f, 0, w / 2 + rng.uniform(-10, 10)],
                      [0, f, h / 2 + rng.uniform(-10, 10)],
                      [0, 0, 1]], dtype=np.float64)
        cams.append(Camera(R, t, K, (w, h)))
    return cams


# The wild rig: the cameras users have, not a studio's.
WILD_HFOV_DEG = (35.0, 90.0)  # studio lenses to phones and wide webcams
WILD_DISTANCE_M = (1.5, 10.0)
WILD_PITCH_DEG = (-10.0, 50.0)  # looking up from below the hips to down from the ceiling
WILD_EYE_M = (0.2, 3.5)  # camera height above the floor
WILD_ROLL_DEG = 5.0  # std, clipped to 3 std
WILD_AIM = 0.45  # the subject's centre anywhere within this fraction of the half-FOV
WILD_IMAGE_SIZES = ((1920, 1080), (1280, 720), (1080, 1920), (640, 480), (1000, 1000))


def _turn(yaw: float, pitch: float, roll: float) -> np.ndarray:
    """Camera-frame rotation (3, 3): yaw about y (down), then pitch about x, then roll about z."""
    cy, sy, cp, sp, cr, sr = (np.cos(yaw), np.sin(yaw), np.cos(pitch), np.sin(pitch),
                              np.cos(roll), np.sin(roll))
    Ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    Rx = np.array([[1, 0, 0], [0, cp, -sp], [0, sp, cp]])
    Rz = np.array([[cr, -sr, 0], [sr, cr, 0], [0, 0, 1]])
    return Rz @ Rx @ Ry


def wild_rig(motion: np.ndarray, n_cameras: int, seed: int, name: str,
             image_size: tuple[int, int] | None = None) -> list[Camera]:
    """Cameras like users' around the motion `(T, 17, 3)` mm (z up): any azimuth, 1.5-10 m
    away (never closer than the subject's reach plus 0.5 m), pitch -10 to +50 degrees with
    the camera 0.2-3.5 m above the floor, a roll, a horizontal field of view of 35-90 degrees,
    a common image size (unless `image_size` is given), and the subject anywhere in the image
    (partly outside it at times).
    """
    if n_cameras < 1:
        raise ValueError("n_cameras must be >= 1")
    rng = seeded_rng(seed, name + "/wild")
    pelvis = motion[:, 0, :].astype(np.float64)
    centre = pelvis.mean(axis=0)
    radius = np.linalg.norm(pelvis[:, :2] - centre[:2], axis=1).max()  # mm
    extent = np.linalg.norm(motion - pelvis[:, None], axis=-1).max()
    floor = float(motion[..., 2].min())
    a0 = rng.uniform(0, 2 * np.pi)
    cams = []
    for k in range(n_cameras):
        w, h = image_size or WILD_IMAGE_SIZES[rng.integers(len(WILD_IMAGE_SIZES))]
        hfov = np.deg2rad(rng.uniform(*WILD_HFOV_DEG))
        f = (w / 2) / np.tan(hfov / 2)
        az = a0 + 2 * np.pi * k / n_cameras + rng.uniform(-0.3, 0.3)
        pitch = np.deg2rad(rng.uniform(*WILD_PITCH_DEG))
        dist = 1000 * np.exp(rng.uniform(*np.log(WILD_DISTANCE_M)))
        dist = max(dist, radius + extent + 500.0)
        # keep the camera between the floor and the ceiling: a steep camera comes nearer
        rise = dist * np.sin(pitch)
        lo, hi = floor + 1000 * WILD_EYE_M[0] - centre[2], floor + 1000 * WILD_EYE_M[1] - centre[2]
        if not lo <= rise <= hi:
            rise = float(np.clip(rise, lo, hi))
            pitch = np.arcsin(np.clip(rise / dist, -1, 1))
        eye = centre + np.array([dist * np.cos(pitch) * np.cos(az),
                                 dist * np.cos(pitch) * np.sin(az), rise])
        R, t = look_at(eye, centre)
        vfov = 2 * np.arctan((h / 2) / f)
        Q = _turn(rng.uniform(-1, 1) * WILD_AIM * hfov / 2, rng.uniform(-1, 1) * WILD_AIM * vfov / 2,
                  np.deg2rad(np.clip(rng.normal(0, WILD_ROLL_DEG), -3 * WILD_ROLL_DEG,
                                     3 * WILD_ROLL_DEG)))
        K = np.array([[f, 0, w / 2 + rng.uniform(-0.02, 0.02) * w],
                      [0, f, h / 2 + rng.uniform(-0.02, 0.02) * h],
                      [0, 0, 1]], dtype=np.float64)
        cams.append(Camera(Q @ R, Q @ t, K, (int(w), int(h))))
    return cams


RIGS = {"studio": studio_rig, "wild": wild_rig}


def detector_noise(kp2d: np.ndarray, noise_px: float, drop_prob: float,
                   rng: np.random.Generator) -> np.ndarray:
    """Add detector-like error to pixels `(T, J, 2)` -> `(T, J, 3)` with confidence.

    Noise model: i.i.d. Gaussian of `noise_px` per coordinate; each joint is independently
    dropped with `drop_prob` (confidence 0, coordinates kept); kept joints have confidence 1.
    """
    T, J, _ = kp2d.shape
    out = np.ones((T, J, 3), dtype=np.float32)
    out[..., :2] = kp2d
    if noise_px > 0:
        out[..., :2] += rng.normal(0.0, noise_px, size=(T, J, 2)).astype(np.float32)
    if drop_prob > 0:
        out[..., 2] = (rng.random((T, J)) >= drop_prob).astype(np.float32)
    return out
