"""How many of a views file's left/right limb swaps `streamlift.data.unswap` finds, against the
exact 2D of the same views (both files from `streamlift data views`, the same seed and split,
one with `--detector`):

    python scripts/swap_check.py --detected views/cmu_asfamc_train_det.npz \
        --exact views/cmu_asfamc_train_studio.npz

A limb-frame (one leg pair or arm pair in one frame) is swapped when the detected 2D is nearer
the exact 2D with the limb and its twin exchanged than as given. Prints the swapped
limb-frames, those found and missed, the false finds, the share of the swaps' displacement
(the sum over found ones of how much nearer exchanging brings them) found, and how many
limb-frames of the exact 2D itself would be exchanged.
"""

from __future__ import annotations

import argparse

import numpy as np

from streamlift.data.unswap import PAIRS, find_swaps
from streamlift.data.views import load_views


def swap_stats(detected: dict, exact: dict, half: int = 7, margin: float = 0.7) -> dict:
    """Counts over every view and limb pair (module docstring); views matched by name."""
    s = {"swapped": 0, "found": 0, "missed": 0, "false": 0, "exact_flagged": 0,
         "displacement_found": 0.0, "displacement": 0.0, "limb_frames": 0}
    for name, v in detected.items():
        e = exact[name].kp2d[..., :2]
        found, on_exact = find_swaps(v.kp2d, half, margin), find_swaps(e, half, margin)
        for limb_name, (limb, twins) in PAIRS.items():
            def dist(a, b):  # (T,): the detected limb and twin against exact joints a, b
                return (np.linalg.norm(v.kp2d[:, limb, :2] - e[:, a], axis=-1).sum(1)
                        + np.linalg.norm(v.kp2d[:, twins, :2] - e[:, b], axis=-1).sum(1))

            gain = dist(limb, twins) - dist(twins, limb)  # > 0: nearer exchanged
            truth, f = gain > 0, found[limb_name]
            s["swapped"] += int(truth.sum())
            s["found"] += int((truth & f).sum())
            s["missed"] += int((truth & ~f).sum())
            s["false"] += int((~truth & f).sum())
            s["exact_flagged"] += int(on_exact[limb_name].sum())
            s["displacement_found"] += float(gain[truth & f].sum())
            s["displacement"] += float(gain[truth].sum())
            s["limb_frames"] += len(f)
    return s


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--detected", required=True, help="views file with a detector's 2D")
    p.add_argument("--exact", required=True, help="the same views with exact 2D")
    p.add_argument("--half", type=int, default=7, help="frames either side of the median")
    p.add_argument("--margin", type=float, default=0.7, help="find_swaps' margin")
    a = p.parse_args(argv)
    s = swap_stats(load_views(a.detected), load_views(a.exact), a.half, a.margin)
    share = s["displacement_found"] / max(s["displacement"], 1e-9)
    print(f"{s['swapped']:,} of {s['limb_frames']:,} limb-frames swapped: {s['found']:,} found, "
          f"{s['missed']:,} missed ({share:.0%} of their displacement found); {s['false']:,} "
          f"false finds; {s['exact_flagged']:,} limb-frames of the exact 2D flagged")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
