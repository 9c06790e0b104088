"""Exports for the tools users already have: the lifter as ONNX, lifted motion as BVH
(`streamlift export`); the live sinks (BVH recording, VMC, rerun) are in `streamlift.rig`."""
