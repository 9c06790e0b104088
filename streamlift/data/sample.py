"""The shipped CMU sample (motion from the shared data's *test* split, 5 clips) made into views,
for `render`, `send`, `demo`, the benchmarks and the tests alike.

The studio rig spreads a sequence's cameras evenly in azimuth, so camera k depends on how many
cameras there are: `sample_views` is the 4-camera rig of `streamlift data views` (what `render`
and `eval` see), `sample_streams` one camera per clip and more as streams ask for more (what
`send` and `demo` stream)."""

from __future__ import annotations

from streamlift.data.mocap import load_mocap
from streamlift.data.views import make_views
from streamlift.paths import SAMPLE_MOCAP


def sample_views():
    """The shipped CMU sample as views, exactly as `streamlift data views` makes them (4 seeded
    studio cameras per clip, exact 2D, seed 0): {name: View} with names like salsa_01.cam0."""
    return make_views(load_mocap(SAMPLE_MOCAP), 4, 0, progress=False)


def sample_streams(n_streams: int, noise_px: float = 0.0, seed: int = 0):
    """The shipped sample as n live streams: {id: kp2d (N, 17, 2)}, {id: kp3d (N, 17, 3) mm},
    the frame rate and {id: intrinsics (3, 3)} of each stream's camera."""
    mocap = load_mocap(SAMPLE_MOCAP)
    cams = -(-n_streams // len(mocap.sequences))  # ceil
    views = make_views(mocap, cams, seed, noise_px, 0.0, progress=False)
    # cam0 of every sequence first, then cam1, ... so that few streams still cover all motions
    order = sorted(views, key=lambda v: (int(v.rsplit(".cam", 1)[1]), v))[:n_streams]
    return ({v: views[v].kp2d for v in order}, {v: views[v].kp3d for v in order},
            float(next(iter(views.values())).fps), {v: views[v].intrinsics for v in order})
