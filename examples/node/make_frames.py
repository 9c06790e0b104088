#!/usr/bin/env python3
"""Write frames.json for producer.js: a few seconds of 2D keypoints from the shipped CMU sample.

The view is salsa_01.cam0 exactly as `streamlift data views` makes it (seeded studio camera,
exact 2D, 1000x1000 px image), frames 0..149 = 3 s at 50 fps, rounded to 0.1 px. Needs
streamlift installed (pip install . at the repository root):

    python examples/node/make_frames.py
"""

import json
from pathlib import Path

from streamlift.data import load_mocap, make_views
from streamlift.paths import SAMPLE_MOCAP

VIEW, FRAMES = "salsa_01.cam0", 150

view = make_views(load_mocap(SAMPLE_MOCAP), 4, 0, progress=False)[VIEW]
out = Path(__file__).resolve().parent / "frames.json"
doc = {
    "source": f"streamlift shipped CMU sample, view {VIEW} (streamlift data views, seed 0), "
              f"frames 0-{FRAMES - 1}; CMU mocap: mocap.cs.cmu.edu",
    "layout": "h36m17",
    "fps": view.fps,
    "image_size": list(view.image_size),
    # frames[k][j] = [u, v]: pixel coordinates of joint j (H36M-17 order) in frame k
    "frames": [[[round(float(c), 1) for c in joint] for joint in frame]
               for frame in view.kp2d[:FRAMES, :, :2]],
}
out.write_text(json.dumps(doc, separators=(",", ":")) + "\n")
print(f"wrote {out} ({len(doc['frames'])} frames at {doc['fps']:g} fps, "
      f"{out.stat().st_size / 1024:.0f} KiB)")
