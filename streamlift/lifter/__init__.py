"""The lifter: the NRSfMFormer (`model`) and offline lifting of whole sequences (`infer`)."""

from streamlift.lifter.infer import lift_sequence
from streamlift.lifter.model import (FORMAT, LifterConfig, LifterOutput, NRSfMFormer, load_checkpoint, load_lifter, metric_scale, normalise_2d, skeleton_height)

__all__ = ["lift_sequence", "FORMAT", "LifterConfig", "LifterOutput", "NRSfMFormer",
           "load_checkpoint", "load_lifter", "metric_scale", "normalise_2d", "save_checkpoint",
           "skeleton_height"]
