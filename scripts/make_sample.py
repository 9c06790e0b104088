"""Rebuild the sample shipped in the package from the shared CMU data (its test split only).

    python scripts/make_sample.py --data ../shared/data

The sample is CMU-derived (free for any use); Bandai data never ships (CC BY-NC).
"""

import argparse
import json
from pathlib import Path

import numpy as np

FRAMES = 600  # 12 s at 50 fps per clip

ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
ap.add_argument("--data", default="../shared/data", help="folder with cmu_daz_subset_h36m17.npz and splits.json")
ap.add_argument("--out", default="streamlift/assets", help="where to write sample_cmu_test.{npz,json}")
args = ap.parse_args()

data = Path(args.data)
src = data / "cmu_daz_subset_h36m17.npz"
meta = json.loads(src.with_suffix(".json").read_text())
test = json.loads((data / "splits.json").read_text())["splits"][src.stem]["test"]
with np.load(src) as d:
    clips = {k: d[k][:FRAMES].astype(np.float32) for k in test}
out = Path(args.out)
np.savez_compressed(out / "sample_cmu_test.npz", **clips)
(out / "sample_cmu_test.json").write_text(json.dumps({
    "fps": meta["fps"],
    "units": meta["units"],
    "up_axis": meta["up_axis"],
    "joints": meta["joints"],
    "parents": meta["parents"],
    "source": meta["source"],
    "licence": meta["licence"],
    "acknowledgement": "The data used in this project was obtained from mocap.cs.cmu.edu.",
    "split": "test (never used for training)",
    "clips": {k: {"frames": int(len(v)), "first_frame": 0} for k, v in clips.items()},
    "made_by": "python scripts/make_sample.py --data ../shared/data",
}, indent=1) + "\n")
print(f"wrote {len(clips)} clips, {sum(map(len, clips.values()))} frames to {out}")
