"""Where shipped assets and the (optional) shared data live."""

from __future__ import annotations

import os
from pathlib import Path

ASSETS = Path(__file__).resolve().parent / "assets"
# Real CMU motion from the shared data's *test* split (see assets/sample_cmu_test.json).
SAMPLE_MOCAP = ASSETS / "sample_cmu_test.npz"
# The shipped windowed lifter (`--weights windowed`; see assets/model-card.md): what adapt,
# train --init and export --onnx start from, and the reference the streaming one is held to.
WINDOWED_WEIGHTS = ASSETS / "lifter.pt"
# The shipped streaming lifter, distilled from it (`--weights streaming`): one frame's work per
# new frame; what serve, demo, eval, render and export --bvh use when no --weights is given.
STREAMING_WEIGHTS = ASSETS / "lifter_stream.pt"
DEFAULT_WEIGHTS = STREAMING_WEIGHTS
# The shipped diffusion motion prior (see assets/prior-card.md).
DEFAULT_PRIOR = ASSETS / "prior.pt"


def shared_data_dir() -> Path | None:
    """The shared mocap folder: $STREAMLIFT_SHARED_DATA, else ../shared/data beside the checkout
    (or beside the working directory)."""
    env = os.environ.get("STREAMLIFT_SHARED_DATA")
    candidates = [Path(env)] if env else []
    candidates += [Path(__file__).resolve().parents[2] / "shared" / "data",
                   Path.cwd().parent / "shared" / "data"]
    for c in candidates:
        if (c / "splits.json").is_file():
            return c
    return None


def write_json(path: Path, obj) -> None:
    """Write `obj` as indented JSON to `path`, making its folder."""
    import json

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=1) + "\n")
