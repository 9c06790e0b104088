"""Skeleton rigs from lifted joint positions: bone rotations, and the sinks that carry them (BVH, VMC, rerun)."""
