"""The settings of `streamlift export` (its flags are made from these fields)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from streamlift.smoothing import MODES as SMOOTH_MODES


@dataclass
class ExportConfig:
    """Write the lifter as ONNX (--onnx: the per-window forward, checked against torch on real
    sample windows, the largest difference printed in mm) and/or a view's lifted motion as a
    BVH clip (--bvh: a fixed skeleton with per-frame joint rotations, for Blender and game
    engines; docs/integrations.md)."""
    onnx: Path | None = field(default=None, metadata={
        "type": "path", "metavar": "LIFTER.onnx",
        "help": "write the lifter (--weights, default the shipped one) as ONNX here"})
    bvh: Path | None = field(default=None, metadata={
        "type": "path", "metavar": "CLIP.bvh",
        "help": "write the lifted motion of one view (--views, --view) as BVH here"})
    views: Path | None = field(default=None, metadata={
        "type": "path", "help": "views .npz to lift for --bvh (default: the shipped CMU sample)"})
    view: str | None = field(default=None, metadata={
        "metavar": "NAME", "help": "the view of --views to lift (default: the first)"})
    height_m: float = field(default=1.70, metadata={
        "type": "positive_float", "help": "the subject's height in the BVH, metres"})
    smooth: str = field(default="gated", metadata={
        "choices": SMOOTH_MODES, "help": "--bvh: filter the view's 2D before lifting, "
        "as `serve --smooth` does: 'gated' only 2D that jitters, 'on' always, 'off' never"})
    up: str = field(default="y", metadata={
        "choices": ["y", "z"],
        "help": "the BVH's up axis: y (Blender's BVH importer default, most game engines) or z"})
