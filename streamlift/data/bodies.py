"""Joint conventions and random bodies: what differs between mocap sources and between people.

Sources place joints differently (the pelvis 3 cm below to 10 cm above the hip centre, hips
129-175 mm apart), as detectors do. The pelvis is a *definition* in streamlift: the hip centre,
as every 2D layout's mapping (COCO, MPII) makes it; `pelvis_at_hip_centre` applies it to 3D.
Everything else (bone lengths, hip and shoulder widths, where the neck sits) is a *variation*,
and `random_bones` draws it per sequence so that no lifter or prior learns one skeleton.

`rescale_bones` works on numpy arrays and torch tensors alike (indexing and arithmetic only).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from streamlift.skeleton import H36M17, bone_lengths

_PARENTS = H36M17.parents
_BONES = H36M17.bones  # (parent, child), child order 1..16
# a bone's group: left and right of a pair share one, so a body stays symmetric
_GROUP = {"r_hip": "hip", "l_hip": "hip", "r_knee": "thigh", "l_knee": "thigh",
          "r_ankle": "shin", "l_ankle": "shin", "spine": "lower_spine", "thorax": "upper_spine",
          "neck_nose": "neck", "head": "head", "l_shoulder": "shoulder",
          "r_shoulder": "shoulder", "l_elbow": "upper_arm", "r_elbow": "upper_arm",
          "l_wrist": "forearm", "r_wrist": "forearm"}
GROUPS = ("hip", "thigh", "shin", "lower_spine", "upper_spine", "neck", "head", "shoulder",
          "upper_arm", "forearm")
_BONE_GROUP = np.array([GROUPS.index(_GROUP[H36M17.joints[c]]) for _, c in _BONES])

# A median adult's bones (mm), and the log-std of each group's spread: the long limb bones
# vary like real adults' and like where sources end them (5-10 %); the hips, shoulders, spine,
# neck and head much more, because where a source or a detector puts those joints is a
# convention (half hip widths of 65-75 mm in the mocap, ~125 mm for COCO-style detectors;
# thorax-shoulder 100-255 mm; spine-thorax 164-339 mm).
ADULT_MM = {"hip": 100.0, "thigh": 420.0, "shin": 430.0, "lower_spine": 240.0,
            "upper_spine": 230.0, "neck": 95.0, "head": 120.0, "shoulder": 165.0,
            "upper_arm": 275.0, "forearm": 255.0}
LOG_STD = {"hip": 0.3, "thigh": 0.06, "shin": 0.06, "lower_spine": 0.15, "upper_spine": 0.25,
           "neck": 0.25, "head": 0.25, "shoulder": 0.25, "upper_arm": 0.08, "forearm": 0.1}


@dataclass(frozen=True)
class BodyConfig:
    """How random bodies are drawn (per sequence)."""
    keep_prob: float = 0.2  # the source's own body, unchanged
    child_prob: float = 0.05  # a child: 0.55-0.8 of an adult's size, a larger head for it
    tall_prob: float = 0.05  # a tall adult: 1.08-1.2
    height_log_std: float = 0.05  # adults' overall size


def pelvis_at_hip_centre(motion: np.ndarray) -> np.ndarray:
    """Poses `(..., 17, 3)` with the pelvis moved to the midpoint of the hips (a copy)."""
    out = np.array(motion, copy=True)
    out[..., 0, :] = 0.5 * (out[..., H36M17.index("r_hip"), :] + out[..., H36M17.index("l_hip"), :])
    return out


def median_bones(motion: np.ndarray) -> np.ndarray:
    """Median bone lengths `(16,)` of a sequence `(T, 17, 3)`, in H36M17.bones order."""
    return np.median(bone_lengths(motion), axis=0)


def random_bones(rng: np.random.Generator, cfg: BodyConfig = BodyConfig(),
                 n: int | None = None) -> np.ndarray:
    """Target bone lengths `(16,)` mm of a random person (left = right), or `(n, 16)` for n
    people; NaN rows (with probability `cfg.keep_prob`) mean: keep the source's body."""
    m = 1 if n is None else n
    size = np.exp(rng.normal(0.0, cfg.height_log_std, m))
    head = np.ones(m)
    kind = rng.random(m)
    child = kind < cfg.child_prob
    tall = (kind >= cfg.child_prob) & (kind < cfg.child_prob + cfg.tall_prob)
    size[child] = rng.uniform(0.55, 0.8, child.sum())
    head[child] = size[child] ** -0.5  # a child's head is large for its body
    size[tall] = rng.uniform(1.08, 1.2, tall.sum())
    mean = np.array([ADULT_MM[g] for g in GROUPS])
    std = np.array([LOG_STD[g] for g in GROUPS])
    group = mean * np.exp(rng.normal(0.0, 1.0, (m, len(GROUPS))) * std)  # (m, groups)
    group[:, [GROUPS.index("head"), GROUPS.index("neck")]] *= head[:, None]
    bones = size[:, None] * group[:, _BONE_GROUP]  # (m, 16)
    bones[rng.random(m) < cfg.keep_prob] = np.nan
    return bones[0] if n is None else bones


def rescale_bones(X, scale):
    """Poses `(..., 17, 3)` with each bone's length multiplied by `scale` `(..., 16)` (bones in
    H36M17.bones order) and its direction kept: joints rebuilt from the root outwards, so a
    bone's change moves everything below it. Works on numpy arrays and torch tensors."""
    joints = [X[..., 0, :]]
    # bones come in child order 1..16 and parents precede children: joints[parent] exists
    for k, (parent, child) in enumerate(_BONES):
        joints.append(joints[parent] + scale[..., k, None] * (X[..., child, :] - X[..., parent, :]))
    stack = np.stack if isinstance(X, np.ndarray) else _torch_stack
    return stack(joints, -2)


def _torch_stack(xs, dim):
    import torch

    return torch.stack(xs, dim)


def random_body(motion: np.ndarray, rng: np.random.Generator,
                cfg: BodyConfig = BodyConfig()) -> np.ndarray:
    """A sequence `(T, 17, 3)` performed by a random body: each bone scaled to a random
    person's length (constant over the sequence, so a bone that stretches with the pose in the
    source keeps that stretch). The root trajectory is kept."""
    target = random_bones(rng, cfg)
    if np.isnan(target).any():
        return motion
    scale = (target / np.maximum(median_bones(motion), 1e-6)).astype(np.float32)
    return rescale_bones(motion, scale).astype(np.float32)


def random_bodies(P, rng: np.random.Generator, cfg: BodyConfig = BodyConfig()):
    """Torch windows `(B, Tp, 17, 3)`, each performed by its own random body (the prior's
    training windows): bones scaled to random people's lengths over the window."""
    import torch

    p, c = (torch.tensor(a, device=P.device) for a in np.array(_BONES).T)
    current = (P[..., c, :] - P[..., p, :]).norm(dim=-1).median(dim=1).values  # (B, 16)
    target = torch.from_numpy(random_bones(rng, cfg, n=len(P))).to(P)
    scale = torch.nan_to_num(target / current.clamp_min(1e-6), nan=1.0)  # NaN: keep the body
    return rescale_bones(P, scale[:, None])  # scale (B, 1, 16) against poses (B, Tp, 17, 3)
